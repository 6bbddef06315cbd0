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
 * fib_value / seq_fib / report come from forkjoin.h, shared with
 * bench_forkjoin.cc, so the counters mean the same thing.
 */
#include "common.h"
#include "forkjoin.h"
#include "pools.h"

namespace {

using namespace fj;

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
  run_cf_root(st, g_ex, spawn_fib_task, g_err, "cfutures spawn fib");
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
