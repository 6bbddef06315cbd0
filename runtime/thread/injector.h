/*
 * injector.h — the thread pool's injection queue: submissions from threads
 * that are not workers, and a worker's deque overflow.
 *
 * DESIGN
 * Dmitry Vyukov's intrusive MPSC queue ("Intrusive MPSC node-based queue",
 * 1024cores.net), linked through cf_future.next. A producer does one
 * exchange on `head` and then links the previous node: lock-free and
 * wait-free for producers. The single consumer role is taken with a
 * try-lock by whichever worker wants a batch; a worker that does not get the
 * lock looks elsewhere instead of waiting.
 *
 * Between a producer's exchange and its link the queue is "busy": the
 * consumer cannot reach the new node yet and pop() returns NULL, while
 * cf__injector_nonempty() is already true (`pushed` is counted before the
 * exchange), so no worker parks on it.
 *
 * Roles: cf__injector_push: any thread. cf__injector_pop: the lock holder
 * only (cf__injector_trylock/unlock). cf__injector_nonempty/len: any.
 */
#ifndef CF_RUNTIME_INJECTOR_H
#define CF_RUNTIME_INJECTOR_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "debug.h"
#include "deque.h"
#include "future.h"

typedef struct cf__injector {
  alignas(CF__CACHE_LINE) _Atomic(cf_future *) head; /* producers exchange it */
  _Atomic uint64_t pushed;                           /* producers count */
  alignas(CF__CACHE_LINE) _Atomic bool lock;         /* the consumer role */
  cf_future *tail;                                   /* lock holder only */
  _Atomic uint64_t popped;                           /* lock holder writes */
  cf_future stub;
} cf__injector;

void cf__injector_init(cf__injector *q);

/* Any thread. f->next is overwritten. seq_cst exchange: it is the "push"
 * half of the submit/park Dekker pair in pool.c and scheduler.c. Returns
 * the push count before this one. */
uint64_t cf__injector_push(cf__injector *q, cf_future *f);

/* Try to become the consumer: true on success. */
static inline bool cf__injector_trylock(cf__injector *q) {
  /* relaxed pre-check keeps the line shared while someone holds it */
  if (atomic_load_explicit(&q->lock, memory_order_relaxed)) return false;
  /* acquire: pairs with the release in cf__injector_unlock() */
  return !atomic_exchange_explicit(&q->lock, true, memory_order_acquire);
}
static inline void cf__injector_unlock(cf__injector *q) {
  atomic_store_explicit(&q->lock, false, memory_order_release);
}

/* Lock holder: the oldest future, or NULL (empty, or a producer is between
 * its exchange and its link). */
cf_future *cf__injector_pop(cf__injector *q);

/* Any thread: something was pushed and not yet popped (or a push is in
 * progress). Counted, not read off the links: head == &stub is not a safe
 * emptiness test (a push can land between the consumer's last-node check
 * and its re-push of the stub, leaving head == &stub with nodes behind it).
 * popped is loaded first, so popped <= pushed. seq_cst: the parking
 * re-check half of the Dekker pair (scheduler.c). */
static inline bool cf__injector_nonempty(cf__injector *q) {
  uint64_t po = atomic_load(&q->popped);
  return atomic_load(&q->pushed) > po;
}

/* Any thread: approximate number of queued futures, for stats and for the
 * size of a worker's fair share (scheduler.c): a policy, no wake-up
 * argument rests on it. */
static inline uint64_t cf__injector_len(cf__injector *q) {
  /* relaxed: an estimate */
  uint64_t pu = atomic_load_explicit(&q->pushed, memory_order_relaxed);
  uint64_t po = atomic_load_explicit(&q->popped, memory_order_relaxed);
  return pu > po ? pu - po : 0;
}

#endif /* CF_RUNTIME_INJECTOR_H */
