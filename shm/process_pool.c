/*
 * process_pool.c — cf_process_pool_new and the process pool's executor:
 * submit, shutdown, destroy, statistics (the design of the whole pool is
 * in pool.h).
 *
 * DESIGN (this file)
 * Submit:
 *   1. allocate a slot (slots.h) under `mu`; when none is free, wait on
 *      `cv`, or CF_EAGAIN with CF_SUBMIT_NOWAIT;
 *   2. write fn and the argument (inside the slot up to
 *      CF__SLOT_ARG_INLINE bytes, else into the slot's arena region);
 *   3. publish the word (gen, PENDING) with a release store;
 *   4. push the slot's hint onto the sq (ring full: retry after a short
 *      sleep, or CF_EAGAIN) and wake one sleeping worker if one sleeps;
 *   5. if the pool was doomed meanwhile, fail the slot here (cf__pp_doom);
 *   6. a deadline goes into the heap; a new earliest one kicks the
 *      supervisor.
 * Limits: at most max_futures futures of a pool are alive at once (a
 * future counts until it is released AND done); submit waits for one to go.
 * The pool holds `refs`: one for the executor handle and one per slot in
 * use, so futures may outlive cf_executor_destroy(); the last one frees the
 * segment.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#include "idle.h"
#include "image.h"
#include "protocol.h"
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

static int pp_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline_abs,
                     unsigned flags, cf_future **out) {
  cf__pool *p = pool_of(ex);
  if (len > p->cfg.max_arg) return CF_E2BIG;
  cf_future *f = cf__future_alloc();
  if (!f) return CF_ENOMEM;
  cf__pp_lock(p);
  for (;;) {
    int e = p->broken ? CF_EBROKEN : p->shutdown ? CF_ESHUTDOWN : 0;
    if (!e && cf__slots_full(&p->slots) && (flags & CF_SUBMIT_NOWAIT)) e = CF_EAGAIN;
    if (e) {
      cf__pp_unlock(p);
      cf__future_unref(f);
      cf__future_unref(f);
      return e;
    }
    if (!cf__slots_full(&p->slots)) break;
    p->free_waiters++;
    cf__mutex_wait(&p->mu, &p->cv);
    p->free_waiters--;
  }
  uint32_t s = cf__slots_alloc(&p->slots, f);
  uint32_t gen = p->slots.ps[s].gen;
  cf__pp_ref(p); /* the slot's */
  cf__pp_unlock(p);

  cf__slot *sl = cf__pp_slot(p, s);
  sl->fn = (uint64_t)(uintptr_t)fn;
  sl->deadline = deadline_abs;
  sl->arg_len = (uint32_t)len;
  if (len) memcpy(cf__slot_arg(&p->cfg.seg, sl, s, len), arg, len);
  cf__slot_future_bind(f, p, s, gen);
  f->fn = fn;
  f->deadline = deadline_abs;
  /* release: pairs with the worker's acquire in claim(): fn and the
   * argument are visible to whoever sees this word */
  atomic_store_explicit(&sl->word, cf__st_make(gen, 0, CF_STATE_PENDING), memory_order_release);

  cf__seg *seg = &p->cfg.seg;
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
        cf__future_unref(f);
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
    cf__settle st;
    cf__pp_lock(p);
    bool done =
        (p->broken || p->cancelling) &&
        cf__pp_fail_locked(p, s, gen, false, p->broken ? CF_STATE_FAILED : CF_STATE_CANCELLED,
                           p->broken ? CF_EBROKEN : CF_ECANCELLED, NULL, false, &st);
    cf__pp_unlock(p);
    if (done) cf__pp_settle_finish(p, &st);
  }
  if (deadline_abs > 0) {
    cf__pp_lock(p);
    bool first = cf__slots_deadline_add(&p->slots, s, deadline_abs);
    cf__pp_unlock(p);
    if (first) cf__sv_kick(p->cfg.evfd);
  }
  atomic_fetch_add_explicit(&p->submitted, 1, memory_order_relaxed); /* statistic */
  cf__future_unref(f); /* the executor's reference: the slot keeps the task */
  *out = f;
  return 0;
}

/* ---- shutdown and destroy ---- */

static void cancel_all(cf__pool *p, bool running) {
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1 && !running) break;
    for (uint32_t s = 0; s < p->cfg.nslots; s++) {
      cf__settle st;
      cf__pp_lock(p);
      cf__pslot *ps = &p->slots.ps[s];
      bool done = ps->in_use && cf__pp_fail_locked(p, s, ps->gen, pass == 1, CF_STATE_CANCELLED,
                                                   CF_ECANCELLED, NULL, false, &st);
      cf__pp_unlock(p);
      if (done) {
        /* statistic; a cancelled queued task is counted by the worker that
         * drops its hint */
        if (pass == 1) atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_relaxed);
        cf__pp_settle_finish(p, &st);
      }
    }
  }
}

/* Wait until every slot in use is done. */
static void wait_all_done(cf__pool *p) {
  cf__assert(!cf__sv_is_current(p)); /* its callbacks may be what they wait for */
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    cf__pp_lock(p);
    bool in_use = p->slots.ps[s].in_use;
    cf__pp_unlock(p);
    /* No submit allocates a slot after shutdown: a slot in use stays valid
     * until done, and one freed meanwhile is done. */
    if (in_use) (void)cf__word_wait(&cf__pp_slot(p, s)->word, -1, true);
  }
}

/* Enter the exit phase, kill the workers if kill_them, and, if `wait`,
 * wait until every worker is reaped (not on the supervisor: it reaps
 * them). */
static void stop_workers(cf__pool *p, bool kill_them, bool wait) {
  cf__assert(!wait || !cf__sv_is_current(p));
  cf__wake_workers_to_exit(p->cfg.seg.ctl);
  cf__pp_lock(p);
  if (kill_them && !p->zygote_dead) {
    for (unsigned i = 0; i < p->cfg.nworkers; i++)
      if (p->w[i].alive || p->w[i].spawning) cf__zsend(p->cfg.sock, CF__Z_KILL, (int)i, 0, SIGKILL);
  }
  while (wait && (p->nalive || p->nspawning)) cf__mutex_wait(&p->mu, &p->cv);
  cf__pp_unlock(p);
}

static int pp_shutdown(cf_executor *ex, unsigned flags) {
  cf__pool *p = pool_of(ex);
  cf__pp_lock(p);
  p->shutdown = true;
  if (flags & (CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL)) {
    p->cancelling = true;
    cf__pp_doom(p);
  }
  pthread_cond_broadcast(&p->cv); /* submitters waiting for a slot */
  cf__pp_unlock(p);
  bool kill_them = flags & CF_SHUTDOWN_KILL;
  if (flags & (CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL)) cancel_all(p, kill_them);
  if (cf__sv_is_current(p)) {
    /* From a done callback: the supervisor cannot wait for itself. */
    if (kill_them) stop_workers(p, true, false);
    return 0;
  }
  if (kill_them) {
    stop_workers(p, true, true);
  } else if (flags & CF_SHUTDOWN_WAIT) {
    wait_all_done(p);
    stop_workers(p, false, true);
  }
  return 0;
}

static int pp_destroy(cf_executor *ex) {
  cf__pool *p = pool_of(ex);
  cf__assert(!cf__sv_is_current(p)); /* refused by is_worker (executor.c) */
  pp_shutdown(ex, CF_SHUTDOWN_WAIT);
  cf__pp_lock(p);
  p->sv_stop = true;
  cf__pp_unlock(p);
  cf__sv_kick(p->cfg.evfd);
  pthread_join(p->sv, NULL);
  /* Every worker is reaped: nothing can write into a slot any more. */
  for (uint32_t s = 0; s < p->cfg.nslots; s++) {
    cf__settle st;
    memset(&st, 0, sizeof st);
    cf__pp_lock(p);
    cf__pslot *ps = &p->slots.ps[s];
    ps->quarantine = 0;
    /* every task is done: watches whose notice never came (a task
     * cancelled while queued whose hint no worker took) settle here */
    if (ps->in_use) {
      cf__pp_settle_locked(p, s, &st);
      if (!st.freed) st.freed = cf__pp_maybe_free_locked(p, s);
    }
    cf__pp_unlock(p);
    cf__pp_settle_finish(p, &st);
  }
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
  for (unsigned i = 0; i < p->cfg.nworkers; i++) {
    out->completed += atomic_load_explicit(&seg->workers[i].completed, memory_order_relaxed);
    out->parks += atomic_load_explicit(&seg->workers[i].parks, memory_order_relaxed);
    out->cancelled +=
        atomic_load_explicit(&seg->workers[i].dropped_cancelled, memory_order_relaxed);
  }
  out->queued = cf__ring_count(&seg->ctl->sq);
  out->workers = p->cfg.nworkers;
  return 0;
}

/* On the supervisor thread (a done callback): destroy or a waiting
 * shutdown there could never finish. (In a worker, or any other process,
 * every call was refused already: CF_EFORKED, executor.h.) */
static bool pp_is_worker(cf_executor *ex) {
  return cf__sv_is_current(pool_of(ex));
}
static unsigned pp_workers(cf_executor *ex) {
  return pool_of(ex)->cfg.nworkers;
}
static size_t pp_max_result(cf_executor *ex) {
  return pool_of(ex)->cfg.max_result;
}

static const cf__executor_vtbl pp_exec_vtbl = {
    .submit = pp_submit,
    .shutdown = pp_shutdown,
    .destroy = pp_destroy,
    .stats = pp_stats,
    .is_worker = pp_is_worker,
    .workers = pp_workers,
    .max_result = pp_max_result,
};

/* ---- creation ---- */

static unsigned log2_of(size_t v) {
  unsigned l = 0;
  while (((size_t)1 << l) < v) l++;
  return l;
}

int cf_process_pool_new(const cf_options *opts, cf_executor **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf__options o;
  if (cf__options_load(opts, &o) != 0) return CF_EINVAL;
  _Static_assert(CF__MAX_FUTURES <= CF__HINT_IDX_MASK, "a slot index fits a hint");
  /* Exec mode (exec.h): a pointer argument means nothing in a process that
   * starts from the program file, and that file must hold the library. */
  if (o.start_mode == CF_START_EXEC &&
      (o.initializer_arg || !cf__image_in_main_program((uintptr_t)cf_process_pool_new)))
    return CF_EINVAL;
  unsigned nworkers = o.workers;
  size_t nslots = o.max_futures;
  size_t ring = o.ring_capacity;

  cf__pool *p = calloc(1, sizeof *p);
  if (!p) return CF_ENOMEM;
  p->base.vt = &pp_exec_vtbl;
  p->base.magic = CF__EXECUTOR_MAGIC;
  p->base.owner_pid = cf__self_pid(); /* every call from another process: CF_EFORKED */
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
  c->evfd = c->sock = -1;
  atomic_init(&c->zsock, -1);
  cf__mutex_init(&p->mu);
  pthread_cond_init(&p->cv, NULL);
  cf__text_collect(&c->text);
  if (c->start == CF_START_EXEC) cf__image_collect(&c->image);
  /* the workers' signal mask: the creating thread's */
  pthread_sigmask(SIG_SETMASK, NULL, &c->host_mask);

  cf__seg_params sp = {
      .nworkers = nworkers,
      .nslots = (uint32_t)nslots,
      .sq_log2 = log2_of(ring),
      .cq_log2 = log2_of(nslots < 64 ? 64 : nslots),
      .max_arg = o.max_arg_size,
      .max_result = o.max_result_size,
  };
  int e = cf__seg_create(&c->seg, &sp);
  if (e) goto fail;
  /* An exec'ed zygote maps the memfd itself: the host's own forks need not
   * see the segment at all (a fork of the host cannot use the pool). */
  if (c->start == CF_START_EXEC) (void)madvise(c->seg.base, c->seg.size, MADV_DONTFORK);
  e = cf__slots_init(&p->slots, (uint32_t)nslots);
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
  int sv[2];
  if (c->evfd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) goto fail;
  c->sock = sv[0];
  atomic_store(&c->zsock, sv[1]);
  cf__registry_add(c);

  /* The supervisor (and the zygote it forks) run with every signal blocked:
   * signals meant for the program go to its own threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&p->sv, NULL, cf__supervisor_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
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
  cf__pp_unref(p); /* the only reference: frees everything made so far */
  return e;
}
