/*
 * fnref.c — the module table and address translation (design in fnref.h).
 */
#include "fnref.h"

#include <elf.h>
#include <link.h>
#include <string.h>

#include "cfutures.h"

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void read_build_id(const struct dl_phdr_info *info, cf__mod *m) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      size_t name = (nh->n_namesz + 3) & ~3u, desc = (nh->n_descsz + 3) & ~3u;
      const unsigned char *d = p + sizeof *nh + name;
      if (d + desc > end) break;
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
          memcmp(p + sizeof *nh, "GNU", 4) == 0) {
        m->id_len = nh->n_descsz < sizeof m->id ? nh->n_descsz : sizeof m->id;
        memcpy(m->id, d, m->id_len);
        return;
      }
      p = d + desc;
    }
  }
}

static int mod_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  cf__modtab *t = arg;
  if (t->n >= CF__MPI_MAX_MODS) return 1;
  cf__mod *m = &t->m[t->n];
  memset(m, 0, sizeof *m);
  m->base = info->dlpi_addr;
  m->lo = UINTPTR_MAX;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if (lo < m->lo) m->lo = lo;
    if (hi > m->hi) m->hi = hi;
    if ((ph->p_flags & PF_X) && m->nx < CF__MPI_MAX_XRANGES) {
      m->xlo[m->nx] = lo;
      m->xhi[m->nx] = hi;
      m->nx++;
    }
  }
  if (m->lo == UINTPTR_MAX) return 0; /* nothing loaded */
  m->name_hash = fnv1a(info->dlpi_name ? info->dlpi_name : "");
  read_build_id(info, m);
  t->n++;
  return 0;
}

void cf__modtab_build(cf__modtab *t) {
  t->n = 0;
  dl_iterate_phdr(mod_cb, t);
}

void cf__modtab_records(const cf__modtab *t, cf__modrec *out) {
  for (unsigned i = 0; i < t->n; i++) {
    memset(&out[i], 0, sizeof out[i]);
    out[i].name_hash = t->m[i].name_hash;
    out[i].span = t->m[i].hi - t->m[i].lo;
    out[i].id_len = t->m[i].id_len;
    memcpy(out[i].id, t->m[i].id, sizeof out[i].id);
  }
}

/* Up to 8 bytes of code at addr that stay inside its executable range. */
static uint64_t code_bytes(uintptr_t addr, uintptr_t hi) {
  uint64_t v = 0;
  size_t n = hi - addr < 8 ? hi - addr : 8;
  memcpy(&v, (const void *)addr, n);
  return v;
}

static int find_x(const cf__mod *m, uintptr_t a) {
  for (unsigned k = 0; k < m->nx; k++)
    if (a >= m->xlo[k] && a < m->xhi[k]) return (int)k;
  return -1;
}

int cf__addr_encode(const cf__modtab *t, uintptr_t addr, bool exec, cf__fnref *out) {
  for (unsigned i = 0; i < t->n; i++) {
    const cf__mod *m = &t->m[i];
    if (addr < m->lo || addr >= m->hi) continue;
    out->mod = (uint16_t)i;
    out->off = addr - m->base;
    out->check = 0;
    if (!exec) return 0;
    int k = find_x(m, addr);
    if (k < 0) return CF_ENOTLOADED;
    out->check = code_bytes(addr, m->xhi[k]);
    return 0;
  }
  return CF_ENOTLOADED;
}

void cf__modmap_build(const cf__modtab *local, const cf__modrec *remote, unsigned n, int16_t *map) {
  for (unsigned i = 0; i < n; i++) {
    map[i] = -1;
    for (unsigned j = 0; j < local->n; j++) {
      const cf__mod *m = &local->m[j];
      bool same;
      if (remote[i].id_len && m->id_len)
        same = remote[i].id_len == m->id_len && memcmp(remote[i].id, m->id, m->id_len) == 0 &&
               remote[i].name_hash == m->name_hash;
      else
        same = !remote[i].id_len && !m->id_len && remote[i].name_hash == m->name_hash &&
               remote[i].span == m->hi - m->lo;
      if (same) {
        map[i] = (int16_t)j;
        break;
      }
    }
  }
}

uintptr_t cf__addr_decode(const cf__modtab *local, const int16_t *map, unsigned nmap,
                          const cf__fnref *r, bool exec) {
  if (r->mod >= nmap || map[r->mod] < 0) return 0;
  const cf__mod *m = &local->m[map[r->mod]];
  if (r->off > m->hi - m->base) return 0;
  uintptr_t a = m->base + r->off;
  if (a < m->lo || a >= m->hi) return 0;
  if (!exec) return a;
  int k = find_x(m, a);
  if (k < 0 || code_bytes(a, m->xhi[k]) != r->check) return 0;
  return a;
}

uint64_t cf__fnref_check_packed(const cf__modtab *t, uint64_t packed) {
  unsigned mod = (unsigned)(packed >> 48);
  if (mod >= t->n) return 0;
  const cf__mod *m = &t->m[mod];
  uintptr_t a = m->base + (packed & ((1ull << 48) - 1));
  int k = find_x(m, a);
  return k < 0 ? 0 : code_bytes(a, m->xhi[k]);
}
