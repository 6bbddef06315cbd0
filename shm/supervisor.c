/*
 * supervisor.c — the process pool's supervisor thread (in the parent).
 *
 * DESIGN
 * One thread per pool. It starts the zygote (see pool.h for why this thread),
 * asks it for the workers, and then loops on poll() over two fds:
 *   - the zygote socket: SPAWNED / SPAWN_FAILED / DIED reports; end of file
 *     means the zygote died (and with it every worker): the pool is broken;
 *   - the eventfd that kicks it: written by workers that queued a notice
 *     while it slept and by parent threads that need it (idle.h).
 * The poll timeout is the earliest task deadline (slots.h).
 *
 * Plain waits never involve this thread: a worker wakes a waiting parent
 * thread directly (FUTEX_WAKE on the slot word). The supervisor handles:
 *   - notices (slots whose word had NOTIFY): settle them (settle.h): this
 *     is how callbacks, cf_wait and as_completed learn of process futures,
 *     and how orphaned slots are freed;
 *   - worker deaths: fail the slot the worker owned (CF_ECRASHED with pid,
 *     signal or exit status), wake its waiters and run its callbacks; a
 *     completed slot whose wake-up or notice may have died with the worker
 *     is woken and settled again (both are idempotent); a hint the worker
 *     took but never claimed is pushed back; slots quarantined by the dead
 *     worker are released; the worker is respawned from the zygote;
 *   - deadlines: a PENDING task past its deadline fails CF_ETIMEDOUT, a
 *     RUNNING one too and its worker is killed and replaced;
 *   - a completion ring overflow: rescan every watched or orphaned slot;
 *   - a fork the zygote could not make: asked again every 10 ms (up to
 *     SPAWN_TRIES in a row); a pool left with no worker is broken.
 * A hint to put back that does not fit in the ring (it is full) waits in a
 * parent-side list and is retried every millisecond, so the ring needs no
 * spare room for duplicates.
 *
 * Done callbacks of process futures run on this thread: they must not block
 * on the pool itself (a waiting shutdown or destroy there is refused; a
 * submit that waits for a free slot could wait for this very thread).
 */
#include "supervisor.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "idle.h"
#include "protocol.h"
#include "settle.h"
#include "sys.h"
#include "zygote.h"

/* The pool whose supervisor this thread is (NULL on every other thread). */
static _Thread_local const cf__pool *tl_supervised;

bool cf__sv_is_current(const cf__pool *p) {
  return tl_supervised == p;
}

/* ---- deadlines ---- */

static void expire_deadlines(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  int64_t now = cf__now_ns();
  for (;;) {
    cf__pp_lock(p);
    uint32_t s;
    if (!cf__slots_deadline_pop_due(&p->slots, now, &s)) {
      cf__pp_unlock(p);
      return;
    }
    cf__settle st;
    bool done = cf__pp_fail_locked(p, s, p->slots.ps[s].gen, true, CF_STATE_FAILED, CF_ETIMEDOUT,
                                   NULL, false, &st);
    cf__pp_unlock(p);
    if (done) cf__pp_settle_finish(p, &st);
  }
}

/* ---- notices ---- */

static void settle_slot(cf__pool *p, uint32_t s, uint32_t genbits, bool check_gen) {
  if (s >= p->cfg.nslots) return; /* untrusted hint */
  cf__settle st;
  memset(&st, 0, sizeof st);
  cf__pp_lock(p);
  cf__pslot *ps = &p->slots.ps[s];
  bool go = ps->in_use && (!check_gen || cf__hint_genbits(ps->gen) == genbits) &&
            cf__st_done(atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire));
  if (go) cf__pp_settle_locked(p, s, &st);
  cf__pp_unlock(p);
  if (go) cf__pp_settle_finish(p, &st);
}

/* Settle the slot of every notice on the cq: how many there were. */
static int drain_cq(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  cf__seg_ctl *ctl = p->cfg.seg.ctl;
  int n = 0;
  uint32_t h;
  while (cf__ring_pop(&ctl->cq, p->cfg.seg.cq, p->cfg.seg.p.cq_log2, &h, NULL) == 0) {
    settle_slot(p, cf__hint_slot(h), cf__hint_gen(h), true);
    n++;
  }
  return n;
}

/* Every watched or orphaned slot that is done (lost or overflowed notices). */
static void rescan(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    cf__pp_lock(p);
    cf__pslot *ps = &p->slots.ps[s];
    bool want = ps->in_use && (ps->watched || ps->orphan);
    cf__pp_unlock(p);
    if (want) settle_slot(p, s, 0, false);
  }
}

/* ---- hints to put back ---- */

/* mu held. Put a hint back: into the ring, or into the list when the ring is
 * full. False only if the list cannot grow (ENOMEM): the caller fails the
 * task rather than lose it. */
static bool repush_add(cf__pool *p, uint32_t h) {
  cf__assert(cf__pp_locked(p));
  cf__seg *seg = &p->cfg.seg;
  if (p->nrepush == 0 && cf__ring_push(&seg->ctl->sq, seg->sq, seg->p.sq_log2, h) == 0) {
    cf__wake_worker(seg->ctl);
    return true;
  }
  if (p->nrepush == p->repush_cap) {
    size_t cap = p->repush_cap ? 2 * p->repush_cap : 16;
    uint32_t *n = realloc(p->repush, cap * sizeof *n);
    if (!n) return false;
    p->repush = n;
    p->repush_cap = cap;
  }
  p->repush[p->nrepush++] = h;
  return true;
}

static void repush_retry(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
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

/* ---- failing every pending task (broken pool) ---- */

static void fail_pending(cf__pool *p, int err) {
  cf__assert(cf__sv_is_current(p));
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    cf__settle st;
    cf__pp_lock(p);
    bool done = p->slots.ps[s].in_use && cf__pp_fail_locked(p, s, p->slots.ps[s].gen, false,
                                                            CF_STATE_FAILED, err, NULL, false, &st);
    cf__pp_unlock(p);
    if (done) cf__pp_settle_finish(p, &st);
  }
}

/* ---- worker deaths ---- */

/* mu held: the slot worker idx owned when it died, if RUNNING: fail it. */
static bool fail_owned_locked(cf__pool *p, unsigned idx, uint32_t s, const cf_crash_info *ci,
                              cf__settle *st) {
  cf__assert(cf__pp_locked(p));
  if (s >= p->cfg.nslots || !p->slots.ps[s].in_use) return false;
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  if (cf__st_state(w) != CF_STATE_RUNNING || cf__st_owner(w) != idx + 1) return false;
  if (!cf__pp_fail_locked(p, s, p->slots.ps[s].gen, true, CF_STATE_FAILED, CF_ECRASHED, ci, true,
                          st))
    return false;
  atomic_fetch_add_explicit(&p->crashed, 1, memory_order_relaxed); /* statistic */
  return true;
}

static void on_death(cf__pool *p, unsigned idx, pid_t pid, int status) {
  cf__assert(cf__sv_is_current(p));
  cf_crash_info ci = {
      .pid = pid,
      .signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
      .exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
  };
  cf__worker_rec *rec = &p->cfg.seg.workers[idx];
  cf__settle st;
  bool newly_broken = false;

  cf__pp_lock(p);
  cf__pworker *w = &p->w[idx];
  if (w->alive) p->nalive--;
  w->alive = false;
  w->pid = 0;
  /* The record is final: the worker is dead and reaped. The slot it owned,
   * if any, is cur_slot: it records the slot before its claim CAS. */
  uint32_t cs = atomic_load(&rec->cur_slot);
  bool found = fail_owned_locked(p, idx, cs, &ci, &st);
  if (!found) {
    /* Its last slot may be done with a wake-up or notice lost in the
     * death: wake (spuriously at worst) and settle again. */
    if (cs < p->cfg.nslots && p->slots.ps[cs].in_use) {
      _Atomic uint32_t *word = &cf__pp_slot(p, cs)->word;
      uint32_t wd = atomic_load_explicit(word, memory_order_acquire);
      if (cf__st_done(wd) && cf__st_owner(wd) == idx + 1) {
        memset(&st, 0, sizeof st);
        st.word = word;
        st.old = wd;
        st.wake = true;
        cf__pp_settle_locked(p, cs, &st);
        found = true;
      }
    }
  }
  cf__pp_unlock(p);
  if (found) cf__pp_settle_finish(p, &st);
  unsigned freed = 0;
  cf__pp_lock(p);
  uint32_t t = atomic_load(&rec->taking);
  cf__settle lost_st;
  bool lost = false;
  if (t != CF__HINT_NONE && !repush_add(p, t)) {
    uint32_t ls = cf__hint_slot(t);
    if (ls < p->cfg.nslots && p->slots.ps[ls].in_use &&
        cf__hint_genbits(p->slots.ps[ls].gen) == cf__hint_gen(t))
      lost = cf__pp_fail_locked(p, ls, p->slots.ps[ls].gen, false, CF_STATE_FAILED, CF_ENOMEM, NULL,
                                false, &lost_st);
  }
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    if (p->slots.ps[s].quarantine == idx + 1) {
      p->slots.ps[s].quarantine = 0;
      freed += cf__pp_maybe_free_locked(p, s);
    }
  }
  atomic_store(&rec->taking, CF__HINT_NONE);
  atomic_store(&rec->cur_slot, CF__HINT_NONE);
  if (atomic_exchange(&rec->asleep, 0)) atomic_fetch_sub(&p->cfg.seg.ctl->nsleep, 1);
  bool init_failed = atomic_exchange(&rec->init_failed, 0);
  if (init_failed && !p->broken) {
    p->broken = true;
    cf__pp_doom(p);
    newly_broken = true;
  }
  if (!p->broken && !p->zygote_dead && atomic_load(&p->cfg.seg.ctl->phase) == CF__PHASE_RUN) {
    w->spawning = true;
    p->nspawning++;
    atomic_fetch_add_explicit(&p->respawned, 1, memory_order_relaxed); /* statistic */
    cf__zsend(p->cfg.sock, CF__Z_SPAWN, (int)idx, 0, 0);
  }
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  if (lost) cf__pp_settle_finish(p, &lost_st);
  while (freed--) cf__pp_unref(p);
  if (newly_broken) fail_pending(p, CF_EBROKEN);
  /* The notice of some other slot cannot have died with this worker, but
   * its last one may have: settled above. */
}

static void on_zygote_death(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  cf__pp_lock(p);
  p->zygote_dead = true;
  p->broken = true;
  cf__pp_doom(p);
  /* Every worker dies with the zygote (PDEATHSIG) but nobody will report
   * it: fail what they ran; their slots stay quarantined for good. */
  for (unsigned i = 0; i < p->cfg.nworkers; i++) {
    p->w[i].alive = false;
    p->w[i].spawning = false;
    p->w[i].retry = false;
  }
  p->nalive = 0;
  p->nspawning = 0;
  p->nretry = 0;
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    cf__settle st;
    cf__pp_lock(p);
    bool done = false;
    cf__pslot *ps = &p->slots.ps[s];
    if (ps->in_use) {
      uint32_t w = atomic_load(&cf__pp_slot(p, s)->word);
      unsigned o = cf__st_owner(w);
      cf_crash_info ci = {.pid = 0, .signal = SIGKILL, .exit_status = -1};
      if (cf__st_state(w) == CF_STATE_RUNNING && o >= 1 && o <= p->cfg.nworkers) {
        done =
            cf__pp_fail_locked(p, s, ps->gen, true, CF_STATE_FAILED, CF_ECRASHED, &ci, false, &st);
        ps->quarantine = (uint8_t)o; /* never released */
      }
    }
    cf__pp_unlock(p);
    if (done) cf__pp_settle_finish(p, &st);
  }
  fail_pending(p, CF_EBROKEN);
}

#define SPAWN_TRIES 100           /* fork failures in a row before giving up */
#define SPAWN_RETRY_NS 10000000LL /* 10 ms between tries */

/* Send again the SPAWNs whose fork failed, once their time has come. */
static void retry_spawns(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  cf__pp_lock(p);
  if (p->nretry && cf__now_ns() >= p->retry_at) {
    bool go = !p->broken && !p->zygote_dead && !p->sv_stop &&
              atomic_load(&p->cfg.seg.ctl->phase) == CF__PHASE_RUN;
    for (unsigned i = 0; i < p->cfg.nworkers; i++) {
      if (!p->w[i].retry) continue;
      p->w[i].retry = false;
      p->nretry--;
      if (!go) continue;
      p->w[i].spawning = true;
      p->nspawning++;
      cf__zsend(p->cfg.sock, CF__Z_SPAWN, (int)i, 0, 0);
    }
  }
  cf__pp_unlock(p);
}

/* Read every message the zygote sent. */
static void read_zygote(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  for (;;) {
    cf__zmsg m;
    ssize_t r = recv(p->cfg.sock, &m, sizeof m, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {
      if (!p->zygote_dead) on_zygote_death(p);
      return;
    }
    if (r != (ssize_t)sizeof m || m.idx < 0 || (unsigned)m.idx >= p->cfg.nworkers) continue;
    if (m.type == CF__Z_SPAWNED || m.type == CF__Z_SPAWN_FAILED) {
      cf__pp_lock(p);
      cf__pworker *w = &p->w[m.idx];
      if (w->spawning) p->nspawning--;
      w->spawning = false;
      if (m.type == CF__Z_SPAWNED) {
        w->pid = m.pid;
        w->alive = true;
        p->nalive++;
      }
      bool none = false;
      if (m.type == CF__Z_SPAWNED) {
        w->failures = 0;
      } else if (++w->failures < SPAWN_TRIES) {
        /* fork failed (EAGAIN, ENOMEM): try again shortly */
        if (!w->retry) p->nretry++;
        w->retry = true;
        p->retry_at = cf__now_ns() + SPAWN_RETRY_NS;
      } else {
        none = p->nalive == 0 && p->nspawning == 0 && p->nretry == 0 && !p->broken;
        if (none) { /* no worker left, none can be made */
          p->broken = true;
          cf__pp_doom(p);
        }
      }
      pthread_cond_broadcast(&p->cv);
      cf__pp_unlock(p);
      if (none) fail_pending(p, CF_EBROKEN);
    } else if (m.type == CF__Z_DIED) {
      on_death(p, (unsigned)m.idx, m.pid, m.arg);
    }
  }
}

/* ---- the thread ---- */

/* Milliseconds from now until `at` for poll(), clamped to [0, cap]. */
static int ms_until(int64_t at, int cap) {
  int64_t ms = (at - cf__now_ns() + 999999) / 1000000;
  return ms < 0 ? 0 : ms > cap ? cap : (int)ms;
}

void *cf__supervisor_main(void *arg) {
  cf__pool *p = arg;
  tl_supervised = p;
  pid_t z = -1;
  int zerr = cf__zygote_start(&p->cfg, &z); /* fork or exec: zygote.h */
  /* Store -1 before the close: see config.h. */
  close(atomic_exchange(&p->cfg.zsock, -1));
  cf__pp_lock(p);
  if (zerr) {
    p->sv_error = zerr;
    p->sv_started = true;
    pthread_cond_broadcast(&p->cv);
    cf__pp_unlock(p);
    return NULL;
  }
  p->zygote_pid = z;
  p->sv_started = true;
  for (unsigned i = 0; i < p->cfg.nworkers; i++) {
    p->w[i].spawning = true;
    p->nspawning++;
    cf__zsend(p->cfg.sock, CF__Z_SPAWN, (int)i, 0, 0);
  }
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);

  cf__seg_ctl *ctl = p->cfg.seg.ctl;
  for (;;) {
    cf__pp_lock(p);
    bool stop = p->sv_stop && p->nalive == 0 && p->nspawning == 0;
    int64_t next = cf__slots_deadline_next(&p->slots);
    bool retry = p->nrepush > 0;
    int64_t spawn_at = p->nretry ? p->retry_at : -1;
    cf__pp_unlock(p);
    if (stop) break;
    int timeout = next >= 0 ? ms_until(next, 60000) : -1;
    if (retry && (timeout < 0 || timeout > 1)) timeout = 1;
    if (spawn_at >= 0) {
      int ms = ms_until(spawn_at, INT_MAX);
      if (timeout < 0 || ms < timeout) timeout = ms;
    }
    /* Going to sleep: steps 1-4 of the supervisor's side in idle.h. */
    atomic_store(&ctl->sv_sleeping, 1); /* seq_cst: Dekker with notify() (worker.c) */
    if (drain_cq(p) || atomic_load(&ctl->cq_overflow)) timeout = 0;
    struct pollfd fds[2] = {{.fd = p->cfg.sock, .events = POLLIN},
                            {.fd = p->cfg.evfd, .events = POLLIN}};
    int n = poll(fds, 2, timeout);
    atomic_store(&ctl->sv_sleeping, 0);
    if (n > 0 && fds[1].revents) {
      uint64_t v;
      ssize_t r = read(p->cfg.evfd, &v, sizeof v);
      (void)r;
    }
    if (n > 0 && fds[0].revents) read_zygote(p);
    drain_cq(p);
    if (atomic_exchange(&ctl->cq_overflow, 0)) rescan(p);
    expire_deadlines(p);
    if (retry) repush_retry(p);
    if (spawn_at >= 0) retry_spawns(p);
  }
  if (!p->zygote_dead) cf__zsend(p->cfg.sock, CF__Z_EXIT, 0, 0, 0);
  while (waitpid(p->zygote_pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return NULL;
}
