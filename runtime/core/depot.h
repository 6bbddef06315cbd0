/*
 * depot.h — a bounded exchange of whole chains between threads (internal):
 * the per-thread future caches' transfer point (fcache.h).
 *
 * DESIGN
 * CF__DEPOT_SLOTS slots, each holding one opaque pointer (a chain the
 * caller built: the depot never follows it) or NULL. A put is a CAS of an
 * empty slot from NULL to the chain; a take is an exchange of a full slot to
 * NULL. No ABA: nothing pops one node off a shared list, so a chain that
 * leaves and comes back (the same pointer) is simply a new put. `n` counts
 * the full slots so that an empty depot costs a take one load and a full
 * one costs a put one load, not a scan; it is a hint (relaxed): the slot's
 * own CAS or exchange decides, and n may lag it by the operations in flight.
 * A put that finds every slot full returns false and the caller keeps (or
 * frees) its chain: the depot bounds what it holds.
 *
 * Memory order: a put's CAS is a release and a take's exchange an acquire,
 * so whatever the putter wrote into the chain before the put (its links,
 * the objects' fields) is visible to the taker.
 *
 * Roles: any thread, any number at once.
 */
#ifndef CF_RUNTIME_DEPOT_H
#define CF_RUNTIME_DEPOT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "sys.h"

#define CF__DEPOT_SLOTS 16

typedef struct cf__depot {
  alignas(CF__CACHE_LINE) _Atomic(void *) slot[CF__DEPOT_SLOTS];
  alignas(CF__CACHE_LINE) _Atomic unsigned n; /* full slots (a hint) */
} cf__depot;

/* Hand `chain` (not NULL) over; false when every slot is full. */
static inline bool cf__depot_put(cf__depot *d, void *chain) {
  if (atomic_load_explicit(&d->n, memory_order_relaxed) >= CF__DEPOT_SLOTS) return false;
  for (unsigned i = 0; i < CF__DEPOT_SLOTS; i++) {
    void *expect = NULL;
    if (atomic_load_explicit(&d->slot[i], memory_order_relaxed)) continue;
    /* release: pairs with the acquire exchange in cf__depot_take() */
    if (atomic_compare_exchange_strong_explicit(&d->slot[i], &expect, chain, memory_order_release,
                                                memory_order_relaxed)) {
      atomic_fetch_add_explicit(&d->n, 1, memory_order_relaxed);
      return true;
    }
  }
  return false;
}

/* A chain some put handed over (each put's chain is taken once), or NULL. */
static inline void *cf__depot_take(cf__depot *d) {
  if (atomic_load_explicit(&d->n, memory_order_relaxed) == 0) return NULL;
  for (unsigned i = 0; i < CF__DEPOT_SLOTS; i++) {
    if (!atomic_load_explicit(&d->slot[i], memory_order_relaxed)) continue;
    /* acquire: pairs with the release CAS in cf__depot_put() */
    void *chain = atomic_exchange_explicit(&d->slot[i], NULL, memory_order_acquire);
    if (chain) {
      atomic_fetch_sub_explicit(&d->n, 1, memory_order_relaxed);
      return chain;
    }
  }
  return NULL;
}

#endif /* CF_RUNTIME_DEPOT_H */
