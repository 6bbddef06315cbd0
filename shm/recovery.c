/*
 * recovery.c — deaths, breakage and the end (recovery.h).
 */
#include "recovery.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "forker.h"
#include "idle.h"
#include "settle.h"
#include "supervisor.h"
#include "sys.h"

/* mu held. Put a hint back: into the ring, or into the parent-side list
 * when the ring is full (supervisor.c retries it). */
static void repush_locked(cf__pool *p, uint32_t h) {
  cf__assert(cf__pp_locked(p));
  if (h == CF__HINT_NONE || cf__hint_slot(h) >= p->cfg.nslots) return;
  cf__seg *seg = &p->cfg.seg;
  if (p->nrepush == 0 && cf__ring_push(&seg->ctl->sq, seg->sq, seg->p.sq_log2, h) == 0) {
    cf__wake_worker(seg->ctl);
    return;
  }
  if (p->nrepush == p->repush_cap) {
    size_t cap = p->repush_cap ? 2 * p->repush_cap : 16;
    uint32_t *n = realloc(p->repush, cap * sizeof *n);
    if (!n)
      return; /* the sweep cannot find a lost hint: the task waits for the
                 next death or shutdown; rare enough (ENOMEM) to accept */
    p->repush = n;
    p->repush_cap = cap;
  }
  p->repush[p->nrepush++] = h;
}

bool cf__pp_break_locked(cf__pool *p) {
  cf__assert(cf__pp_locked(p));
  if (p->broken) return false;
  p->broken = true;
  cf__pp_doom(p);
  pthread_cond_broadcast(&p->cv);
  return true;
}

/* ---- one scan for every death ---- */

typedef struct death {
  const bool *dead;           /* dead[idx]: that worker is dead */
  const cf_crash_info *ci;    /* per dead worker index */
  uint32_t quarantine;        /* release this incarnation's quarantines; ~0: all */
  uint32_t cur_slot, cur_gen; /* one worker's death: the slot it was about to claim */
  unsigned crashed;
} death;

static void death_fn(cf__pool *p, uint32_t s, void *arg, cf__settle *st) {
  death *d = arg;
  cf__pslot *ps = &p->slots.ps[s];
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  int c = cf__pp_word_check(p, s, w);
  unsigned o = cf__st_owner(w);
  if (c == CF__W_CORRUPT) {
    cf__pp_force_fail_locked(p, s, CF_STATE_FAILED, CF_EPROTO, NULL, st);
  } else if (c == CF__W_OK && cf__st_state(w) == CF_STATE_RUNNING && d->dead[o - 1]) {
    /* counted first: the failure is visible to a reader as soon as the
     * outcome moves (inside the fail); relaxed: a statistic, ordered for
     * that reader by the move's release */
    atomic_fetch_add_explicit(&p->crashed, 1, memory_order_relaxed);
    if (!cf__pp_fail_locked(p, s, ps->gen, true, CF_STATE_FAILED, CF_ECRASHED, &d->ci[o - 1], 0,
                            st))
      atomic_fetch_sub_explicit(&p->crashed, 1, memory_order_relaxed);
  } else if (c == CF__W_OK && cf__st_done(w)) {
    cf__pp_settle_locked(p, s, st);
  } else if (c == CF__W_OK && cf__st_state(w) == CF_STATE_PENDING && s == d->cur_slot &&
             ps->gen == d->cur_gen) {
    repush_locked(p, cf__hint_make(s, cf__hint_genbits(ps->gen)));
  }
  if (ps->in_use && ps->quarantine && (d->quarantine == ~0u || ps->quarantine == d->quarantine)) {
    ps->quarantine = 0;
    (void)cf__pp_maybe_free_locked(p, s);
  }
}

/* mu held: a dead worker's record: push back what it was taking, clear the
 * rest (its result region's last result was settled by the scan). */
static void reset_record(cf__pool *p, unsigned idx) {
  cf__worker_rec *rec = &p->cfg.seg.workers[idx];
  repush_locked(p, atomic_exchange(&rec->taking, CF__HINT_NONE));
  atomic_store(&rec->cur_slot, CF__HINT_NONE);
  atomic_store(&rec->res_busy, 0);
  if (atomic_exchange(&rec->asleep, 0)) {
    /* its count in nsleep: take it back, never below 0 (nsleep is hint) */
    uint32_t n = atomic_load(&p->cfg.seg.ctl->nsleep);
    while (n && !atomic_compare_exchange_weak(&p->cfg.seg.ctl->nsleep, &n, n - 1)) {
    }
  }
  cf__wake_worker_anew(p->cfg.seg.ctl); /* it may have been woken and not run */
}

void cf__pp_on_death(cf__pool *p, unsigned idx, pid_t pid, int status) {
  cf__assert(cf__sv_is_current(p));
  bool dead[CF__MAX_WORKERS] = {false};
  cf_crash_info ci[CF__MAX_WORKERS];
  ci[idx] = (cf_crash_info){
      .pid = pid,
      .signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
      .exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
  };
  dead[idx] = true;
  cf__pp_lock(p);
  cf__pworker *w = &p->w[idx];
  if ((!w->alive && !w->spawning) || (w->pid && w->pid != pid)) {
    cf__pp_unlock(p); /* not one we know of */
    return;
  }
  if (w->alive) p->nalive--;
  if (w->spawning) p->nspawning--;
  w->alive = w->spawning = false;
  w->pid = 0;
  int64_t lived = cf__now_ns() - w->spawned_at;
  cf__worker_rec *rec = &p->cfg.seg.workers[idx];
  /* read once: untrusted, it only decides between respawn and broken */
  bool started = atomic_load(&rec->started) != 0;
  death d = {.dead = dead, .ci = ci, .quarantine = w->inc, .cur_slot = atomic_load(&rec->cur_slot)};
  if (d.cur_slot < p->cfg.nslots) d.cur_gen = p->slots.ps[d.cur_slot].gen;
  cf__pp_unlock(p);

  cf__pp_scan(p, death_fn, &d, false);

  bool newly_broken = false;
  cf__pp_lock(p);
  reset_record(p, idx);
  if (!started && ci[idx].signal != SIGKILL && !p->stopping) newly_broken = cf__pp_break_locked(p);
  if (!p->broken && !p->stopping && p->forker_up) {
    /* killed before it started (or soon after): respawn with backoff */
    w->fails = started && lived > 1000000LL ? 0 : w->fails + 1;
    int64_t at = 0;
    if (w->fails > 1) {
      int64_t b = 1000000LL << (w->fails - 2 < 10 ? w->fails - 2 : 10);
      at = cf__now_ns() + (b < 1000000000LL ? b : 1000000000LL);
    }
    atomic_fetch_add_explicit(&p->respawned, 1, memory_order_relaxed); /* statistic */
    cf__forker_spawn_locked(p, idx, at);
  }
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  if (newly_broken) cf__pp_fail_pending(p, CF_EBROKEN);
}

void cf__pp_on_forker_death(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  unsigned n = p->cfg.nworkers;
  bool dead[CF__MAX_WORKERS];
  cf_crash_info ci[CF__MAX_WORKERS];
  cf__pp_lock(p);
  for (unsigned i = 0; i < n; i++) {
    cf__pworker *w = &p->w[i];
    pid_t pid = w->pid;
    if (pid <= 0) pid = atomic_load(&p->cfg.seg.workers[i].pid);
    dead[i] = true; /* every one of them: alive, spawning or not */
    ci[i] = (cf_crash_info){.pid = pid > 0 ? pid : 0, .signal = SIGKILL, .exit_status = -1};
    w->alive = w->spawning = false;
    w->pid = 0;
  }
  p->nalive = p->nspawning = 0;
  cf__pp_unlock(p);
  death d = {.dead = dead, .ci = ci, .quarantine = ~0u, .cur_slot = CF__HINT_NONE};
  cf__pp_scan(p, death_fn, &d, false);
  cf__pp_lock(p);
  for (unsigned i = 0; i < n; i++) reset_record(p, i);
  atomic_store(&p->cfg.seg.ctl->nsleep, 0); /* every sleeper is dead */
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
}

static void pending_fn(cf__pool *p, uint32_t s, void *arg, cf__settle *st) {
  int err = *(int *)arg;
  (void)cf__pp_fail_locked(p, s, p->slots.ps[s].gen, false, CF_STATE_FAILED, err, NULL, 0, st);
}

void cf__pp_fail_pending(cf__pool *p, int err) {
  cf__pp_scan(p, pending_fn, &err, false);
}

static void remaining_fn(cf__pool *p, uint32_t s, void *arg, cf__settle *st) {
  (void)arg;
  cf__pslot *ps = &p->slots.ps[s];
  ps->quarantine = 0; /* every worker is gone */
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  int c = cf__pp_word_check(p, s, w);
  if (c == CF__W_CORRUPT) {
    cf__pp_force_fail_locked(p, s, CF_STATE_FAILED, CF_EPROTO, NULL, st);
  } else if (c == CF__W_UNPUBLISHED) {
    /* a submit that never published (it failed, and retires its slot) */
  } else if (cf__st_done(w)) {
    cf__pp_settle_locked(p, s, st);
  } else if (cf__st_state(w) == CF_STATE_RUNNING) {
    unsigned o = cf__st_owner(w);
    pid_t pid = atomic_load(&p->cfg.seg.workers[o - 1].pid);
    cf_crash_info ci = {.pid = pid > 0 ? pid : 0, .signal = SIGKILL, .exit_status = -1};
    if (p->cancelling)
      (void)cf__pp_fail_locked(p, s, ps->gen, true, CF_STATE_CANCELLED, CF_ECANCELLED, &ci, 0, st);
    else
      (void)cf__pp_fail_locked(p, s, ps->gen, true, CF_STATE_FAILED, CF_ECRASHED, &ci, 0, st);
  } else if (p->cancelling) {
    (void)cf__pp_fail_locked(p, s, ps->gen, false, CF_STATE_CANCELLED, CF_ECANCELLED, NULL, 0, st);
  } else {
    (void)cf__pp_fail_locked(p, s, ps->gen, false, CF_STATE_FAILED, CF_EBROKEN, NULL, 0, st);
  }
  if (ps->in_use) (void)cf__pp_maybe_free_locked(p, s);
}

void cf__pp_fail_remaining(cf__pool *p) {
  cf__pp_scan(p, remaining_fn, NULL, false);
}
