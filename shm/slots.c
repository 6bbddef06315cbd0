/*
 * slots.c — the slot table's setup and its deadline heap (slots.h).
 */
#include "slots.h"

#include <stdlib.h>

int cf__slots_init(cf__slots *t, uint32_t n, uint32_t nbig) {
  *t = (cf__slots){.n = n, .nfree = n, .free_head = CF__NO_FREE, .nbig = nbig, .nbig_free = nbig};
  t->ps = calloc(n ? n : 1, sizeof *t->ps);
  t->heap = calloc(n ? n : 1, sizeof *t->heap);
  t->big_free = calloc(nbig ? nbig : 1, sizeof *t->big_free);
  if (!t->ps || !t->heap || !t->big_free) {
    cf__slots_fini(t);
    return CF_ENOMEM;
  }
  for (uint32_t s = n; s-- > 0;) {
    t->ps[s].next_free = t->free_head;
    t->ps[s].heap_pos = CF__NO_HEAP;
    t->ps[s].big = CF__NO_BIG;
    t->free_head = s;
  }
  for (uint32_t r = 0; r < nbig; r++) t->big_free[r] = nbig - 1 - r; /* region 0 first */
  return 0;
}

void cf__slots_fini(cf__slots *t) {
  free(t->ps);
  free(t->heap);
  free(t->big_free);
  *t = (cf__slots){.free_head = CF__NO_FREE};
}

static inline int64_t when_at(const cf__slots *t, uint32_t i) {
  return t->ps[t->heap[i]].deadline;
}

static inline void place(cf__slots *t, uint32_t i, uint32_t s) {
  t->heap[i] = s;
  t->ps[s].heap_pos = i;
}

/* Move the entry at i up or down until the heap order holds again. */
static void fix(cf__slots *t, uint32_t i) {
  uint32_t s = t->heap[i];
  int64_t w = t->ps[s].deadline;
  while (i > 0) {
    uint32_t up = (i - 1) / 2;
    if (when_at(t, up) <= w) break;
    place(t, i, t->heap[up]);
    i = up;
  }
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    int64_t mw = w;
    if (l < t->nheap && when_at(t, l) < mw) {
      m = l;
      mw = when_at(t, l);
    }
    if (r < t->nheap && when_at(t, r) < mw) m = r;
    if (m == i) break;
    place(t, i, t->heap[m]);
    i = m;
  }
  place(t, i, s);
}

bool cf__slots_deadline_set(cf__slots *t, uint32_t s, int64_t when) {
  cf__assert(s < t->n && t->ps[s].in_use && t->ps[s].heap_pos == CF__NO_HEAP);
  cf__assert(t->nheap < t->n);
  t->ps[s].deadline = when;
  uint32_t i = t->nheap++;
  place(t, i, s);
  fix(t, i);
  return t->ps[s].heap_pos == 0;
}

void cf__slots_deadline_clear(cf__slots *t, uint32_t s) {
  cf__assert(s < t->n);
  uint32_t i = t->ps[s].heap_pos;
  if (i == CF__NO_HEAP) return;
  t->ps[s].heap_pos = CF__NO_HEAP;
  uint32_t last = t->heap[--t->nheap];
  if (i == t->nheap) return; /* it was the last entry */
  place(t, i, last);
  fix(t, i);
}

bool cf__slots_deadline_pop_due(cf__slots *t, int64_t now, uint32_t *s) {
  if (!t->nheap || when_at(t, 0) > now) return false;
  *s = t->heap[0];
  cf__slots_deadline_clear(t, *s);
  return true;
}
