/*
 * park.h — how idle thread-pool workers sleep and are woken.
 *
 * DESIGN
 * One atomic word `idle` counts the searching workers (low 16 bits: awake,
 * idle, looking for work) and the parked ones (high 16 bits: announced or
 * asleep). The rules (Tokio's idle protocol, simplified):
 *   - a submitter pushes, then (seq_cst) loads `idle` and wakes one parked
 *     worker only if no worker is searching (cf__park_notify_one): a
 *     searcher will find the task, and when the last searcher finds work it
 *     wakes another parked worker if more work is visible;
 *   - a parking worker announces itself (seq_cst RMW on `idle`, under the
 *     sleepers lock), then re-checks every queue, and only then sleeps.
 * Push-then-load against announce-then-check is Dekker's pattern (store
 * buffering): either the parker's re-check sees the task or the pusher's
 * load sees the parker (and no searcher) and wakes someone. It needs a
 * store-load barrier on both sides: the parker's is its seq_cst RMW on
 * `idle`; the pusher's is a seq_cst operation between its push and its load
 * of `idle` (x86 would otherwise let the load pass the buffered store).
 *
 * No lost wake-ups: every push site, and what orders it before the load.
 *   1. Outside submit (pool.c submit_slow): the injector push is a seq_cst
 *      exchange + fetch_add; cf__park_notify_one() loads `idle` seq_cst.
 *   2. Submit from a worker (pool.c tp_submit, submit_slow): a release store
 *      of the deque's bottom, then cf__park_notify_after_push(): seq_cst
 *      fence, then the load.
 *   3. A worker's batch from the injector into its deque (scheduler.c
 *      cf__sched_take_injected): as 2. The same call also wakes when the
 *      take moved nothing but left work in the injector: that is not a
 *      push site (those tasks are covered by their submitters' sites 1 and
 *      2), only a wake for parallelism.
 *   4. Frames made stealable (frames.c spawn_publish, spawn_public; help.c
 *      before a worker helps): as 2.
 *   5. The last searcher that found work (scheduler.c): its seq_cst RMW on
 *      `idle` (cf__park_end_search), then seq_cst loads of every queue; if
 *      any has work it wakes another: the same pair with the roles turned.
 * Not a push site: a spawn that keeps its frame private (frames.c) only
 * reads `idle` as a hint (relaxed, no fence). A private frame is not in any
 * queue, so there is nothing for a sleeper to miss; its join runs it, and
 * it becomes stealable at the spawner's next spawn, join or wait (site 4).
 *
 * A searcher that lost its CPU still counts as searching, so the rule above
 * wakes nobody for the tasks submitted meanwhile; an outside submitter
 * that sees the injector's backlog reach BACKLOG_WAKE wakes a parked worker
 * anyway (cf__park_notify_extra, pool.c). That wake is extra, not one the
 * no-lost-wake-up argument needs.
 *
 * A woken worker is counted as searching by its waker (so that a burst of
 * submits wakes one worker at a time, not all of them). Sleep is a futex on
 * a per-worker word: no timeouts, no periodic wake-ups, an idle pool costs
 * no CPU. The sleepers stack is under a mutex: parking and waking are
 * already system calls.
 *
 * Roles: cf__park_prepare/cancel/wait: the worker itself.
 * cf__park_notify_one/all, cf__park_idle: any thread.
 */
#ifndef CF_RUNTIME_PARK_H
#define CF_RUNTIME_PARK_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "deque.h"

#define CF__IDLE_SEARCH 1u
#define CF__IDLE_PARKED (1u << 16)

static inline unsigned cf__idle_searching(uint32_t v) {
  return v & 0xffffu;
}
static inline unsigned cf__idle_parked(uint32_t v) {
  return v >> 16;
}

typedef struct cf__parker {
  alignas(CF__CACHE_LINE) _Atomic uint32_t word; /* 1: notified */
  /* when the waker woke it (CLOCK_MONOTONIC ns): written before the
   * release store of `word`, read by the woken worker after its acquire */
  _Atomic int64_t woken_at;
} cf__parker;

typedef struct cf__park {
  alignas(CF__CACHE_LINE) _Atomic uint32_t idle;
  alignas(CF__CACHE_LINE) pthread_mutex_t lock;
  unsigned *sleepers; /* stack of worker indices, under lock */
  unsigned nsleepers;
  unsigned nworkers;
  cf__parker *parkers; /* one per worker */
} cf__park;

int cf__park_init(cf__park *s, unsigned nworkers);
void cf__park_destroy(cf__park *s);

/* The calling worker starts / stops searching. cf__park_end_search returns
 * true if it was the last searcher. */
static inline void cf__park_start_search(cf__park *s) {
  atomic_fetch_add(&s->idle, CF__IDLE_SEARCH);
}
static inline bool cf__park_end_search(cf__park *s) {
  return cf__idle_searching(atomic_fetch_sub(&s->idle, CF__IDLE_SEARCH)) == 1;
}

/* Any thread, after publishing work with a seq_cst operation: wake one
 * parked worker if none is searching. */
void cf__park_notify_one(cf__park *s);

/* Cheap pre-check for cf__park_notify_one (relaxed: alone it is only a
 * hint; see cf__park_notify_after_push). */
static inline bool cf__park_should_notify(cf__park *s) {
  uint32_t v = atomic_load_explicit(&s->idle, memory_order_relaxed);
  return cf__idle_parked(v) > 0 && cf__idle_searching(v) == 0;
}

/* Any thread, right after a push that was not itself a seq_cst operation
 * (a deque's release store of bottom): wake one parked worker if none is
 * searching. The fence is the pusher's half of the Dekker pair (DESIGN):
 * without it the load of `idle` may pass the buffered push, and a worker
 * parking at that instant would miss both. */
static inline void cf__park_notify_after_push(cf__park *s) {
  atomic_thread_fence(memory_order_seq_cst);
  if (cf__park_should_notify(s)) cf__park_notify_one(s);
}

/* Any thread: wake one parked worker even though one is searching — the
 * searcher is not keeping up (it lost its CPU: pool.c, the backlog check).
 * Safe at any time: a woken worker that finds nothing parks again. */
void cf__park_notify_extra(cf__park *s);

/* Wake every parked worker (shutdown). */
void cf__park_notify_all(cf__park *s);

/* Worker `id`, searching (was_searching) or not: announce that it parks.
 * Then the caller re-checks for work and calls either cf__park_cancel or
 * cf__park_wait. After either the worker counts as searching.
 * cf__park_wait returns when its waker woke it (CLOCK_MONOTONIC ns): a
 * wake follows a push, so that is about when the work arrived (the idle
 * policy's measure, scheduler.c; the worker itself runs later, after the
 * wake-up latency). */
void cf__park_prepare(cf__park *s, unsigned id, bool was_searching);
void cf__park_cancel(cf__park *s, unsigned id);
int64_t cf__park_wait(cf__park *s, unsigned id);

#endif /* CF_RUNTIME_PARK_H */
