/*
 * segment.c — create, seal, map and check the shared segment (layout in
 * segment.h).
 */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfutures.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3 */
#endif

static uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

/* The per-slot argument area: none when every argument fits in the slot. */
static uint64_t slot_arg_bytes(const cf__seg_params *p) {
  if (p->max_arg <= CF__SLOT_ARG_INLINE) return 0;
  return align_up(p->max_arg < CF__SEG_SLOT_ARG ? p->max_arg : CF__SEG_SLOT_ARG, 64);
}

/* The per-slot result area: none when every result fits in the slot. */
static uint64_t slot_res_bytes(const cf__seg_params *p) {
  if (p->max_result <= CF__SLOT_RES_INLINE) return 0;
  return align_up(p->max_result < CF__SEG_SLOT_RES ? p->max_result : CF__SEG_SLOT_RES, 64);
}

static void layout(cf__seg_header *h, const cf__seg_params *p) {
  memset(h, 0, sizeof *h);
  h->magic = CF__SEG_MAGIC;
  h->version = CF__SEG_VERSION;
  h->header_size = sizeof(cf__seg_header);
  h->ctl_size = sizeof(cf__seg_ctl);
  h->worker_size = sizeof(cf__worker_rec);
  h->slot_size = sizeof(cf__slot);
  h->nworkers = p->nworkers;
  h->nslots = p->nslots;
  h->sq_log2 = p->sq_log2;
  h->cq_log2 = p->cq_log2;
  h->max_arg = p->max_arg;
  h->max_result = p->max_result;
  h->slot_arg = slot_arg_bytes(p);
  h->slot_res = slot_res_bytes(p);
  /* big regions only when an argument can be larger than the slot's area */
  h->nbig = p->max_arg > CF__SEG_SLOT_ARG ? p->nbig : 0;
  uint64_t off = 4096; /* header alone on the first page */
  h->off_ctl = off;
  off = align_up(off + sizeof(cf__seg_ctl), 64);
  h->off_workers = off;
  off = align_up(off + (uint64_t)p->nworkers * sizeof(cf__worker_rec), 64);
  h->off_sq = off;
  off = align_up(off + (sizeof(uint64_t) << p->sq_log2), 64);
  h->off_cq = off;
  off = align_up(off + (sizeof(uint64_t) << p->cq_log2), 4096);
  h->off_slots = off;
  off = align_up(off + (uint64_t)p->nslots * sizeof(cf__slot), 4096);
  h->off_sargs = off;
  off = align_up(off + (uint64_t)p->nslots * h->slot_arg, 4096);
  h->off_sres = off;
  off = align_up(off + (uint64_t)p->nslots * h->slot_res, 4096);
  h->off_bargs = off;
  off += (uint64_t)h->nbig * align_up(p->max_arg, 4096);
  h->off_results = off;
  /* worker regions only when a result can be larger than the slot's area */
  if (p->max_result > CF__SEG_SLOT_RES)
    off += (uint64_t)p->nworkers * align_up(p->max_result, 4096);
  h->total_size = off;
}

static void bind(cf__seg *s, const cf__seg_header *h) {
  s->slot_arg = h->slot_arg;
  s->slot_res = h->slot_res;
  s->p.nbig = h->nbig;
  s->ctl = (cf__seg_ctl *)(s->base + h->off_ctl);
  s->workers = (cf__worker_rec *)(s->base + h->off_workers);
  s->sq = (_Atomic uint64_t *)(s->base + h->off_sq);
  s->cq = (_Atomic uint64_t *)(s->base + h->off_cq);
  s->slots = (cf__slot *)(s->base + h->off_slots);
  s->sargs = s->base + h->off_sargs;
  s->sres = s->base + h->off_sres;
  s->bargs = s->base + h->off_bargs;
  s->results = s->base + h->off_results;
}

int cf__seg_create(cf__seg *s, const cf__seg_params *p) {
  cf__seg_header h;
  layout(&h, p);
  memset(s, 0, sizeof *s);
  /* Not mappable executable where the kernel can seal that (6.3+); older
   * kernels refuse the flag: then only the modes forbid it. */
  int fd = memfd_create("cfutures-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
  if (fd < 0 && errno == EINVAL) {
    fd = memfd_create("cfutures-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd >= 0) (void)fchmod(fd, 0600);
  }
  if (fd < 0) return CF_ESYS;
  if (ftruncate(fd, (off_t)h.total_size) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return e == ENOMEM || e == ENOSPC || e == EFBIG ? CF_ENOMEM : CF_ESYS;
  }
  int seals = fcntl(fd, F_GET_SEALS);
  void *base = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int e = errno;
    close(fd);
    errno = e;
    return e == ENOMEM ? CF_ENOMEM : CF_ESYS;
  }
  s->base = base;
  s->size = h.total_size;
  s->fd = fd; /* no name; kept for the zygotes to come (exec.c) */
  s->p = *p;
  s->seals = seals;
  memcpy(s->base, &h, sizeof h);
  bind(s, &h);
  return 0;
}

int cf__seg_attach(cf__seg *s, int fd, const cf__seg_params *p) {
  cf__seg_header h;
  layout(&h, p);
  memset(s, 0, sizeof *s);
  s->fd = -1;
  void *base = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno == ENOMEM ? CF_ENOMEM : CF_ESYS;
  s->base = base;
  s->size = h.total_size;
  s->fd = fd;
  s->p = *p;
  bind(s, &h);
  return cf__seg_check(s);
}

int cf__seg_check(const cf__seg *s) {
  cf__seg_header want, got;
  layout(&want, &s->p);
  memcpy(&got, s->base, sizeof got);
  return memcmp(&want, &got, sizeof want) == 0 ? 0 : CF_EPROTO;
}

void cf__seg_release(const cf__seg *s, void *p, size_t len) {
  (void)s;
  /* p starts a page-aligned region that runs to a page boundary (segment.h) */
  size_t n = (len + 4095) & ~(size_t)4095;
  if (n) (void)madvise(p, n, MADV_REMOVE);
}

void cf__seg_unmap(cf__seg *s) {
  if (!s->base) return; /* never mapped: fd is not ours (a zeroed struct) */
  munmap(s->base, s->size);
  if (s->fd >= 0) close(s->fd);
  s->base = NULL;
  s->fd = -1;
}
