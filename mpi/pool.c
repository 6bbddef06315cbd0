/*
 * pool.c — cf_mpi_pool_new and the MPI pool's executor and future vtables
 * (the design of the whole wing is in mpi_pool.h).
 *
 * DESIGN (this file)
 * Submit (any rank-0 thread, no MPI call): check the size and the pool
 * state, translate the function (and a map chunk's inner function) into
 * (module, offset) — a function in no known module is CF_ENOTLOADED here —
 * copy the argument into a new future, push it on the inbox, kick the
 * progress thread if it sleeps. max_queued bounds the futures not yet
 * sent: submit waits for room (CF_EAGAIN with CF_SUBMIT_NOWAIT).
 *
 * Shutdown: CF_SHUTDOWN_CANCEL_FUTURES asks the progress thread to cancel
 * every PENDING future and waits until it did (so they are done when
 * shutdown returns); CF_SHUTDOWN_KILL cannot kill a rank: it sends STOP to
 * every running task, like the thread pool's stop request; CF_SHUTDOWN_WAIT
 * waits until the progress thread holds no future (every task answered).
 * Destroy: shutdown with wait, then the progress thread closes the pool on
 * the workers and ends; then the callback thread ends.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mpi_pool.h"
#include "options.h"
#include "sys.h"

static const cf__executor_vtbl mp_exec_vtbl;

static inline cf__mpi_pool *pool_of(cf_executor *ex) {
  return (cf__mpi_pool *)ex;
}

static void pool_free(cf__mpi_pool *p) {
  if (p->evfd >= 0) close(p->evfd);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->cmu);
  pthread_cond_destroy(&p->ccv);
  if (p->spawned && p->peers) {
    for (unsigned w = 0; w < p->nworkers; w++)
      if (p->peers[w].pidfd >= 0) close(p->peers[w].pidfd);
    free(p->peers);
  }
  if (p->bbuf)
    for (unsigned w = 0; w < p->nworkers; w++) free(p->bbuf[w]);
  free(p->bbuf);
  free(p->bbuf_len);
  free(p->bbuf_cap);
  free(p->bbuf_count);
  free(p->slots);
  free(p->busy);
  free(p->gone);
  free(p->sends);
  free(p->heap);
  free(p->rbuf);
  free(p->stops);
  p->base.magic = 0;
  free(p);
}

void cf__mpi_pool_unref(cf__mpi_pool *p) {
  /* acq_rel: every use of the pool happens before the free */
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) pool_free(p);
}

/* ---- the future vtable ---- */

static int mf_result(cf_future *f, void *out, size_t cap, size_t *len) {
  return cf__future_copy_result(f, out, cap, len);
}

static int mf_error(cf_future *f, int *errp, int *code, char *msg, size_t cap) {
  /* relaxed: ordered by the caller's acquire load of the done word */
  int e = atomic_load_explicit(&f->err, memory_order_relaxed);
  if (e == 0) e = CF_EPROTO;
  if (errp) *errp = e;
  if (code) *code = e == CF_ETASK ? f->task_code : e;
  if (msg && cap) {
    const char *m = e == CF_ETASK ? (f->msg ? f->msg : "") : cf_strerror(e);
    size_t n = strnlen(m, cap - 1);
    memcpy(msg, m, n);
    msg[n] = 0;
  }
  return 0;
}

static int mf_crash_info(cf_future *f, cf_crash_info *out) {
  uint32_t w = atomic_load_explicit(f->word, memory_order_acquire);
  if (cf__st_state(w) != CF_STATE_FAILED ||
      atomic_load_explicit(&f->err, memory_order_relaxed) != CF_ECRASHED)
    return CF_EINVAL;
  /* the rank is not our child: its signal and status are unknown */
  *out = (cf_crash_info){.pid = f->task_code, .signal = 0, .exit_status = -1};
  return 0;
}

/* A task sent to a rank cannot be taken back: ask it to stop. */
static int mf_cancel_running(cf_future *f) {
  cf__mpi_pool *p = (cf__mpi_pool *)f->executor;
  cf__future_request_stop(f);
  pthread_mutex_lock(&p->mu);
  bool ok = !p->stopped;
  if (ok && p->nstops == p->stops_cap) {
    size_t cap = p->stops_cap ? 2 * p->stops_cap : 8;
    cf_future **n = realloc(p->stops, cap * sizeof *n);
    if (n) {
      p->stops = n;
      p->stops_cap = cap;
    } else {
      ok = false;
    }
  }
  if (ok) {
    cf__future_ref(f);
    p->stops[p->nstops++] = f;
    atomic_store(&p->req, true);
  }
  pthread_mutex_unlock(&p->mu);
  if (ok) cf__mpi_kick(p);
  uint32_t w = atomic_load_explicit(f->word, memory_order_acquire);
  if (!cf__st_done(w)) return CF_EBUSY;
  return cf__st_state(w) == CF_STATE_CANCELLED ? 0 : CF_EDONE;
}

static void mf_destroy(cf_future *f) {
  cf__mpi_pool_unref((cf__mpi_pool *)f->executor);
}

const cf__future_vtbl cf__mpi_future_vtbl = {
    .result = mf_result,
    .error = mf_error,
    .crash_info = mf_crash_info,
    .cancel_running = mf_cancel_running,
    .watch = NULL,
    .destroy = mf_destroy,
};

/* ---- submit ---- */

static int state_error(cf__mpi_pool *p) {
  pthread_mutex_lock(&p->mu);
  int e = p->broken ? CF_EBROKEN : (p->shutdown || p->stopped) ? CF_ESHUTDOWN : 0;
  pthread_mutex_unlock(&p->mu);
  return e;
}

static int mp_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline_abs,
                     unsigned flags, struct cf_scope *scope, cf_future **out) {
  (void)scope; /* scope membership is kept by the core (scope.c) */
  cf__mpi_pool *p = pool_of(ex);
  if (len > p->max_arg) return CF_E2BIG;
  if (atomic_load(&p->doomed)) {
    int e = state_error(p);
    if (e) return e;
  }
  cf__fnref r, inner = {0, 0, 0};
  if (cf__addr_encode(p->mods, (uintptr_t)fn, true, &r) != 0) return CF_ENOTLOADED;
  bool chunk = fn == cf__map_chunk_runner && len >= 16;
  if (chunk) {
    uint64_t v;
    memcpy(&v, arg, 8);
    if (cf__addr_encode(p->mods, (uintptr_t)v, true, &inner) != 0) return CF_ENOTLOADED;
  }
  if (p->max_queued && atomic_load(&p->queued) >= p->max_queued) {
    if (flags & CF_SUBMIT_NOWAIT) return CF_EAGAIN;
    atomic_fetch_add(&p->queue_waiters, 1); /* seq_cst: Dekker with pop_ready */
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->queued) >= p->max_queued && !p->broken && !p->shutdown && !p->stopped)
      pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_sub(&p->queue_waiters, 1);
    int e = state_error(p);
    if (e) return e;
  }
  cf_future *f = cf__future_alloc();
  if (!f) return CF_ENOMEM;
  if (cf__future_set_arg(f, arg, len) != 0) {
    cf__future_unref(f);
    cf__future_unref(f);
    return CF_ENOMEM;
  }
  if (chunk) { /* the copy carries the reference, not rank 0's address */
    uint64_t v = cf__fnref_pack(&inner);
    memcpy((void *)cf__future_arg(f), &v, 8);
  }
  f->vt = &cf__mpi_future_vtbl;
  f->executor = &p->base;
  f->fn = fn;
  f->deadline = deadline_abs;
  f->shared = 1; /* see mpi_pool.h: shared futex flavour, executor runs callbacks */
  f->ext[0] = cf__fnref_pack(&r);
  f->ext[1] = r.check;
  /* relaxed: counters; the push below publishes the future */
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->live, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->queued, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->submitted, 1, memory_order_relaxed); /* statistic */
  cf_future *head = atomic_load_explicit(&p->inbox, memory_order_relaxed);
  do {
    atomic_store_explicit(&f->next, head, memory_order_relaxed);
    /* seq_cst: publishes f to the progress thread's exchange (acquire
     * half) and is the first half of the Dekker with sleep_for() */
  } while (!atomic_compare_exchange_weak(&p->inbox, &head, f));
  if (atomic_load(&p->sleeping)) cf__mpi_kick(p);
  /* the pool's reference stays with the task; the handle goes out */
  *out = f;
  return 0;
}

/* ---- shutdown, destroy ---- */

static bool on_own_thread(cf__mpi_pool *p) {
  pthread_t self = pthread_self();
  return pthread_equal(self, p->ct) || pthread_equal(self, p->pt);
}

static void wait_live_zero(cf__mpi_pool *p) {
  atomic_fetch_add(&p->live_waiters, 1); /* seq_cst: Dekker with drop() */
  pthread_mutex_lock(&p->mu);
  while (atomic_load(&p->live) != 0 && !p->stopped) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  atomic_fetch_sub(&p->live_waiters, 1);
}

static int mp_shutdown(cf_executor *ex, unsigned flags) {
  cf__mpi_pool *p = pool_of(ex);
  pthread_mutex_lock(&p->mu);
  p->shutdown = true;
  atomic_store(&p->doomed, true);
  pthread_cond_broadcast(&p->cv); /* submitters waiting for room */
  if ((flags & (CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL)) && !p->stopped) {
    unsigned gen = ++p->cancel_gen;
    if (flags & CF_SHUTDOWN_KILL) p->kill_req = true; /* STOP for every running task */
    atomic_store(&p->req, true);
    pthread_mutex_unlock(&p->mu);
    cf__mpi_kick(p);
    pthread_mutex_lock(&p->mu);
    if (!pthread_equal(pthread_self(), p->pt))
      while ((int)(p->cancel_done - gen) < 0 && !p->stopped) pthread_cond_wait(&p->cv, &p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  if ((flags & CF_SHUTDOWN_WAIT) && !on_own_thread(p)) wait_live_zero(p);
  return 0;
}

/* Stop the threads once: the progress thread closes the pool on the
 * workers when nothing is live. */
static void pool_stop(cf__mpi_pool *p) {
  pthread_mutex_lock(&p->mu);
  bool first = !p->stop_once;
  p->stop_once = true;
  pthread_mutex_unlock(&p->mu);
  if (!first) return;
  wait_live_zero(p);
  pthread_mutex_lock(&p->mu);
  p->closing = true;
  atomic_store(&p->req, true);
  pthread_mutex_unlock(&p->mu);
  cf__mpi_kick(p);
  pthread_join(p->pt, NULL);
  pthread_mutex_lock(&p->cmu);
  p->cb_stop = true;
  pthread_mutex_unlock(&p->cmu);
  pthread_cond_signal(&p->ccv);
  pthread_join(p->ct, NULL);
  cf__mpi_job_remove(p);
}

/* From MPI_Finalize (launch.c): stop the tasks, wait for them, close. */
void cf__mpi_pool_finalize(cf__mpi_pool *p) {
  mp_shutdown(&p->base, CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL);
  pool_stop(p);
  cf__mpi_job_remove(p); /* in case it was stopped before */
}

static int mp_destroy(cf_executor *ex) {
  cf__mpi_pool *p = pool_of(ex);
  mp_shutdown(ex, CF_SHUTDOWN_WAIT);
  pool_stop(p);
  p->base.magic = 0;
  cf__mpi_pool_unref(p);
  return 0;
}

static int mp_stats(cf_executor *ex, cf_stats *out) {
  cf__mpi_pool *p = pool_of(ex);
  /* relaxed: statistics, not a snapshot */
  out->submitted = atomic_load_explicit(&p->submitted, memory_order_relaxed);
  out->completed = atomic_load_explicit(&p->completed, memory_order_relaxed);
  out->cancelled = atomic_load_explicit(&p->cancelled, memory_order_relaxed);
  out->crashed = atomic_load_explicit(&p->crashed, memory_order_relaxed);
  out->queued = atomic_load_explicit(&p->queued, memory_order_relaxed);
  out->workers = p->nworkers;
  return 0;
}

static bool mp_is_worker(cf_executor *ex) {
  return on_own_thread(pool_of(ex));
}
static unsigned mp_workers(cf_executor *ex) {
  return pool_of(ex)->nworkers;
}
static size_t mp_max_result(cf_executor *ex) {
  return pool_of(ex)->max_result;
}

static const cf__executor_vtbl mp_exec_vtbl = {
    .submit = mp_submit,
    .shutdown = mp_shutdown,
    .destroy = mp_destroy,
    .stats = mp_stats,
    .is_worker = mp_is_worker,
    .workers = mp_workers,
    .max_result = mp_max_result,
};

/* ---- creation ---- */

void cf_mpi_options_init(cf_mpi_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->max_inflight = 1;
  o->oversubscribe = false;
}

static int start_threads(cf__mpi_pool *p) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&p->ct, NULL, cf__mpi_callback_main, p);
  if (r == 0) {
    r = pthread_create(&p->pt, NULL, cf__mpi_progress_main, p);
    if (r != 0) {
      pthread_mutex_lock(&p->cmu);
      p->cb_stop = true;
      pthread_mutex_unlock(&p->cmu);
      pthread_cond_signal(&p->ccv);
      pthread_join(p->ct, NULL);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r == 0 ? 0 : CF_ESYS;
}

int cf_mpi_pool_new_ex(const cf_options *opts, const cf_mpi_options *mopts, cf_executor **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf_options o;
  cf_options_init(&o);
  if (opts) {
    size_t n = opts->size && opts->size < sizeof o ? opts->size : sizeof o;
    memcpy(&o, opts, n);
  }
  cf_mpi_options mo;
  cf_mpi_options_init(&mo);
  if (mopts) {
    size_t n = mopts->size && mopts->size < sizeof mo ? mopts->size : sizeof mo;
    memcpy(&mo, mopts, n);
  }
  if (o.max_arg_size > INT32_MAX || o.max_result_size > INT32_MAX || mo.max_inflight > 4096 ||
      o.workers > CF__MAX_WORKERS)
    return CF_EINVAL;
  int e = cf__mpi_job_setup(); /* a worker rank does not come back */
  if (e) return e;
  cf__mpi_job *job = &cf__mpi_the_job;

  cf__mpi_pool *p = calloc(1, sizeof *p);
  if (!p) return CF_ENOMEM;
  p->base.vt = &mp_exec_vtbl;
  p->base.magic = CF__EXECUTOR_MAGIC;
  atomic_init(&p->refs, 1);
  p->evfd = -1;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  pthread_mutex_init(&p->cmu, NULL);
  pthread_cond_init(&p->ccv, NULL);
  p->max_inflight = mo.max_inflight ? mo.max_inflight : 1;
  p->max_arg = o.max_arg_size;
  p->max_result = o.max_result_size;
  p->max_queued = o.max_queued;
  p->oversubscribe = mo.oversubscribe;
  p->mods = &job->mods;
  if (job->mode == CF__MPI_STATIC) {
    p->nworkers = o.workers && o.workers < job->nworkers ? o.workers : job->nworkers;
    if (p->nworkers > CF__MAX_WORKERS) p->nworkers = CF__MAX_WORKERS;
    p->peers = job->peers;
    p->comm = job->comm;
    for (unsigned w = 0; w < p->nworkers; w++)
      if (cf__mpi_peer_dead(&p->peers[w])) e = CF_EBROKEN; /* the job lost a rank */
  } else {
    p->spawned = true;
    /* default: one rank per CPU, counting this one */
    unsigned ncpu = cf__online_cpus();
    p->nworkers = o.workers ? o.workers : ncpu > 1 ? ncpu - 1 : 1;
    p->peers = calloc(p->nworkers, sizeof *p->peers);
    if (!p->peers) e = CF_ENOMEM;
    for (unsigned w = 0; !e && w < p->nworkers; w++) p->peers[w].pidfd = -1;
  }
  /* OPEN: limits and the initializer, translated like a task function */
  memset(&p->open, 0, sizeof p->open);
  p->open.magic = CF__MPI_MAGIC;
  p->open.version = CF__MPI_VERSION;
  p->open.type = CTL_OPEN;
  p->open.a = p->max_arg;
  p->open.b = p->max_result;
  if (!e && o.initializer) {
    cf__fnref r;
    if (cf__addr_encode(p->mods, (uintptr_t)o.initializer, true, &r) != 0) e = CF_ENOTLOADED;
    p->open.has_init = 1;
    p->open.init_off = r.off;
    p->open.init_check = r.check;
    p->open.init_mod = r.mod;
    if (!e && o.initializer_arg) {
      if (cf__addr_encode(p->mods, (uintptr_t)o.initializer_arg, false, &r) != 0) e = CF_EINVAL;
      p->open.has_arg = 1;
      p->open.arg_off = r.off;
      p->open.arg_mod = r.mod;
    }
  }
  size_t n = p->nworkers;
  if (!e) {
    p->slots = calloc(n * p->max_inflight, sizeof *p->slots);
    p->busy = calloc(n, sizeof *p->busy);
    p->gone = calloc(n, sizeof *p->gone);
    p->bbuf = calloc(n, sizeof *p->bbuf);
    p->bbuf_len = calloc(n, sizeof *p->bbuf_len);
    p->bbuf_cap = calloc(n, sizeof *p->bbuf_cap);
    p->bbuf_count = calloc(n, sizeof *p->bbuf_count);
    if (!p->slots || !p->busy || !p->gone || !p->bbuf || !p->bbuf_len || !p->bbuf_cap ||
        !p->bbuf_count)
      e = CF_ENOMEM;
  }
  if (!e) {
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->evfd < 0) e = CF_ESYS;
  }
  bool added = false;
  if (!e) {
    e = cf__mpi_job_add(p);
    added = !e;
  }
  if (!e) e = start_threads(p);
  if (e) {
    if (added) cf__mpi_job_remove(p);
    pool_free(p);
    return e;
  }
  pthread_mutex_lock(&p->mu);
  while (!p->started) pthread_cond_wait(&p->cv, &p->mu);
  e = p->start_err;
  pthread_mutex_unlock(&p->mu);
  if (e) { /* the progress thread has closed what it opened and ended */
    pthread_join(p->pt, NULL);
    pthread_mutex_lock(&p->cmu);
    p->cb_stop = true;
    pthread_mutex_unlock(&p->cmu);
    pthread_cond_signal(&p->ccv);
    pthread_join(p->ct, NULL);
    cf__mpi_job_remove(p);
    pool_free(p);
    return e;
  }
  *out = &p->base;
  return 0;
}

int cf_mpi_pool_new(const cf_options *o, cf_executor **out) {
  return cf_mpi_pool_new_ex(o, NULL, out);
}
