/*
 * supervisor.c — the process pool's supervisor thread (in the parent).
 *
 * DESIGN
 * One thread per pool. It starts the zygote (forker.c) and then loops on
 * poll() over three fds:
 *   - the zygote socket: SPAWNED / SPAWN_FAILED / DIED reports (and
 *     POLLOUT while messages wait in the outbox);
 *   - the zygote's pidfd: it died (forker.c replaces it, recovery.c fails
 *     what its workers ran);
 *   - the eventfd that kicks it: written by workers that queued a notice
 *     while it slept and by parent threads that need it (idle.h).
 * The poll timeout is the earliest of: a task deadline (slots.h), a
 * forker timer (a backoff, the stop sequence), the next sweep (every
 * SWEEP_NS while any slot is in use), 1 ms while hints wait to be put back
 * or submitters wait for a slot.
 *
 * Plain waits never involve this thread: a worker wakes a waiting parent
 * thread directly (FUTEX_WAKE on the slot word). The supervisor handles:
 *   - notices (slots whose word had NOTIFY, or every completion while the
 *     pool is hungry for slots): settle them (settle.h): how callbacks,
 *     cf_wait and as_completed learn of process futures (a released
 *     future's slot asks for none: the submits' ordered reclaim and the
 *     sweep free it, settle.h);
 *   - deaths and the zygote's messages (forker.c, recovery.c);
 *   - deadlines: a PENDING task past its deadline fails CF_EDEADLINE, a
 *     RUNNING one too and its worker is killed and replaced;
 *   - the sweep: every slot in use is looked at: a done one is settled (its
 *     notice may have been lost: a dead worker, a full completion ring, a
 *     scribbled flag), a scribbled word fails CF_EPROTO; and the zygote is
 *     checked for a stop (forker.c). So nothing a worker writes into the
 *     shared hints (sv_sleeping, hungry, cq) can strand a task for longer
 *     than a sweep.
 * It never runs user code (callbacks go to the callback thread:
 * callbacks.h) and never blocks on the zygote (forker.h), so deadlines and
 * crash reports are never late behind a callback or a stopped process.
 */
#include "supervisor.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forker.h"
#include "idle.h"
#include "recovery.h"
#include "settle.h"
#include "sys.h"

#define SWEEP_NS 100000000LL /* 100 ms */

/* The pool whose supervisor this thread is (NULL on every other thread). */
static _Thread_local const cf__pool *tl_supervised;

bool cf__sv_is_current(const cf__pool *p) {
  return tl_supervised == p;
}

/* ---- deadlines ---- */

static void expire_deadlines(cf__pool *p, int64_t now) {
  for (;;) {
    cf__settle st = {NULL};
    cf__pp_lock(p);
    uint32_t s;
    if (!cf__slots_deadline_pop_due(&p->slots, now, &s)) {
      cf__pp_unlock(p);
      return;
    }
    bool done = cf__pp_fail_locked(p, s, p->slots.ps[s].gen, true, CF_STATE_FAILED, CF_EDEADLINE,
                                   NULL, SIGKILL, &st);
    cf__pp_unlock(p);
    if (done) atomic_fetch_add_explicit(&p->expired, 1, memory_order_relaxed); /* statistic */
    cf__pp_settle_finish(p, &st, false);
  }
}

/* ---- notices and the sweep ---- */

/* Settle the slot of every notice on the cq: how many there were. */
static int drain_cq(cf__pool *p) {
  cf__seg_ctl *ctl = p->cfg.seg.ctl;
  int n = 0;
  uint32_t h;
  while (cf__ring_pop(&ctl->cq, p->cfg.seg.cq, p->cfg.seg.p.cq_log2, &h, NULL) == 0) {
    cf__pp_settle(p, cf__hint_slot(h), cf__hint_gen(h));
    n++;
  }
  /* relaxed load + store: a statistic (cf__test_notices) only this thread
   * writes */
  if (n)
    atomic_store_explicit(&p->notices,
                          atomic_load_explicit(&p->notices, memory_order_relaxed) + (uint64_t)n,
                          memory_order_relaxed);
  return n;
}

static void sweep_fn(cf__pool *p, uint32_t s, void *arg, cf__settle *st) {
  /* relaxed: a count for the wake-up below, which sleepers re-check */
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_relaxed);
  if (cf__st_state(w) == CF_STATE_PENDING) (*(unsigned *)arg)++;
  cf__pp_settle_if_done_locked(p, s, st);
}

static void sweep(cf__pool *p, int64_t now) {
  unsigned pending = 0;
  cf__pp_scan(p, sweep_fn, &pending, false);
  /* a task waits while workers sleep: one of them may be out of the
   * producers' reach (idle.h, the stranded sleeper): wake one */
  if (pending && atomic_load(&p->cfg.seg.ctl->nsleep)) {
    cf__pp_lock(p);
    cf__wake_worker_anew(p->cfg.seg.ctl);
    cf__pp_unlock(p);
  }
  cf__forker_watch(p, now);
  p->next_sweep = now + SWEEP_NS;
}

/* ---- hints to put back ---- */

static void repush_retry(cf__pool *p) {
  cf__seg *seg = &p->cfg.seg;
  cf__pp_lock(p);
  while (p->nrepush) {
    uint32_t h = p->repush[p->nrepush - 1];
    if (cf__ring_push(&seg->ctl->sq, seg->sq, seg->p.sq_log2, h) != 0) break;
    p->nrepush--;
    cf__wake_worker(seg->ctl);
  }
  cf__pp_unlock(p);
}

/* ---- the thread ---- */

/* Milliseconds from now until `at` for poll(), clamped to [0, cap]. */
static int ms_until(int64_t now, int64_t at, int cap) {
  int64_t ms = (at - now + 999999) / 1000000;
  return ms < 0 ? 0 : ms > cap ? cap : (int)ms;
}

void *cf__supervisor_main(void *arg) {
  cf__pool *p = arg;
  tl_supervised = p;
  int e = cf__forker_start(p);
  cf__pp_lock(p);
  p->sv_error = e;
  p->sv_started = true;
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  if (e) return NULL;

  cf__seg_ctl *ctl = p->cfg.seg.ctl;
  p->next_sweep = cf__now_ns() + SWEEP_NS;
  for (;;) {
    int64_t now = cf__now_ns();
    cf__pp_lock(p);
    if (p->sv_stop && p->stopped) {
      cf__pp_unlock(p);
      break;
    }
    int64_t at = cf__slots_deadline_next(&p->slots);
    int64_t ft = cf__forker_next_timer(p);
    if (ft > 0 && (at < 0 || ft < at)) at = ft;
    /* Armed while tasks are in flight or the zygote owes answers; a submit
     * to an idle pool kicks it (pp_submit). */
    bool busy = p->slots.nfree < p->slots.n || p->nspawning || p->nout;
    p->sv_armed = busy;
    if (busy && (at < 0 || p->next_sweep < at)) at = p->next_sweep;
    bool starving = p->free_waiters > 0;
    bool retry = p->nrepush > 0 || starving;
    struct pollfd fds[3] = {
        {.fd = p->cfg.evfd, .events = POLLIN},
        {.fd = p->forker_up ? p->cfg.sock : -1, .events = POLLIN | (p->nout ? POLLOUT : 0)},
        {.fd = p->forker_up ? p->zpidfd : -1, .events = POLLIN},
    };
    cf__pp_unlock(p);
    int timeout = at >= 0 ? ms_until(now, at, 60000) : -1;
    if (retry && (timeout < 0 || timeout > 1)) timeout = 1;
    /* Going to sleep: steps 1-4 of the supervisor's side in idle.h. */
    atomic_store(&ctl->sv_sleeping, 1); /* seq_cst: Dekker with notify() (worker.c) */
    if (drain_cq(p) || atomic_load(&ctl->cq_overflow)) timeout = 0;
    int n = poll(fds, 3, timeout);
    atomic_store(&ctl->sv_sleeping, 0);
    if (n > 0 && fds[0].revents) {
      uint64_t v;
      ssize_t r = read(p->cfg.evfd, &v, sizeof v);
      (void)r;
    }
    if (n > 0 && (fds[1].revents || fds[2].revents))
      cf__forker_events(p, fds[1].revents, fds[2].revents);
    drain_cq(p);
    now = cf__now_ns();
    bool overflow = atomic_exchange(&ctl->cq_overflow, 0);
    cf__pp_lock(p);
    /* a submitter waits on cv for a slot or a big argument region: look
     * every millisecond (a released task holding a region asks for no
     * notice, and hungry may reach its worker late) */
    starving = p->free_waiters > 0; /* again: the poll took time */
    cf__pp_unlock(p);
    if (overflow || starving || now >= p->next_sweep) sweep(p, now);
    expire_deadlines(p, now);
    if (retry) repush_retry(p);
    cf__forker_tick(p, now);
  }
  return NULL;
}
