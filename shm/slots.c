/*
 * slots.c — the slot table's setup and its deadline heap (slots.h).
 */
#include "slots.h"

#include <stdlib.h>

int cf__slots_init(cf__slots *t, uint32_t n) {
  *t = (cf__slots){.n = n, .free_head = CF__NO_FREE};
  t->ps = calloc(n ? n : 1, sizeof *t->ps);
  if (!t->ps) return CF_ENOMEM;
  for (uint32_t s = n; s-- > 0;) {
    t->ps[s].next_free = t->free_head;
    t->free_head = s;
  }
  return 0;
}

void cf__slots_fini(cf__slots *t) {
  free(t->ps);
  free(t->heap);
  *t = (cf__slots){.free_head = CF__NO_FREE};
}

bool cf__slots_deadline_add(cf__slots *t, uint32_t s, int64_t when) {
  cf__assert(s < t->n && t->ps[s].in_use);
  if (t->nheap == t->heap_cap) {
    size_t cap = t->heap_cap ? 2 * t->heap_cap : 64;
    cf__deadline *h = realloc(t->heap, cap * sizeof *h);
    if (!h) return false;
    t->heap = h;
    t->heap_cap = cap;
  }
  cf__deadline d = {.when = when, .use = t->ps[s].use, .slot = s};
  size_t i = t->nheap++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (t->heap[up].when <= d.when) break;
    t->heap[i] = t->heap[up];
    i = up;
  }
  t->heap[i] = d;
  return i == 0;
}

static void heap_pop(cf__slots *t) {
  cf__deadline *h = t->heap;
  h[0] = h[--t->nheap];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->nheap && h[l].when < h[m].when) m = l;
    if (r < t->nheap && h[r].when < h[m].when) m = r;
    if (m == i) break;
    cf__deadline tmp = h[i];
    h[i] = h[m];
    h[m] = tmp;
    i = m;
  }
}

bool cf__slots_deadline_pop_due(cf__slots *t, int64_t now, uint32_t *s) {
  while (t->nheap && t->heap[0].when <= now) {
    cf__deadline d = t->heap[0];
    heap_pop(t);
    /* use, not gen: gen wraps, and a hot slot is reused very often */
    if (d.slot < t->n && t->ps[d.slot].use == d.use) {
      *s = d.slot;
      return true;
    }
  }
  return false;
}
