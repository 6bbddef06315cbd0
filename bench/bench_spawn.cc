/*
 * bench_spawn.cc — fork-join with frames (cf_spawn / cf_join): fib(n), one
 * spawn per call, sequential cutoff 0, the same shape and the same counters
 * as bench_forkjoin.cc (compare forkjoin/cfutures_spawn with forkjoin/tbb
 * and forkjoin/cfutures of the same run):
 *   overhead_ns_per_task = (parallel time - sequential time) / spawns
 *
 * cfutures_spawn: the child fib(n-1) is spawned into a cf_frame on the
 * caller's stack, fib(n-2) computed inline, then cf_join(): inside a worker
 * the frame goes onto the worker's deque and is usually taken back and
 * called inline, with no allocation and no atomic on the frame.
 *
 * fib_value / seq_fib / report are copies of bench_forkjoin.cc's (file-local
 * there), so the counters mean the same thing.
 */
#include "common.h"
#include "pools.h"

namespace {

constexpr int kFibN = 30;

int64_t fib_value(int n) {
  int64_t a = 0, b = 1;
  for (int i = 0; i < n; i++) {
    int64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}
int64_t fib_spawns(int n) {
  return fib_value(n + 1) - 1;
}

__attribute__((noinline)) int64_t seq_fib(int n) {
  return n < 2 ? n : seq_fib(n - 1) + seq_fib(n - 2);
}

double seq_ns(int n) {
  static double cached[64];
  if (cached[n] == 0) {
    double best = 1e300;
    for (int i = 0; i < 5; i++) {
      int64_t t0 = bench_now_ns();
      int64_t r = seq_fib(n);
      benchmark::DoNotOptimize(r);
      double d = (double)(bench_now_ns() - t0);
      if (d < best) best = d;
    }
    cached[n] = best;
  }
  return cached[n];
}

void report(benchmark::State &st, int n, int64_t total_ns) {
  double per_iter = st.iterations() ? (double)total_ns / (double)st.iterations() : 0;
  double s = seq_ns(n);
  st.counters["spawns"] = (double)fib_spawns(n);
  st.counters["seq_ns"] = s;
  st.counters["overhead_ns_per_task"] = (per_iter - s) / (double)fib_spawns(n);
  st.counters["speedup"] = per_iter > 0 ? s / per_iter : 0;
}

cf_executor *g_ex;
std::atomic<int> g_err{0};

int64_t spawn_fib(int n);

void spawn_fib_task(cf_call *c) {
  int n = *(const int *)cf_call_arg(c, nullptr);
  int64_t r = spawn_fib(n);
  cf_call_return(c, &r, sizeof r);
}

int64_t spawn_fib(int n) {
  if (n < 2) return n;
  int m = n - 1;
  cf_frame fr;
  int rc = cf_spawn(g_ex, &fr, spawn_fib_task, &m, sizeof m);
  if (rc != 0) {
    g_err.store(rc, std::memory_order_relaxed);
    return 0;
  }
  int64_t b = spawn_fib(n - 2);
  int64_t a = 0;
  rc = cf_join(&fr, &a, sizeof a, nullptr);
  if (rc != 0) g_err.store(rc, std::memory_order_relaxed);
  return a + b;
}

void BM_forkjoin_spawn(benchmark::State &st, unsigned workers) {
  g_ex = pool_cf(workers);
  const int n = kFibN;
  const int64_t want = fib_value(n);
  int64_t total = 0;
  for (auto _ : st) {
    int64_t t0 = bench_now_ns();
    cf_future *f = nullptr;
    int64_t r = -1;
    /* the root runs in a worker, as in forkjoin/cfutures */
    int rc = cf_submit(g_ex, spawn_fib_task, &n, sizeof n, &f);
    if (rc == 0) {
      rc = cf_future_result(f, &r, sizeof r, nullptr, -1);
      cf_future_release(f);
    }
    total += bench_now_ns() - t0;
    if (rc != 0 || g_err.load()) {
      bench_fail(st, "cfutures spawn fib call failed", rc ? rc : g_err.load(), 0);
      break;
    }
    if (r != want) {
      bench_fail(st, "cfutures spawn fib value", r, want);
      break;
    }
  }
  report(st, n, total);
}

int reg = [] {
  for (unsigned w : {1u, 2u}) {
    std::string sfx = "/workers:" + std::to_string(w);
    benchmark::RegisterBenchmark(("forkjoin/cfutures_spawn" + sfx).c_str(), BM_forkjoin_spawn, w)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return 0;
}();

}  // namespace
