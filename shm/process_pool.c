/*
 * process_pool.c — cf_process_pool_new and the process pool's executor and
 * future vtables (the design of the whole pool is in pool.h).
 *
 * DESIGN (this file)
 * Submit: take a free slot (parent-local LIFO free list under `mu`; when
 * none is free, wait on `cv`, or CF_EAGAIN with CF_SUBMIT_NOWAIT), write fn
 * and the argument (inside the slot up to CF__SLOT_ARG_INLINE bytes, else into the
 * slot's arena region), publish the word (gen + 1, PENDING) with a release
 * store, push the slot's hint, and wake one sleeping worker if any sleeps.
 * When the ring is full, submit retries with a short sleep (or CF_EAGAIN).
 * The pool holds `refs`: one for the executor handle and one per slot in
 * use, so futures may outlive cf_executor_destroy(); the last one frees the
 * segment.
 *
 * Reading an outcome: the generic code loaded the done word with acquire
 * (pairs with the completing CAS). A word with an owner was completed by
 * that worker: every length, offset and code it wrote is checked before it
 * is used (CF_EPROTO otherwise), and copies never leave the slot's region.
 * A word with owner 0 was completed by the parent: its error and crash info
 * are in the parent-private cf__pslot (read under `mu`).
 *
 * Limits: at most max_futures futures of a pool may be alive at once (a
 * future counts until it is released AND done); submit waits for one to go.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"
#include "sys.h"

static const cf__executor_vtbl pp_exec_vtbl;
static const cf__future_vtbl pp_future_vtbl;

static inline cf__pool *pool_of(cf_executor *ex) {
  return (cf__pool *)ex;
}

/* ---- pool lifetime ---- */

_Atomic(cf__pool *) cf__pools[CF__MAX_POOLS];

static void registry_add(cf__pool *p) {
  for (int i = 0; i < CF__MAX_POOLS; i++) {
    cf__pool *none = NULL;
    if (atomic_compare_exchange_strong(&cf__pools[i], &none, p)) return;
  }
  /* full: this pool's segment may stay mapped in later pools' processes
   * until they end; nothing else is lost */
}

static void registry_remove(cf__pool *p) {
  for (int i = 0; i < CF__MAX_POOLS; i++) {
    cf__pool *q = p;
    if (atomic_compare_exchange_strong(&cf__pools[i], &q, NULL)) return;
  }
}

void cf__pp_forget_others(cf__pool *self) {
  for (int i = 0; i < CF__MAX_POOLS; i++) {
    cf__pool *q = atomic_load(&cf__pools[i]);
    if (!q || q == self) continue;
    /* q's fields were set before it was registered (seq_cst store), and
     * this process is a copy: nothing changes them under us */
    if (q->seg.base) munmap(q->seg.base, q->seg.size);
    if (q->sock >= 0) close(q->sock);
    if (q->evfd >= 0) close(q->evfd);
    /* set to -1 before it is closed: a value >= 0 here was open at fork */
    if (q->zsock >= 0) close(q->zsock);
  }
}

static void pool_free(cf__pool *p) {
  registry_remove(p);
  cf__seg_unmap(&p->seg);
  if (p->evfd >= 0) close(p->evfd);
  if (p->sock >= 0) close(p->sock);
  if (p->zsock >= 0) close(p->zsock);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->ps);
  free(p->w);
  free(p->heap);
  free(p->repush);
  p->base.magic = 0;
  free(p);
}

void cf__pp_unref(cf__pool *p) {
  /* acq_rel: every use of the pool happens before the free */
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) pool_free(p);
}

/* ---- slots (mu held) ---- */

bool cf__pp_maybe_free_locked(cf__pool *p, uint32_t s) {
  cf__pslot *ps = &p->ps[s];
  if (!ps->in_use || ps->f || ps->quarantine) return false;
  if (!cf__st_done(atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire)))
    return false;
  ps->in_use = 0;
  ps->orphan = 0;
  ps->watched = 0;
  ps->next_free = p->free_head;
  p->free_head = s;
  if (p->free_waiters) pthread_cond_broadcast(&p->cv);
  return true;
}

void cf__pp_settle_locked(cf__pool *p, uint32_t s, cf__settle *st) {
  cf__pslot *ps = &p->ps[s];
  if (ps->watched && ps->f) {
    st->f = ps->f; /* the pool's reference moves to st */
    ps->watched = 0;
  }
  if (ps->orphan) st->freed = cf__pp_maybe_free_locked(p, s);
}

void cf__pp_settle_finish(cf__pool *p, cf__settle *st) {
  if (st->wake) cf__future_wake(st->word, st->old, true);
  if (st->f) {
    cf__future_run_callbacks(st->f);
    cf__future_unref(st->f);
  }
  if (st->freed) cf__pp_unref(p);
}

bool cf__pp_fail_locked(cf__pool *p, uint32_t s, uint32_t gen, bool running_too, uint32_t to,
                        int err, const cf_crash_info *ci, bool dead, cf__settle *st) {
  memset(st, 0, sizeof *st);
  cf__pslot *ps = &p->ps[s];
  if (!ps->in_use || ps->gen != gen) return false;
  _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  unsigned owner;
  for (;;) {
    uint32_t state = cf__st_state(w);
    if (cf__st_gen(w) != gen) return false;
    if (state != CF_STATE_PENDING && !(state == CF_STATE_RUNNING && running_too)) return false;
    owner = state == CF_STATE_RUNNING ? cf__st_owner(w) : 0;
    if (owner > p->nworkers) owner = 0; /* a scribbled word: nobody to kill */
    /* The outcome is recorded before the CAS; readers take mu. A CAS that
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
    cf__zsend(p->sock, CF__Z_KILL, (int)owner - 1, p->w[owner - 1].pid, SIGKILL);
  }
  cf__pp_settle_locked(p, s, st);
  return true;
}

/* ---- the future vtable ---- */

static inline cf__pool *fpool(cf_future *f) {
  return (cf__pool *)f->executor;
}
static inline uint32_t fslot(cf_future *f) {
  return (uint32_t)f->ext[0];
}

static int pp_result(cf_future *f, void *out, size_t cap, size_t *len) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__slot *sl = cf__pp_slot(p, s);
  /* acquire: pairs with the worker's completing CAS (release) */
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_acquire);
  unsigned owner = cf__st_owner(w);
  if (cf__st_state(w) != CF_STATE_FINISHED || owner == 0 || owner > p->nworkers) return CF_EPROTO;
  /* relaxed: ordered by the acquire above; read once, then checked */
  uint32_t n = atomic_load_explicit(&sl->res_len, memory_order_relaxed);
  if (n > p->max_result) return CF_EPROTO;
  if (len) *len = n;
  if (n > cap) return CF_ERANGE;
  if (n) memcpy(out, cf__slot_res(&p->seg, sl, s, n), n);
  return 0;
}

static void put_msg(char *msg, size_t cap, const char *m, size_t n) {
  if (!msg || !cap) return;
  if (n > cap - 1) n = cap - 1;
  memcpy(msg, m, n);
  msg[n] = 0;
}

static int pp_error(cf_future *f, int *errp, int *code, char *msg, size_t cap) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__slot *sl = cf__pp_slot(p, s);
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_acquire); /* see pp_result */
  unsigned owner = cf__st_owner(w);
  int e;
  if (!cf__st_done(w)) return CF_EINVAL;
  if (cf__st_state(w) == CF_STATE_CANCELLED && owner == 0) {
    e = CF_ECANCELLED;
  } else if (owner == 0) {
    pthread_mutex_lock(&p->mu);
    e = p->ps[s].err;
    pthread_mutex_unlock(&p->mu);
    if (e == 0) e = cf__st_state(w) == CF_STATE_CANCELLED ? CF_ECANCELLED : CF_EPROTO;
  } else if (owner > p->nworkers || cf__st_state(w) != CF_STATE_FAILED) {
    e = CF_EPROTO;
  } else {
    /* a worker's failure: untrusted */
    e = atomic_load_explicit(&sl->err, memory_order_relaxed); /* ordered by the acquire */
    if (e != CF_ETASK && e != CF_E2BIG && e != CF_EINVAL && e != CF_ETIMEDOUT) e = CF_EPROTO;
    if (e == CF_ETASK) {
      uint32_t n = atomic_load_explicit(&sl->msg_len, memory_order_relaxed);
      if (n > CF_MESSAGE_MAX - 1) {
        e = CF_EPROTO;
      } else {
        if (errp) *errp = e;
        if (code) *code = atomic_load_explicit(&sl->code, memory_order_relaxed);
        put_msg(msg, cap, sl->msg, strnlen(sl->msg, n));
        return 0;
      }
    }
  }
  if (errp) *errp = e;
  if (code) *code = e;
  const char *m = cf_strerror(e);
  put_msg(msg, cap, m, strlen(m));
  return 0;
}

static int pp_crash_info(cf_future *f, cf_crash_info *out) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  if (!cf__st_done(w) || cf__st_owner(w) != 0) return CF_EINVAL;
  pthread_mutex_lock(&p->mu);
  cf_crash_info ci = p->ps[s].crash;
  pthread_mutex_unlock(&p->mu);
  if (ci.pid == 0 && ci.signal == 0) return CF_EINVAL;
  *out = ci;
  return 0;
}

static int pp_cancel_running(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__settle st;
  pthread_mutex_lock(&p->mu);
  bool done = cf__pp_fail_locked(p, s, (uint32_t)f->ext[1], true, CF_STATE_CANCELLED, CF_ECANCELLED,
                                 NULL, false, &st);
  pthread_mutex_unlock(&p->mu);
  if (done) {
    if (cf__st_state(st.old) == CF_STATE_RUNNING) /* statistic (queued ones: worker.c) */
      atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_relaxed);
    /* run f's callbacks here too, though watched was not set (idempotent) */
    cf__pp_settle_finish(p, &st);
    cf__future_run_callbacks(f);
    return 0;
  }
  uint32_t w = atomic_load_explicit(f->word, memory_order_acquire);
  return cf__st_state(w) == CF_STATE_CANCELLED ? 0 : CF_EDONE;
}

/* A callback was added to f, not done yet. The pool takes a reference on f
 * (ps->watched) so that the callbacks run even if every handle is released
 * first, and sets NOTIFY so that the completer tells the supervisor. The
 * reference is given back by whoever settles the slot under mu: the
 * supervisor (notice, death, overflow rescan), a parent-side failure, the
 * destroy sweep, or this function if the word was done before NOTIFY could
 * be set (then no notice comes; the generic code runs the callbacks). */
static void pp_watch(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  pthread_mutex_lock(&p->mu);
  if (p->ps[s].f == f && !p->ps[s].watched) {
    p->ps[s].watched = 1;
    cf__future_ref(f);
  }
  pthread_mutex_unlock(&p->mu);
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  while (!cf__st_done(w) && !(w & CF__ST_NOTIFY)) {
    /* relaxed: NOTIFY only asks the completer for a notice; the done check
     * below and the caller's re-check are seq_cst */
    if (atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_NOTIFY, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  if (!cf__st_done(atomic_load(word))) return;
  bool drop = false;
  pthread_mutex_lock(&p->mu);
  if (p->ps[s].watched) {
    p->ps[s].watched = 0;
    drop = true;
  }
  pthread_mutex_unlock(&p->mu);
  if (drop) cf__future_unref(f); /* the caller holds a handle: not the last */
}

static void pp_future_destroy(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  pthread_mutex_lock(&p->mu);
  cf__pslot *ps = &p->ps[s];
  ps->f = NULL; /* not watched: a watch holds a reference */
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  while (!cf__st_done(w)) {
    /* acquire (failure): a done word is then read like any outcome; the
     * NOTIFY bit itself publishes nothing */
    if (atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_NOTIFY, memory_order_acquire,
                                              memory_order_acquire)) {
      ps->orphan = 1; /* the completion notice frees it */
      break;
    }
  }
  bool freed = cf__pp_maybe_free_locked(p, s);
  pthread_mutex_unlock(&p->mu);
  if (freed) cf__pp_unref(p);
}

static const cf__future_vtbl pp_future_vtbl = {
    .result = pp_result,
    .error = pp_error,
    .crash_info = pp_crash_info,
    .cancel_running = pp_cancel_running,
    .watch = pp_watch,
    .destroy = pp_future_destroy,
};

/* ---- submit ---- */

static void heap_push(cf__pool *p, cf__deadline d) {
  if (p->nheap == p->heap_cap) {
    size_t cap = p->heap_cap ? 2 * p->heap_cap : 64;
    cf__deadline *n = realloc(p->heap, cap * sizeof *n);
    if (!n) return; /* no deadline then: the task just runs */
    p->heap = n;
    p->heap_cap = cap;
  }
  size_t i = p->nheap++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (p->heap[up].when <= d.when) break;
    p->heap[i] = p->heap[up];
    i = up;
  }
  p->heap[i] = d;
}

static void wake_one(cf__pool *p) {
  cf__seg_ctl *ctl = p->seg.ctl;
  if (atomic_load(&ctl->nsleep)) { /* seq_cst: Dekker with next_hint() (worker.c) */
    atomic_fetch_add(&ctl->wake_seq, 1);
    cf__futex_wake(&ctl->wake_seq, 1, true);
  }
}

static void nap(unsigned *backoff) {
  struct timespec ts = {0, (long)*backoff * 1000};
  nanosleep(&ts, NULL);
  if (*backoff < 1000) *backoff *= 2;
}

static int pp_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline_abs,
                     unsigned flags, cf_future **out) {
  cf__pool *p = pool_of(ex);
  if (cf__pp_in_child) return CF_EINVAL; /* a copy of the pool in a worker */
  if (len > p->max_arg) return CF_E2BIG;
  cf_future *f = cf__future_alloc();
  if (!f) return CF_ENOMEM;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    int e = p->broken ? CF_EBROKEN : p->shutdown ? CF_ESHUTDOWN : 0;
    if (!e && p->free_head == CF__NO_FREE && (flags & CF_SUBMIT_NOWAIT)) e = CF_EAGAIN;
    if (e) {
      pthread_mutex_unlock(&p->mu);
      cf__future_unref(f);
      cf__future_unref(f);
      return e;
    }
    if (p->free_head != CF__NO_FREE) break;
    p->free_waiters++;
    pthread_cond_wait(&p->cv, &p->mu);
    p->free_waiters--;
  }
  uint32_t s = p->free_head;
  cf__pslot *ps = &p->ps[s];
  p->free_head = ps->next_free;
  uint32_t gen = (ps->gen + 1) & (CF__ST_GEN_MASK >> CF__ST_GEN_SHIFT);
  ps->gen = gen;
  ps->in_use = 1;
  ps->watched = 0;
  ps->orphan = 0;
  ps->err = 0;
  ps->crash = (cf_crash_info){0, 0, -1};
  ps->f = f;
  uint64_t use = ++ps->use;
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); /* we hold one already */
  pthread_mutex_unlock(&p->mu);

  cf__slot *sl = cf__pp_slot(p, s);
  sl->fn = (uint64_t)(uintptr_t)fn;
  sl->deadline = deadline_abs;
  sl->arg_len = (uint32_t)len;
  if (len) memcpy(cf__slot_arg(&p->seg, sl, s, len), arg, len);
  f->word = &sl->word;
  f->shared = 1;
  f->vt = &pp_future_vtbl;
  f->executor = &p->base;
  f->ext[0] = s;
  f->ext[1] = gen;
  f->fn = fn;
  f->deadline = deadline_abs;
  /* release: pairs with the worker's acquire in claim(): fn and the
   * argument are visible to whoever sees this word */
  atomic_store_explicit(&sl->word, cf__st_make(gen, 0, CF_STATE_PENDING), memory_order_release);

  cf__seg_ctl *ctl = p->seg.ctl;
  uint32_t h = cf__hint_make(s, cf__hint_genbits(gen));
  unsigned backoff = 2;
  for (;;) {
    int r = CF_EAGAIN;
    if (!p->max_queued || cf__ring_count(&ctl->sq) < p->max_queued)
      r = cf__ring_push(&ctl->sq, p->seg.sq, p->seg.p.sq_log2, h);
    if (r == 0) break;
    pthread_mutex_lock(&p->mu);
    int e = p->broken ? CF_EBROKEN : r == CF_EPROTO ? CF_EPROTO : p->shutdown ? CF_ESHUTDOWN : 0;
    pthread_mutex_unlock(&p->mu);
    if (!e && (flags & CF_SUBMIT_NOWAIT)) e = CF_EAGAIN;
    if (e) {
      /* Retire the task (no hint pushed, no handle given out) — unless a
       * worker popping a stale hint of this slot claimed it meanwhile:
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
  wake_one(p);
  /* A shutdown(CANCEL/KILL) or a breakage that scanned the slots while this
   * slot was taken but not yet published skipped it: settle it here. The
   * fence pairs with the one in cf__pp_doom (Dekker, see there); the
   * mutex-free check keeps the common submit off the pool lock. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&p->doomed, memory_order_relaxed)) {
    cf__settle st;
    pthread_mutex_lock(&p->mu);
    bool done =
        (p->broken || p->cancelling) &&
        cf__pp_fail_locked(p, s, gen, false, p->broken ? CF_STATE_FAILED : CF_STATE_CANCELLED,
                           p->broken ? CF_EBROKEN : CF_ECANCELLED, NULL, false, &st);
    pthread_mutex_unlock(&p->mu);
    if (done) cf__pp_settle_finish(p, &st);
  }
  if (deadline_abs > 0) {
    pthread_mutex_lock(&p->mu);
    heap_push(p, (cf__deadline){.when = deadline_abs, .use = use, .slot = s, .gen = gen});
    bool first = p->heap[0].slot == s && p->heap[0].gen == gen;
    pthread_mutex_unlock(&p->mu);
    if (first) cf__sv_kick(p);
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
    for (uint32_t s = 0; s < p->nslots; s++) {
      cf__settle st;
      pthread_mutex_lock(&p->mu);
      bool done =
          p->ps[s].in_use && cf__pp_fail_locked(p, s, p->ps[s].gen, pass == 1, CF_STATE_CANCELLED,
                                                CF_ECANCELLED, NULL, false, &st);
      pthread_mutex_unlock(&p->mu);
      if (done) {
        /* statistic; a cancelled queued task is counted by the worker that
         * drops its hint */
        if (pass == 1) atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_relaxed);
        cf__pp_settle_finish(p, &st);
      }
    }
  }
}

static void drain(cf__pool *p) {
  for (uint32_t s = 0; s < p->nslots; s++) {
    pthread_mutex_lock(&p->mu);
    bool in_use = p->ps[s].in_use;
    pthread_mutex_unlock(&p->mu);
    /* No submit takes a slot after shutdown: a slot in use stays valid
     * until done, and one freed meanwhile is done. */
    if (in_use) (void)cf__word_wait(&cf__pp_slot(p, s)->word, -1, true);
  }
}

static void stop_workers(cf__pool *p, bool kill_them, bool wait) {
  cf__seg_ctl *ctl = p->seg.ctl;
  atomic_store(&ctl->phase, CF__PHASE_EXIT);
  atomic_fetch_add(&ctl->wake_seq, 1);
  cf__futex_wake(&ctl->wake_seq, INT_MAX, true);
  pthread_mutex_lock(&p->mu);
  if (kill_them && !p->zygote_dead) {
    for (unsigned i = 0; i < p->nworkers; i++)
      if (p->w[i].alive || p->w[i].spawning) cf__zsend(p->sock, CF__Z_KILL, (int)i, 0, SIGKILL);
  }
  while (wait && (p->nalive || p->nspawning)) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

static int pp_shutdown(cf_executor *ex, unsigned flags) {
  cf__pool *p = pool_of(ex);
  if (cf__pp_in_child) return 0; /* from a task: a copy of the pool */
  pthread_mutex_lock(&p->mu);
  p->shutdown = true;
  if (flags & (CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL)) {
    p->cancelling = true;
    cf__pp_doom(p);
  }
  pthread_cond_broadcast(&p->cv); /* submitters waiting for a slot */
  pthread_mutex_unlock(&p->mu);
  bool kill_them = flags & CF_SHUTDOWN_KILL;
  if (flags & (CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL)) cancel_all(p, kill_them);
  if (pthread_equal(pthread_self(), p->sv)) {
    /* From a done callback: the supervisor cannot wait for itself. */
    if (kill_them) stop_workers(p, true, false);
    return 0;
  }
  if (kill_them) {
    stop_workers(p, true, true);
  } else if (flags & CF_SHUTDOWN_WAIT) {
    drain(p);
    stop_workers(p, false, true);
  }
  return 0;
}

static int pp_destroy(cf_executor *ex) {
  cf__pool *p = pool_of(ex);
  if (cf__pp_in_child) return CF_EINVAL;
  pp_shutdown(ex, CF_SHUTDOWN_WAIT);
  pthread_mutex_lock(&p->mu);
  p->sv_stop = true;
  pthread_mutex_unlock(&p->mu);
  cf__sv_kick(p);
  pthread_join(p->sv, NULL);
  /* Every worker is reaped: nothing can write into a slot any more. */
  for (uint32_t s = 0; s < p->nslots; s++) {
    cf__settle st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&p->mu);
    p->ps[s].quarantine = 0;
    /* every task is done: watches whose notice never came (a task
     * cancelled while queued whose hint no worker popped) settle here */
    if (p->ps[s].in_use) {
      cf__pp_settle_locked(p, s, &st);
      if (!st.freed) st.freed = cf__pp_maybe_free_locked(p, s);
    }
    pthread_mutex_unlock(&p->mu);
    cf__pp_settle_finish(p, &st);
  }
  pthread_mutex_lock(&p->mu);
  p->destroyed = true;
  pthread_mutex_unlock(&p->mu);
  p->base.magic = 0;
  cf__pp_unref(p);
  return 0;
}

static int pp_stats(cf_executor *ex, cf_stats *out) {
  cf__pool *p = pool_of(ex);
  /* relaxed: statistics, not a snapshot */
  out->submitted = atomic_load_explicit(&p->submitted, memory_order_relaxed);
  out->cancelled = atomic_load_explicit(&p->cancelled, memory_order_relaxed);
  out->crashed = atomic_load_explicit(&p->crashed, memory_order_relaxed);
  out->respawned = atomic_load_explicit(&p->respawned, memory_order_relaxed);
  for (unsigned i = 0; i < p->nworkers; i++) {
    out->completed += atomic_load_explicit(&p->seg.workers[i].completed, memory_order_relaxed);
    out->parks += atomic_load_explicit(&p->seg.workers[i].parks, memory_order_relaxed);
    out->cancelled +=
        atomic_load_explicit(&p->seg.workers[i].dropped_cancelled, memory_order_relaxed);
  }
  out->queued = cf__ring_count(&p->seg.ctl->sq);
  out->workers = p->nworkers;
  return 0;
}

/* In a worker (a copy of the pool), or on the supervisor thread (a done
 * callback): destroy or a waiting shutdown there could never finish. */
static bool pp_is_worker(cf_executor *ex) {
  cf__pool *p = pool_of(ex);
  return cf__pp_in_child || pthread_equal(pthread_self(), p->sv);
}
static unsigned pp_workers(cf_executor *ex) {
  return pool_of(ex)->nworkers;
}
static size_t pp_max_result(cf_executor *ex) {
  return pool_of(ex)->max_result;
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
  unsigned nworkers = o.workers;
  size_t nslots = o.max_futures;
  size_t ring = o.ring_capacity;

  cf__pool *p = calloc(1, sizeof *p);
  if (!p) return CF_ENOMEM;
  p->base.vt = &pp_exec_vtbl;
  p->base.magic = CF__EXECUTOR_MAGIC;
  atomic_init(&p->refs, 1);
  p->nworkers = nworkers;
  p->max_tasks = o.max_tasks_per_worker;
  p->max_arg = o.max_arg_size;
  p->max_result = o.max_result_size;
  p->max_queued = o.max_queued;
  p->nslots = (uint32_t)nslots;
  memcpy(p->name, o.name, sizeof p->name);
  p->init = o.initializer;
  p->init_arg = o.initializer_arg;
  p->pin = o.pin_cpus;
  p->cpus = o.cpus;
  p->evfd = p->sock = p->zsock = -1;
  p->free_head = CF__NO_FREE;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  cf__pp_collect_text(p);

  cf__seg_params sp = {
      .nworkers = nworkers,
      .nslots = (uint32_t)nslots,
      .sq_log2 = log2_of(ring),
      .cq_log2 = log2_of(nslots < 64 ? 64 : nslots),
      .max_arg = o.max_arg_size,
      .max_result = o.max_result_size,
  };
  int e = cf__seg_create(&p->seg, &sp);
  if (e) goto fail;
  e = CF_ENOMEM;
  p->ps = calloc(nslots, sizeof *p->ps);
  p->w = calloc(nworkers ? nworkers : 1, sizeof *p->w);
  if (!p->ps || !p->w) goto fail;
  for (uint32_t s = (uint32_t)nslots; s-- > 0;) {
    p->ps[s].next_free = p->free_head;
    p->free_head = s;
  }
  for (unsigned i = 0; i < nworkers; i++) {
    atomic_store(&p->seg.workers[i].taking, CF__HINT_NONE);
    atomic_store(&p->seg.workers[i].cur_slot, CF__HINT_NONE);
  }
  e = CF_ESYS;
  p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int sv[2];
  if (p->evfd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) goto fail;
  p->sock = sv[0];
  p->zsock = sv[1];
  p->parent_pid = getpid();
  registry_add(p);

  /* The supervisor (and the zygote it forks) run with every signal blocked:
   * signals meant for the program go to its own threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&p->sv, NULL, cf__supervisor_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) goto fail;
  pthread_mutex_lock(&p->mu);
  while (!p->sv_started) pthread_cond_wait(&p->cv, &p->mu);
  e = p->sv_error;
  pthread_mutex_unlock(&p->mu);
  if (e) {
    pthread_join(p->sv, NULL);
    goto fail;
  }
  *out = &p->base;
  return 0;
fail:
  pool_free(p);
  return e;
}
