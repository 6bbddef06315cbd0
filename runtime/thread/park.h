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
 * Push-then-load against announce-then-check is Dekker's pattern over
 * seq_cst operations: either the parker's re-check sees the task or the
 * submitter's load sees the parker (and no searcher) and wakes someone.
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

/* Cheap pre-check for cf__park_notify_one (relaxed: callers that need no
 * Dekker guarantee, e.g. a worker's own deque push, use it alone). */
static inline bool cf__park_should_notify(cf__park *s) {
  uint32_t v = atomic_load_explicit(&s->idle, memory_order_relaxed);
  return cf__idle_parked(v) > 0 && cf__idle_searching(v) == 0;
}

/* Wake every parked worker (shutdown). */
void cf__park_notify_all(cf__park *s);

/* Worker `id`, searching (was_searching) or not: announce that it parks.
 * Then the caller re-checks for work and calls either cf__park_cancel or
 * cf__park_wait. After either the worker counts as searching. */
void cf__park_prepare(cf__park *s, unsigned id, bool was_searching);
void cf__park_cancel(cf__park *s, unsigned id);
void cf__park_wait(cf__park *s, unsigned id);

#endif /* CF_RUNTIME_PARK_H */
