/*
 * text.c — collect and check the executable ranges (text.h).
 */
#include "text.h"

#include <link.h>

static int collect_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  cf__text *t = arg;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    if (t->n >= CF__MAX_TEXT_RANGES) return 1;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    t->r[t->n].lo = lo;
    t->r[t->n].hi = lo + ph->p_memsz;
    t->n++;
  }
  return 0;
}

void cf__text_collect(cf__text *t) {
  t->n = 0;
  dl_iterate_phdr(collect_cb, t);
}

bool cf__text_contains(const cf__text *t, uintptr_t fn) {
  for (unsigned i = 0; i < t->n; i++)
    if (fn >= t->r[i].lo && fn < t->r[i].hi) return true;
  return false;
}
