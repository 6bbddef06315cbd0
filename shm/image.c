/*
 * image.c — record, resolve and translate code addresses across an exec of
 * the program (image.h).
 */
#include "image.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

/* ---- the parent: record ---- */

static int collect_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  cf__image *im = arg;
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  size_t len = strlen(name);
  if (im->nmods >= CF__IMAGE_MAX_MODS || im->names_len + len + 1 > CF__IMAGE_NAMES) {
    im->truncated = 1;
    return 1;
  }
  unsigned nx = 0;
  for (int i = 0; i < info->dlpi_phnum; i++)
    nx += info->dlpi_phdr[i].p_type == PT_LOAD && (info->dlpi_phdr[i].p_flags & PF_X);
  if (nx == 0) return 0;
  if (im->nranges + nx > CF__IMAGE_MAX_RANGES) {
    im->truncated = 1;
    return 1;
  }
  uint32_t m = im->nmods++;
  im->mods[m].bias = info->dlpi_addr;
  im->mods[m].name_off = im->names_len;
  memcpy(im->names + im->names_len, name, len + 1);
  im->names_len += (uint32_t)len + 1;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    cf__image_range *r = &im->r[im->nranges++];
    r->lo = info->dlpi_addr + ph->p_vaddr;
    r->hi = r->lo + ph->p_memsz;
    r->delta = 0;
    r->mod = m;
    r->ok = 1;
  }
  return 0;
}

void cf__image_collect(cf__image *im) {
  memset(im, 0, sizeof *im);
  dl_iterate_phdr(collect_cb, im);
}

/* ---- the exec'ed zygote: resolve ---- */

typedef struct match {
  const cf__image *im;
  uint32_t mod;
  bool found;    /* a module of that name is loaded here */
  bool same;     /* ... with the same executable segments */
  uint64_t bias; /* ... at this bias */
} match;

/* Does module `info` have exactly the parent's executable segments of
 * m->mod (same virtual addresses and sizes)? */
static bool same_segments(const struct dl_phdr_info *info, const match *m) {
  const cf__image *im = m->im;
  uint64_t pbias = im->mods[m->mod].bias;
  unsigned mine = 0, theirs = 0;
  for (uint32_t k = 0; k < im->nranges; k++) theirs += im->r[k].mod == m->mod;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    mine++;
    bool seen = false;
    for (uint32_t k = 0; k < im->nranges && !seen; k++) {
      const cf__image_range *r = &im->r[k];
      seen = r->mod == m->mod && r->lo - pbias == ph->p_vaddr && r->hi - r->lo == ph->p_memsz;
    }
    if (!seen) return false;
  }
  return mine == theirs;
}

static int match_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  match *m = arg;
  const char *want = m->im->names + m->im->mods[m->mod].name_off;
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  if (strcmp(name, want) != 0) return 0;
  m->found = true;
  m->same = same_segments(info, m);
  m->bias = info->dlpi_addr;
  return 1;
}

unsigned cf__image_resolve(cf__image *im) {
  if (im->nmods > CF__IMAGE_MAX_MODS || im->nranges > CF__IMAGE_MAX_RANGES ||
      im->names_len > CF__IMAGE_NAMES || (im->names_len && im->names[im->names_len - 1]))
    return 0; /* not a record the parent made: resolve nothing */
  unsigned n = 0;
  for (uint32_t k = 0; k < im->nranges; k++) im->r[k].ok = 0;
  for (uint32_t mi = 0; mi < im->nmods; mi++) {
    if (im->mods[mi].name_off >= im->names_len) continue;
    match m = {.im = im, .mod = mi};
    dl_iterate_phdr(match_cb, &m);
    const char *name = im->names + im->mods[mi].name_off;
    if (!m.found && name[0] == '/') {
      /* dlopen()ed by the parent before the pool was made: load it here
       * too (its constructors run in the zygote, once). */
      if (dlopen(name, RTLD_NOW | RTLD_LOCAL)) dl_iterate_phdr(match_cb, &m);
    }
    if (!m.found || !m.same) continue;
    for (uint32_t k = 0; k < im->nranges; k++) {
      cf__image_range *r = &im->r[k];
      if (r->mod != mi || r->lo >= r->hi) continue;
      r->delta = (int64_t)(m.bias - im->mods[mi].bias);
      r->ok = 1;
      n++;
    }
  }
  return n;
}

uintptr_t cf__image_translate(const cf__image *im, uint64_t a) {
  for (uint32_t k = 0; k < im->nranges; k++) {
    const cf__image_range *r = &im->r[k];
    if (r->ok && a >= r->lo && a < r->hi) return (uintptr_t)(a + (uint64_t)r->delta);
  }
  return 0;
}

/* ---- the parent: can an exec of the program file work? ---- */

typedef struct main_probe {
  uintptr_t a;
  bool in;
} main_probe;

static int main_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  main_probe *mp = arg;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (mp->a >= lo && mp->a < lo + ph->p_memsz) mp->in = true;
  }
  return 1; /* the first module dl_iterate_phdr reports is the main program */
}

bool cf__image_in_main_program(uintptr_t a) {
  main_probe mp = {a, false};
  dl_iterate_phdr(main_cb, &mp);
  return mp.in;
}

/* ---- ... or a shared library the program loads at start ---- */

#define NEEDED_MAX 512

typedef struct needed {
  const char *name[NEEDED_MAX]; /* DT_NEEDED names reached from the main program */
  unsigned n;
  bool grew;
  bool first;         /* the next module reported is the main program */
  uintptr_t a;        /* the address asked about */
  const char *owner;  /* the basename of the module that holds it */
  bool owner_is_main; /* ... the main program */
} needed;

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static bool is_needed(const needed *nd, const char *name) {
  for (unsigned i = 0; i < nd->n; i++)
    if (strcmp(nd->name[i], name) == 0) return true;
  return false;
}

/* Add the DT_NEEDED entries of a module: glibc has relocated the
 * dynamic section's pointers in place (x86-64, aarch64), which the check
 * below also tolerates not having happened. */
static void add_needed(needed *nd, const struct dl_phdr_info *info) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_DYNAMIC) continue;
    const ElfW(Dyn) *d0 = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
    uintptr_t strtab = 0;
    for (const ElfW(Dyn) *d = d0; d->d_tag != DT_NULL; d++)
      if (d->d_tag == DT_STRTAB) strtab = (uintptr_t)d->d_un.d_ptr;
    if (!strtab) return;
    if (strtab < info->dlpi_addr) strtab += info->dlpi_addr;
    for (const ElfW(Dyn) *d = d0; d->d_tag != DT_NULL; d++) {
      if (d->d_tag != DT_NEEDED) continue;
      const char *name = (const char *)(strtab + d->d_un.d_val);
      if (nd->n < NEEDED_MAX && !is_needed(nd, name)) {
        nd->name[nd->n++] = name;
        nd->grew = true;
      }
    }
  }
}

static int needed_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  needed *nd = arg;
  bool is_main = nd->first;
  nd->first = false;
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (nd->a >= lo && nd->a < lo + ph->p_memsz) {
      nd->owner = base_name(name);
      nd->owner_is_main = is_main;
    }
  }
  if (is_main || (*name && is_needed(nd, base_name(name)))) add_needed(nd, info);
  return 0;
}

bool cf__image_loaded_at_start(uintptr_t a) {
  static needed nd; /* pool creation only; big for a stack */
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  memset(&nd, 0, sizeof nd);
  nd.a = a;
  do { /* to the closure: a library's own DT_NEEDED load at start too */
    nd.grew = false;
    nd.first = true;
    dl_iterate_phdr(needed_cb, &nd);
  } while (nd.grew);
  bool ok = nd.owner_is_main || (nd.owner && is_needed(&nd, nd.owner));
  pthread_mutex_unlock(&mu);
  return ok;
}
