/*
 * slot_future.c — the future hooks of the process pool (slot_future.h).
 */
#include "slot_future.h"

#include <string.h>

#include "settle.h"

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

static int sf_result(cf_future *f, void *out, size_t cap, size_t *len) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__slot *sl = cf__pp_slot(p, s);
  /* acquire: pairs with the worker's completing CAS (release) */
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_acquire);
  unsigned owner = cf__st_owner(w);
  if (cf__st_state(w) != CF_STATE_FINISHED || owner == 0 || owner > p->cfg.nworkers)
    return CF_EPROTO;
  /* relaxed: ordered by the acquire above; read once, then checked */
  uint32_t n = atomic_load_explicit(&sl->res_len, memory_order_relaxed);
  if (n > p->cfg.max_result) return CF_EPROTO;
  if (len) *len = n;
  if (n > cap) return CF_ERANGE;
  if (n) memcpy(out, cf__slot_res(&p->cfg.seg, sl, s, n), n);
  return 0;
}

static void put_msg(char *msg, size_t cap, const char *m, size_t n) {
  if (!msg || !cap) return;
  if (n > cap - 1) n = cap - 1;
  memcpy(msg, m, n);
  msg[n] = 0;
}

static int sf_error(cf_future *f, int *errp, int *code, char *msg, size_t cap) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__slot *sl = cf__pp_slot(p, s);
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_acquire); /* see sf_result */
  unsigned owner = cf__st_owner(w);
  int e;
  if (!cf__st_done(w)) return CF_EINVAL;
  if (cf__st_state(w) == CF_STATE_CANCELLED && owner == 0) {
    e = CF_ECANCELLED;
  } else if (owner == 0) {
    cf__pp_lock(p);
    e = p->slots.ps[s].err;
    cf__pp_unlock(p);
    if (e == 0) e = cf__st_state(w) == CF_STATE_CANCELLED ? CF_ECANCELLED : CF_EPROTO;
  } else if (owner > p->cfg.nworkers || cf__st_state(w) != CF_STATE_FAILED) {
    e = CF_EPROTO;
  } else {
    /* a worker's failure: untrusted */
    e = atomic_load_explicit(&sl->err, memory_order_relaxed); /* ordered by the acquire */
    if (e != CF_ETASK && e != CF_E2BIG && e != CF_EINVAL && e != CF_EDEADLINE) e = CF_EPROTO;
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

static int sf_crash_info(cf_future *f, cf_crash_info *out) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  uint32_t w = atomic_load_explicit(&cf__pp_slot(p, s)->word, memory_order_acquire);
  if (!cf__st_done(w) || cf__st_owner(w) != 0) return CF_EINVAL;
  cf__pp_lock(p);
  cf_crash_info ci = p->slots.ps[s].crash;
  cf__pp_unlock(p);
  if (ci.pid == 0 && ci.signal == 0) return CF_EINVAL;
  *out = ci;
  return 0;
}

static int sf_cancel_running(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__settle st;
  cf__pp_lock(p);
  bool done =
      cf__pp_fail_locked(p, s, fgen(f), true, CF_STATE_CANCELLED, CF_ECANCELLED, NULL, false, &st);
  cf__pp_unlock(p);
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

/* A callback was added to f, not done yet. The pool holds a reference on f
 * (watched) so that the callbacks run even if every handle is released
 * first, and sets NOTIFY so that the completer sends the supervisor a
 * notice. The reference is given back by whoever settles the slot (see
 * settle.h), or by this function if the word was done before NOTIFY could
 * be set (then no notice comes; the generic code runs the callbacks). */
static void sf_watch(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__pslot *ps = &p->slots.ps[s];
  cf__pp_lock(p);
  if (ps->f == f && !ps->watched) {
    ps->watched = 1;
    cf__future_ref(f);
  }
  cf__pp_unlock(p);
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
  cf__pp_lock(p);
  if (ps->watched) {
    ps->watched = 0;
    drop = true;
  }
  cf__pp_unlock(p);
  if (drop) cf__future_unref(f); /* the caller holds a handle: not the last */
}

/* The last reference to f is gone. A done slot is freed now; an unfinished
 * one becomes an orphan and gets NOTIFY, so that its completion notice
 * frees it. */
static void sf_destroy(cf_future *f) {
  cf__pool *p = fpool(f);
  uint32_t s = fslot(f);
  cf__pp_lock(p);
  cf__pslot *ps = &p->slots.ps[s];
  ps->f = NULL; /* not watched: a watch holds a reference */
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  while (!cf__st_done(w)) {
    /* acquire (failure): a done word is then read like any outcome; the
     * NOTIFY bit itself publishes nothing */
    if (atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_NOTIFY, memory_order_acquire,
                                              memory_order_acquire)) {
      ps->orphan = 1;
      break;
    }
  }
  bool freed = cf__pp_maybe_free_locked(p, s);
  cf__pp_unlock(p);
  if (freed) cf__pp_unref(p);
}

const cf__future_vtbl cf__slot_future_vtbl = {
    .result = sf_result,
    .error = sf_error,
    .crash_info = sf_crash_info,
    .cancel_running = sf_cancel_running,
    .watch = sf_watch,
    .destroy = sf_destroy,
};
