/*
 * fcache.c — the per-thread future cache: its thread-exit flush and the
 * debug quarantine (DESIGN in fcache.h).
 */
#include "fcache.h"

#include <pthread.h>

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

void cf__fcache_put_slow(cf_future *f) {
  if (cf__debug) {
    quarantine_put(f);
    return;
  }
  cf__fcache *c = &cf__tl_fcache;
  if (!c->registered) {
    pthread_once(&flush_once, flush_key_create);
    if (pthread_setspecific(flush_key, c) != 0) {
      cf__free(f, sizeof *f);
      return;
    }
    c->registered = true;
  }
  if (c->n >= CF__FCACHE_CAP) {
    cf__free(f, sizeof *f);
    return;
  }
  /* relaxed: a thread-private list */
  atomic_store_explicit(&f->next, c->head, memory_order_relaxed);
  c->head = f;
  c->n++;
}
