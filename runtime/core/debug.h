/*
 * debug.h — debug assertions (internal): the preconditions that comments
 * state ("owner only", "lock held", "consumer only") as code.
 *
 * cf__debug is a compile-time constant (CF_DEBUG: the Debug tree, or
 * CF_DEBUG_CHECKS), so a checked condition always compiles and cannot rot,
 * but release builds evaluate nothing: the check folds away. A failed
 * assertion aborts (the library never prints; the core dump has the stack).
 * Misuse that can be reported (a NULL handle, a double release) is an error
 * code, not an assertion: these are for states a correct caller never makes.
 */
#ifndef CF_RUNTIME_DEBUG_H
#define CF_RUNTIME_DEBUG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static const bool cf__debug =
#ifdef CF_DEBUG
    true;
#else
    false;
#endif

#define cf__assert(cond)                                    \
  do {                                                      \
    if (cf__debug && __builtin_expect(!(cond), 0)) abort(); \
  } while (0)

/* The calling thread, as a token to record and compare in the checks of
 * owner-only calls (never 0). */
static inline uintptr_t cf__debug_thread(void) {
  return (uintptr_t)pthread_self();
}

/* Objects used by one thread at a time (a map, an as_completed iterator):
 * every call enters and leaves; entering one that another call is inside
 * aborts. relaxed: callers order their use themselves; the exchange only
 * has to see an overlapping call. */
static inline void cf__debug_enter(_Atomic bool *busy) {
  if (!cf__debug) return;
  bool was = atomic_exchange_explicit(busy, true, memory_order_relaxed);
  cf__assert(!was);
}
static inline void cf__debug_leave(_Atomic bool *busy) {
  if (cf__debug) atomic_store_explicit(busy, false, memory_order_relaxed);
}

#endif /* CF_RUNTIME_DEBUG_H */
