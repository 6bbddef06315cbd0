/*
 * slot_future.h — a process pool's future: a parent-side cf_future whose
 * state word is the word of a slot in the segment (internal).
 *
 * DESIGN
 * The generic future code (future.c) waits on the word and calls these
 * hooks for everything that lives in the slot. Reading an outcome: the
 * generic code loaded the done word with acquire (pairs with the
 * completing CAS). A word with an owner was completed by that worker: every
 * length, offset and code it wrote is checked before it is used (CF_EPROTO
 * otherwise), and copies never leave the slot's region. A word with owner
 * 0 was completed by the parent: its error and crash info are in the slot
 * table (read under `mu`).
 */
#ifndef CF_SHM_SLOT_FUTURE_H
#define CF_SHM_SLOT_FUTURE_H

#include "pool.h"

extern const cf__future_vtbl cf__slot_future_vtbl;

/* Make f the future of slot s, generation gen, of pool p. */
static inline void cf__slot_future_bind(cf_future *f, cf__pool *p, uint32_t s, uint32_t gen) {
  f->word = &cf__pp_slot(p, s)->word;
  f->shared = 1;
  f->vt = &cf__slot_future_vtbl;
  f->executor = &p->base;
  f->ext[0] = s;
  f->ext[1] = gen;
}

#endif /* CF_SHM_SLOT_FUTURE_H */
