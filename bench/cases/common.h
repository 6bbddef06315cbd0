/*
 * common.h — what every benchmark file shares: clocks, percentiles, a
 * futex completion, result checks, the worker count, and pools that live for
 * the whole run (one per system and worker count, torn down at exit).
 *
 * Honest-measurement rules kept here:
 *   - every benchmark checks its results (bench_fail() marks the run as an
 *     error: the JSON says error_occurred and run.sh refuses the table);
 *   - every system gets the same number of worker threads (bench_workers());
 *   - latency is recorded per iteration with the same clock for every system.
 */
#ifndef CF_BENCH_COMMON_H
#define CF_BENCH_COMMON_H

#include <benchmark/benchmark.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "cpu.h"

/* ---- clocks ------------------------------------------------------------- */

static inline int64_t bench_now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t bench_clock_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void bench_sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* ---- configuration ------------------------------------------------------ */

/* The OpenMP runtime's name in benchmark names: "openmp" (gcc's libgomp,
 * cf_bench), "openmp_libomp" (LLVM's libomp, cf_bench_libomp). */
#ifndef CF_BENCH_OMP_NAME
#define CF_BENCH_OMP_NAME "openmp"
#endif

/* Worker threads (or processes) every system gets: $CF_BENCH_WORKERS, else 2. */
unsigned bench_workers();
/* Tasks per throughput round: $CF_BENCH_TASKS, else 100000. */
size_t bench_tasks();
/* Iterations of the after-idle round trips: $CF_BENCH_IDLE_ITERS, else 1000. */
int64_t bench_idle_iters();

/* ---- checks ------------------------------------------------------------- */

/* Mark the benchmark failed (result mismatch, call error). Returns false so
 * that `if (!ok) return bench_fail(...)` reads naturally. */
bool bench_fail(benchmark::State &st, const char *what, long long got = 0, long long want = 0);

/* ---- latency samples ------------------------------------------------------ */

/* Nearest-rank percentile of a sorted vector. */
static inline double bench_pct(const std::vector<int64_t> &sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = (size_t)std::ceil(q * (double)sorted.size());
  if (rank < 1) rank = 1;
  if (rank > sorted.size()) rank = sorted.size();
  return (double)sorted[rank - 1];
}

/* Report p50/p99/p99.9/max (ns) of `lat` as counters (sorts it). */
void bench_report_latency(benchmark::State &st, std::vector<int64_t> &lat);

/* Report p50/p99 of the two halves of a round trip: dispatch (submit ->
 * the task starts) and notify (task start -> the caller has the result). */
void bench_report_split(benchmark::State &st, std::vector<int64_t> &dispatch,
                        std::vector<int64_t> &notify);

/* ---- a futex completion (one waiter) ------------------------------------ */

/* The fastest simple "done" signal we know for peers that have no future of
 * their own: spin ~2 us (like cfutures), then FUTEX_WAIT; the signaller calls
 * FUTEX_WAKE only if a waiter announced itself. */
struct Completion {
  std::atomic<uint32_t> w{0}; /* bit 0: done, bit 1: a waiter sleeps */

  void reset() { w.store(0, std::memory_order_relaxed); }
  void signal() {
    /* release: pairs with the acquire loads in wait() */
    uint32_t old = w.exchange(1, std::memory_order_release);
    if (old & 2) syscall(SYS_futex, (uint32_t *)&w, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }
  void wait() {
    int64_t until = bench_now_ns() + 2000;
    while (!(w.load(std::memory_order_acquire) & 1)) {
      if (bench_now_ns() > until) break;
      __builtin_ia32_pause();
    }
    for (;;) {
      uint32_t v = w.load(std::memory_order_acquire);
      if (v & 1) return;
      if (v == 0 && !w.compare_exchange_weak(v, 2, std::memory_order_acquire)) continue;
      syscall(SYS_futex, (uint32_t *)&w, FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr, 0);
    }
  }
};

/* A countdown that signals a Completion when it reaches zero. */
struct Countdown {
  std::atomic<int64_t> left{0};
  Completion done;
  void reset(int64_t n) {
    done.reset();
    left.store(n, std::memory_order_relaxed);
  }
  void arrive() {
    /* acq_rel: the last arriver sees every task's writes before signalling */
    if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) done.signal();
  }
  void wait() { done.wait(); }
};

/* ---- per-repetition data ------------------------------------------------ */

/* Append one line (a JSON object) to the side file $CF_BENCH_SIDE, if set:
 * what google-benchmark's JSON has no room for (each repetition's latency
 * histograms). */
void bench_side(const std::string &line);

/* ---- teardown ------------------------------------------------------------ */

/* Run `fn` at the end of main(), in reverse order of registration. */
void bench_at_exit(std::function<void()> fn);

/* ---- tiny task bodies shared by the cases -------------------------------- */

/* A small, unoptimisable body: a few rounds of a 64-bit mix. */
static inline uint64_t bench_mix(uint64_t x, int rounds) {
  for (int i = 0; i < rounds; i++) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
  }
  return x;
}

constexpr int64_t kIdleSleepNs = 2000000; /* between after-idle round trips */

/* The timed loop of every round-trip case, thread or process: `rt(x,
 * &started)` submits one tiny task computing x + 1, waits for it, and sets
 * `started` to the task's own CLOCK_MONOTONIC stamp. Warms up with 200 calls,
 * sleeps kIdleSleepNs before each call when `idle` (so workers park), checks
 * every result, and reports latency percentiles and the dispatch / notify
 * split. */
template <class Rt>
void bench_roundtrip_loop(benchmark::State &st, bool idle, Rt &&rt, const char *what) {
  int64_t started = 0;
  for (int64_t i = 0; i < 200; i++) /* warm the pool and its caches */
    if (rt(i, &started) != i + 1) {
      bench_fail(st, what, 0, 0);
      return;
    }
  std::vector<int64_t> lat, dispatch, notify;
  size_t cap = idle ? (size_t)bench_idle_iters() : 1 << 20;
  lat.reserve(cap);
  dispatch.reserve(cap);
  notify.reserve(cap);
  int64_t x = 0;
  CpuScope cpu(st); /* the caller's CPU too: its wait is part of a round trip */
  for (auto _ : st) {
    if (idle) bench_sleep_ns(kIdleSleepNs);
    int64_t t0 = bench_now_ns();
    int64_t r = rt(x, &started);
    int64_t t1 = bench_now_ns();
    int64_t d = t1 - t0;
    st.SetIterationTime((double)d * 1e-9);
    lat.push_back(d);
    dispatch.push_back(started - t0);
    notify.push_back(t1 - started);
    if (r != x + 1) {
      bench_fail(st, what, r, x + 1);
      break;
    }
    x++;
  }
  bench_report_latency(st, lat);
  bench_report_split(st, dispatch, notify);
}

#endif /* CF_BENCH_COMMON_H */
