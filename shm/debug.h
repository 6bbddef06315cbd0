/*
 * debug.h — the process pool's debug checks (internal): cf__assert, and a
 * mutex that knows which thread holds it.
 *
 * The role a comment names ("mu held", "supervisor thread", "parent
 * process", "worker process") is checked by cf__assert at the top of the
 * function. The checks sit behind a static const bool, so they always
 * compile and a release build drops them; cf__debug is true where CF_DEBUG
 * is defined (Debug builds, and any build with CF_DEBUG_CHECKS). A failed
 * check is a bug in the library, not an error a caller could handle: it
 * writes one line to stderr (write(2) on fd 2: no stdio stream, no lock,
 * safe in a forked child; snprintf of %s and %d allocates nothing) and aborts.
 */
#ifndef CF_SHM_DEBUG_H
#define CF_SHM_DEBUG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const bool cf__debug =
#ifdef CF_DEBUG
    true;
#else
    false;
#endif

__attribute__((noinline, cold, noreturn, unused)) static void cf__assert_fail(const char *expr,
                                                                              const char *file,
                                                                              int line) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "cfutures: %s:%d: failed check: %s\n", file, line, expr);
  if (n > 0) {
    ssize_t r = write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    (void)r;
  }
  abort();
}

#define cf__assert(cond)                                                  \
  do {                                                                    \
    if (cf__debug && !(cond)) cf__assert_fail(#cond, __FILE__, __LINE__); \
  } while (0)

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

#endif /* CF_SHM_DEBUG_H */
