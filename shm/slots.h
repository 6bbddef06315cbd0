/*
 * slots.h — the slot table: the parent's private record of every task slot
 * of the segment, the free list, the deadline heap and the free list of big
 * argument regions (internal).
 *
 * DESIGN
 * Slot s of the table describes slot s of the segment (segment.h) from the
 * parent's side: which future uses it, in which generation, what the parent
 * decided when it completed the slot itself (err, crash), whether a killed
 * worker may still write into it, and its deadline. Nothing in the table is
 * shared with the workers: it is the control state a rogue worker cannot
 * reach.
 *
 *   - Free list: a LIFO through next_free, so that the slot freed last (its
 *     cache lines still warm) is allocated next. At init every slot is free
 *     and slot 0 comes first.
 *   - Generation: each allocation advances gen by one, wrapping at the
 *     state word's generation bits (future.h), so a CAS or a ring hint of an
 *     earlier use loses.
 *   - Deadline heap: a binary min-heap of slot indices on ps[].deadline,
 *     with each slot's position in heap_pos. A slot has at most one entry,
 *     for its current use: freeing a slot removes it, so the heap holds only
 *     slots in use, and its storage (n entries) is allocated once at init.
 *   - Big argument regions: arguments past the slot's own area live in one
 *     of `nbig` regions of the segment (segment.h), handed out from a stack
 *     of free region indices.
 *
 * The table is a plain data structure: it locks nothing and calls nothing
 * else in the process pool. Its user serialises every call (the pool's
 * `mu`).
 */
#ifndef CF_SHM_SLOTS_H
#define CF_SHM_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"
#include "future.h"
#include "mutex.h"

#define CF__NO_FREE 0xffffffffu
#define CF__NO_HEAP 0xffffffffu
#define CF__NO_BIG 0xffffffffu
#define CF__SLOT_GEN_MAX (CF__ST_GEN_MASK >> CF__ST_GEN_SHIFT)

typedef struct cf__pslot {
  cf_future *f;        /* the future until its outcome moved into it (settle.h); NULL:
                          moved, or the future was destroyed first (orphan) */
  int64_t deadline;    /* absolute CLOCK_MONOTONIC ns while in the heap */
  uint32_t gen;        /* generation of the current use */
  uint32_t next_free;  /* free list link */
  uint32_t heap_pos;   /* index in the deadline heap, CF__NO_HEAP */
  uint32_t quarantine; /* incarnation (pool.h) of a killed worker that may still
                          write here; 0: none */
  uint32_t big;        /* big argument region of this use, CF__NO_BIG */
  uint32_t arg_len;    /* this use's argument bytes */
  uint8_t in_use;      /* allocated, not yet freed */
  uint8_t watched;     /* the pool holds a reference on f: run its callbacks */
  int32_t err;         /* outcome of a parent-completed word (owner 0) */
  cf_crash_info crash;
  int64_t t_submit; /* cf_executor_time_tasks: this use's submit time, 0: not timed */
} cf__pslot;

typedef struct cf__slots {
  cf__pslot *ps;
  uint32_t n, nfree;
  uint32_t free_head; /* CF__NO_FREE: every slot is in use */
  uint32_t *heap;     /* slot indices; capacity n */
  uint32_t nheap;
  uint32_t *big_free; /* free big region indices; capacity nbig */
  uint32_t nbig, nbig_free;
} cf__slots;

/* n slots and nbig big regions, all free: 0 or CF_ENOMEM. */
int cf__slots_init(cf__slots *t, uint32_t n, uint32_t nbig);
void cf__slots_fini(cf__slots *t);

static inline bool cf__slots_full(const cf__slots *t) {
  return t->free_head == CF__NO_FREE;
}

/* The generation before gen (the one a slot's word holds until its new use
 * is published). */
static inline uint32_t cf__slots_prev_gen(uint32_t gen) {
  return (gen - 1) & CF__SLOT_GEN_MAX;
}

/* Allocate a slot for future f (the table must not be full): its index.
 * The slot's generation advances; flags and the parent-side outcome are
 * cleared. */
static inline uint32_t cf__slots_alloc(cf__slots *t, cf_future *f) {
  uint32_t s = t->free_head;
  cf__assert(s < t->n && !t->ps[s].in_use);
  cf__pslot *ps = &t->ps[s];
  t->free_head = ps->next_free;
  t->nfree--;
  ps->gen = (ps->gen + 1) & CF__SLOT_GEN_MAX;
  ps->in_use = 1;
  ps->watched = 0;
  ps->err = 0;
  ps->crash = (cf_crash_info){0, 0, -1};
  ps->f = f;
  ps->big = CF__NO_BIG;
  ps->arg_len = 0;
  cf__assert(ps->heap_pos == CF__NO_HEAP && !ps->quarantine);
  return s;
}

/* Remove slot s's deadline, if it has one. */
void cf__slots_deadline_clear(cf__slots *t, uint32_t s);

/* Free slot s: in use, not quarantined (the caller checked that nothing
 * holds it any more). Its deadline goes; its big region does not (the
 * caller gives it back first). It is the next one allocated. */
static inline void cf__slots_free(cf__slots *t, uint32_t s) {
  cf__assert(s < t->n && t->ps[s].in_use && !t->ps[s].quarantine);
  cf__assert(t->ps[s].big == CF__NO_BIG);
  cf__pslot *ps = &t->ps[s];
  if (ps->heap_pos != CF__NO_HEAP) cf__slots_deadline_clear(t, s);
  ps->in_use = 0;
  ps->watched = 0;
  ps->f = NULL;
  ps->next_free = t->free_head;
  t->free_head = s;
  t->nfree++;
}

/* Set the deadline `when` of slot s (in use, none set yet). True if it is
 * now the earliest one. Never fails: the heap has room for every slot. */
bool cf__slots_deadline_set(cf__slots *t, uint32_t s, int64_t when);

/* The earliest deadline, -1 if none. */
static inline int64_t cf__slots_deadline_next(const cf__slots *t) {
  return t->nheap ? t->ps[t->heap[0]].deadline : -1;
}

/* Pop the earliest deadline if it is due (when <= now): true, with its slot
 * (in use) in *s. False once the earliest is not due. */
bool cf__slots_deadline_pop_due(cf__slots *t, int64_t now, uint32_t *s);

/* A free big region (its index), or CF__NO_BIG if none is free. */
static inline uint32_t cf__slots_big_take(cf__slots *t) {
  return t->nbig_free ? t->big_free[--t->nbig_free] : CF__NO_BIG;
}
static inline void cf__slots_big_give(cf__slots *t, uint32_t r) {
  cf__assert(r < t->nbig && t->nbig_free < t->nbig);
  t->big_free[t->nbig_free++] = r;
}

#endif /* CF_SHM_SLOTS_H */
