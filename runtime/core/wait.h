/*
 * wait.h — a one-shot, resettable event for waiting on many futures
 * (internal; used by wait.c and map.c).
 *
 * DESIGN
 * A cf__event is a private futex word with the same layout as a future's
 * state word (future.h): state PENDING or FINISHED, the WAITERS bit, and a
 * generation. Signalling CASes PENDING -> FINISHED and calls FUTEX_WAKE only
 * if WAITERS was set in the word it replaced. The single consumer waits
 * with cf__word_wait (future.h, private futex), and may reset a FINISHED
 * event to PENDING with a new generation; signallers never write a FINISHED
 * word, so the reset is the only writer at that moment. Because the word has
 * the future layout, an event embedded in a dummy struct cf_future can be
 * waited with cf__future_wait_until(), which lets a thread-pool worker run
 * other tasks while it waits.
 *
 * Lost wake-ups: a producer publishes its news (seq_cst) before signalling;
 * the consumer resets, then re-reads the news (seq_cst), then waits on the
 * PENDING word: either it sees the news or the signal's CAS comes after the
 * reset and changes the word it waits on.
 */
#ifndef CF_RUNTIME_WAIT_H
#define CF_RUNTIME_WAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "future.h"

/* Signal: PENDING -> FINISHED, wake the waiter if it sleeps. Any thread. */
void cf__event_signal(_Atomic uint32_t *word);

/* Consumer only: FINISHED -> PENDING (next generation). */
void cf__event_reset(_Atomic uint32_t *word);

/* Consumer only: wait until the event is FINISHED or the absolute deadline
 * (< 0: forever) passes: 0 or CF_ETIMEDOUT. `dummy`, if not NULL, is a
 * zeroed struct cf_future whose word is `word`: in a thread-pool worker the
 * wait then goes through cf__future_wait_until() and helps. */
int cf__event_wait(_Atomic uint32_t *word, cf_future *dummy, cf_future *const *fs, size_t n,
                   int64_t deadline_abs);

/* Initialise `dummy` as a waitable stand-in for the event `word`. */
void cf__event_dummy_init(cf_future *dummy, _Atomic uint32_t *word);

/* The smallest task deadline (absolute ns) among fs[i] not yet done with
 * skip == NULL or !skip[i], or -1 if none: a waiter wakes there to fail a
 * future whose deadline passed while it was still queued. */
int64_t cf__min_task_deadline(cf_future *const *fs, size_t n, const bool *skip);

/* Combine two absolute deadlines (-1: none). */
static inline int64_t cf__deadline_min(int64_t a, int64_t b) {
  if (a < 0) return b;
  if (b < 0) return a;
  return a < b ? a : b;
}

#endif /* CF_RUNTIME_WAIT_H */
