/*
 * bench_forkjoin.cc — fork-join spawn and join: fib(n), one task per call,
 * sequential cutoff 0, so the time is almost all task overhead.
 *
 * Each parallel version spawns the fib(n-1) child, computes fib(n-2)
 * inline, then joins the child; that is fib(n+1) - 1 spawns per run.
 *   overhead_ns_per_task = (parallel time - sequential time) / spawns
 * measured with 1 worker (pure overhead: nothing runs in parallel); the
 * 2-worker time is reported too. Every run checks the fib value.
 *
 * Peers and why this form:
 *   - cfutures: cf_submit() the child from inside a worker, compute the other
 *     branch, cf_future_result() the child: a join inside a worker runs
 *     other tasks (usually the child itself) instead of blocking.
 *   - oneTBB task_group: the form of TBB's own fib example; run() one
 *     branch, call the other, wait(). Run inside a task_arena of `workers`
 *     slots whose first slot is the calling thread (TBB's caller helps).
 *   - oneTBB parallel_invoke: the other idiomatic TBB spelling, shown too in
 *     case it is faster on this machine.
 *   - OpenMP: `omp task` + `omp taskwait` inside `parallel` + `single`, the
 *     textbook OpenMP fib (libgomp's defaults: it may run tasks undeferred
 *     when its queue is long, which is its fastest behaviour).
 *   - sequential: plain recursion, the twin the overhead is measured against.
 */
#include <omp.h>
#include <oneapi/tbb/parallel_invoke.h>
#include <oneapi/tbb/task_group.h>

#include "common.h"
#include "forkjoin.h"
#include "pools.h"

namespace {

using namespace fj;

/* ---- cfutures ---- */

cf_executor *g_cf_ex;
std::atomic<int> g_cf_err{0};

int64_t cf_fib(int n);

void cf_fib_task(cf_call *c) {
  size_t len = 0;
  int n = *(const int *)cf_call_arg(c, &len);
  int64_t r = cf_fib(n);
  cf_call_return(c, &r, sizeof r);
}

int64_t cf_fib(int n) {
  if (n < 2) return n;
  int m = n - 1;
  cf_future *f = nullptr;
  int rc = cf_submit(g_cf_ex, cf_fib_task, &m, sizeof m, &f);
  if (rc != 0) {
    g_cf_err.store(rc, std::memory_order_relaxed);
    return 0;
  }
  int64_t b = cf_fib(n - 2);
  int64_t a = 0;
  rc = cf_future_result(f, &a, sizeof a, nullptr, -1);
  if (rc != 0) g_cf_err.store(rc, std::memory_order_relaxed);
  cf_future_release(f);
  return a + b;
}

void BM_forkjoin_cfutures(benchmark::State &st, unsigned workers) {
  g_cf_ex = pool_cf(workers);
  run_cf_root(st, g_cf_ex, cf_fib_task, g_cf_err, "cfutures fib");
}

/* ---- oneTBB ---- */

int64_t tbb_fib(int n) {
  if (n < 2) return n;
  int64_t a = 0, b = 0;
  oneapi::tbb::task_group g;
  g.run([&] { a = tbb_fib(n - 1); });
  b = tbb_fib(n - 2);
  g.wait();
  return a + b;
}

int64_t tbb_fib_invoke(int n) {
  if (n < 2) return n;
  int64_t a = 0, b = 0;
  oneapi::tbb::parallel_invoke([&] { a = tbb_fib_invoke(n - 1); },
                               [&] { b = tbb_fib_invoke(n - 2); });
  return a + b;
}

template <int64_t (*Fib)(int)>
void BM_forkjoin_tbb(benchmark::State &st, unsigned workers) {
  auto &arena = pool_tbb(workers, true);
  const int n = kFibN;
  const int64_t want = fib_value(n);
  int64_t total = 0;
  CpuScope cpu(st);
  for (auto _ : st) {
    int64_t t0 = bench_now_ns();
    int64_t r = -1;
    arena.execute([&] { r = Fib(n); });
    total += bench_now_ns() - t0;
    if (r != want) {
      bench_fail(st, "tbb fib value", r, want);
      break;
    }
  }
  report(st, n, total);
}

/* ---- OpenMP ---- */

int64_t omp_fib(int n) {
  if (n < 2) return n;
  int64_t a = 0, b = 0;
#pragma omp task shared(a) firstprivate(n)
  a = omp_fib(n - 1);
  b = omp_fib(n - 2);
#pragma omp taskwait
  return a + b;
}

void BM_forkjoin_omp(benchmark::State &st, unsigned workers) {
  const int n = kFibN;
  const int64_t want = fib_value(n);
  int64_t total = 0;
  CpuScope cpu(st);
  for (auto _ : st) {
    int64_t t0 = bench_now_ns();
    int64_t r = -1;
#pragma omp parallel num_threads(workers)
#pragma omp single
    r = omp_fib(n);
    total += bench_now_ns() - t0;
    if (r != want) {
      bench_fail(st, "omp fib value", r, want);
      break;
    }
  }
  report(st, n, total);
}

/* ---- sequential twin ---- */

void BM_forkjoin_seq(benchmark::State &st) {
  const int n = kFibN;
  const int64_t want = fib_value(n);
  int64_t total = 0;
  CpuScope cpu(st);
  for (auto _ : st) {
    int64_t t0 = bench_now_ns();
    int64_t r = seq_fib(n);
    benchmark::DoNotOptimize(r);
    total += bench_now_ns() - t0;
    if (r != want) {
      bench_fail(st, "seq fib value", r, want);
      break;
    }
  }
  report(st, n, total);
}

int reg = [] {
  /* OpenMP last: libgomp's threads spin for a while after a region ends. */
  for (unsigned w : {1u, 2u}) {
    std::string sfx = "/workers:" + std::to_string(w);
    benchmark::RegisterBenchmark(("forkjoin/cfutures" + sfx).c_str(), BM_forkjoin_cfutures, w)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (unsigned w : {1u, 2u}) {
    std::string sfx = "/workers:" + std::to_string(w);
    benchmark::RegisterBenchmark(("forkjoin/tbb" + sfx).c_str(), BM_forkjoin_tbb<tbb_fib>, w)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("forkjoin/tbb_invoke" + sfx).c_str(),
                                 BM_forkjoin_tbb<tbb_fib_invoke>, w)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("forkjoin/sequential/workers:1", BM_forkjoin_seq)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  for (unsigned w : {1u, 2u}) {
    std::string sfx = "/workers:" + std::to_string(w);
    benchmark::RegisterBenchmark(("forkjoin/" CF_BENCH_OMP_NAME + sfx).c_str(), BM_forkjoin_omp, w)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return 0;
}();

}  // namespace
