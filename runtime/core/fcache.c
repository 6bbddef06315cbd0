/*
 * fcache.c — the per-thread future cache: its thread-exit flush and the
 * debug quarantine (DESIGN in fcache.h).
 */
#include "fcache.h"

#include <pthread.h>

#include "depot.h"
#include "sys.h"

_Thread_local cf__fcache cf__tl_fcache __attribute__((tls_model("initial-exec")));

static pthread_key_t flush_key;
static pthread_once_t flush_once = PTHREAD_ONCE_INIT;

/* The key's destructor, at the exit of the thread whose cache it is. */
static void flush(void *p) {
  cf__fcache *c = p;
  cf__assert(c == &cf__tl_fcache); /* runs on the cache's own thread */
  cf_future *f = c->head;
  while (f) {
    /* relaxed: a thread-private list */
    cf_future *next = atomic_load_explicit(&f->next, memory_order_relaxed);
    cf__free(f, sizeof *f);
    f = next;
  }
  c->head = NULL;
  c->n = 0;
  c->registered = false; /* a later put (another key's destructor) arranges it again */
}

static void flush_key_create(void) {
  (void)pthread_key_create(&flush_key, flush);
}

/* The last QUARANTINE freed futures stay allocated with a dead magic; older
 * ones go back to the allocator. Any thread (under the lock). */
#define QUARANTINE 65536
static cf_future *quarantine[QUARANTINE];
static size_t quarantine_next;
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;

static void quarantine_put(cf_future *f) {
  pthread_mutex_lock(&quarantine_lock);
  cf_future *old = quarantine[quarantine_next];
  quarantine[quarantine_next] = f;
  quarantine_next = (quarantine_next + 1) % QUARANTINE;
  pthread_mutex_unlock(&quarantine_lock);
  if (old) cf__free(old, sizeof *old);
}

/* The process-wide depot (DESIGN in fcache.h; depot.h): each chain in it
 * is exactly CF__FCACHE_BATCH futures linked through f->next. */
static cf__depot depot;

/* Arrange the thread-exit flush of the calling thread's cache (once). */
static bool flush_arranged(cf__fcache *c) {
  if (c->registered) return true;
  pthread_once(&flush_once, flush_key_create);
  if (pthread_setspecific(flush_key, c) != 0) return false;
  c->registered = true;
  return true;
}

static void free_chain(cf_future *first) {
  while (first) {
    /* relaxed: a chain only this thread holds */
    cf_future *next = atomic_load_explicit(&first->next, memory_order_relaxed);
    cf__free(first, sizeof *first);
    first = next;
  }
}

cf_future *cf__fcache_refill(void) {
  if (cf__debug) return NULL;
  cf_future *chain = cf__depot_take(&depot);
  if (!chain) return NULL;
  cf__fcache *c = &cf__tl_fcache;
  /* relaxed: the chain is ours now (the take's acquire ordered its links) */
  cf_future *rest = atomic_load_explicit(&chain->next, memory_order_relaxed);
  /* A thread that only allocates (a fire-and-forget submitter: the worker
   * frees) never puts, and a put is where the flush used to be arranged:
   * without it here, each such thread's exit leaked the rest of a chain. */
  if (!flush_arranged(c)) {
    free_chain(rest);
    return chain;
  }
  c->head = rest;
  c->n = CF__FCACHE_BATCH - 1;
  return chain;
}

/* Hand a chain of CF__FCACHE_BATCH futures to the depot, or free it when
 * the depot is full. */
static void depot_put(cf_future *first) {
  if (!cf__depot_put(&depot, first)) free_chain(first);
}

void cf__fcache_put_slow(cf_future *f) {
  if (cf__debug) {
    quarantine_put(f);
    return;
  }
  cf__fcache *c = &cf__tl_fcache;
  if (!flush_arranged(c)) {
    cf__free(f, sizeof *f);
    return;
  }
  if (c->n >= CF__FCACHE_CAP) {
    /* the newest CF__FCACHE_BATCH - 1 and f go to the depot as one chain
     * (relaxed: a thread-private list) */
    cf_future *last = c->head;
    for (unsigned i = 1; i < CF__FCACHE_BATCH - 1; i++)
      last = atomic_load_explicit(&last->next, memory_order_relaxed);
    cf_future *rest = atomic_load_explicit(&last->next, memory_order_relaxed);
    atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
    atomic_store_explicit(&f->next, c->head, memory_order_relaxed);
    c->head = rest;
    c->n -= CF__FCACHE_BATCH - 1;
    depot_put(f);
    return;
  }
  /* relaxed: a thread-private list */
  atomic_store_explicit(&f->next, c->head, memory_order_relaxed);
  c->head = f;
  c->n++;
}
