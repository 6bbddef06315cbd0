/*
 * deadline.h — an executor's deadline timer (internal): one thread that
 * fails each watched future with CF_EDEADLINE at its deadline, whether or
 * not anyone waits on it. Used by the thread pool, whose futures live in
 * this process (the process pool's supervisor enforces its own).
 *
 * DESIGN
 * One timer per executor, made with its thread on the first watch (an
 * executor that never sees a deadline has no timer thread). A binary
 * min-heap of futures keyed by f->deadline, under one mutex; the thread
 * sleeps on a CLOCK_MONOTONIC condition variable until the earliest
 * deadline, and a watch that becomes the earliest wakes it.
 *
 * A watched future's ext[1] is WATCHED | (its heap index + 1), or WATCHED
 * alone once the timer thread popped it; 0 when not watched. It is written
 * under the mutex only (atomic accesses: the completer's check reads it
 * without the mutex).
 *
 * Who does what, for a watched future f:
 *   1. watch (the submitter, before f is published): the heap takes an
 *      internal reference on f; `watched` counts f.
 *   2. expiry (the timer thread, at the deadline): pops f under the mutex,
 *      then, with no lock held, cf__future_fail(f, CF_EDEADLINE) — the same
 *      outcome claim every completer makes, so it fails f only if nothing
 *      completed it first (and sets STOP for its running task) — then drops
 *      the heap's reference. Done-callbacks of a future it expires run on
 *      the timer thread.
 *   3. done (whoever made f done, after waking its waiters and before its
 *      callbacks: cf__deadline_done): under the mutex, takes f out of the
 *      heap if it is still there (and drops the heap's reference after the
 *      unlock), clears ext[1] and uncounts f. So a task that completes
 *      first leaves nothing behind, and the heap holds only futures not done.
 *   4. destroy (the executor, once every one of its futures is done): stops
 *      and joins the thread, then waits until `watched` is 0 — a completer
 *      may still be between its done CAS and step 3 — and frees the timer.
 *      Step 3's unlock is its last touch of the timer, so nothing touches
 *      the executor after destroy returns.
 * A future is counted from step 1 until step 3 (exactly once: only the
 * thread whose CAS made it done runs step 3, or the submitter for a future
 * its executor refused: cf__deadline_unwatch).
 */
#ifndef CF_RUNTIME_DEADLINE_H
#define CF_RUNTIME_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "cfutures.h"
#include "future.h"

#define CF__DEADLINE_WATCHED (1ull << 63) /* in ext[1] of a watched future */

typedef struct cf__timer cf__timer; /* cf_executor.timer */

/* The submitter, before f is published: watch f (a local future with
 * f->deadline > 0 and f->executor == ex) on ex's timer, making the timer
 * and starting its thread (named "<name>-tm") on the first call. 0,
 * CF_ENOMEM or CF_ESYS (the thread could not be started). */
int cf__deadline_watch(cf_executor *ex, const char *name, cf_future *f);

/* Step 3 of the DESIGN, by the thread that made a local future with a
 * deadline done: a no-op unless f is watched. Takes no lock when not. */
void cf__deadline_done_slow(cf_future *f);
static inline void cf__deadline_done(cf_future *f) {
  /* relaxed: WATCHED was set before f was published (step 1), and only
   * this call clears it */
  if (__atomic_load_n(&f->ext[1], __ATOMIC_RELAXED) & CF__DEADLINE_WATCHED)
    cf__deadline_done_slow(f);
}

/* The submitter, for a watched future its executor refused (never
 * published, never to be done): step 3 for it, if the timer thread has not
 * already expired it. */
void cf__deadline_unwatch(cf_future *f);

/* Step 4: the executor's destroy, once every future it ran is done. */
void cf__deadline_destroy(cf_executor *ex);

/* Is the calling thread ex's timer thread? (It runs the done-callbacks of
 * the futures it expires.) */
bool cf__deadline_is_timer_thread(const cf_executor *ex);

/* Watched futures of ex that failed with CF_EDEADLINE (statistics). */
uint64_t cf__deadline_expired(const cf_executor *ex);

#endif /* CF_RUNTIME_DEADLINE_H */
