/*
 * slots.h — the slot table: the parent's private record of every task slot
 * of the segment, the free list, and the deadline heap (internal).
 *
 * DESIGN
 * Slot s of the table describes slot s of the segment (segment.h) from the
 * parent's side: which future uses it, in which generation, what the parent
 * decided when it completed the slot itself (err, crash), and whether it
 * may be reused. Nothing in the table is shared with the workers.
 *
 *   - Free list: a LIFO through next_free, so that the slot freed last (its
 *     cache lines still warm) is allocated next. At init every slot is free
 *     and slot 0 comes first.
 *   - Generation: each allocation advances gen by one, wrapping at the
 *     state word's generation bits (future.h), so a CAS or a ring hint of an
 *     earlier use loses. `use` counts allocations and never wraps: it tells
 *     two uses apart where gen may have wrapped (the deadline heap).
 *   - Deadline heap: a binary min-heap on `when`. An entry belongs to one
 *     use of its slot; entries of a use that is over are dropped when they
 *     reach the top, so completing or freeing a slot never searches the heap.
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
#include "mutex.h"
#include "future.h"

#define CF__NO_FREE 0xffffffffu
#define CF__SLOT_GEN_MAX (CF__ST_GEN_MASK >> CF__ST_GEN_SHIFT)

typedef struct cf__pslot {
  cf_future *f;       /* the parent future; NULL once destroyed */
  uint32_t gen;       /* generation of the current use */
  uint32_t next_free; /* free list link */
  uint8_t in_use;     /* allocated, not yet freed */
  uint8_t watched;    /* run f's callbacks when it completes */
  uint8_t orphan;     /* f destroyed before done: free when done */
  uint8_t quarantine; /* worker index + 1 that may still write here */
  int32_t err;        /* outcome of a parent-completed word (owner 0) */
  cf_crash_info crash;
  uint64_t use; /* allocations of this slot so far: never wraps, unlike gen */
} cf__pslot;

typedef struct cf__deadline {
  int64_t when; /* absolute CLOCK_MONOTONIC ns */
  uint64_t use; /* the use of the slot it was set for */
  uint32_t slot;
} cf__deadline;

typedef struct cf__slots {
  cf__pslot *ps;
  uint32_t n;
  uint32_t free_head; /* CF__NO_FREE: every slot is in use */
  cf__deadline *heap;
  size_t nheap, heap_cap;
} cf__slots;

/* n slots, all free: 0 or CF_ENOMEM. */
int cf__slots_init(cf__slots *t, uint32_t n);
void cf__slots_fini(cf__slots *t);

static inline bool cf__slots_full(const cf__slots *t) {
  return t->free_head == CF__NO_FREE;
}

/* Allocate a slot for future f (the table must not be full): its index.
 * The slot's generation and use advance; flags and the parent-side outcome
 * are cleared. */
static inline uint32_t cf__slots_alloc(cf__slots *t, cf_future *f) {
  uint32_t s = t->free_head;
  cf__assert(s < t->n && !t->ps[s].in_use);
  cf__pslot *ps = &t->ps[s];
  t->free_head = ps->next_free;
  ps->gen = (ps->gen + 1) & CF__SLOT_GEN_MAX;
  ps->in_use = 1;
  ps->watched = 0;
  ps->orphan = 0;
  ps->err = 0;
  ps->crash = (cf_crash_info){0, 0, -1};
  ps->f = f;
  ps->use++;
  return s;
}

/* Free slot s: in use, not quarantined (the caller checked that nothing
 * holds it any more). It is the next one allocated. */
static inline void cf__slots_free(cf__slots *t, uint32_t s) {
  cf__assert(s < t->n && t->ps[s].in_use && !t->ps[s].quarantine);
  cf__pslot *ps = &t->ps[s];
  ps->in_use = 0;
  ps->orphan = 0;
  ps->watched = 0;
  ps->next_free = t->free_head;
  t->free_head = s;
}

/* Add a deadline `when` for the current use of slot s (in use). True if it
 * is now the earliest one. False too if the heap cannot grow (ENOMEM): the
 * task then has no deadline and just runs. */
bool cf__slots_deadline_add(cf__slots *t, uint32_t s, int64_t when);

/* The earliest deadline, -1 if none (it may belong to a use that is over). */
static inline int64_t cf__slots_deadline_next(const cf__slots *t) {
  return t->nheap ? t->heap[0].when : -1;
}

/* Pop the earliest deadline if it is due (when <= now) and belongs to the
 * current use of its slot: true, with the slot in *s (it may have been
 * freed since: check in_use). Due entries of a use that is over are popped
 * and dropped on the way. False once the earliest entry is not due. */
bool cf__slots_deadline_pop_due(cf__slots *t, int64_t now, uint32_t *s);

#endif /* CF_SHM_SLOTS_H */
