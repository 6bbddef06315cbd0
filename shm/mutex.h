/*
 * mutex.h — the process pool's mutex that knows which thread holds it
 * (internal), for its debug checks (cf__assert: the core's debug.h).
 *
 * The role a comment names ("mu held", "supervisor thread", "parent
 * process", "worker process") is checked by cf__assert at the top of the
 * function (compiled always, evaluated only where CF_DEBUG is defined; a
 * failed check aborts).
 */
#ifndef CF_SHM_MUTEX_H
#define CF_SHM_MUTEX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "debug.h"

/* A pthread mutex that, in debug builds, records its holder, so that "mu
 * held" is an assertion (cf__mutex_held) rather than a comment. */
typedef struct cf__mutex {
  pthread_mutex_t m;
  /* The holder's pthread_self(), 0 when free; written only when cf__debug.
   * relaxed: a thread only ever compares it with its own id. If it holds the
   * mutex it stored that id itself (program order); if not, the word holds
   * another thread's id or 0, never its own (it cleared its id before its
   * last unlock). */
  _Atomic uintptr_t holder;
} cf__mutex;

static inline uintptr_t cf__thread_id(void) {
  return (uintptr_t)pthread_self(); /* Linux: pthread_t is an integer or a pointer */
}
static inline void cf__mutex_init(cf__mutex *mu) {
  pthread_mutex_init(&mu->m, NULL);
  atomic_init(&mu->holder, 0);
}
static inline void cf__mutex_destroy(cf__mutex *mu) {
  pthread_mutex_destroy(&mu->m);
}
static inline void cf__mutex_lock(cf__mutex *mu) {
  pthread_mutex_lock(&mu->m);
  if (cf__debug) atomic_store_explicit(&mu->holder, cf__thread_id(), memory_order_relaxed);
}
static inline void cf__mutex_unlock(cf__mutex *mu) {
  if (cf__debug) atomic_store_explicit(&mu->holder, 0, memory_order_relaxed);
  pthread_mutex_unlock(&mu->m);
}
/* pthread_cond_wait on cv with mu held (and held again on return). */
static inline void cf__mutex_wait(cf__mutex *mu, pthread_cond_t *cv) {
  if (cf__debug) atomic_store_explicit(&mu->holder, 0, memory_order_relaxed);
  pthread_cond_wait(cv, &mu->m);
  if (cf__debug) atomic_store_explicit(&mu->holder, cf__thread_id(), memory_order_relaxed);
}
/* Does the calling thread hold mu? Meaningful only when cf__debug (use it
 * inside cf__assert). */
static inline bool cf__mutex_held(cf__mutex *mu) {
  return atomic_load_explicit(&mu->holder, memory_order_relaxed) == cf__thread_id();
}

#endif /* CF_SHM_MUTEX_H */
