/*
 * slot_future.h — a process pool's future: a parent-side cf_future whose
 * state word is the word of a slot in the segment until the task is done,
 * and whose outcome then moves into the future itself (internal).
 *
 * DESIGN
 * The generic future code (future.c) waits on the word and calls these
 * hooks for everything else. The outcome moves once, under `mu`
 * (cf__slot_outcome_move, called by settle.c): a word with an owner was
 * completed by that worker: every length and code it wrote is read once and
 * checked (CF_EPROTO otherwise), copies never leave the slot or the worker's
 * result region; a word with owner 0 was completed by the parent: its error
 * and crash info are in the slot table. The result bytes go into the
 * future (inline up to CF__INLINE_RES, else a heap buffer), the task's
 * failure into f->err, f->task_code and f->msg, a crash into f->crash;
 * then the done word into f->state and f->word = &f->state (future.h: the
 * move). Every read hook first makes sure the outcome has moved (settling
 * the slot itself if its word is done), then reads the future only: a
 * moved future needs neither the slot nor the pool's lock.
 *
 * Each future holds a pool reference until it is destroyed, so the pool
 * (its lock, its segment) outlives any reader of it.
 */
#ifndef CF_SHM_SLOT_FUTURE_H
#define CF_SHM_SLOT_FUTURE_H

#include "pool.h"

extern const cf__future_vtbl cf__slot_future_vtbl;

/* Make f the future of slot s, generation gen, of pool p (before f is
 * handed out: plain stores, published by the hand-over). */
static inline void cf__slot_future_bind(cf_future *f, cf__pool *p, uint32_t s, uint32_t gen) {
  atomic_store_explicit(&f->state, cf__st_make(gen, 0, CF_STATE_PENDING), memory_order_relaxed);
  atomic_store_explicit(&f->word, &cf__pp_slot(p, s)->word, memory_order_relaxed);
  f->shared = 1;
  f->vt = &cf__slot_future_vtbl;
  f->executor = &p->base;
  f->ext[0] = s;
  f->ext[1] = gen;
}

/* mu held. Slot s's word w is done: move its outcome into f (NULL: an
 * orphan: nothing moves), and hand the worker's result region back. */
void cf__slot_outcome_move(cf__pool *p, uint32_t s, cf_future *f, uint32_t w);

#endif /* CF_SHM_SLOT_FUTURE_H */
