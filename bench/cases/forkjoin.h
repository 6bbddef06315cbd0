/*
 * forkjoin.h — what the fork-join benchmarks share (bench_forkjoin.cc,
 * bench_spawn.cc): fib(n) with one spawn per call, its sequential twin, and
 * the counters every fork-join case reports, so they mean the same thing:
 *   overhead_ns_per_task = (parallel time - sequential time) / spawns
 */
#pragma once

#include <cfutures.h>

#include "common.h"

namespace fj {

constexpr int kFibN = 30;

inline int64_t fib_value(int n) {
  int64_t a = 0, b = 1;
  for (int i = 0; i < n; i++) {
    int64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}
/* spawns in one run: one per internal node of the call tree */
inline int64_t fib_spawns(int n) {
  return fib_value(n + 1) - 1;
}

__attribute__((noinline)) inline int64_t seq_fib(int n) {
  return n < 2 ? n : seq_fib(n - 1) + seq_fib(n - 2);
}

/* The sequential time of fib(n), measured once per process (best of 5). */
inline double seq_ns(int n) {
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

inline void report(benchmark::State &st, int n, int64_t total_ns) {
  double per_iter = st.iterations() ? (double)total_ns / (double)st.iterations() : 0;
  double s = seq_ns(n);
  st.counters["spawns"] = (double)fib_spawns(n);
  st.counters["seq_ns"] = s;
  st.counters["overhead_ns_per_task"] = (per_iter - s) / (double)fib_spawns(n);
  st.counters["speedup"] = per_iter > 0 ? s / per_iter : 0;
}

/* The timed loop of a cfutures fork-join case: each iteration submits the
 * root fib(kFibN) call `root` to `ex` (so the recursion runs inside a
 * worker, where joins help), waits for it, checks the value and any error
 * the recursion stored in `err`, then reports the counters above. */
inline void run_cf_root(benchmark::State &st, cf_executor *ex, cf_fn root, std::atomic<int> &err,
                        const char *what) {
  const int n = kFibN;
  const int64_t want = fib_value(n);
  int64_t total = 0;
  CpuScope cpu(st);
  for (auto _ : st) {
    int64_t t0 = bench_now_ns();
    cf_future *f = nullptr;
    int64_t r = -1;
    int rc = cf_submit(ex, root, &n, sizeof n, &f);
    if (rc == 0) {
      rc = cf_future_result(f, &r, sizeof r, nullptr, -1);
      cf_future_release(f);
    }
    total += bench_now_ns() - t0;
    if (rc != 0 || err.load()) {
      bench_fail(st, what, rc ? rc : err.load(), 0);
      break;
    }
    if (r != want) {
      bench_fail(st, what, r, want);
      break;
    }
  }
  report(st, n, total);
}

}  // namespace fj
