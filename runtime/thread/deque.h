/*
 * deque.h — a fixed-size Chase–Lev work-stealing deque of futures
 * (header-only: the owner's push and pop are on every spawn and join).
 *
 * DESIGN
 * Chase and Lev, "Dynamic circular work-stealing deque" (SPAA 2005), with
 * the C11 orderings of Lê, Pop, Cohen and Zappa Nardelli, "Correct and
 * Efficient Work-Stealing for Weak Memory Models" (PPoPP 2013), figure 1.
 * Differences from the paper:
 *   - no resize: the ring is a fixed power of two; cf__deque_push() returns
 *     false when it is full and the caller overflows to the pool's
 *     injection queue (as Tokio and Go do), so no buffer is ever reclaimed;
 *   - the owner keeps a private copy of `top` (top_cache) and reloads the
 *     shared one only when the copy says the ring is full: `top` only grows,
 *     so a stale copy under-estimates the free room, never over-estimates;
 *   - push publishes with a release store of `bottom` instead of a release
 *     fence + relaxed store (same code on x86; TSan understands it);
 *   - the two seq_cst fences (take: between the store of bottom and the
 *     load of top; steal: between the loads of top and bottom) are folded
 *     into seq_cst accesses: with every access in the take/steal race
 *     seq_cst, the single total order gives the argument of the original
 *     (sequentially consistent) algorithm: if a thief read bottom before the
 *     owner's decrement, the owner's later load of top sees at least the
 *     thief's top, so both go to the CAS on top for the same element. TSan
 *     models seq_cst accesses (it ignores fences), and a steal costs no
 *     fence on x86.
 * Slots are atomics read with relaxed loads: a slow thief may read a slot
 * the owner is overwriting, and its CAS on `top` then fails.
 *
 * Who owns what. `bottom` is written by the owner only, read by thieves.
 * `top` is advanced by thieves (CAS) and by the owner when it takes the
 * last element (CAS). Each sits on its own cache line; the ring pointer and
 * mask never change after init and share a read-mostly line; top_cache is
 * owner-only (Lace's habit of keeping thief-read fields apart).
 *
 * Roles: cf__deque_push/cf__deque_pop: the owner thread only (debug builds
 * check it: the first thread that pushes or pops is the owner).
 * cf__deque_steal: any thread. cf__deque_size: any thread (approximate).
 */
#ifndef CF_RUNTIME_DEQUE_H
#define CF_RUNTIME_DEQUE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "debug.h"
#include "future.h"
#include "sys.h"
#define CF__DEQUE_CAP 4096

/* cf__deque_steal() lost a race: the deque may still have items. */
#define CF__DEQUE_ABORT ((cf_future *)(uintptr_t)1)

typedef struct cf__deque {
  alignas(CF__CACHE_LINE) _Atomic int64_t top;       /* thieves CAS it */
  alignas(CF__CACHE_LINE) _Atomic int64_t bottom;    /* owner writes, thieves read */
  alignas(CF__CACHE_LINE) _Atomic(cf_future *) *buf; /* read-only after init */
  int64_t mask;
  alignas(CF__CACHE_LINE) int64_t top_cache; /* owner only */
  _Atomic uintptr_t owner_dbg;               /* debug builds: the owner thread */
} cf__deque;

/* Debug builds: the caller is the deque's owner (the first caller is). */
static inline void cf__deque_assert_owner(cf__deque *d) {
  if (!cf__debug) return;
  uintptr_t me = cf__debug_thread(), o = 0;
  /* relaxed: a debug check; nothing is published */
  if (!atomic_compare_exchange_strong_explicit(&d->owner_dbg, &o, me, memory_order_relaxed,
                                               memory_order_relaxed))
    cf__assert(o == me);
}

/* Any thread, before use: capacity is a power of two. 0 or CF_ENOMEM. */
static inline int cf__deque_init(cf__deque *d, int64_t capacity) {
  atomic_init(&d->top, 0);
  atomic_init(&d->bottom, 0);
  d->top_cache = 0;
  atomic_init(&d->owner_dbg, 0);
  d->mask = capacity - 1;
  d->buf = calloc((size_t)capacity, sizeof *d->buf);
  return d->buf ? 0 : CF_ENOMEM;
}

static inline void cf__deque_free(cf__deque *d) {
  free(d->buf);
  d->buf = NULL;
}

/* Owner: push f at the bottom. False when the ring is full. */
static inline bool cf__deque_push(cf__deque *d, cf_future *f) {
  cf__deque_assert_owner(d);
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed); /* owner's own */
  if (__builtin_expect(b - d->top_cache > d->mask, 0)) {
    /* acquire: pairs with a thief's CAS of top, so its read of the slot we
     * are about to reuse happened before our store */
    d->top_cache = atomic_load_explicit(&d->top, memory_order_acquire);
    if (b - d->top_cache > d->mask) return false;
  }
  atomic_store_explicit(&d->buf[b & d->mask], f, memory_order_relaxed);
  /* release: publishes the slot and the future's fields; pairs with the
   * acquire load of bottom in cf__deque_steal() */
  atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
  return true;
}

/* Owner: pop from the bottom (LIFO). NULL when empty. */
static inline cf_future *cf__deque_pop(cf__deque *d) {
  cf__deque_assert_owner(d);
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1; /* owner's own */
  /* Empty for sure (top only grows): skip the fence. relaxed: a stale top
   * is smaller, so this never reports empty wrongly. */
  if (b < atomic_load_explicit(&d->top, memory_order_relaxed)) return NULL;
  /* seq_cst store, then seq_cst load: the store of bottom is ordered before
   * the load of top in the single total order, against the thief's seq_cst
   * loads of top then bottom (see DESIGN: the paper's fences, folded) */
  atomic_store(&d->bottom, b);
  int64_t t = atomic_load(&d->top);
  if (t > b) {
    /* empty: restore (relaxed: as in the paper, nothing is published) */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    return NULL;
  }
  cf_future *f = atomic_load_explicit(&d->buf[b & d->mask], memory_order_relaxed);
  if (t == b) {
    /* the last element: race the thieves for it */
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
      f = NULL;
    atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
  }
  return f;
}

/* Any thread: steal from the top (FIFO). NULL when empty, CF__DEQUE_ABORT
 * when it lost a race (retry if you care). */
static inline cf_future *cf__deque_steal(cf__deque *d) {
  /* seq_cst loads of top then bottom: the paper's steal() with its fence
   * folded in (DESIGN); reading a push's release store of bottom also
   * acquires the slot and the future's fields */
  int64_t t = atomic_load(&d->top);
  int64_t b = atomic_load(&d->bottom);
  if (t >= b) return NULL;
  cf_future *f = atomic_load_explicit(&d->buf[t & d->mask], memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                               memory_order_relaxed))
    return CF__DEQUE_ABORT;
  return f;
}

/* Owner: the index the next push will use (entries pushed from now on sit
 * at this index and above, until popped). */
static inline int64_t cf__deque_bottom(cf__deque *d) {
  return atomic_load_explicit(&d->bottom, memory_order_relaxed); /* owner's own */
}

/* True if the entry at index i is at or above `base` (both from
 * cf__deque_bottom, base possibly truncated to `bits` bits). Entries below a
 * base stay within CF__DEQUE_CAP of it, so a wrapped difference can only make
 * a newer entry look older, never an older one newer. */
static inline bool cf__deque_at_or_above(int64_t i, uint64_t base, unsigned bits) {
  uint64_t m = bits >= 64 ? ~0ull : (1ull << bits) - 1;
  uint64_t d = ((uint64_t)i - base) & m;
  return d < (m >> 1) + 1; /* "non-negative" in `bits`-bit arithmetic */
}

/* Owner: pop the bottom entry only if its index is at or above `base`
 * (isolated helping: only what was pushed since a task started). */
static inline cf_future *cf__deque_pop_above(cf__deque *d, uint64_t base, unsigned bits) {
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1; /* owner's own */
  if (!cf__deque_at_or_above(b, base, bits)) return NULL;
  return cf__deque_pop(d);
}

/* Any thread: steal the top entry only if its index is at or above `base`
 * (the top is the oldest: older entries in front block newer ones). NULL
 * when empty or when the top is older, CF__DEQUE_ABORT on a lost race. */
static inline cf_future *cf__deque_steal_above(cf__deque *d, uint64_t base, unsigned bits) {
  /* seq_cst loads: as in cf__deque_steal() */
  int64_t t = atomic_load(&d->top);
  int64_t b = atomic_load(&d->bottom);
  if (t >= b || !cf__deque_at_or_above(t, base, bits)) return NULL;
  cf_future *f = atomic_load_explicit(&d->buf[t & d->mask], memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                               memory_order_relaxed))
    return CF__DEQUE_ABORT;
  return f;
}

/* Any thread: how many items (a racy estimate, never negative). */
static inline int64_t cf__deque_size(cf__deque *d) {
  /* relaxed: an estimate for stats and idle checks */
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
  int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
  return b > t ? b - t : 0;
}

/* Any thread: looks non-empty. seq_cst loads: a parking worker's re-check
 * pairs with a submitter's push (Dekker, see pool.c). */
static inline bool cf__deque_nonempty(cf__deque *d) {
  int64_t t = atomic_load(&d->top);
  int64_t b = atomic_load(&d->bottom);
  return b > t;
}

#endif /* CF_RUNTIME_DEQUE_H */
