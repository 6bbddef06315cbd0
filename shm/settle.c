/*
 * settle.c — failing, settling and freeing slots from the parent
 * (settle.h).
 */
#include "settle.h"

#include <signal.h>
#include <string.h>

#include "protocol.h"
#include "registry.h"

bool cf__pp_maybe_free_locked(cf__pool *p, uint32_t s) {
  cf__assert(cf__pp_locked(p));
  cf__pslot *ps = &p->slots.ps[s];
  if (!ps->in_use || ps->f || ps->quarantine) return false;
  /* acquire: pairs with the completing CAS, so that the slot's last use
   * (the worker's writes) happens before its next one */
  if (!cf__st_done(atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire)))
    return false;
  cf__slots_free(&p->slots, s);
  if (p->free_waiters) pthread_cond_broadcast(&p->cv);
  return true;
}

void cf__pp_settle_locked(cf__pool *p, uint32_t s, cf__settle *st) {
  cf__assert(cf__pp_locked(p));
  cf__pslot *ps = &p->slots.ps[s];
  if (ps->watched && ps->f) {
    st->f = ps->f; /* the pool's reference moves to st */
    ps->watched = 0;
  }
  if (ps->orphan) st->freed = cf__pp_maybe_free_locked(p, s);
}

void cf__pp_settle_finish(cf__pool *p, cf__settle *st) {
  cf__assert(!cf__pp_locked(p));
  if (st->wake) cf__future_wake(st->word, st->old, true);
  if (st->f) {
    cf__future_run_callbacks(st->f);
    cf__future_unref(st->f);
  }
  if (st->freed) cf__pp_unref(p);
}

bool cf__pp_fail_locked(cf__pool *p, uint32_t s, uint32_t gen, bool running_too, uint32_t to,
                        int err, const cf_crash_info *ci, bool dead, cf__settle *st) {
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
    if (cf__st_gen(w) != gen) return false;
    if (state != CF_STATE_PENDING && !(state == CF_STATE_RUNNING && running_too)) return false;
    owner = state == CF_STATE_RUNNING ? cf__st_owner(w) : 0;
    if (owner > p->cfg.nworkers) owner = 0; /* a scribbled word: nobody to kill */
    /* The outcome is recorded before the CAS; readers lock mu. A CAS that
     * loses leaves these fields unused (the winner's word has an owner, or
     * is CANCELLED, which records nothing). */
    ps->err = err;
    if (owner) {
      ps->crash =
          ci ? *ci
             : (cf_crash_info){.pid = p->w[owner - 1].pid, .signal = SIGKILL, .exit_status = -1};
    } else {
      ps->crash = (cf_crash_info){.pid = 0, .signal = 0, .exit_status = -1};
    }
    uint32_t nw = cf__st_make(gen, 0, to) | (w & (CF__ST_WAITERS | CF__ST_NOTIFY | CF__ST_STOP));
    /* acq_rel: release orders the done word after our reads of the slot;
     * acquire pairs with the worker's claim (nothing else to read) */
    if (atomic_compare_exchange_weak_explicit(word, &w, nw, memory_order_acq_rel,
                                              memory_order_acquire))
      break;
  }
  st->word = word;
  st->old = w;
  st->wake = true;
  if (owner && !dead) {
    /* The worker may still write into the slot until it is reaped. */
    ps->quarantine = (uint8_t)owner;
    cf__zsend(p->cfg.sock, CF__Z_KILL, (int)owner - 1, p->w[owner - 1].pid, SIGKILL);
  }
  cf__pp_settle_locked(p, s, st);
  return true;
}
