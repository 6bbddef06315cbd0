/*
 * settle.c — failing, settling and freeing slots from the parent
 * (settle.h).
 */
#include "settle.h"

#include <limits.h>
#include <signal.h>
#include <string.h>

#include "callbacks.h"
#include "forker.h"
#include "registry.h"
#include "slot_future.h"
#include "sys.h"

int cf__pp_word_check(cf__pool *p, uint32_t s, uint32_t w) {
  const cf__pslot *ps = &p->slots.ps[s];
  uint32_t state = cf__st_state(w), gen = cf__st_gen(w);
  unsigned owner = cf__st_owner(w);
  if (gen == ps->gen) {
    if (state == CF_STATE_PENDING) return owner == 0 ? CF__W_OK : CF__W_CORRUPT;
    if (state == CF_STATE_RUNNING)
      return owner >= 1 && owner <= p->cfg.nworkers ? CF__W_OK : CF__W_CORRUPT;
    return state <= CF_STATE_CANCELLED ? CF__W_OK : CF__W_CORRUPT;
  }
  /* the word of the last use (done), or of a slot never used (0), until the
   * submitter's PENDING store */
  if (gen == cf__slots_prev_gen(ps->gen) &&
      ((state >= CF_STATE_FINISHED && state <= CF_STATE_CANCELLED) || w == 0))
    return CF__W_UNPUBLISHED;
  return CF__W_CORRUPT;
}

void cf__pp_hungry_update(cf__pool *p) {
  cf__assert(cf__pp_locked(p));
  /* Only a submitter blocked on cv needs every completion noticed: one
   * that finds no free slot reclaims done ones itself (cf__pp_reclaim_locked)
   * and waits on a running task's word, which needs no notice. */
  bool hungry = p->free_waiters > 0;
  _Atomic uint32_t *h = &p->cfg.seg.ctl->hungry;
  /* relaxed: a hint the workers poll (the sweep does not rely on it) */
  if (hungry != (atomic_load_explicit(h, memory_order_relaxed) != 0))
    atomic_store_explicit(h, hungry, memory_order_relaxed);
}

bool cf__pp_maybe_free_locked(cf__pool *p, uint32_t s) {
  cf__assert(cf__pp_locked(p));
  cf__pslot *ps = &p->slots.ps[s];
  if (!ps->in_use || ps->f || ps->quarantine) return false;
  /* acquire: pairs with the completing CAS, so that the slot's last use
   * (the worker's writes) happens before its next one */
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  if (!cf__st_done(w) || cf__st_gen(w) != ps->gen) return false;
  if (ps->big != CF__NO_BIG) {
    if (ps->arg_len > CF__SEG_KEEP_ARG)
      cf__seg_release(&p->cfg.seg, cf__seg_big_arg_area(&p->cfg.seg, ps->big), ps->arg_len);
    cf__slots_big_give(&p->slots, ps->big);
    ps->big = CF__NO_BIG;
  }
  cf__slots_free(&p->slots, s);
  cf__pp_hungry_update(p);
  if (p->free_waiters) pthread_cond_broadcast(&p->cv);
  return true;
}

void cf__pp_settle_locked(cf__pool *p, uint32_t s, cf__settle *st) {
  cf__assert(cf__pp_locked(p));
  cf__pslot *ps = &p->slots.ps[s];
  _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
  /* acquire: pairs with the completing CAS (the outcome written before) */
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  cf__assert(ps->in_use && cf__st_done(w) && cf__st_gen(w) == ps->gen);
  cf_future *f = ps->f;
  cf__slot_outcome_move(p, s, f, w); /* f NULL: an orphan: only let go of it */
  ps->f = NULL;
  if (f && ps->watched) {
    st->f = f; /* the pool's reference moves to st */
    ps->watched = 0;
  }
  /* Before the slot can be reused: its completer may have died before its
   * own wake (settle.h DESIGN, step 2). */
  if (w & CF__ST_WAITERS) cf__futex_wake(word, INT_MAX, true);
  (void)cf__pp_maybe_free_locked(p, s);
}

void cf__pp_settle_finish(cf__pool *p, cf__settle *st, bool inline_cbs) {
  cf__assert(!cf__pp_locked(p));
  cf_future *f = st->f;
  if (!f) return;
  st->f = NULL;
  cf__cb *user = cf__future_take_callbacks(f, true); /* internal ones run here */
  if (!user) {
    cf__future_unref(f);
  } else if (inline_cbs) {
    cf__future_run_cb_list(f, user);
    cf__future_unref(f);
  } else {
    cf__cb_enqueue(p, f, user); /* takes the reference */
  }
}

/* The crash info of a task whose worker (owner) the parent kills now. */
static cf_crash_info killed_info(cf__pool *p, unsigned owner, int signo) {
  pid_t pid = p->w[owner - 1].pid;
  /* The pid may not be known yet (SPAWNED not read): the worker wrote its own
   * before its first claim (worker.c; published by the claim's release). */
  if (pid <= 0)
    pid = atomic_load_explicit(&p->cfg.seg.workers[owner - 1].pid, memory_order_relaxed);
  return (cf_crash_info){.pid = pid > 0 ? pid : 0, .signal = signo, .exit_status = -1};
}

bool cf__pp_fail_locked(cf__pool *p, uint32_t s, uint32_t gen, bool running_too, uint32_t to,
                        int err, const cf_crash_info *ci, int signo, cf__settle *st) {
  cf__assert(cf__pp_locked(p) && !cf__executor_foreign(&p->base));
  cf__assert(to == CF_STATE_FAILED || to == CF_STATE_CANCELLED);
  memset(st, 0, sizeof *st);
  cf__pslot *ps = &p->slots.ps[s];
  if (!ps->in_use || ps->gen != gen) return false;
  _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  unsigned owner;
  for (;;) {
    uint32_t state = cf__st_state(w);
    if (cf__pp_word_check(p, s, w) != CF__W_OK) return false;
    if (state != CF_STATE_PENDING && !(state == CF_STATE_RUNNING && running_too)) return false;
    owner = state == CF_STATE_RUNNING ? cf__st_owner(w) : 0;
    /* The outcome is recorded before the CAS; it is read under mu. A CAS
     * that loses leaves these fields unused (the winner's word has an
     * owner, or is CANCELLED by the parent, which recorded its own). */
    ps->err = err;
    if (owner)
      ps->crash = ci ? *ci : killed_info(p, owner, signo ? signo : SIGKILL);
    else
      ps->crash = (cf_crash_info){.pid = 0, .signal = 0, .exit_status = -1};
    uint32_t nw = cf__st_make(gen, 0, to) | (w & (CF__ST_WAITERS | CF__ST_NOTIFY | CF__ST_STOP));
    /* acq_rel: release orders the done word after our reads of the slot;
     * acquire pairs with the worker's claim (nothing else to read) */
    if (atomic_compare_exchange_weak_explicit(word, &w, nw, memory_order_acq_rel,
                                              memory_order_acquire))
      break;
  }
  if (owner && signo) {
    /* The worker may still write into the slot until it is reaped. */
    cf__pworker *pw = &p->w[owner - 1];
    ps->quarantine = pw->inc;
    cf__forker_send(p, CF__Z_KILL, (int)owner - 1, pw->pid, signo);
  }
  cf__pp_settle_locked(p, s, st);
  return true;
}

void cf__pp_force_fail_locked(cf__pool *p, uint32_t s, uint32_t to, int err,
                              const cf_crash_info *ci, cf__settle *st) {
  cf__assert(cf__pp_locked(p));
  memset(st, 0, sizeof *st);
  cf__pslot *ps = &p->slots.ps[s];
  cf__assert(ps->in_use);
  _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
  ps->err = err;
  ps->crash = ci ? *ci : (cf_crash_info){.pid = 0, .signal = 0, .exit_status = -1};
  /* seq_cst: whatever a rogue wrote, this is the use's final word */
  (void)atomic_exchange(word, cf__st_make(ps->gen, 0, to));
  cf__futex_wake(word, INT_MAX, true); /* the old word's flags mean nothing */
  cf__pp_settle_locked(p, s, st);
}

bool cf__pp_settle_if_done_locked(cf__pool *p, uint32_t s, cf__settle *st) {
  cf__assert(cf__pp_locked(p) && p->slots.ps[s].in_use);
  /* acquire: pairs with the completing CAS (the outcome written before) */
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  int c = cf__pp_word_check(p, s, w);
  if (c == CF__W_CORRUPT) {
    cf__pp_force_fail_locked(p, s, CF_STATE_FAILED, CF_EPROTO, NULL, st);
    return true;
  }
  if (c != CF__W_OK || !cf__st_done(w)) return false; /* unpublished, queued or running */
  cf__pp_settle_locked(p, s, st);
  return true;
}

unsigned cf__pp_reclaim_locked(cf__pool *p, cf__settle *st, unsigned max, uint32_t *run_slot,
                               uint32_t *run_gen) {
  cf__assert(cf__pp_locked(p));
  uint32_t n = p->cfg.nslots;
  unsigned got = 0;
  *run_slot = UINT32_MAX;
  for (uint32_t k = 0; k < n && got < max; k++) {
    uint32_t s = p->reclaim_pos;
    p->reclaim_pos = s + 1 == n ? 0 : s + 1;
    if (!p->slots.ps[s].in_use) continue;
    /* acquire: as in cf__pp_settle_if_done_locked, which looks again */
    uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
    if (!cf__st_done(w)) {
      if (*run_slot == UINT32_MAX && cf__st_state(w) == CF_STATE_RUNNING &&
          cf__st_gen(w) == p->slots.ps[s].gen) {
        *run_slot = s;
        *run_gen = p->slots.ps[s].gen;
      }
      continue;
    }
    st[got] = (cf__settle){NULL};
    /* a done word of the previous generation: a submit that has not
     * published this use yet (another thread's, mu released) */
    if (cf__pp_settle_if_done_locked(p, s, &st[got])) got++;
  }
  return got;
}

void cf__pp_order_push_locked(cf__pool *p, uint32_t s, uint32_t gen) {
  cf__assert(cf__pp_locked(p));
  uint32_t n = p->cfg.nslots;
  if (p->order_len == n) {
    /* full: stale entries (slots settled by a read, a cancel, the sweep)
     * are in it; drop the oldest. Were it live, its slot is still settled
     * by those paths or a full submit's scan (cf__pp_reclaim_locked). */
    p->order_head = p->order_head + 1 == n ? 0 : p->order_head + 1;
    p->order_len--;
  }
  uint32_t at = p->order_head + p->order_len;
  p->order[at >= n ? at - n : at] = (uint64_t)gen << 32 | s;
  p->order_len++;
}

unsigned cf__pp_reclaim_oldest_locked(cf__pool *p, cf__settle *st, unsigned max) {
  cf__assert(cf__pp_locked(p));
  uint32_t n = p->cfg.nslots;
  unsigned got = 0;
  while (p->order_len && got < max) {
    uint64_t e = p->order[p->order_head];
    uint32_t s = (uint32_t)e, gen = (uint32_t)(e >> 32);
    cf__pslot *ps = &p->slots.ps[s];
    if (ps->in_use && ps->gen == gen) {
      /* The oldest is queued or running (so, mostly, is the rest), or not
       * published yet: the submit that pushed it (this one, when every
       * older entry is gone) publishes its PENDING word after mu is
       * released, and until then the slot holds the previous use's done
       * word. Taken for done, the entry would be dropped unsettled, and
       * its slot left to the full submit's scan (cf__pp_reclaim_locked). */
      st[got] = (cf__settle){NULL};
      if (!cf__pp_settle_if_done_locked(p, s, &st[got])) break;
      got++;
    }
    p->order_head = p->order_head + 1 == n ? 0 : p->order_head + 1;
    p->order_len--;
  }
  return got;
}

void cf__pp_settle(cf__pool *p, uint32_t s, uint32_t genbits) {
  if (s >= p->cfg.nslots) return; /* untrusted hint */
  cf__settle st = {NULL};
  cf__pp_lock(p);
  cf__pslot *ps = &p->slots.ps[s];
  if (ps->in_use && (genbits == CF__GEN_ANY || cf__hint_genbits(ps->gen) == genbits))
    cf__pp_settle_if_done_locked(p, s, &st);
  cf__pp_unlock(p);
  cf__pp_settle_finish(p, &st, false);
}

#define SCAN_BATCH 64

void cf__pp_scan(cf__pool *p, cf__pp_scan_fn fn, void *arg, bool inline_cbs) {
  cf__settle st[SCAN_BATCH];
  for (uint32_t base = 0; base < p->cfg.nslots; base += SCAN_BATCH) {
    uint32_t end = base + SCAN_BATCH < p->cfg.nslots ? base + SCAN_BATCH : p->cfg.nslots;
    cf__pp_lock(p);
    for (uint32_t s = base; s < end; s++) {
      st[s - base].f = NULL;
      if (p->slots.ps[s].in_use) fn(p, s, arg, &st[s - base]);
    }
    cf__pp_unlock(p);
    for (uint32_t s = base; s < end; s++) cf__pp_settle_finish(p, &st[s - base], inline_cbs);
  }
}
