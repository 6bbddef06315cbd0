/*
 * segment.h — the process pool's shared segment: layout and creation
 * (internal).
 *
 * DESIGN
 * One anonymous memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING, and MFD_NOEXEC_SEAL
 * where the kernel has it: never mappable executable), sized, sealed
 * against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
 * and mapped MAP_SHARED before the zygote starts. A forked zygote inherits
 * the mapping; an exec'ed one (exec.c) gets the fd over the zygote socket
 * and maps it itself (cf__seg_attach); the workers inherit the zygote's.
 * It never has a name in /dev/shm: nothing can outlive the last process
 * that maps it or holds the fd, even after kill -9 of the parent. The
 * parent keeps the fd (close-on-exec) for the zygotes it starts; children
 * close their copy.
 *
 *   header   magic, version, sizes and offsets (checked in every worker)
 *   ctl      ring indices, idle/wake words, supervisor wake words
 *   workers  one cf__worker_rec per worker (cache-line each)
 *   sq       submission ring cells: hints of PENDING slots
 *   cq       completion ring cells: notices (hints of done slots)
 *   slots    nslots task slots (cf__slot)
 *   sargs    per slot: an argument area of slot_arg bytes
 *   sres     per slot: a result area of slot_res bytes (a map chunk's
 *            packed results fit: the worker writes it and goes on, with no
 *            wait for the parent and no notice)
 *   bargs    nbig big argument regions of max_arg bytes (an argument over
 *            slot_arg borrows one for its task: slots.h)
 *   results  per WORKER: a result region of max_result bytes for a result
 *            over slot_res (a worker runs one task at a time; the parent
 *            copies a result out before the worker may write the next one:
 *            res_busy below)
 *
 * So the reservation grows with the slots only by small areas, and with the
 * limits only per worker: (slot + slot_arg + slot_res) x nslots + max_arg x
 * nbig + max_result x nworkers. Pages cost memory only once touched; payloads that
 * fit inside the slot never touch the areas, and the parent gives the pages
 * of a large payload back (MADV_REMOVE, cf__seg_release) once it is used.
 * Everything is addressed by offset from the segment base; every size the
 * parent uses comes from its own memory, never from the segment, which a
 * rogue worker may overwrite.
 *
 * Hints (ring values) are 32 bits: the slot index in the low CF__HINT_IDX_BITS
 * bits and the low bits of the slot generation above them. A hint is only a
 * hint: a task is claimed by the CAS on its slot word, so a stale or
 * duplicate hint is dropped by whoever takes it.
 */
#ifndef CF_SHM_SEGMENT_H
#define CF_SHM_SEGMENT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

#define CF__SEG_MAGIC 0x63667367u /* "cfsg" */
#define CF__SEG_VERSION 4u

#define CF__HINT_IDX_BITS 20 /* max_futures <= 2^20 */
#define CF__HINT_IDX_MASK ((1u << CF__HINT_IDX_BITS) - 1)
#define CF__HINT_NONE CF__RING_NONE /* also what a `taking` word holds empty */
#define CF__MAX_SLOTS ((1u << CF__HINT_IDX_BITS) - 1)

static inline uint32_t cf__hint_make(uint32_t slot, uint32_t gen) {
  return (gen << CF__HINT_IDX_BITS) | slot;
}
static inline uint32_t cf__hint_slot(uint32_t h) {
  return h & CF__HINT_IDX_MASK;
}
static inline uint32_t cf__hint_gen(uint32_t h) {
  return h >> CF__HINT_IDX_BITS;
}
static inline uint32_t cf__hint_genbits(uint32_t gen) {
  return gen & ((1u << (32 - CF__HINT_IDX_BITS)) - 1);
}

typedef struct cf__seg_header {
  uint32_t magic, version;
  uint32_t header_size, ctl_size, worker_size, slot_size;
  uint32_t nworkers, nslots, nbig;
  uint32_t sq_log2, cq_log2;
  uint32_t pad0_;
  uint64_t max_arg, max_result, slot_arg, slot_res;
  uint64_t off_ctl, off_workers, off_sq, off_cq, off_slots, off_sargs, off_sres, off_bargs;
  uint64_t off_results, total_size;
} cf__seg_header;
_Static_assert(sizeof(cf__seg_header) == 160, "segment header size is part of the format");

typedef struct cf__seg_ctl {
  cf__ring_idx sq; /* submission ring indices */
  cf__ring_idx cq; /* completion ring indices */
  /* Idle workers: sleepers count, futex word bumped to wake one (its low
   * bit: a sleeper waits on this value, idle.h). */
  alignas(64) _Atomic uint32_t nsleep;
  _Atomic uint32_t wake_seq;
  /* Supervisor: 1 while it is (about to be) asleep in poll(); a worker that
   * queued a notice exchanges it to 0 and, if it was 1, writes the eventfd.
   * cq_overflow: a notice did not fit in the cq. hungry: the parent is short
   * of free slots: workers send a notice for every completion. All three
   * are hints: the parent's sweep (supervisor.c) does not depend on them. */
  alignas(64) _Atomic uint32_t sv_sleeping;
  _Atomic uint32_t cq_overflow;
  _Atomic uint32_t hungry;
  char pad_[52];
} cf__seg_ctl;
_Static_assert(sizeof(cf__seg_ctl) == 384, "ctl size is part of the format");

/* One worker's record. Written by that worker (except res_busy, which the
 * parent clears); read by the supervisor after the worker died (its writes
 * are then complete). Untrusted: nothing in it may make the parent wait. */
typedef struct cf__worker_rec {
  _Atomic int32_t pid;
  _Atomic uint32_t taking;   /* hint being popped (CF__HINT_NONE) */
  _Atomic uint32_t cur_slot; /* slot claimed last (CF__HINT_NONE) */
  _Atomic uint32_t cur_word; /* the RUNNING word it claimed it with */
  _Atomic uint32_t asleep;   /* counted in ctl.nsleep */
  _Atomic uint32_t started;  /* set once it is past its start (initializer) */
  /* slot + 1 whose result fills this worker's result region, until the
   * parent copied it out (then 0, and a FUTEX_WAKE): a worker waits for 0
   * before it writes a result there */
  _Atomic uint32_t res_busy;
  uint32_t pad0_;
  _Atomic uint64_t completed;
  _Atomic uint64_t parks;
  char pad_[16];
} cf__worker_rec;
_Static_assert(sizeof(cf__worker_rec) == 64, "worker record: one cache line");

#define CF__SLOT_ARG_SMALL 16  /* in the slot's first cache line */
#define CF__SLOT_RES_SMALL 24  /* in the slot's first cache line */
#define CF__SLOT_ARG_INLINE 96 /* in the slot, past its first line */
#define CF__SLOT_RES_INLINE 96

/* A task slot. The parent writes fn/arg_len/big/arg before publishing the
 * slot word PENDING (release) and pushing its hint; the worker that claimed
 * it writes res_len/err (and code/msg for CF_ETASK) and the result bytes
 * before its completing CAS (release). Worker-written fields are untrusted
 * input for the parent. A small task (argument <= 16 bytes, result <= 24)
 * touches only the first cache line: one line moves between the processes,
 * twice. */
typedef struct cf__slot {
  _Atomic uint32_t word; /* the future's state word (future.h layout) */
  uint32_t arg_len;
  uint64_t fn;
  _Atomic uint32_t res_len;
  _Atomic int32_t err; /* 0, CF_ETASK, CF_E2BIG, CF_EINVAL or CF_EPROTO */
  unsigned char res_small[CF__SLOT_RES_SMALL];
  unsigned char arg_small[CF__SLOT_ARG_SMALL];
  /* second line: the deadline, a task's failure */
  _Atomic int32_t code; /* CF_ETASK: the task's code */
  _Atomic uint32_t msg_len;
  int64_t deadline; /* absolute CLOCK_MONOTONIC ns, 0: none (parent-written) */
  uint32_t big;     /* an argument over slot_arg: its big region (parent-written) */
  uint32_t timed;   /* cf_executor_time_tasks was on at submit (parent-written) */
  /* timed: CLOCK_MONOTONIC ns when the task started and returned (worker-
   * written before the completing CAS; untrusted: the parent checks that
   * submit <= start <= end <= now before it counts them) */
  int64_t t_start, t_end;
  char pad_[24];
  unsigned char arg_inline[CF__SLOT_ARG_INLINE];
  unsigned char res_inline[CF__SLOT_RES_INLINE];
  char msg[128];
} cf__slot;
_Static_assert(sizeof(cf__slot) == 448, "slot size is part of the format");
_Static_assert(offsetof(cf__slot, code) == 64, "slot header: one cache line");

/* Per-slot argument area, at most (a larger max_arg_size uses big regions). */
#define CF__SEG_SLOT_ARG 4096
/* Per-slot result area, at most (a larger result uses the worker's region):
 * a map chunk of 256 eight-byte results is 6160 bytes (map.c). */
#define CF__SEG_SLOT_RES 8192
/* Payload pages kept after use, per area; past it they are given back. */
#define CF__SEG_KEEP_ARG ((size_t)64 * 1024)
#define CF__SEG_KEEP_RESULT ((size_t)1024 * 1024)

/* Parameters of a segment, from the pool options (already validated). */
typedef struct cf__seg_params {
  uint32_t nworkers, nslots, nbig, sq_log2, cq_log2;
  uint64_t max_arg, max_result;
} cf__seg_params;

/* The parent's view: base and trusted copies of the layout. */
typedef struct cf__seg {
  unsigned char *base;
  size_t size;
  int fd; /* the memfd while mapped (parent), else -1 */
  cf__seg_params p;
  uint64_t slot_arg; /* per-slot argument area bytes */
  uint64_t slot_res; /* per-slot result area bytes */
  cf__seg_ctl *ctl;
  cf__worker_rec *workers;
  _Atomic uint64_t *sq, *cq;
  cf__slot *slots;
  unsigned char *sargs, *sres, *bargs, *results;
  int seals; /* the memfd's seals (F_GET_SEALS) when it was mapped */
} cf__seg;

/* Create, size, seal and map a segment: 0, CF_ENOMEM, CF_ESYS. */
int cf__seg_create(cf__seg *s, const cf__seg_params *p);
/* Map the segment of memfd `fd` made by cf__seg_create with the same
 * params (in an exec'ed zygote) and check its header: 0, CF_ENOMEM,
 * CF_ESYS, CF_EPROTO. Keeps fd in s->fd. */
int cf__seg_attach(cf__seg *s, int fd, const cf__seg_params *p);
/* Check that the header matches what this program expects: 0 or CF_EPROTO. */
int cf__seg_check(const cf__seg *s);
/* Unmap, and close the fd if it is held. */
void cf__seg_unmap(cf__seg *s);
/* Give the pages of [p, p + len) back (MADV_REMOVE: they read as zeros and
 * cost nothing until touched again). p: a big argument or result region
 * (page-aligned, page-sized). Parent, on a region nobody uses. */
void cf__seg_release(const cf__seg *s, void *p, size_t len);

static inline cf__slot *cf__seg_slot(const cf__seg *s, uint32_t slot) {
  return &s->slots[slot];
}
static inline unsigned char *cf__seg_slot_arg_area(const cf__seg *s, uint32_t slot) {
  return s->sargs + (uint64_t)slot * s->slot_arg;
}
static inline unsigned char *cf__seg_slot_res_area(const cf__seg *s, uint32_t slot) {
  return s->sres + (uint64_t)slot * s->slot_res;
}
static inline unsigned char *cf__seg_big_arg_area(const cf__seg *s, uint32_t region) {
  return s->bargs + (uint64_t)region * ((s->p.max_arg + 4095) & ~(uint64_t)4095);
}
static inline unsigned char *cf__seg_res_area(const cf__seg *s, uint32_t worker) {
  return s->results + (uint64_t)worker * ((s->p.max_result + 4095) & ~(uint64_t)4095);
}

/* Where a slot's argument of `len` bytes lives (len within the pool's
 * limits: the caller checked it). `big`: the slot's big region (the parent
 * passes its own record; a worker the slot's, bounds-checked: NULL if out
 * of range). */
static inline unsigned char *cf__slot_arg(const cf__seg *s, cf__slot *sl, uint32_t slot, size_t len,
                                          uint32_t big) {
  if (len <= CF__SLOT_ARG_SMALL) return sl->arg_small;
  if (len <= CF__SLOT_ARG_INLINE) return sl->arg_inline;
  if (len <= s->slot_arg) return cf__seg_slot_arg_area(s, slot);
  return big < s->p.nbig ? cf__seg_big_arg_area(s, big) : NULL;
}
/* Does a result of `len` bytes go into its worker's result region? */
static inline bool cf__res_in_region(const cf__seg *s, size_t len) {
  return len > CF__SLOT_RES_INLINE && len > s->slot_res;
}
/* Where the result of `len` bytes of slot `slot`'s task run by `worker`
 * lives (len within max_result: the caller checked it). */
static inline unsigned char *cf__slot_res(const cf__seg *s, cf__slot *sl, uint32_t slot,
                                          uint32_t worker, size_t len) {
  if (len <= CF__SLOT_RES_SMALL) return sl->res_small;
  if (len <= CF__SLOT_RES_INLINE) return sl->res_inline;
  if (len <= s->slot_res) return cf__seg_slot_res_area(s, slot);
  return cf__seg_res_area(s, worker);
}

#endif /* CF_SHM_SEGMENT_H */
