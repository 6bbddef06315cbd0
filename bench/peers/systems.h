/*
 * systems.h — the thread pools compared in the round-trip, throughput and
 * idle benchmarks, behind one tiny interface so that every system runs the
 * same task body, from the same outside threads, timed the same way:
 *
 *   int64_t roundtrip(x)      submit "x + 1" from this (outside) thread and
 *                             wait for its result
 *   bool burst(lo, hi, out)   submit tasks out[i] = i + 1 for i in [lo, hi)
 *                             from this thread, then wait for all of them
 *   bool post(i)              submit task i and do not wait: it stamps
 *                             ol::g_done[i] when it runs (openloop.h)
 *
 * Each system is written in its fastest idiomatic form; the comment on
 * each class says what that form is and why.
 *
 * A round-trip task also stores the time it started running into
 * g_rt_started (one clock read, the same in every system), so that the
 * latency splits into dispatch (submit -> task starts) and notification
 * (task starts -> the caller has the result).
 */
#ifndef CF_BENCH_SYSTEMS_H
#define CF_BENCH_SYSTEMS_H

#include <glib.h>
#include <oneapi/tbb/task_arena.h>
#include <uv.h>

#include <memory>

#include "common.h"
#include "mcpool.h"
#include "pools.h"

extern std::atomic<int64_t> g_rt_started;

/* cfutures: cf_submit + cf_future_result per task; a burst keeps its
 * futures in an array, then reads every result (results come back by
 * value, no shared output array is needed, but out[] is filled from the
 * futures so the check is the same for all). */
class SysCf {
 public:
  static constexpr const char *kName = "cfutures";
  /* own = true: a fresh pool owned by this object (idle benchmark). */
  SysCf(unsigned workers, bool own);
  ~SysCf();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);
  bool post(int64_t i);
  int64_t parks() const; /* cf_stats.parks: how often a worker went to sleep */

 private:
  cf_executor *ex_;
  bool own_;
};

/* oneTBB: task_arena::enqueue (the API for work sent from a thread that is
 * not in the arena; the arena's slots are all TBB workers) and a futex
 * completion (spin ~2 us, then FUTEX_WAIT: faster than std::promise, which
 * allocates a shared state and takes a mutex per call). */
class SysTbb {
 public:
  static constexpr const char *kName = "tbb";
  SysTbb(unsigned workers, bool own);
  ~SysTbb();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);
  bool post(int64_t i);

 private:
  oneapi::tbb::task_arena *arena_;
  bool own_;
};

/* GLib GThreadPool (exclusive threads): g_thread_pool_push of a
 * preallocated job; completion with GMutex + GCond (a burst: an atomic
 * countdown, only the last task takes the mutex). */
class SysGlib {
 public:
  static constexpr const char *kName = "glib";
  SysGlib(unsigned workers, bool own);
  ~SysGlib();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);
  bool post(int64_t i);

 private:
  GThreadPool *pool_;
  bool own_;
};

/* The textbook mutex + condvar pool (mcpool.h) with std::function jobs;
 * completion: a mutex + condvar flag (a burst: atomic countdown, only the
 * last task takes the mutex). */
class SysMc {
 public:
  static constexpr const char *kName = "mutex_condvar";
  SysMc(unsigned workers, bool own);
  ~SysMc();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);
  bool post(int64_t i);

 private:
  McPool *pool_;
  bool own_;
};

/* The same two pools with the completion oneTBB gets (common.h Completion:
 * spin ~2 us like cfutures' waiters, then FUTEX_WAIT; FUTEX_WAKE only if the
 * waiter sleeps), instead of a mutex + condvar flag: their round trips
 * without the textbook completion's cost, so that the comparison is of the
 * pools. Burst and post as the plain forms. */
class SysMcSpin {
 public:
  static constexpr const char *kName = "mutex_condvar_spin";
  SysMcSpin(unsigned workers, bool own);
  ~SysMcSpin();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);

 private:
  McPool *pool_;
  bool own_;
};

class SysGlibSpin {
 public:
  static constexpr const char *kName = "glib_spin";
  SysGlibSpin(unsigned workers, bool own);
  ~SysGlibSpin();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);

 private:
  GThreadPool *pool_;
  bool own_;
};

/* libuv: uv_queue_work from the thread that runs the loop, then uv_run
 * until the after-work callbacks ran (the only way libuv offers: work is
 * queued from a loop thread and completes on it). Each submitting thread
 * has its own loop; libuv's one global pool has UV_THREADPOOL_SIZE =
 * workers threads, set by main() before first use. */
/* libuv is an I/O offload pool (file system calls, DNS, user work beside an
 * event loop), not a general task pool: here for reference. */
class SysUv {
 public:
  static constexpr const char *kName = "libuv";
  SysUv(unsigned workers, bool own);
  ~SysUv();
  int64_t roundtrip(int64_t x);
  bool burst(int64_t lo, int64_t hi, int64_t *out);
};

#endif /* CF_BENCH_SYSTEMS_H */
