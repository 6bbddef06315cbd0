/*
 * settle.h — the parent's side of a slot's completion (internal): failing
 * a slot from the parent (cancel, deadline, crash, broken pool, a scribbled
 * word), settling a slot whose word is done, freeing it.
 *
 * DESIGN
 * Settling slot s whose word is done (cf__pp_settle_locked, mu held):
 *   1. its outcome moves into its future (slot_future.c), which then no
 *      longer points at the slot (future.h: the move); an orphan's outcome
 *      is dropped; a worker's result region is handed back either way;
 *   2. if the done word has WAITERS, every sleeper on the slot word is
 *      woken now: the worker that completed it may have died before its
 *      own wake, and the slot is about to be reused;
 *   3. a watched future's reference is collected into a cf__settle;
 *   4. the slot is freed unless a killed worker may still write into it.
 * Then, with `mu` released (cf__pp_settle_finish): the internal callbacks
 * run on the settling thread, the user callbacks go to the callback thread
 * (or run here when the settling thread is the user's own, as in a
 * cancel). So user code never runs under the pool's lock, nor on the
 * supervisor. Settling is idempotent per slot use: whoever sees a word
 * done may settle it (a reader, the supervisor on a notice or in its
 * sweep, a death scan, a parent thread that failed the slot, the destroy
 * sweep); only the first one finds the future still in the slot.
 *
 * A slot word is checked against the table before anything trusts it
 * (cf__pp_word_check): the generation of its use, a known state, an owner
 * that exists. A word of the previous generation is a slot allocated but
 * not yet published by its submitter; anything else that does not fit was
 * scribbled by a rogue worker: the slot fails with CF_EPROTO
 * (cf__pp_force_fail_locked).
 */
#ifndef CF_SHM_SETTLE_H
#define CF_SHM_SETTLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

/* What to do once `mu` is released after a slot was settled. */
typedef struct cf__settle {
  cf_future *f; /* run its callbacks, then unref (NULL: none) */
} cf__settle;

enum { CF__W_OK, CF__W_UNPUBLISHED, CF__W_CORRUPT };

/* mu held; slot s in use, w its word: CF__W_*. */
int cf__pp_word_check(cf__pool *p, uint32_t s, uint32_t w);

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
 * `err`, crash info `ci` (NULL: the owner's pid and `signo`). A RUNNING
 * slot's worker is sent `signo` and the slot quarantined, unless signo is
 * 0 (the worker is known dead). The slot is settled (its callbacks into
 * *st). True if this call made the transition. */
bool cf__pp_fail_locked(cf__pool *p, uint32_t s, uint32_t gen, bool running_too, uint32_t to,
                        int err, const cf_crash_info *ci, int signo, cf__settle *st);
/* mu held. Make slot s (in use) done whatever its word holds — a scribbled
 * word, or a task left when no worker can run it any more — with `to` and
 * `err` (and `ci` if not NULL), wake every sleeper on it and settle it. */
void cf__pp_force_fail_locked(cf__pool *p, uint32_t s, uint32_t to, int err,
                              const cf_crash_info *ci, cf__settle *st);
/* mu held. Slot s is in use and its word done (checked): settle it. */
void cf__pp_settle_locked(cf__pool *p, uint32_t s, cf__settle *st);
/* mu held, slot s in use: settle it if its word is done, fail it with
 * CF_EPROTO if the word is scribbled (cf__pp_word_check), else nothing
 * (queued, running, or this use not published yet). True if it settled. */
bool cf__pp_settle_if_done_locked(cf__pool *p, uint32_t s, cf__settle *st);
/* mu held: settle up to `max` done slots (into st[0..n), whose
 * cf__pp_settle_finish is the caller's, with mu released), looking from
 * where the last call stopped: how a submit that finds no free slot frees
 * the slots of tasks already done itself, instead of waiting for their
 * notices to reach the supervisor. n; with none, *run_slot / *run_gen name
 * a task that runs (its word is the one to wait on: its worker wakes the
 * waiter when it completes), or *run_slot is UINT32_MAX. */
unsigned cf__pp_reclaim_locked(cf__pool *p, cf__settle *st, unsigned max, uint32_t *run_slot,
                               uint32_t *run_gen);
/* mu held: slot s (generation gen) was just submitted: the newest in
 * p->order. */
void cf__pp_order_push_locked(cf__pool *p, uint32_t s, uint32_t gen);
/* mu held: settle the oldest submitted tasks while they are done, at most
 * `max` (into st, finished by the caller with mu released): every submit
 * does it, so a done task's slot is free by the time it is needed, whether
 * or not its future is read, at O(1) per task and with no notice. n. */
unsigned cf__pp_reclaim_oldest_locked(cf__pool *p, cf__settle *st, unsigned max);
/* mu held: free slot s if nothing holds it any more (its outcome moved or
 * its future is gone, word done, no quarantine); true if freed. */
bool cf__pp_maybe_free_locked(cf__pool *p, uint32_t s);
/* mu released: the callbacks collected in *st — internal ones here, user
 * ones here too if inline_cbs (a user's thread that completed the future
 * itself), else on the callback thread. */
void cf__pp_settle_finish(cf__pool *p, cf__settle *st, bool inline_cbs);

/* mu not held. Settle slot s if it is in use and done (a notice's genbits
 * must match its generation unless genbits is CF__GEN_ANY); fail it with
 * CF_EPROTO if its word is scribbled. */
void cf__pp_settle(cf__pool *p, uint32_t s, uint32_t genbits);

/* mu not held. Call fn(p, s, arg, &st) with mu held for every slot in use,
 * in batches, finishing each batch's settles with mu released. */
typedef void (*cf__pp_scan_fn)(cf__pool *p, uint32_t s, void *arg, cf__settle *st);
void cf__pp_scan(cf__pool *p, cf__pp_scan_fn fn, void *arg, bool inline_cbs);

/* mu held: the free slots changed: set or clear the segment's hungry hint
 * (workers then notice every completion, so done slots free at once). */
void cf__pp_hungry_update(cf__pool *p);

#endif /* CF_SHM_SETTLE_H */
