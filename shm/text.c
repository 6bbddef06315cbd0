/*
 * text.c — collect and check the executable ranges (text.h).
 */
#include "text.h"

#include <link.h>
#include <stdlib.h>

#include "cfutures.h"

typedef struct collect {
  cf__text_range *r;
  unsigned n, cap;
  bool oom;
} collect;

static int collect_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  collect *c = arg;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0) continue;
    if (c->n == c->cap) {
      unsigned cap = c->cap ? 2 * c->cap : 64;
      cf__text_range *r = realloc(c->r, cap * sizeof *r);
      if (!r) {
        c->oom = true;
        return 1;
      }
      c->r = r;
      c->cap = cap;
    }
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    c->r[c->n].lo = lo;
    c->r[c->n].hi = lo + ph->p_memsz;
    c->n++;
  }
  return 0;
}

static int by_lo(const void *a, const void *b) {
  uintptr_t x = ((const cf__text_range *)a)->lo, y = ((const cf__text_range *)b)->lo;
  return x < y ? -1 : x > y;
}

int cf__text_collect(cf__text *t) {
  collect c = {NULL, 0, 0, false};
  dl_iterate_phdr(collect_cb, &c);
  if (c.oom) {
    free(c.r);
    t->r = NULL;
    t->n = 0;
    return CF_ENOMEM;
  }
  qsort(c.r, c.n, sizeof *c.r, by_lo);
  t->r = c.r;
  t->n = c.n;
  return 0;
}

void cf__text_free(cf__text *t) {
  free(t->r);
  t->r = NULL;
  t->n = 0;
}

bool cf__text_contains(const cf__text *t, uintptr_t fn) {
  /* relaxed: a hint (most submits name the function the last one did) */
  unsigned k = atomic_load_explicit(&((cf__text *)t)->last, memory_order_relaxed);
  if (k < t->n && fn >= t->r[k].lo && fn < t->r[k].hi) return true;
  unsigned lo = 0, hi = t->n; /* the last range with r.lo <= fn */
  while (lo < hi) {
    unsigned mid = lo + (hi - lo) / 2;
    if (t->r[mid].lo <= fn)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0 || fn >= t->r[lo - 1].hi) return false;
  atomic_store_explicit(&((cf__text *)t)->last, lo - 1, memory_order_relaxed);
  return true;
}
