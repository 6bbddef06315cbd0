/*
 * pools.h — one pool per system and worker count, made on first use and
 * kept until the end of main() (bench_at_exit), so that every benchmark of a
 * run measures warm pools, as a service would use them.
 *
 * Each bench group runs in its own process (run.sh), so the pools of one
 * group never compete with another group's for the CPU.
 */
#ifndef CF_BENCH_POOLS_H
#define CF_BENCH_POOLS_H

#include <glib.h>
#include <oneapi/tbb/task_arena.h>

#include "cfutures.h"
#include "mcpool.h"

/* cfutures thread pool with `workers` workers. */
cf_executor *pool_cf(unsigned workers);

/* oneTBB arena of concurrency `workers`. reserve_external: one slot is kept
 * for the calling thread (fork-join run inside arena.execute(): the caller
 * plus workers-1 TBB threads); 0: every slot is a TBB worker (work enqueued
 * from outside, the caller only waits). */
oneapi::tbb::task_arena &pool_tbb(unsigned workers, bool reserve_external);

/* GLib exclusive GThreadPool with `workers` threads; it runs GJob items. */
struct GJob {
  void (*run)(GJob *self);
};
GThreadPool *pool_glib(unsigned workers);
/* The data an open-loop task is pushed as: its index, tagged with the low
 * bit (a GJob pointer is aligned, so the two never mix). */
static inline gpointer glib_ol_data(int64_t i) {
  return (gpointer)(((uintptr_t)i << 1) | 1);
}
/* A new one, owned by the caller (g_thread_pool_free). */
GThreadPool *pool_glib_new(unsigned workers);

McPool &pool_mc(unsigned workers);

#endif /* CF_BENCH_POOLS_H */
