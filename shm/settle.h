/*
 * settle.h — the parent's side of a slot's completion (internal): failing
 * a slot from the parent (cancel, deadline, crash, broken pool), settling
 * a slot whose word is done, freeing it.
 *
 * DESIGN
 * Every parent-side change of a slot happens in two halves:
 *   1. under `mu` (cf__pp_fail_locked / cf__pp_settle_locked): the CAS
 *      that completes the word, if the parent makes it, with its outcome
 *      recorded in the slot table before it; then the watched future's
 *      reference and an orphaned slot's freeing are collected into a
 *      cf__settle;
 *   2. with `mu` released (cf__pp_settle_finish): the futex wake, the done
 *      callbacks, and the pool reference of a freed slot.
 * So user code (callbacks) never runs under the pool's lock, and a wake
 * never makes a waiter block on it. Every step of both halves is
 * idempotent per slot use: whoever sees a word done may settle it (the
 * supervisor on a notice, on a death or on an overflow rescan; a parent
 * thread that failed the slot; the destroy sweep), and a watch's reference
 * is handed over exactly once, under `mu`.
 */
#ifndef CF_SHM_SETTLE_H
#define CF_SHM_SETTLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

/* What to do once `mu` is released after a slot was settled. */
typedef struct cf__settle {
  _Atomic uint32_t *word;
  uint32_t old; /* the word the completing CAS replaced (wake if WAITERS) */
  bool wake;    /* the parent made the transition: wake waiters */
  cf_future *f; /* run its callbacks, then unref (NULL: none) */
  bool freed;   /* a slot was freed: drop a pool reference */
} cf__settle;

/* mu held: call right after setting broken or cancelling, before the scan
 * of the slots that fails or cancels them. The seq_cst fence pairs with the
 * one in pp_submit between publishing a PENDING word and reading `doomed`
 * (Dekker): either that scan sees the PENDING word, or the submitter sees
 * `doomed` and fails its slot itself. */
static inline void cf__pp_doom(cf__pool *p) {
  cf__assert(cf__pp_locked(p));
  atomic_store_explicit(&p->doomed, true, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
}

/* mu held; parent. Fail slot s (generation gen) if its word is PENDING
 * (running_too: or RUNNING) with state `to` (FAILED or CANCELLED) and error
 * `err`, crash info `ci` (NULL: from the owner's pid, SIGKILL). A RUNNING
 * slot's worker is killed and the slot quarantined unless `dead` (the
 * worker is already dead). True if this call made the transition; *st says
 * what to do once mu is released. */
bool cf__pp_fail_locked(cf__pool *p, uint32_t s, uint32_t gen, bool running_too, uint32_t to,
                        int err, const cf_crash_info *ci, bool dead, cf__settle *st);
/* mu held. The slot's word is done (by anyone): collect the callbacks to
 * run and free the slot if it is orphaned. */
void cf__pp_settle_locked(cf__pool *p, uint32_t s, cf__settle *st);
/* mu held: free slot s if nothing holds it any more (future destroyed,
 * word done, no quarantine); true if freed. */
bool cf__pp_maybe_free_locked(cf__pool *p, uint32_t s);
/* mu released: wake, run callbacks, drop references. */
void cf__pp_settle_finish(cf__pool *p, cf__settle *st);

#endif /* CF_SHM_SETTLE_H */
