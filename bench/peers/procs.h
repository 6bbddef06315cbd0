/*
 * procs.h — the process pools every process benchmark uses, one of each for
 * the whole run (bench_at_exit tears them down):
 *
 *   cf_proc()            cfutures' process pool, bench_workers() workers
 *   fork_pool(batched)   the fork + pipe pool (forkpool.h), textbook or
 *                        hand-batched
 *   ol_fork_pool()       the fork + pipe pool in the shape an open-loop
 *                        service has (OlForkPool below)
 *
 * and the two calls the latency cases make of them: a round trip
 * (proc_cf_roundtrip, proc_fork_roundtrip: x -> x + 1, and the time the task
 * started, CLOCK_MONOTONIC being one clock for every process) and a
 * fire-and-forget post of open-loop task i (proc_cf_post, OlForkPool::post):
 * the worker stamps done[i] in a shared mapping (ol_shared_done()), which
 * the generator reads.
 */
#ifndef CF_BENCH_PROCS_H
#define CF_BENCH_PROCS_H

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "cfutures.h"
#include "forkpool.h"

cf_executor *cf_proc();
ForkPool &fork_pool(bool batched);

int64_t proc_cf_roundtrip(int64_t x, int64_t *started);
int64_t proc_fork_roundtrip(int64_t x, int64_t *started);

/* done[] shared with every worker process: a POSIX shared-memory object
 * named after this process, mapped here on first use and by a worker at its
 * first open-loop task (so it works whatever way the pool starts its
 * workers); room for kOlCapacity tasks per point. */
constexpr size_t kOlCapacity = (size_t)1 << 22;
int64_t *ol_shared_done();

/* cfutures: cf_submit of task i, future released at once. */
bool proc_cf_post(int64_t i);

/* The fork + pipe pool as a textbook open-loop service writes it: N
 * workers forked once, all reading one task pipe (each message 8 bytes, an
 * atomic pipe write; the kernel wakes one reader per message), each
 * answering on one result pipe that a collector thread of the parent reads
 * (a service needs its responses: that thread is part of the pool's cost).
 * A full pipe blocks the generator, which the open-loop lag then shows. */
class OlForkPool {
 public:
  explicit OlForkPool(unsigned workers);
  ~OlForkPool();
  bool ok() const { return ok_; }
  bool post(int64_t i);

 private:
  std::vector<pid_t> pids_;
  int task_wr_ = -1, res_rd_ = -1;
  std::thread collector_;
  bool ok_ = false;
};
OlForkPool &ol_fork_pool();

#endif /* CF_BENCH_PROCS_H */
