/*
 * frames.c — fork-join frames: cf_spawn / cf_join.
 *
 * DESIGN
 * Frames (cf_spawn / cf_join, Lace's SPAWN/SYNC). A cf_frame lives in the
 * spawner's stack; a spawn from a worker of the pool copies the argument
 * into it. Like Lace's split deque, a worker keeps its newest frames
 * private: a spawn pushes the frame on the worker's own array (pv, PV_CAP
 * entries, owner only, no atomics), and the join takes it back from there
 * and calls the task inline with a stack cf_call whose ops write the
 * result into the frame: neither the spawn nor the join of a private frame
 * touches a shared word (the deque pop's seq_cst store, ~a third of a
 * future join, is gone). Private frames become stealable when thieves want
 * them: a thief that finds a worker's deque empty sets its `want` flag, and
 * the owner's next spawn moves every private frame (oldest first) to the
 * bottom of its deque, tagged with bit 0; so does a spawn that sees a
 * parked worker and no searcher (then it wakes one), a full private array
 * (the new frame goes straight to the deque), and a worker that starts to
 * wait on a future or on a stolen frame (it holds nothing back while it
 * helps). Every place that takes a deque entry (run_task, drain) checks the
 * tag. A published frame is joined by popping the bottom of the deque: if
 * it is there it runs inline; if not, it was stolen: the thief ORs its index
 * into the frame's word before running it (so the joiner leapfrogs: it
 * steals only from that thief, as the future join does), writes the
 * outcome, then ORs FR_DONE with release and calls FUTEX_WAKE only if the
 * joiner had set FR_WAITERS (a CAS, just before a bounded futex wait).
 * After that RMW the frame may be gone (the joiner returned): the thief
 * touches nothing but the wake's address (a late wake on a reused address
 * is a spurious wake-up, which every futex waiter here tolerates). A drain
 * (shutdown with cancel, broken pool) that takes a frame runs it the same
 * way: a frame is never cancelled (its spawner's task joins it). A full deque runs the task inside
 * cf_spawn. Anything else (not a worker of this pool, a large argument, a process pool) keeps an
 * ordinary future in the frame; inside a process task the spawn runs the
 * task inline (cf__inline_spawn), so recursive code moves between executors.
 * The price of the split (Lace's too): a frame spawned by a task that then
 * computes for a long time without spawning, joining or waiting stays
 * private until then, unless a thief asked before that spawn.
 */
#include <string.h>

#include "scheduler.h"

/* A result over CF_FRAME_INLINE_RESULT bytes. */
static __attribute__((noinline)) int frame_ret_slow(cf_call *c, const void *v, size_t len) {
  frame *fr = c->ctx;
  int rc = cf__call_record_return(c, v, len);
  if (rc != 0) return rc;
  void *p = cf__alloc(len);
  if (!p) return cf__call_record_error(c, CF_ENOMEM);
  memcpy(p, v, len);
  fr->u.res_heap = p; /* freed by cf_join */
  fr->res_len = (uint32_t)len;
  return 0;
}

static int frame_ret(cf_call *c, const void *v, size_t len) {
  if (__builtin_expect(len > CF_FRAME_INLINE_RESULT, 0)) return frame_ret_slow(c, v, len);
  int rc = cf__call_record_return(c, v, len);
  if (__builtin_expect(rc != 0, 0)) return rc;
  frame *fr = c->ctx;
  copy48(fr->res, v, len);
  fr->res_len = (uint32_t)len;
  return 0;
}

static int frame_fail(cf_call *c, int code, const char *msg) {
  (void)msg; /* frames keep only the code (cfutures.h) */
  frame *fr = c->ctx;
  if (cf__call_record_fail(c) != 0) return CF_EINVAL;
  fr->code = code;
  return 0;
}

static bool frame_stop(cf_call *c) {
  (void)c;
  cf_call *outer = cf__inline_spawn; /* inside a process task: its stop */
  if (outer) return cf_call_stop_requested(outer);
  worker *w = cf__tl_worker; /* frames run only on their pool's workers */
  /* relaxed: a polled hint (shutdown with CF_SHUTDOWN_KILL) */
  return w && atomic_load_explicit(&w->pool->base.stop_all, memory_order_relaxed);
}

const cf__call_ops cf__frame_call_ops = {frame_ret, frame_fail, frame_stop, NULL};

static const bool debug_build =
#ifdef CF_DEBUG
    true;
#else
    false;
#endif

/* The calling thread, for the debug owner check (any thread has one). */
static inline void *thread_token(void) {
  return (void *)&cf__tl_worker;
}

/* Inside a process task (cf__inline_spawn): run the task here, into the
 * frame, as a full deque does; cf_join hands the outcome over. */
static __attribute__((noinline)) void spawn_inline(frame *fr, cf_fn fn, const void *arg,
                                                   size_t len) {
  cf_call c = {
      .ops = &cf__frame_call_ops,
      .arg = arg, /* valid for the whole call: no copy */
      .arg_len = len,
      .ctx = fr,
      .max_result = UINT32_MAX,
      .outcome = CF__OUTCOME_NONE,
      .err = 0,
  };
  fr->fn = fn;
  fr->res_len = 0;
  fn(&c);
  fr->err = c.outcome == CF__OUTCOME_FAILED ? c.err : 0;
}

/* Not a worker of `ex`, an argument over the inline size, a pool shut down
 * with cancel or broken, or a process pool: an ordinary future (inside a
 * process task: inline). */
static __attribute__((noinline)) int spawn_slow(cf_executor *ex, frame *fr, cf_fn fn,
                                                const void *arg, size_t len) {
  fr->magic = 0; /* a failed spawn cannot be joined */
  if (cf__inline_spawn) {
    /* ex is not read: in an exec-mode worker the executor a task was
     * handed is the parent's address, which means nothing here */
    if (!ex || !fn || (!arg && len)) return CF_EINVAL;
    spawn_inline(fr, fn, arg, len);
    fr->owner = debug_build ? thread_token() : NULL;
    fr->magic = FR_RAN;
    return 0;
  }
  cf_future *f = NULL;
  int rc = cf_submit(ex, fn, arg, len, &f); /* checks ex, fn and arg */
  if (rc != 0) return rc;
  fr->u.fut = f;
  fr->err = 0;
  fr->code = 0;
  fr->owner = debug_build ? thread_token() : NULL;
  fr->magic = FR_FUTURE;
  return 0;
}

/* The private stack is full: straight into the deque. */
static __attribute__((noinline)) void spawn_public(worker *w, pool *p, frame *fr) {
  if (__builtin_expect(cf__deque_push(&w->dq, frame_tag(fr)), 1)) {
    cf__park_notify_after_push(&p->park); /* park.h, site 4 */
    return;
  }
  /* the deque is full too: run it now (a sequential execution of the same
   * program); cf_join only hands the outcome over */
  frame_call(fr);
  fr->magic = FR_RAN;
}

static __attribute__((noinline)) void spawn_publish(worker *w, pool *p) {
  /* relaxed: a hint; a request that comes after this store is served by
   * the next spawn */
  atomic_store_explicit(&w->want, false, memory_order_relaxed);
  cf__sched_publish(w);
  cf__park_notify_after_push(&p->park); /* park.h, site 4 */
}

int cf_spawn(cf_executor *ex, cf_frame *cfr, cf_fn fn, const void *arg, size_t len) {
  frame *fr = (frame *)cfr;
  worker *w = cf__tl_worker;
  if (__builtin_expect(w != NULL && (cf_executor *)w->pool == ex && fr && fn &&
                           len <= CF_FRAME_INLINE_ARG && (arg || !len),
                       1)) {
    pool *p = w->pool;
    /* relaxed: a flag check, as in tp_submit() */
    uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
    if (__builtin_expect(!(g & (GATE_BROKEN | GATE_CANCEL)), 1)) {
      fr->fn = fn;
      fr->arg_len = (uint32_t)len;
      copy48(fr->arg, arg, len);
      /* relaxed: read by others only once published, and the push's
       * release store publishes it; a join that finds the frame elsewhere
       * than on top of pv (out of LIFO order) reads it too */
      atomic_store_explicit(&fr->word, 0, memory_order_relaxed);
      if (debug_build) fr->owner = thread_token();
      fr->magic = FR_QUEUED; /* spawner-only field: thieves never read it */
      unsigned n = w->pv_n;
      if (__builtin_expect(n < PV_CAP, 1)) {
        w->pv[n] = fr;
        w->pv_n = n + 1;
        /* relaxed: hints. A thief found our deque empty, or a worker
         * sleeps while none searches: make our frames stealable. */
        if (__builtin_expect(atomic_load_explicit(&w->want, memory_order_relaxed) ||
                                 cf__park_should_notify(&p->park),
                             0))
          spawn_publish(w, p);
        return 0;
      }
      spawn_public(w, p, fr);
      return 0;
    }
  }
  if (!fr) return CF_EINVAL;
  return spawn_slow(ex, fr, fn, arg, len);
}

/* The outcome of a done frame (magic already FR_JOINED). */
static inline int frame_result(frame *fr, void *out, size_t cap, size_t *len) {
  if (__builtin_expect(fr->err != 0, 0)) return fr->err; /* no heap result then */
  size_t n = fr->res_len;
  if (len) *len = n;
  int rc = 0;
  if (__builtin_expect(n <= CF_FRAME_INLINE_RESULT, 1)) {
    if (n > cap) return CF_ERANGE;
    copy48(out, fr->res, n);
    return 0;
  }
  if (n > cap) {
    rc = CF_ERANGE;
  } else {
    memcpy(out, fr->u.res_heap, n);
  }
  cf__free(fr->u.res_heap, n);
  return rc;
}

static __attribute__((noinline)) int join_future(frame *fr, void *out, size_t cap, size_t *len) {
  cf_future *f = fr->u.fut;
  int rc = cf_future_result(f, out, cap, len, -1);
  fr->err = rc;
  fr->code = 0;
  if (rc == CF_ETASK) {
    int code = 0;
    if (cf_future_error(f, &code, NULL, 0) == 0) fr->code = code;
  }
  (void)cf_future_release(f);
  fr->magic = FR_JOINED;
  return rc;
}

int cf_join(cf_frame *cfr, void *out, size_t cap, size_t *len) {
  frame *fr = (frame *)cfr;
  if (!fr || (!out && cap)) return CF_EINVAL;
  uint32_t m = fr->magic;
  if (debug_build && (m == FR_QUEUED || m == FR_RAN || m == FR_FUTURE) &&
      fr->owner != thread_token())
    return CF_EINVAL; /* joined by another thread than its spawner */
  if (__builtin_expect(m == FR_QUEUED, 1)) {
    worker *w = cf__tl_worker;
    if (!w) return CF_EINVAL; /* not the spawning worker */
    unsigned n = w->pv_n;
    if (__builtin_expect(n != 0 && w->pv[n - 1] == fr, 1)) {
      /* still private (the usual case): run it here, no atomic at all */
      w->pv_n = n - 1;
      frame_call(fr);
    } else {
      cf_future *t = cf__deque_pop(&w->dq);
      if (__builtin_expect(t == frame_tag(fr), 1))
        frame_call(fr); /* published, not stolen: no atomic on the frame */
      else
        cf__help_frame(w, fr, t);
    }
  } else if (m == FR_FUTURE) {
    return join_future(fr, out, cap, len);
  } else if (m != FR_RAN) {
    return CF_EINVAL; /* never spawned, a failed spawn, or joined already */
  }
  fr->magic = FR_JOINED;
  return frame_result(fr, out, cap, len);
}

int cf_frame_error(const cf_frame *cfr, int *code) {
  const frame *fr = (const frame *)cfr;
  if (!fr || fr->magic != FR_JOINED || fr->err != CF_ETASK) return CF_EINVAL;
  if (code) *code = fr->code;
  return 0;
}
