/*
 * park.c — parking and waking idle workers (DESIGN in park.h).
 */
#include "park.h"

#include <limits.h>
#include <stdlib.h>

#include "sys.h"

int cf__park_init(cf__park *s, unsigned nworkers) {
  atomic_init(&s->idle, 0);
  pthread_mutex_init(&s->lock, NULL);
  s->nworkers = nworkers;
  s->nsleepers = 0;
  s->sleepers = calloc(nworkers, sizeof *s->sleepers);
  s->parkers = aligned_alloc(CF__CACHE_LINE, sizeof(cf__parker) * nworkers);
  if (!s->sleepers || !s->parkers) {
    free(s->sleepers);
    free(s->parkers);
    return CF_ENOMEM;
  }
  for (unsigned i = 0; i < nworkers; i++) {
    atomic_init(&s->parkers[i].word, 0);
    atomic_init(&s->parkers[i].woken_at, 0);
  }
  return 0;
}

void cf__park_destroy(cf__park *s) {
  pthread_mutex_destroy(&s->lock);
  free(s->sleepers);
  free(s->parkers);
}

/* Under lock: take sleeper `id` off the stack's top, counted as searching,
 * and mark it woken. The futex wake itself is the caller's, after unlock
 * (wake_futex): a wake is a system call of microseconds (an IPI to an
 * idle CPU), and a worker that just ran its task and comes back to park
 * must not block on this lock meanwhile (that blocking cost a second
 * context switch for 4 tasks in 10 at 10 k submits/s). */
static void wake_locked(cf__park *s, unsigned id) {
  atomic_fetch_add(&s->idle, CF__IDLE_SEARCH - CF__IDLE_PARKED);
  /* relaxed: published by the release store below */
  atomic_store_explicit(&s->parkers[id].woken_at, cf__now_ns(), memory_order_relaxed);
  /* release: pairs with the acquire load in cf__park_wait() */
  atomic_store_explicit(&s->parkers[id].word, 1, memory_order_release);
}

/* After unlock: wake worker `id`'s futex. Late is harmless: the word is
 * already 1, so the worker may have left cf__park_wait without it and even
 * parked again (word 0 again, under the lock); then this wake is spurious
 * and cf__park_wait's loop, which re-reads the word, sleeps again. The
 * word lives as long as the lock just unlocked: wakers are workers (joined
 * before the pool goes) and submitters (whose calls may not overlap the
 * pool's destroy: cfutures.h). */
static void wake_futex(cf__park *s, unsigned id) {
  cf__futex_wake(&s->parkers[id].word, 1, false);
}

/* Wake the top sleeper, if any — unless a worker searches and
 * even_if_searching is false (cf__park_notify_one's rule). */
static void wake_one(cf__park *s, bool even_if_searching) {
  /* seq_cst: the submitter's load of the Dekker pair (DESIGN); for the
   * extra wake only a hint, the lock below decides */
  uint32_t v = atomic_load(&s->idle);
  if (cf__idle_parked(v) == 0 || (!even_if_searching && cf__idle_searching(v) > 0)) return;
  unsigned id = UINT_MAX;
  pthread_mutex_lock(&s->lock);
  v = atomic_load(&s->idle);
  if (s->nsleepers > 0 && (even_if_searching || cf__idle_searching(v) == 0)) {
    id = s->sleepers[--s->nsleepers];
    wake_locked(s, id);
  }
  pthread_mutex_unlock(&s->lock);
  if (id != UINT_MAX) wake_futex(s, id);
}

void cf__park_notify_one(cf__park *s) {
  wake_one(s, false);
}

void cf__park_notify_extra(cf__park *s) {
  wake_one(s, true);
}

void cf__park_notify_all(cf__park *s) {
  /* shutdown only: the wakes stay under the lock (no copy of the ids) */
  pthread_mutex_lock(&s->lock);
  while (s->nsleepers > 0) {
    unsigned id = s->sleepers[--s->nsleepers];
    wake_locked(s, id);
    wake_futex(s, id);
  }
  pthread_mutex_unlock(&s->lock);
}

void cf__park_prepare(cf__park *s, unsigned id, bool was_searching) {
  pthread_mutex_lock(&s->lock);
  /* relaxed: the word is only written under this lock or by a waker
   * holding it; cf__park_wait re-reads with acquire */
  atomic_store_explicit(&s->parkers[id].word, 0, memory_order_relaxed);
  s->sleepers[s->nsleepers++] = id;
  /* seq_cst RMW: the "announce" half of the Dekker pair (park.h) */
  atomic_fetch_add(&s->idle, CF__IDLE_PARKED - (was_searching ? CF__IDLE_SEARCH : 0));
  pthread_mutex_unlock(&s->lock);
}

void cf__park_cancel(cf__park *s, unsigned id) {
  pthread_mutex_lock(&s->lock);
  for (unsigned i = 0; i < s->nsleepers; i++) {
    if (s->sleepers[i] == id) {
      s->sleepers[i] = s->sleepers[--s->nsleepers];
      atomic_fetch_add(&s->idle, CF__IDLE_SEARCH - CF__IDLE_PARKED);
      break;
    }
  }
  /* not found: a waker took us and already counted us as searching */
  pthread_mutex_unlock(&s->lock);
}

int64_t cf__park_wait(cf__park *s, unsigned id) {
  _Atomic uint32_t *w = &s->parkers[id].word;
  /* acquire: pairs with the release store in wake_locked() */
  while (atomic_load_explicit(w, memory_order_acquire) == 0) cf__futex_wait(w, 0, -1, false);
  /* relaxed: ordered by the acquire above */
  return atomic_load_explicit(&s->parkers[id].woken_at, memory_order_relaxed);
}
