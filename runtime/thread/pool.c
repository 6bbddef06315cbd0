/*
 * pool.c — the work-stealing thread pool: its lifecycle (create, submit,
 * shutdown, drain, destroy, stats). The scheduler is in scheduler.c, the
 * help-while-waiting loop in help.c, fork-join frames in frames.c.
 *
 * DESIGN
 * Shutdown and submitters. `gate` holds the SHUT/BROKEN/CANCEL flags and a
 * count of outside submitters between their check and their push. Outside
 * submit: fetch_add the count, check the flags, push, fetch_sub. Shutdown
 * sets the flags and, when it must drain, waits for the count to reach zero
 * first, so no submit slips in behind the drain. A worker exits when the
 * pool is shut down, no submitter is in flight and every queue is empty.
 * A submit from inside a worker after shutdown is refused with
 * CF_ESHUTDOWN, as from outside (push_inside() has the race argument).
 *
 * Bound (max_queued). `queued` counts tasks between submit and the moment a
 * worker takes them out of a queue. Outside submitters wait for room on a
 * Concurrency Kit event count (ck_ec32, with our futex ops), or get
 * CF_EAGAIN with CF_SUBMIT_NOWAIT. A worker's own submit never waits (it
 * would wait for itself): it gets CF_EAGAIN with NOWAIT, else goes over.
 *
 * Stats are per-worker counters written only by their worker (relaxed
 * load + store, no RMW) and summed by cf_executor_stats.
 *
 * Memory per in-flight task: one cf_future (future.h; sizeof is reported by
 * the tests), plus a heap copy of arguments over CF__INLINE_ARG bytes and of
 * results over CF__INLINE_RES bytes. Futures come from a per-thread cache.
 */
#include "thread_pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "scheduler.h"

/* ck_ec's platform hooks over our futex layer. */
static int ec_gettime(const struct ck_ec_ops *ops, struct timespec *out) {
  (void)ops;
  return clock_gettime(CLOCK_MONOTONIC, out);
}
static void ec_wait32(const struct ck_ec_wait_state *st, const uint32_t *addr, uint32_t expected,
                      const struct timespec *deadline) {
  (void)st;
  int64_t dl = deadline ? (int64_t)deadline->tv_sec * 1000000000 + deadline->tv_nsec : -1;
  cf__futex_wait((_Atomic uint32_t *)addr, expected, dl, false);
}
static void ec_wake32(const struct ck_ec_ops *ops, const uint32_t *addr) {
  (void)ops;
  cf__futex_wake((_Atomic uint32_t *)addr, INT32_MAX, false);
}
static const struct ck_ec_ops ec_ops = {
    .gettime = ec_gettime,
    .wait32 = ec_wait32,
    .wake32 = ec_wake32,
};
const struct ck_ec_mode cf__tp_ec_mode = {.ops = &ec_ops, .single_producer = false};

static void wait_no_inflight(pool *p) {
  while (atomic_load(&p->gate) >= GATE_ONE) sched_yield();
}

/* Cancel (or fail with CF_EBROKEN) one future taken out of a queue by a
 * drain, and drop the queue's reference. Runs its done-callbacks: never
 * called with an internal lock held. */
/* The pool whose drain runs on this thread (its callbacks may not destroy
 * it: the drain still walks its queues). */
static _Thread_local pool *tl_draining;

static void settle_drained(pool *p, cf_future *f, bool broken) {
  task_taken(p);
  if (broken) {
    cf__future_fail(f, CF_EBROKEN);
  } else if (cf__future_transition(f, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED)) {
    atomic_fetch_add(&p->drained_cancelled, 1);
  }
  cf__future_unref(f);
}

/* Take every queued future out (any thread; the gate must be closed) and
 * cancel it, or fail it with CF_EBROKEN. User code (done-callbacks) runs
 * here, so no internal lock may be held while a future is settled: the
 * injector's entries are collected under its consumer lock (linked through
 * their now unused `next`) and settled after the unlock; deque entries are
 * taken by steals, which hold nothing. A callback may call shutdown or
 * drain again (another drain is then just another consumer). */
static void drain(pool *p, bool broken) {
  pool *outer = tl_draining;
  tl_draining = p;
  for (;;) {
    bool any = false;
    while (!cf__injector_trylock(&p->inj)) sched_yield();
    cf_future *f, *list = NULL, *last = NULL;
    while ((f = cf__injector_pop(&p->inj)) != NULL) {
      /* relaxed: f left the queue; this thread alone reads the links */
      atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
      if (last)
        atomic_store_explicit(&last->next, f, memory_order_relaxed);
      else
        list = f;
      last = f;
    }
    cf__injector_unlock(&p->inj);
    while ((f = list) != NULL) {
      list = atomic_load_explicit(&f->next, memory_order_relaxed);
      any = true;
      settle_drained(p, f, broken);
    }
    for (unsigned i = 0; i < p->n; i++) {
      while ((f = cf__deque_steal(&p->w[i].dq)) != NULL) {
        if (f == CF__DEQUE_ABORT) continue;
        any = true;
        if (is_frame(f)) {
          /* a frame is never cancelled: its spawner's running task joins
           * it, so it runs here (no lock is held) */
          cf__sched_run_frame(NULL, frame_untag(f));
          continue;
        }
        settle_drained(p, f, broken);
      }
    }
    if (!any && !cf__injector_nonempty(&p->inj)) break;
    if (!any) sched_yield(); /* a push is between its exchange and its link */
  }
  tl_draining = outer;
}

void cf__tp_break(pool *p) {
  atomic_fetch_or(&p->flags, GATE_BROKEN);
  uint64_t old = atomic_fetch_or(&p->gate, GATE_BROKEN);
  if (old & GATE_BROKEN) return;
  wait_no_inflight(p);
  drain(p, true);
  if (p->max_queued) ck_ec32_inc(&p->ec, &cf__tp_ec_mode);
  cf__park_notify_all(&p->park);
}

static int queue_room(pool *p, unsigned flags, bool inside) {
  for (;;) {
    uint64_t q = atomic_load(&p->queued);
    if (q < p->max_queued) {
      if (atomic_compare_exchange_weak(&p->queued, &q, q + 1)) return 0;
      continue;
    }
    if (flags & CF_SUBMIT_NOWAIT) return CF_EAGAIN;
    if (inside) {
      atomic_fetch_add(&p->queued, 1); /* a worker cannot wait for itself */
      return 0;
    }
    uint64_t g = atomic_load(&p->gate);
    if (g & GATE_BROKEN) return CF_EBROKEN;
    if (g & GATE_SHUT) return CF_ESHUTDOWN;
    uint32_t v = ck_ec32_value(&p->ec);
    if (atomic_load(&p->queued) < p->max_queued) continue;
    g = atomic_load(&p->gate);
    if (g & (GATE_SHUT | GATE_BROKEN)) continue;
    ck_ec32_wait(&p->ec, &cf__tp_ec_mode, v, NULL);
  }
}

static void queue_unroom(pool *p) {
  if (p->max_queued) task_taken(p);
}

/* A worker's submit: push f onto its own deque (the injector when full),
 * then wake a sleeper if none searches (park.h, site 2). A submit from a
 * task after shutdown is refused (CF_ESHUTDOWN, as Python does): the other
 * workers may have exited, and a child that only its parent's worker could
 * run would hang a parent that waits for it by other means than cfutures.
 * The flags are re-read after the fence: a shutdown whose flag store we do
 * not see then is ordered after our push, so the exiting workers' seq_cst
 * re-check of every queue (should_exit) sees the child and they stay; a
 * shutdown we do see takes the child back out if it is still there. */
static inline int push_inside(pool *p, worker *w, cf_future *f) {
  bool in_deque = cf__deque_push(&w->dq, f);
  if (__builtin_expect(!in_deque, 0)) cf__injector_push(&p->inj, f); /* counted there */
  atomic_thread_fence(memory_order_seq_cst); /* the Dekker pair's fence (park.h) */
  /* relaxed: ordered by the fence (see above) */
  uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
  if (__builtin_expect(g & (GATE_SHUT | GATE_BROKEN), 0) && in_deque) {
    cf_future *t = cf__deque_pop(&w->dq);
    if (t == f) return g & GATE_BROKEN ? CF_EBROKEN : CF_ESHUTDOWN;
    /* f was stolen meanwhile (a thief runs it): t is an older entry */
    if (t) (void)cf__deque_push(&w->dq, t);
  }
  if (in_deque) stat_inc(&w->st.submitted);
  if (cf__park_should_notify(&p->park)) cf__park_notify_one(&p->park);
  return 0;
}

__attribute__((noinline)) static int submit_slow(pool *p, worker *w, cf_fn fn, const void *arg,
                                                 size_t len, int64_t deadline, unsigned flags,
                                                 struct cf_scope *scope, cf_future **out) {
  bool inside = w && w->pool == p;
  int rc;
  if (inside) {
    /* relaxed: a flag check; the worker drains its own deque anyway */
    uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
    if (__builtin_expect(g & (GATE_BROKEN | GATE_SHUT), 0))
      return g & GATE_BROKEN ? CF_EBROKEN : CF_ESHUTDOWN;
  }
  if (p->max_queued && (rc = queue_room(p, flags, inside)) != 0) return rc;
  cf_future *f = cf__future_alloc_fast();
  if (!f) {
    queue_unroom(p);
    return CF_ENOMEM;
  }
  if (len <= CF__INLINE_ARG) {
    cf__copy(f->arg_inline, arg, len);
    f->arg_len = (uint32_t)len;
  } else if ((rc = cf__future_set_arg(f, arg, len)) != 0) {
    cf__future_unref(f);
    cf__future_unref(f);
    queue_unroom(p);
    return rc;
  }
  f->fn = fn;
  f->deadline = deadline;
  f->executor = &p->base;
  f->ext[0] = 0;
  f->ext[1] = 0;
  f->scope = scope;
  /* relaxed: a hint (cf_executor_time_tasks) */
  f->t_submit = atomic_load_explicit(&p->base.time_tasks, memory_order_relaxed) ? cf__now_ns() : 0;
  /* the pool's timer fails it at its deadline (deadline.h) */
  if (deadline && (rc = cf__deadline_watch(&p->base, p->name, f)) != 0) {
    cf__future_unref(f);
    cf__future_unref(f);
    queue_unroom(p);
    return rc;
  }
  if (inside) {
    if ((rc = push_inside(p, w, f)) != 0) {
      if (deadline) cf__deadline_unwatch(f);
      cf__future_unref(f);
      cf__future_unref(f);
      queue_unroom(p);
      return rc;
    }
    *out = f;
    return 0;
  }
  uint64_t g = atomic_fetch_add(&p->gate, GATE_ONE);
  if (g & (GATE_SHUT | GATE_BROKEN)) {
    atomic_fetch_sub(&p->gate, GATE_ONE);
    if (deadline) cf__deadline_unwatch(f);
    cf__future_unref(f);
    cf__future_unref(f);
    queue_unroom(p);
    return g & GATE_BROKEN ? CF_EBROKEN : CF_ESHUTDOWN;
  }
  uint64_t k = cf__injector_push(&p->inj, f); /* seq_cst exchange: the Dekker "push" */
  atomic_fetch_sub(&p->gate, GATE_ONE);
  cf__park_notify_one(&p->park); /* seq_cst load of idle inside */
  /* The backlog check, every BACKLOG_EVERY-th outside submit: a searcher
   * that has lost its CPU still counts as searching, so the submits above
   * wake nobody, and the tasks wait until it runs again — on this VM up to
   * 1.5 ms while the other CPU sat idle with a worker parked on it (a
   * monitor thread saw the injector holding 70-240 tasks, its lock free,
   * one worker counted searching, the other parked; the scheduler keeps a
   * cache-hot thread where it is rather than move it to the idle CPU). A
   * backlog of BACKLOG_WAKE then wakes a parked worker anyway. relaxed: a
   * heuristic; a stale popped only makes the backlog look larger (one
   * extra wake, harmless). Signed: popped may already count tasks that
   * other submitters pushed after this one (a backlog below 0, not a huge
   * unsigned one that woke a worker for nothing). */
  if (__builtin_expect((k & (BACKLOG_EVERY - 1)) == BACKLOG_EVERY - 1, 0) &&
      (int64_t)(k + 1 - atomic_load_explicit(&p->inj.popped, memory_order_relaxed)) >= BACKLOG_WAKE)
    cf__park_notify_extra(&p->park);
  *out = f;
  return 0;
}

/* The fork-join fast path: a worker of this pool, a small argument, no
 * bound, no deadline, no timing: a future from the thread's cache onto the
 * bottom of our deque. */
static int tp_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline,
                     unsigned flags, struct cf_scope *scope, cf_future **out) {
  pool *p = (pool *)ex;
  worker *w = cf__tl_worker;
  /* relaxed: time_tasks is a hint (cf_executor_time_tasks) */
  if (__builtin_expect(w != NULL && w->pool == p && len <= CF__INLINE_ARG && !p->max_queued &&
                           !deadline &&
                           !atomic_load_explicit(&ex->time_tasks, memory_order_relaxed),
                       1)) {
    /* relaxed: a flag check; the worker drains its own deque anyway */
    uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
    if (__builtin_expect(!(g & (GATE_BROKEN | GATE_SHUT)), 1)) {
      cf_future *f = cf__future_alloc_fast();
      if (f) {
        cf__copy(f->arg_inline, arg, len);
        f->arg_len = (uint32_t)len;
        f->fn = fn;
        f->deadline = deadline;
        f->executor = &p->base;
        f->ext[0] = 0;
        f->ext[1] = 0;
        f->scope = scope;
        f->t_submit = 0;
        int rc = push_inside(p, w, f);
        if (__builtin_expect(rc != 0, 0)) {
          cf__future_unref(f);
          cf__future_unref(f);
          return rc;
        }
        *out = f;
        return 0;
      }
    }
  }
  return submit_slow(p, w, fn, arg, len, deadline, flags, scope, out);
}

static void join_workers(pool *p) {
  pthread_mutex_lock(&p->join_lock);
  if (!p->joined) {
    for (unsigned i = 0; i < p->n; i++)
      if (p->w[i].started) pthread_join(p->w[i].thread, NULL);
    p->joined = true;
  }
  pthread_mutex_unlock(&p->join_lock);
}

static int tp_shutdown(cf_executor *ex, unsigned flags) {
  pool *p = (pool *)ex;
  worker *w = cf__tl_worker;
  bool inside = w && w->pool == p;
  /* a worker, or the timer thread (a callback of a future it expired),
   * cannot wait for the workers */
  if (inside || cf__deadline_is_timer_thread(ex)) flags &= ~CF_SHUTDOWN_WAIT;
  if (flags & CF_SHUTDOWN_KILL) flags |= CF_SHUTDOWN_CANCEL_FUTURES;
  /* running tasks (and frames) see cf_call_stop_requested() */
  if (flags & CF_SHUTDOWN_CANCEL_FUTURES) atomic_store(&p->base.stop_all, true);
  uint64_t add = GATE_SHUT | ((flags & CF_SHUTDOWN_CANCEL_FUTURES) ? GATE_CANCEL : 0);
  atomic_fetch_or(&p->flags, (uint32_t)add);
  atomic_fetch_or(&p->gate, add);
  if (flags & CF_SHUTDOWN_CANCEL_FUTURES) {
    wait_no_inflight(p);
    drain(p, false);
  }
  if (p->max_queued) ck_ec32_inc(&p->ec, &cf__tp_ec_mode);
  cf__park_notify_all(&p->park);
  if (flags & CF_SHUTDOWN_WAIT) join_workers(p);
  return 0;
}

static int tp_destroy(cf_executor *ex) {
  pool *p = (pool *)ex;
  if (tl_draining == p) return CF_EINVAL; /* from a callback its own drain runs */
  tp_shutdown(ex, CF_SHUTDOWN_WAIT);
  drain(p, false); /* nothing should be left; stragglers are cancelled */
  /* every future is done now: the timer goes */
  cf__deadline_destroy(ex);
  for (unsigned i = 0; i < p->n; i++) cf__deque_free(&p->w[i].dq);
  cf__park_destroy(&p->park);
  pthread_mutex_destroy(&p->join_lock);
  p->base.magic = 0;
  free(p->w);
  free(p);
  return 0;
}

static int tp_stats(cf_executor *ex, cf_stats *out) {
  pool *p = (pool *)ex;
  uint64_t queued = cf__injector_len(&p->inj);
  /* relaxed: counters summed now, not a snapshot */
  out->submitted = atomic_load_explicit(&p->inj.pushed, memory_order_relaxed) -
                   atomic_load_explicit(&p->requeued, memory_order_relaxed);
  out->cancelled = atomic_load_explicit(&p->drained_cancelled, memory_order_relaxed);
  for (unsigned i = 0; i < p->n; i++) {
    wstats *s = &p->w[i].st;
    out->submitted += atomic_load_explicit(&s->submitted, memory_order_relaxed);
    out->completed += atomic_load_explicit(&s->completed, memory_order_relaxed);
    out->cancelled += atomic_load_explicit(&s->cancelled, memory_order_relaxed);
    out->stolen += atomic_load_explicit(&s->stolen, memory_order_relaxed);
    out->parks += atomic_load_explicit(&s->parks, memory_order_relaxed);
    out->timed += atomic_load_explicit(&s->timed, memory_order_relaxed);
    out->queue_wait_ns += atomic_load_explicit(&s->queue_wait_ns, memory_order_relaxed);
    out->run_ns += atomic_load_explicit(&s->run_ns, memory_order_relaxed);
    queued += (uint64_t)cf__deque_size(&p->w[i].dq);
  }
  out->queued = queued;
  out->workers = p->n;
  out->deadline_expired = cf__deadline_expired(ex);
  return 0;
}

/* A worker, or the pool's timer thread (which runs the callbacks of the
 * futures it expires): executor.c refuses a destroy from there. */
static bool tp_is_worker(cf_executor *ex) {
  worker *w = cf__tl_worker;
  return (w && w->pool == (pool *)ex) || cf__deadline_is_timer_thread(ex);
}

static unsigned tp_workers(cf_executor *ex) {
  return ((pool *)ex)->n;
}
static size_t tp_max_result(cf_executor *ex) {
  return UINT32_MAX;
}

static const cf__executor_vtbl tp_vtbl = {
    .submit = tp_submit,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .stats = tp_stats,
    .is_worker = tp_is_worker,
    .workers = tp_workers,
    .max_result = tp_max_result,
};

int cf__thread_pool_worker_index(const cf_executor *ex) {
  worker *w = cf__tl_worker;
  if (!w || (ex && (const cf_executor *)w->pool != ex)) return -1;
  return (int)w->index;
}

int cf_thread_pool_new(const cf_options *o, cf_executor **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf__options opt;
  if (cf__options_load(o, &opt) != 0) return CF_EINVAL;
  unsigned n = opt.workers;
  pool *p = aligned_alloc(CF__CACHE_LINE, (sizeof *p + CF__CACHE_LINE - 1) & ~(size_t)63);
  if (!p) return CF_ENOMEM;
  memset(p, 0, sizeof *p);
  p->base.vt = &tp_vtbl;
  p->base.magic = CF__EXECUTOR_MAGIC;
  atomic_init(&p->base.stop_all, false);
  p->base.local_tasks = true;
  p->n = n;
  memcpy(p->name, opt.name, sizeof p->name);
  p->init = opt.initializer;
  p->init_arg = opt.initializer_arg;
  p->pin = opt.pin_cpus;
  p->help = opt.wait_help;
  p->cpus = opt.cpus;
  p->max_queued = opt.max_queued;
  atomic_init(&p->gate, 0);
  atomic_init(&p->flags, 0);
  atomic_init(&p->queued, 0);
  atomic_init(&p->drained_cancelled, 0);
  atomic_init(&p->requeued, 0);
  atomic_init(&p->spinners, 0);
  atomic_init(&p->last_arrival, 0);
  atomic_init(&p->last_pushed, 0);
  atomic_init(&p->gap_ns, 0);
  ck_ec32_init(&p->ec, 0);
  pthread_mutex_init(&p->join_lock, NULL);
  cf__injector_init(&p->inj);
  p->w = aligned_alloc(CF__CACHE_LINE, sizeof(worker) * n);
  if (!p->w || cf__park_init(&p->park, n) != 0) {
    free(p->w);
    free(p);
    return CF_ENOMEM;
  }
  memset(p->w, 0, sizeof(worker) * n);
  int rc = 0;
  unsigned ready = 0;
  for (unsigned i = 0; i < n; i++, ready++) {
    worker *w = &p->w[i];
    w->pool = p;
    w->index = i;
    w->rng = 0x9e3779b97f4a7c15ull * (i + 1);
    w->helper.wait = cf__help_future;
    w->helper.wait_set = cf__help_set;
    if (cf__deque_init(&w->dq, CF__DEQUE_CAP) != 0) {
      rc = CF_ENOMEM;
      break;
    }
  }
  for (unsigned i = 0; rc == 0 && i < n; i++) {
    worker *w = &p->w[i];
    if (pthread_create(&w->thread, NULL, cf__sched_worker_main, w) != 0) {
      rc = CF_ESYS;
      break;
    }
    w->started = true;
  }
  if (rc != 0) {
    /* both: should_exit() reads the flags copy first */
    atomic_fetch_or(&p->flags, GATE_SHUT);
    atomic_fetch_or(&p->gate, GATE_SHUT);
    cf__park_notify_all(&p->park);
    for (unsigned i = 0; i < n; i++)
      if (p->w[i].started) pthread_join(p->w[i].thread, NULL);
    for (unsigned i = 0; i < ready; i++) cf__deque_free(&p->w[i].dq);
    cf__park_destroy(&p->park);
    pthread_mutex_destroy(&p->join_lock);
    free(p->w);
    free(p);
    return rc;
  }
  *out = &p->base;
  return 0;
}
