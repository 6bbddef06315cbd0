/*
 * process_pool.c — cf_process_pool_new and the process pool's executor:
 * submit, shutdown, destroy, statistics (the design of the whole pool is
 * in pool.h).
 *
 * DESIGN (this file)
 * Submit:
 *   1. check the function against the code the workers have (text.h:
 *      CF_ENOTLOADED) and the argument against max_arg_size (CF_E2BIG);
 *   2. allocate a slot (and, for an argument over the slot's own area, a
 *      big region) under `mu`; when none is free, wait on `cv` (the pool is
 *      then "hungry": done slots settle at once), or CF_EAGAIN with
 *      CF_SUBMIT_NOWAIT;
 *   3. write fn and the argument (inside the slot up to
 *      CF__SLOT_ARG_INLINE bytes, else into the slot's area or its big
 *      region);
 *   4. publish the word (gen, PENDING) with a release store;
 *   5. push the slot's hint onto the sq (ring full or max_queued reached:
 *      retry after a short sleep, or CF_EAGAIN) and wake one sleeping
 *      worker if one sleeps;
 *   6. if the pool was doomed meanwhile, fail the slot here (cf__pp_doom);
 *   7. a deadline goes into the heap; a new earliest one kicks the
 *      supervisor.
 * Limits: at most max_futures tasks are in flight (queued, running, or done
 * and not yet settled): a done task's outcome moves into its future and
 * frees its slot (settle.h), so futures themselves are not bounded. Each
 * future holds a pool reference (slot_future.h), so futures may outlive
 * cf_executor_destroy(); the last one frees the pool and its segment.
 *
 * Shutdown: cancel what the flags say (cancel_all), then — with WAIT once
 * every task is done, with KILL or TERMINATE at once — stop every worker
 * through the supervisor (forker.h: the stop sequence) and fail whatever
 * remains (recovery.h). A shutdown from one of the pool's own threads (a
 * callback) never waits.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#include "callbacks.h"
#include "exec.h"
#include "forker.h"
#include "idle.h"
#include "image.h"
#include "protocol.h"
#include "recovery.h"
#include "registry.h"
#include "settle.h"
#include "slot_future.h"
#include "supervisor.h"
#include "sys.h"

static const cf__executor_vtbl pp_exec_vtbl;

static inline cf__pool *pool_of(cf_executor *ex) {
  return (cf__pool *)ex;
}

/* ---- submit ---- */

static void nap(unsigned *backoff) {
  struct timespec ts = {0, (long)*backoff * 1000};
  nanosleep(&ts, NULL);
  if (*backoff < 1000) *backoff *= 2;
}

#define RECLAIM_BATCH 64        /* done slots a full submit settles at a time */
#define RECLAIM_WAIT_NS 1000000 /* its longest wait on one running task's word */

static int pp_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline_abs,
                     unsigned flags, struct cf_scope *scope, cf_future **out) {
  cf__pool *p = pool_of(ex);
  if (len > p->cfg.max_arg) return CF_E2BIG;
  if (!cf__text_contains(&p->cfg.text, (uintptr_t)fn)) return CF_ENOTLOADED;
  /* exec mode, a program with more modules than the record holds */
  if (__builtin_expect(p->cfg.image.truncated, 0) &&
      !cf__image_translate(&p->cfg.image, (uint64_t)(uintptr_t)fn))
    return CF_ENOTLOADED;
  cf__seg *seg = &p->cfg.seg;
  bool big = len > CF__SLOT_ARG_INLINE && len > seg->slot_arg;
  /* relaxed: a hint (cf_executor_time_tasks); the wait for a slot counts
   * as queue wait */
  int64_t t_submit =
      atomic_load_explicit(&p->base.time_tasks, memory_order_relaxed) ? cf__now_ns() : 0;
  cf_future *f = cf__future_alloc();
  if (!f) return CF_ENOMEM;
  cf__pp_lock(p);
  for (;;) {
    int e = p->broken ? CF_EBROKEN : p->shutdown ? CF_ESHUTDOWN : 0;
    bool room = !cf__slots_full(&p->slots) && (!big || p->slots.nbig_free > 0);
    if (!e && !room) {
      /* Slots of tasks that are done but not yet settled (their notices
       * on the way to the supervisor, or not asked for) free here, at
       * once: a submitter that keeps more futures out than there are
       * slots then pays no round trip through the supervisor per task. */
      cf__settle st[RECLAIM_BATCH];
      uint32_t rs = UINT32_MAX, rgen = 0;
      unsigned n = cf__pp_reclaim_oldest_locked(p, st, RECLAIM_BATCH);
      if (!n) n = cf__pp_reclaim_locked(p, st, RECLAIM_BATCH, &rs, &rgen);
      if (n) {
        cf__pp_unlock(p);
        for (unsigned i = 0; i < n; i++) cf__pp_settle_finish(p, &st[i], false);
        cf__pp_lock(p);
        continue;
      }
      if (rs != UINT32_MAX && !(flags & CF_SUBMIT_NOWAIT)) {
        /* None done yet: wait for a running task's word, which its worker
         * wakes directly when it completes (at most 1 ms: another task may
         * finish first), then reclaim again. Nothing of the supervisor's
         * is on this path. */
        _Atomic uint32_t *word = &cf__pp_slot(p, rs)->word;
        cf__pp_unlock(p);
        (void)cf__word_wait_gen(word, rgen, cf__now_ns() + RECLAIM_WAIT_NS, true);
        cf__pp_lock(p);
        continue;
      }
    }
    if (!e && !room && (flags & CF_SUBMIT_NOWAIT)) e = CF_EAGAIN;
    if (e) {
      cf__pp_unlock(p);
      cf__future_unref(f);
      cf__future_unref(f);
      return e;
    }
    if (room) break;
    /* Every slot holds a task in flight: one frees when a task is done and
     * settled; hungry makes each completion send a notice for that. */
    p->free_waiters++;
    cf__pp_hungry_update(p);
    cf__sv_kick(p->cfg.evfd);
    cf__mutex_wait(&p->mu, &p->cv);
    p->free_waiters--;
  }
  uint32_t s = cf__slots_alloc(&p->slots, f);
  cf__pslot *ps = &p->slots.ps[s];
  uint32_t gen = ps->gen;
  ps->arg_len = (uint32_t)len;
  ps->t_submit = t_submit;
  if (big) ps->big = cf__slots_big_take(&p->slots);
  uint32_t region = ps->big;
  cf__pp_order_push_locked(p, s, gen);
  /* two for the one taken: done slots free as fast as tasks come */
  cf__settle old[2];
  unsigned nold = cf__pp_reclaim_oldest_locked(p, old, 2);
  cf__pp_hungry_update(p);
  cf__pp_ref(p); /* the future's */
  /* An idle supervisor sleeps without a timeout: it sweeps (and watches
   * the zygote) only while tasks are in flight. At most one kick per sweep
   * period. */
  bool arm = !p->sv_armed;
  p->sv_armed = true;
  cf__pp_unlock(p);
  for (unsigned i = 0; i < nold; i++) cf__pp_settle_finish(p, &old[i], false);
  if (arm) cf__sv_kick(p->cfg.evfd);

  cf__slot *sl = cf__pp_slot(p, s);
  sl->fn = (uint64_t)(uintptr_t)fn;
  sl->deadline = deadline_abs;
  sl->arg_len = (uint32_t)len;
  sl->big = region;
  sl->timed = t_submit != 0;
  if (len) memcpy(cf__slot_arg(seg, sl, s, len, region), arg, len);
  cf__slot_future_bind(f, p, s, gen);
  f->fn = fn;
  f->deadline = deadline_abs;
  f->t_submit = t_submit;
  /* release: pairs with the worker's acquire in claim(): fn and the
   * argument are visible to whoever sees this word */
  atomic_store_explicit(&sl->word, cf__st_make(gen, 0, CF_STATE_PENDING), memory_order_release);

  uint32_t h = cf__hint_make(s, cf__hint_genbits(gen));
  unsigned backoff = 2;
  for (;;) {
    int r = CF_EAGAIN;
    if (!p->cfg.max_queued || cf__ring_count(&seg->ctl->sq) < p->cfg.max_queued)
      r = cf__ring_push(&seg->ctl->sq, seg->sq, seg->p.sq_log2, h);
    if (r == 0) break;
    cf__pp_lock(p);
    int e = p->broken ? CF_EBROKEN : r == CF_EPROTO ? CF_EPROTO : p->shutdown ? CF_ESHUTDOWN : 0;
    cf__pp_unlock(p);
    if (!e && (flags & CF_SUBMIT_NOWAIT)) e = CF_EAGAIN;
    if (e) {
      /* Retire the task (no hint pushed, no handle given out) — unless a
       * worker taking a stale hint of this slot claimed it meanwhile:
       * then it runs, and the submit succeeded after all. */
      uint32_t w = cf__st_make(gen, 0, CF_STATE_PENDING);
      /* relaxed: nobody reads what this word publishes (no handle) */
      if (atomic_compare_exchange_strong_explicit(&sl->word, &w,
                                                  cf__st_make(gen, 0, CF_STATE_CANCELLED),
                                                  memory_order_relaxed, memory_order_relaxed)) {
        cf__future_unref(f);
        cf__future_unref(f); /* the orphaned slot frees (sf_destroy) */
        return e;
      }
      break;
    }
    nap(&backoff);
  }
  cf__wake_worker(seg->ctl);
  /* A shutdown(CANCEL/KILL) or a breakage that scanned the slots while this
   * slot was allocated but not yet published skipped it: fail it here. The
   * fence pairs with the one in cf__pp_doom (Dekker, see there); the
   * mutex-free check keeps the common submit off the pool lock. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&p->doomed, memory_order_relaxed)) {
    cf__settle st = {NULL};
    cf__pp_lock(p);
    if (p->broken || p->cancelling)
      (void)cf__pp_fail_locked(p, s, gen, false, p->broken ? CF_STATE_FAILED : CF_STATE_CANCELLED,
                               p->broken ? CF_EBROKEN : CF_ECANCELLED, NULL, 0, &st);
    cf__pp_unlock(p);
    cf__pp_settle_finish(p, &st, true);
  }
  if (deadline_abs > 0) {
    bool first = false;
    cf__pp_lock(p);
    uint32_t w = atomic_load_explicit(&sl->word, memory_order_relaxed);
    /* not if it is over already (settled: the slot may be another task's) */
    if (ps->in_use && ps->gen == gen && ps->f == f && !cf__st_done(w))
      first = cf__slots_deadline_set(&p->slots, s, deadline_abs);
    cf__pp_unlock(p);
    if (first) cf__sv_kick(p->cfg.evfd);
  }
  atomic_fetch_add_explicit(&p->submitted, 1, memory_order_relaxed); /* statistic */
  cf__future_unref(f); /* the executor's reference: the slot keeps the task */
  *out = f;
  return 0;
}

/* ---- shutdown and destroy ---- */

typedef struct cancel_arg {
  bool running;
  int signo;
  unsigned n;
} cancel_arg;

static void cancel_fn(cf__pool *p, uint32_t s, void *arg, cf__settle *st) {
  cancel_arg *a = arg;
  if (cf__pp_fail_locked(p, s, p->slots.ps[s].gen, a->running, CF_STATE_CANCELLED, CF_ECANCELLED,
                         NULL, a->signo, st))
    a->n++;
}

static void cancel_all(cf__pool *p, bool running, int signo) {
  cancel_arg a = {running, signo, 0};
  cf__pp_scan(p, cancel_fn, &a, true);
  atomic_fetch_add_explicit(&p->cancelled, a.n, memory_order_relaxed); /* statistic */
}

/* Wait until every task in flight is done. */
static void wait_all_done(cf__pool *p) {
  cf__assert(!cf__pp_own_thread(p)); /* its callbacks may be what they wait for */
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    cf__pp_lock(p);
    bool in_use = p->slots.ps[s].in_use;
    uint32_t gen = p->slots.ps[s].gen;
    cf__pp_unlock(p);
    if (!in_use) continue;
    _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
    for (;;) {
      uint32_t w = atomic_load_explicit(word, memory_order_acquire);
      if (cf__st_gen(w) == cf__slots_prev_gen(gen) && (cf__st_done(w) || w == 0)) {
        /* allocated before the shutdown, not yet published: its submit is
         * finishing (it publishes, or retires the slot) */
        sched_yield();
        cf__pp_lock(p);
        bool same = p->slots.ps[s].in_use && p->slots.ps[s].gen == gen;
        cf__pp_unlock(p);
        if (!same) break;
        continue;
      }
      /* done, or another generation (settled and reused, or scribbled:
       * the sweep and the end fail a scribbled word) */
      if (cf__st_gen(w) != gen || cf__st_done(w)) break;
      (void)cf__word_wait_gen(word, gen, -1, true);
    }
  }
}

/* shutdown(CANCEL_FUTURES): set STOP on every running task's word, which
 * its cf_call_stop_requested() polls (cfutures.h). relaxed: a hint; the CAS
 * keeps the generation, so a slot done and reused meanwhile is left alone. */
static void stop_running(cf__pool *p) {
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
    uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
    while (cf__st_state(w) == CF_STATE_RUNNING && !(w & CF__ST_STOP) &&
           !atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_STOP, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
  }
}

/* Stop every worker for good (forker.h: the stop sequence), with SIGTERM
 * first or SIGKILL; if `wait`, until they are all gone (not on the pool's
 * own threads). */
static void stop_workers(cf__pool *p, int signo, bool wait) {
  cf__assert(!wait || !cf__pp_own_thread(p));
  cf__pp_lock(p);
  if (!p->stopping) {
    p->stopping = true;
    p->stop_signal = signo;
  } else if (signo == SIGKILL) {
    p->stop_signal = SIGKILL; /* a TERMINATE in progress becomes a KILL */
  }
  cf__sv_kick(p->cfg.evfd);
  while (wait && !p->stopped) cf__mutex_wait(&p->mu, &p->cv);
  cf__pp_unlock(p);
}

static int pp_shutdown(cf_executor *ex, unsigned flags) {
  cf__pool *p = pool_of(ex);
  bool cancel = flags & (CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL | CF_SHUTDOWN_TERMINATE);
  bool kill_them = flags & (CF_SHUTDOWN_KILL | CF_SHUTDOWN_TERMINATE);
  int signo = flags & CF_SHUTDOWN_KILL ? SIGKILL : SIGTERM;
  cf__pp_lock(p);
  p->shutdown = true;
  if (cancel) {
    p->cancelling = true;
    cf__pp_doom(p);
  }
  pthread_cond_broadcast(&p->cv); /* submitters waiting for a slot */
  cf__pp_unlock(p);
  if (cancel) cancel_all(p, kill_them, signo);
  if ((flags & CF_SHUTDOWN_CANCEL_FUTURES) && !kill_them) stop_running(p);
  bool own = cf__pp_own_thread(p); /* a callback: never wait */
  if (kill_them) {
    stop_workers(p, signo, !own);
  } else if ((flags & CF_SHUTDOWN_WAIT) && !own) {
    wait_all_done(p);
    stop_workers(p, SIGKILL, true); /* idle now: nothing of theirs to lose */
  }
  cf__pp_lock(p);
  bool stopped = p->stopped;
  cf__pp_unlock(p);
  if (stopped && !own) cf__pp_fail_remaining(p);
  return 0;
}

static int pp_destroy(cf_executor *ex) {
  cf__pool *p = pool_of(ex);
  cf__assert(!cf__pp_own_thread(p)); /* refused by is_worker (executor.c) */
  pp_shutdown(ex, CF_SHUTDOWN_WAIT);
  cf__pp_lock(p);
  p->sv_stop = true;
  cf__pp_unlock(p);
  cf__sv_kick(p->cfg.evfd);
  pthread_join(p->sv, NULL);
  /* No process of the pool is left: settle and free every slot. */
  cf__pp_fail_remaining(p);
  cf__cb_stop(p); /* the callbacks queued so far run first */
  /* Give the payload pages back: futures still alive need only the slots. */
  cf__seg *seg = &p->cfg.seg;
  for (uint32_t r = 0; r < seg->p.nbig; r++)
    cf__seg_release(seg, cf__seg_big_arg_area(seg, r), p->cfg.max_arg);
  if (p->cfg.max_result > CF__SEG_SLOT_RES)
    for (unsigned i = 0; i < p->cfg.nworkers; i++)
      cf__seg_release(seg, cf__seg_res_area(seg, i), p->cfg.max_result);
  cf__pp_lock(p);
  p->destroyed = true;
  cf__pp_unlock(p);
  p->base.magic = 0;
  cf__pp_unref(p);
  return 0;
}

static int pp_stats(cf_executor *ex, cf_stats *out) {
  cf__pool *p = pool_of(ex);
  const cf__seg *seg = &p->cfg.seg;
  /* relaxed: statistics, not a snapshot */
  out->submitted = atomic_load_explicit(&p->submitted, memory_order_relaxed);
  out->cancelled = atomic_load_explicit(&p->cancelled, memory_order_relaxed);
  out->crashed = atomic_load_explicit(&p->crashed, memory_order_relaxed);
  out->respawned = atomic_load_explicit(&p->respawned, memory_order_relaxed);
  out->deadline_expired = atomic_load_explicit(&p->expired, memory_order_relaxed);
  out->timed = atomic_load_explicit(&p->timed, memory_order_relaxed);
  out->queue_wait_ns = atomic_load_explicit(&p->queue_wait_ns, memory_order_relaxed);
  out->run_ns = atomic_load_explicit(&p->run_ns, memory_order_relaxed);
  for (unsigned i = 0; i < p->cfg.nworkers; i++) {
    out->completed += atomic_load_explicit(&seg->workers[i].completed, memory_order_relaxed);
    out->parks += atomic_load_explicit(&seg->workers[i].parks, memory_order_relaxed);
  }
  out->queued = cf__ring_count(&seg->ctl->sq);
  out->workers = p->cfg.nworkers;
  return 0;
}

/* On the pool's own threads (a done callback): destroy or a waiting
 * shutdown there could never finish. (In a worker, or any other process,
 * every call was refused already: CF_EDEADLK / CF_EFORKED, executor.h.) */
static bool pp_is_worker(cf_executor *ex) {
  return cf__pp_own_thread(pool_of(ex));
}
static unsigned pp_workers(cf_executor *ex) {
  return pool_of(ex)->cfg.nworkers;
}
static size_t pp_max_result(cf_executor *ex) {
  return pool_of(ex)->cfg.max_result;
}
static size_t pp_max_arg(cf_executor *ex) {
  return pool_of(ex)->cfg.max_arg;
}

static const cf__executor_vtbl pp_exec_vtbl = {
    .submit = pp_submit,
    .shutdown = pp_shutdown,
    .destroy = pp_destroy,
    .stats = pp_stats,
    .is_worker = pp_is_worker,
    .workers = pp_workers,
    .max_result = pp_max_result,
    .max_arg = pp_max_arg,
};

/* ---- creation ---- */

static unsigned log2_of(size_t v) {
  unsigned l = 0;
  while (((size_t)1 << l) < v) l++;
  return l;
}

/* Slots when max_futures is 0: the ring's worth queued, a task running on
 * every worker, and as much again done and not yet settled. */
static size_t default_slots(size_t ring, unsigned workers) {
  size_t n = 2 * ring + 2 * (size_t)workers;
  return n > CF__MAX_FUTURES ? CF__MAX_FUTURES : n;
}

int cf_process_pool_new(const cf_options *opts, cf_executor **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf__options o;
  if (cf__options_load(opts, &o) != 0) return CF_EINVAL;
  _Static_assert(CF__MAX_FUTURES <= CF__HINT_IDX_MASK, "a slot index fits a hint");
  /* Exec mode (exec.h): a pointer argument means nothing in a process that
   * starts from the program file, and that program must load the library
   * at start (else its constructor never turns the process into a zygote). */
  if (o.start_mode == CF_START_EXEC && o.initializer_arg) return CF_EINVAL;
  if (o.start_mode == CF_START_EXEC && !cf__image_loaded_at_start((uintptr_t)cf_process_pool_new))
    return CF_ENOTSUP;
  unsigned nworkers = o.workers;
  size_t ring = o.ring_capacity;
  size_t nslots = o.max_futures ? o.max_futures : default_slots(ring, nworkers);

  cf__pool *p = calloc(1, sizeof *p);
  if (!p) return CF_ENOMEM;
  p->base.vt = &pp_exec_vtbl;
  p->base.magic = CF__EXECUTOR_MAGIC;
  p->base.owner_pid = cf__self_pid(); /* every call from another process: CF_EFORKED */
  p->cfg.owner_ex = &p->base;
  atomic_init(&p->refs, 1);
  cf__pool_cfg *c = &p->cfg;
  c->start = o.start_mode;
  c->parent_pid = p->base.owner_pid;
  c->nworkers = nworkers;
  c->max_tasks = o.max_tasks_per_worker;
  c->max_arg = o.max_arg_size;
  c->max_result = o.max_result_size;
  c->max_queued = o.max_queued;
  c->nslots = (uint32_t)nslots;
  memcpy(c->name, o.name, sizeof c->name);
  c->init = o.initializer;
  c->init_arg = o.initializer_arg;
  c->pin = o.pin_cpus;
  c->cpus = o.cpus;
  c->evfd = c->sock = c->exec_cwd = -1;
  atomic_init(&c->zsock, -1);
  p->zpidfd = -1;
  cf__mutex_init(&p->mu);
  pthread_cond_init(&p->cv, NULL);
  pthread_mutex_init(&p->cb_mu, NULL);
  pthread_cond_init(&p->cb_cv, NULL);
  int e = cf__text_collect(&c->text);
  if (e) goto fail;
  if (c->start == CF_START_EXEC) {
    cf__image_collect(&c->image);
    e = cf__exec_snapshot(c);
    if (e) goto fail;
  }
  /* the workers' signal mask: the creating thread's */
  pthread_sigmask(SIG_SETMASK, NULL, &c->host_mask);

  cf__seg_params sp = {
      .nworkers = nworkers,
      .nslots = (uint32_t)nslots,
      .nbig = nworkers + 2, /* every worker busy with one, and two queued */
      .sq_log2 = log2_of(ring),
      .cq_log2 = log2_of(nslots < 64 ? 64 : nslots), /* a notice per slot fits */
      .max_arg = o.max_arg_size,
      .max_result = o.max_result_size,
  };
  e = cf__seg_create(&c->seg, &sp);
  if (e) goto fail;
  /* An exec'ed zygote maps the memfd itself: the host's own forks need not
   * see the segment at all (a fork of the host cannot use the pool). */
  if (c->start == CF_START_EXEC) (void)madvise(c->seg.base, c->seg.size, MADV_DONTFORK);
  e = cf__slots_init(&p->slots, (uint32_t)nslots, c->seg.p.nbig);
  if (!e && !(p->order = calloc(nslots, sizeof *p->order))) e = CF_ENOMEM;
  if (e) goto fail;
  e = CF_ENOMEM;
  p->w = calloc(nworkers ? nworkers : 1, sizeof *p->w);
  if (!p->w) goto fail;
  for (unsigned i = 0; i < nworkers; i++) {
    atomic_store(&c->seg.workers[i].taking, CF__HINT_NONE);
    atomic_store(&c->seg.workers[i].cur_slot, CF__HINT_NONE);
  }
  e = CF_ESYS;
  c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (c->evfd < 0) goto fail;
  cf__registry_add(c);

  /* The pool's threads (and the zygote the supervisor forks) run with every
   * signal blocked: signals meant for the program go to its own threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  e = cf__cb_start(p);
  int r = e ? 0 : pthread_create(&p->sv, NULL, cf__supervisor_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e) goto fail;
  e = CF_ESYS;
  if (r != 0) goto fail;
  cf__pp_lock(p);
  while (!p->sv_started) cf__mutex_wait(&p->mu, &p->cv);
  e = p->sv_error;
  cf__pp_unlock(p);
  if (e) {
    pthread_join(p->sv, NULL);
    goto fail;
  }
  *out = &p->base;
  return 0;
fail:
  cf__cb_stop(p);
  cf__pp_unref(p); /* the only reference: frees everything made so far */
  return e;
}
