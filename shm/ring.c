/*
 * ring.c — the crash-tolerant MPMC ring; the algorithm is described in
 * ring.h. Every atomic here is seq_cst (see ring.h for why).
 */
#include "ring.h"

#include "cfutures.h"

/* Legitimate contention retries a handful of times; only cells or indices
 * scribbled over by a rogue process can make a caller loop this long. */
#define RING_MAX_RETRIES (1u << 22)

static inline uint32_t cell_seq(uint64_t c) {
  return (uint32_t)(c >> 32);
}
static inline uint64_t cell_make(uint32_t seq, uint32_t v) {
  return ((uint64_t)seq << 32) | v;
}

/* Move an index from i to i + 1 unless someone did already. */
static inline void help_advance(_Atomic uint64_t *idx, uint64_t i) {
  atomic_compare_exchange_strong(idx, &i, i + 1);
}

int cf__ring_push(cf__ring_idx *r, _Atomic uint64_t *cells, unsigned log2cap, uint32_t v) {
  const uint64_t mask = ((uint64_t)1 << log2cap) - 1;
  for (unsigned spins = 0; spins < RING_MAX_RETRIES; spins++) {
    uint64_t t = atomic_load(&r->tail);
    _Atomic uint64_t *cell = &cells[t & mask];
    uint64_t c = atomic_load(cell);
    uint32_t want = (uint32_t)(t >> log2cap) * 2u;
    int32_t d = (int32_t)(cell_seq(c) - want);
    if (d == 0) {
      if (atomic_compare_exchange_strong(cell, &c, cell_make(want + 1, v))) {
        help_advance(&r->tail, t);
        return 0;
      }
    } else if (d > 0) {
      /* Index t was filled already (d == 1), and maybe consumed too (d ==
       * 2) while its producer stalled before advancing tail: tail lags, help
       * it on. If t itself was stale the CAS fails and we reload. */
      help_advance(&r->tail, t);
    } else {
      /* Still full from the previous lap: full, unless t is stale. */
      if (atomic_load(&r->tail) == t) return CF_EAGAIN;
    }
  }
  return CF_EPROTO;
}

int cf__ring_pop(cf__ring_idx *r, _Atomic uint64_t *cells, unsigned log2cap, uint32_t *out,
                 _Atomic uint32_t *taking) {
  const uint64_t mask = ((uint64_t)1 << log2cap) - 1;
  for (unsigned spins = 0; spins < RING_MAX_RETRIES; spins++) {
    uint64_t h = atomic_load(&r->head);
    _Atomic uint64_t *cell = &cells[h & mask];
    uint64_t c = atomic_load(cell);
    uint32_t want = (uint32_t)(h >> log2cap) * 2u + 1u;
    int32_t d = (int32_t)(cell_seq(c) - want);
    if (d == 0) {
      if (taking) atomic_store(taking, (uint32_t)c);
      if (atomic_compare_exchange_strong(cell, &c, cell_make(want + 1, 0))) {
        help_advance(&r->head, h);
        *out = (uint32_t)c;
        return 0;
      }
      /* another consumer took it: a word left naming it would have the
       * value put back when this process is reaped (a phantom task) */
      if (taking) atomic_store(taking, CF__RING_NONE);
    } else if (d > 0) {
      /* Index h was emptied already (d == 1), and maybe refilled for the
       * next lap (d == 2) while its consumer stalled before advancing head:
       * head lags, help it on; a stale h makes the CAS fail and we reload. */
      help_advance(&r->head, h);
    } else {
      /* Not filled for this lap yet: empty, unless h is stale. */
      if (atomic_load(&r->head) == h) return CF_EAGAIN;
    }
  }
  return CF_EPROTO;
}

uint64_t cf__ring_count(cf__ring_idx *r) {
  uint64_t h = atomic_load(&r->head);
  uint64_t t = atomic_load(&r->tail);
  return t > h ? t - h : 0;
}
