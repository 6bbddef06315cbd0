/*
 * injector.c — Vyukov's intrusive MPSC queue over cf_future.next (see the
 * DESIGN block in injector.h).
 */
#include "injector.h"

#include <string.h>

void cf__injector_init(cf__injector *q) {
  memset(&q->stub, 0, sizeof q->stub);
  atomic_init(&q->stub.next, NULL);
  atomic_init(&q->head, &q->stub);
  atomic_init(&q->pushed, 0);
  atomic_init(&q->lock, false);
  atomic_init(&q->popped, 0);
  q->tail = &q->stub;
}

static inline void push_node(cf__injector *q, cf_future *f) {
  atomic_store_explicit(&f->next, NULL, memory_order_relaxed); /* published by the exchange */
  /* seq_cst (acq_rel at least): releases f's fields to the consumer that
   * reaches f through prev->next, and acquires prev so that our link store
   * is ordered after prev's own initialisation */
  cf_future *prev = atomic_exchange(&q->head, f);
  /* release: pairs with the acquire loads of next in cf__injector_pop() */
  atomic_store_explicit(&prev->next, f, memory_order_release);
}

uint64_t cf__injector_push(cf__injector *q, cf_future *f) {
  /* seq_cst: cf__injector_nonempty() reads it for the park/submit Dekker
   * pair; counted before the node is reachable so the count never lags */
  uint64_t k = atomic_fetch_add(&q->pushed, 1);
  push_node(q, f);
  return k;
}

cf_future *cf__injector_pop(cf__injector *q) {
  cf__assert(atomic_load_explicit(&q->lock, memory_order_relaxed)); /* the consumer lock is held */
  cf_future *tail = q->tail;
  /* acquire: pairs with the release link store in push_node() */
  cf_future *next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (tail == &q->stub) {
    if (!next) return NULL;
    q->tail = next;
    tail = next;
    next = atomic_load_explicit(&next->next, memory_order_acquire);
  }
  if (!next) {
    if (tail != atomic_load(&q->head)) return NULL; /* a push is in progress */
    push_node(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (!next) return NULL; /* another push got in between: retry later */
  }
  q->tail = next;
  /* release: written by the lock holder only; a stale (smaller) value
   * read elsewhere only makes the queue look non-empty */
  atomic_store_explicit(&q->popped, atomic_load_explicit(&q->popped, memory_order_relaxed) + 1,
                        memory_order_release);
  return tail;
}
