/*
 * fcache.h — the per-thread future cache (internal): where a freed future
 * goes, and where the next allocation on that thread finds it.
 *
 * DESIGN
 * Each thread keeps a LIFO free list of futures, at most CF__FCACHE_CAP,
 * linked through f->next. Only its own thread touches it (it is
 * _Thread_local), so plain fields and relaxed accesses suffice: whoever drops
 * a future's last reference pushes it onto its own thread's list, and the
 * acq_rel of that drop orders every earlier use of the object before the
 * push. A steady state allocates nothing per task: the thread pool's submit
 * takes from the list and the task's destroy puts back, both inline. A
 * thread's first put registers a pthread key whose destructor, at thread
 * exit, gives the cached futures back to the allocator.
 *
 * The depot. A future freed on another thread than the one that made it
 * (a fire-and-forget submit: the submitter allocates, the worker that ran
 * the task drops the last reference) would otherwise go through the
 * allocator at both ends, malloc on one thread and free on another, which
 * is where glibc's malloc is at its slowest (the chunks go back to the
 * arena of the thread that made them, under its lock): at a million
 * submits/s that alone saturated the pool. So a full cache hands a batch of
 * CF__FCACHE_BATCH futures, as one chain, to a process-wide depot of
 * CF__DEPOT_SLOTS slots, and an empty cache takes a whole chain back before
 * it calls the allocator (depot.h: slots of whole chains, no ABA). A full
 * depot frees the batch instead: it retains at most CF__DEPOT_SLOTS x
 * CF__FCACHE_BATCH futures (1024, about a quarter of a MiB), never more.
 *
 * Debug builds (CF_DEBUG) never reuse a freed future: it goes to a bounded
 * FIFO quarantine with its magic set to CF__FUTURE_DEAD, so a release of a
 * freed future is caught (CF_EINVAL) instead of hitting a recycled object.
 * Their caches stay empty.
 *
 * Roles: everything here acts on the calling thread's own cache.
 */
#ifndef CF_RUNTIME_FCACHE_H
#define CF_RUNTIME_FCACHE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "debug.h"
#include "future.h"

#define CF__FCACHE_CAP 256  /* futures a thread keeps */
#define CF__FCACHE_BATCH 64 /* moved to or from the depot at once */
_Static_assert(CF__FCACHE_CAP > CF__FCACHE_BATCH, "a full cache holds a whole batch");

typedef struct cf__fcache {
  cf_future *head;
  unsigned n;      /* futures on the list */
  bool registered; /* the thread-exit flush is arranged */
} cf__fcache;

/* initial-exec: the lib is PIC, and a general-dynamic TLS access would cost
 * a __tls_get_addr call on the hot path. */
extern _Thread_local cf__fcache cf__tl_fcache __attribute__((tls_model("initial-exec")));

/* A cached future (magic CF__FUTURE_DEAD, fields as they were left), or
 * NULL when the cache is empty. */
static inline cf_future *cf__fcache_take(void) {
  cf__fcache *c = &cf__tl_fcache;
  cf_future *f = c->head;
  if (__builtin_expect(!f, 0)) return NULL;
  cf__assert(c->n > 0 && f->magic == CF__FUTURE_DEAD);
  /* relaxed: a thread-private list */
  c->head = atomic_load_explicit(&f->next, memory_order_relaxed);
  c->n--;
  return f;
}

/* cf__fcache_put() when the cache cannot take f as it is (debug build,
 * first put of the thread, cache full). */
void cf__fcache_put_slow(cf_future *f);

/* The calling thread's cache is empty: take a chain from the depot, keep
 * all but one and return that one (magic CF__FUTURE_DEAD), or NULL when the
 * depot is empty (or in a debug build). */
cf_future *cf__fcache_refill(void);

/* f's last reference is gone (its owned buffers already freed): keep it for
 * the next allocation on this thread, or quarantine or free it. */
static inline __attribute__((always_inline)) void cf__fcache_put(cf_future *f) {
  f->magic = CF__FUTURE_DEAD;
  cf__fcache *c = &cf__tl_fcache;
  if (__builtin_expect(cf__debug || !c->registered || c->n >= CF__FCACHE_CAP, 0)) {
    cf__fcache_put_slow(f);
    return;
  }
  /* relaxed: a thread-private list */
  atomic_store_explicit(&f->next, c->head, memory_order_relaxed);
  c->head = f;
  c->n++;
}

/* Like cf__future_alloc(), inline when the calling thread's cache has a
 * future, but leaves fn, deadline, executor, ext and arg_len to the caller
 * (the thread pool's submit sets them). */
static inline cf_future *cf__future_alloc_fast(void) {
  cf_future *f = cf__fcache_take();
  if (__builtin_expect(!f, 0)) return cf__future_alloc();
  /* relaxed and plain stores: published by the queue that hands f over */
  atomic_store_explicit(&f->word, &f->state, memory_order_relaxed);
  atomic_store_explicit(&f->state, CF_STATE_PENDING, memory_order_relaxed);
  f->magic = CF__FUTURE_MAGIC;
  atomic_store_explicit(&f->rc, CF__RC_HANDLE + CF__RC_REF, memory_order_relaxed);
  f->vt = &cf__local_future_vtbl;
  f->res_len = 0;
  f->arg_heap = NULL;
  f->res_heap = NULL;
  atomic_store_explicit(&f->err, 0, memory_order_relaxed);
  f->msg = NULL;
  atomic_store_explicit(&f->callbacks, NULL, memory_order_relaxed);
  f->shared = 0;
  return f;
}

#endif /* CF_RUNTIME_FCACHE_H */
