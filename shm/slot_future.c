/*
 * slot_future.c — the future hooks of the process pool, and the move of a
 * slot's outcome into its future (slot_future.h).
 */
#include "slot_future.h"

#include <limits.h>
#include <signal.h>
#include <string.h>

#include "settle.h"
#include "sys.h"

/* f->executor is the pool (its cf_executor comes first). */
static inline cf__pool *fpool(cf_future *f) {
  return (cf__pool *)f->executor;
}
static inline uint32_t fslot(cf_future *f) {
  return (uint32_t)f->ext[0];
}
static inline uint32_t fgen(cf_future *f) {
  return (uint32_t)f->ext[1];
}
/* Has f's outcome moved into it? (acquire: pairs with the release store of
 * f->word in cf__slot_outcome_move, which publishes the outcome fields) */
static inline bool moved(cf_future *f) {
  return atomic_load_explicit(&f->word, memory_order_acquire) == &f->state;
}

/* ---- the move (mu held) ---- */

/* A worker's failure code, checked. */
static int worker_error(const cf__slot *sl) {
  /* relaxed: ordered by the acquire load of the done word (settle.c) */
  int e = atomic_load_explicit(&sl->err, memory_order_relaxed);
  return e == CF_ETASK || e == CF_E2BIG || e == CF_EINVAL || e == CF_EDEADLINE ? e : CF_EPROTO;
}

/* The task's message: a heap copy, or NULL (and CF_EPROTO in *err if its
 * length is out of range, CF_ENOMEM if it cannot be copied). */
static char *worker_message(cf__slot *sl, int *err) {
  uint32_t n = atomic_load_explicit(&sl->msg_len, memory_order_relaxed); /* read once */
  if (n > CF_MESSAGE_MAX - 1) {
    *err = CF_EPROTO;
    return NULL;
  }
  size_t len = strnlen(sl->msg, n);
  char *m = cf__alloc(len + 1);
  if (!m) return NULL; /* the code is kept; the message is lost */
  memcpy(m, sl->msg, len);
  m[len] = 0;
  return m;
}

/* cf_executor_time_tasks: a worker's task ran from sl->t_start to
 * sl->t_end (the worker wrote them before its completing CAS, read after
 * the acquire of the done word). Untrusted: counted only if they lie
 * between its submit and now (the clock is CLOCK_MONOTONIC, one for every
 * process). relaxed: statistics. */
static void count_time(cf__pool *p, const cf__slot *sl, int64_t t_submit) {
  int64_t a = sl->t_start, b = sl->t_end;
  if (!sl->timed || a < t_submit || b < a || b > cf__now_ns()) return;
  atomic_fetch_add_explicit(&p->timed, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->queue_wait_ns, (uint64_t)(a - t_submit), memory_order_relaxed);
  atomic_fetch_add_explicit(&p->run_ns, (uint64_t)(b - a), memory_order_relaxed);
}

void cf__slot_outcome_move(cf__pool *p, uint32_t s, cf_future *f, uint32_t w) {
  cf__assert(cf__pp_locked(p));
  const cf__seg *seg = &p->cfg.seg;
  cf__slot *sl = cf__pp_slot(p, s);
  cf__pslot *ps = &p->slots.ps[s];
  uint32_t state = cf__st_state(w);
  unsigned owner = cf__st_owner(w);
  bool by_worker = owner >= 1 && owner <= p->cfg.nworkers;
  /* read once, then checked; it also says whether the worker took its
   * result region (a failure past a large cf_call_return keeps it) */
  uint32_t rlen = by_worker ? atomic_load_explicit(&sl->res_len, memory_order_relaxed) : 0;
  uint32_t n = state == CF_STATE_FINISHED ? rlen : 0;
  /* every task a worker ran, its future read or not (released early: f
   * NULL) */
  if (ps->t_submit && by_worker && state != CF_STATE_CANCELLED) count_time(p, sl, ps->t_submit);
  ps->t_submit = 0;
  if (f) {
    int err = 0, code = 0;
    char *msg = NULL;
    cf_crash_info ci = {0, 0, -1};
    if (owner == 0) {
      err = ps->err;
      ci = ps->crash;
      if (state == CF_STATE_CANCELLED && !err) err = CF_ECANCELLED;
      if (state == CF_STATE_FINISHED || !err) err = CF_EPROTO; /* the parent never finishes one */
    } else if (!by_worker || state == CF_STATE_CANCELLED) {
      err = CF_EPROTO;
    } else if (state == CF_STATE_FINISHED) {
      if (n > p->cfg.max_result) {
        err = CF_EPROTO;
      } else {
        const unsigned char *src = cf__slot_res(seg, sl, s, owner - 1, n);
        if (n <= CF__INLINE_RES) {
          memcpy(f->res_inline, src, n);
          f->res_len = n;
        } else if ((f->res_heap = cf__alloc(n)) != NULL) {
          memcpy(f->res_heap, src, n);
          f->res_len = n;
        } else {
          err = CF_ENOMEM;
        }
      }
    } else {
      err = worker_error(sl);
      if (err == CF_ETASK) {
        code = atomic_load_explicit(&sl->code, memory_order_relaxed);
        msg = worker_message(sl, &err);
      }
    }
    if (err != CF_ETASK) code = err;
    /* relaxed: published by the release store of f->word below */
    atomic_store_explicit(&f->err, err, memory_order_relaxed);
    if (err) {
      /* a success leaves them as the allocation made them (0, NULL, no
       * crash: sf_crash_info reads pid and signal only), so that its move
       * writes only the future's first line and its word */
      f->task_code = code;
      f->msg = msg;
      f->crash = ci;
    }
    atomic_store_explicit(&f->state, cf__st_make(cf__st_gen(w), 0, state), memory_order_relaxed);
    /* release: pairs with the acquire loads of f->word (moved(),
     * cf__future_load): the outcome above is visible once the word moved */
    atomic_store_explicit(&f->word, &f->state, memory_order_release);
  }
  if (by_worker && cf__res_in_region(seg, rlen)) {
    /* If the worker's result region holds this slot's result (it took it
     * for a large result, whatever the task did next: a late deadline turns
     * it into a failure), give its pages back if large, then let the
     * worker write its next result there. (Only then is the worker's
     * record touched: it is a line the worker writes for every task.) */
    cf__worker_rec *rec = &seg->workers[owner - 1];
    uint32_t want = s + 1;
    if (atomic_load(&rec->res_busy) == want) {
      if (n > CF__SEG_KEEP_RESULT && n <= p->cfg.max_result)
        cf__seg_release(seg, cf__seg_res_area(seg, owner - 1), n);
      if (atomic_compare_exchange_strong(&rec->res_busy, &want, 0))
        cf__futex_wake(&rec->res_busy, INT_MAX, true);
    }
  }
}

/* ---- the hooks ---- */

/* Make sure f's outcome moved into it: settle its slot if the word is done.
 * True if it has moved. */
static bool ensure_moved(cf_future *f) {
  if (moved(f)) return true;
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__settle st = {NULL};
  cf__pp_lock(p);
  cf__pslot *ps = &p->slots.ps[s];
  if (ps->in_use && ps->f == f) cf__pp_settle_if_done_locked(p, s, &st);
  cf__pp_unlock(p);
  cf__pp_settle_finish(p, &st, false);
  return moved(f);
}

static int sf_result(cf_future *f, void *out, size_t cap, size_t *len) {
  if (!ensure_moved(f)) return CF_EPROTO;
  int e = atomic_load_explicit(&f->err, memory_order_relaxed); /* ordered by moved() */
  if (e) return e;
  return cf__future_copy_result(f, out, cap, len);
}

static void put_msg(char *msg, size_t cap, const char *m) {
  if (!msg || !cap) return;
  size_t n = strnlen(m, cap - 1);
  memcpy(msg, m, n);
  msg[n] = 0;
}

static int sf_error(cf_future *f, int *errp, int *code, char *msg, size_t cap) {
  if (!ensure_moved(f)) return CF_EINVAL;
  int e = atomic_load_explicit(&f->err, memory_order_relaxed); /* ordered by moved() */
  if (e == 0) e = CF_EPROTO;
  if (errp) *errp = e;
  if (code) *code = e == CF_ETASK ? f->task_code : e;
  put_msg(msg, cap, e == CF_ETASK ? (f->msg ? f->msg : "") : cf_strerror(e));
  return 0;
}

static int sf_crash_info(cf_future *f, cf_crash_info *out) {
  if (!ensure_moved(f)) return CF_EINVAL;
  if (f->crash.pid == 0 && f->crash.signal == 0) return CF_EINVAL;
  *out = f->crash;
  return 0;
}

/* Pending or running: under mu, so that it is one transition the pool knows
 * of (a running task's worker is killed). The callbacks run here, in the
 * canceller's thread, as they do for a thread future. */
static int sf_cancel(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__settle st = {NULL};
  bool done = false;
  if (!moved(f)) {
    cf__pp_lock(p);
    cf__pslot *ps = &p->slots.ps[s];
    if (ps->in_use && ps->f == f) {
      done = cf__pp_fail_locked(p, s, fgen(f), true, CF_STATE_CANCELLED, CF_ECANCELLED, NULL,
                                SIGKILL, &st);
      if (!done) cf__pp_settle_if_done_locked(p, s, &st); /* done already, or scribbled */
    }
    cf__pp_unlock(p);
    cf__pp_settle_finish(p, &st, true);
  }
  if (done) {
    atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_relaxed); /* statistic */
    cf__future_run_callbacks(f); /* not watched: registered ones run now */
    return 0;
  }
  uint32_t w = cf__future_load(f);
  return cf__st_state(w) == CF_STATE_CANCELLED ? 0 : CF_EDONE;
}

/* Set NOTIFY on slot s's word of generation gen unless it is done. */
static void set_notify(cf__pool *p, uint32_t s, uint32_t gen) {
  _Atomic uint32_t *word = &cf__pp_slot(p, s)->word;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  while (!cf__st_done(w) && cf__st_gen(w) == gen && !(w & CF__ST_NOTIFY)) {
    /* relaxed: NOTIFY only asks the completer for a notice and a kick; the
     * caller's re-check of the word is what orders anything */
    if (atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_NOTIFY, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
}

/* A callback was added to f, not done yet. The pool holds a reference on f
 * (watched) so that the callbacks run even if every handle is released
 * first, and sets NOTIFY so that the completer sends the supervisor a
 * notice. The reference is given back by whoever settles the slot. The
 * generic code checks the word again after this: a word done before NOTIFY
 * was set runs the callbacks there. */
static void sf_watch(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__pp_lock(p);
  cf__pslot *ps = &p->slots.ps[s];
  if (ps->in_use && ps->f == f) {
    if (!ps->watched) {
      ps->watched = 1;
      cf__future_ref(f);
    }
    set_notify(p, s, fgen(f));
  }
  cf__pp_unlock(p);
}

/* The last reference to f is gone. A slot still holding f becomes an
 * orphan: freed now if done, else left for whoever settles it once done —
 * the next submits' ordered reclaim (settle.h: every submit settles the
 * oldest done tasks), a submit that finds no free slot, or the
 * supervisor's sweep (every 100 ms while a slot is in use). It asks for no
 * notice: a fire-and-forget task then costs no supervisor wake-up (two
 * context switches and an eventfd write per task, at low rates most of
 * the pool's CPU), and nothing waits for an orphan's slot that could not
 * free it itself. Then the future's pool reference goes. */
static void sf_destroy(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  if (!moved(f)) {
    cf__settle st = {NULL};
    cf__pp_lock(p);
    cf__pslot *ps = &p->slots.ps[s];
    if (ps->in_use && ps->f == f) {
      cf__assert(!ps->watched); /* a watch holds a reference */
      ps->f = NULL;
      uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
      int c = cf__pp_word_check(p, s, w);
      if (c == CF__W_CORRUPT)
        cf__pp_force_fail_locked(p, s, CF_STATE_FAILED, CF_EPROTO, NULL, &st);
      else if (c == CF__W_OK && cf__st_done(w))
        cf__pp_settle_locked(p, s, &st);
    }
    cf__pp_unlock(p);
    cf__pp_settle_finish(p, &st, false);
  }
  cf__pp_unref(p);
}

const cf__future_vtbl cf__slot_future_vtbl = {
    .result = sf_result,
    .error = sf_error,
    .crash_info = sf_crash_info,
    .cancel = sf_cancel,
    .watch = sf_watch,
    .destroy = sf_destroy,
};
