/*
 * promise.c — promises: futures completed by code (cf_promise_*), the
 * completion of compose.c's futures, and outcomes carried from one future
 * to another. The protocol is in promise.h (DESIGN).
 */
#include "promise.h"

#include <stdatomic.h>
#include <string.h>

#include "sys.h"

/* The two markers must keep distinct addresses: their bodies differ (the
 * message), so identical-code folding cannot merge them. */
void cf__promise_user(cf_call *c) {
  cf__assert(!"a promise is never run");
  (void)cf_call_fail(c, CF_EINVAL, "cf_promise_new's future is not a task");
}

void cf__promise_internal(cf_call *c) {
  cf__assert(!"a promise is never run");
  (void)cf_call_fail(c, CF_EINVAL, "a continuation's future is not a task");
}

cf_future *cf__promise_alloc(void) {
  cf_future *p = cf__future_alloc(); /* executor NULL, deadline 0, PENDING */
  if (p) p->fn = cf__promise_internal;
  return p;
}

static bool is_done(cf_future *p) {
  /* acquire: as every reader of the word (future.h) */
  return cf__st_done(atomic_load_explicit(p->word, memory_order_acquire));
}

int cf__promise_finish(cf_future *p, const void *v, size_t len) {
  cf__assert(p->vt == &cf__local_future_vtbl && !p->executor);
  if (len && !v) return CF_EINVAL;
  if (is_done(p) || !cf__future_claim(p, CF__ERR_OK)) return CF_EDONE;
  /* The claim is ours: nobody else writes the outcome fields now. */
  cf_call c;
  cf__future_call_init(p, &c);
  int rc = cf_call_return(&c, v, len);
  uint32_t to = CF_STATE_FINISHED;
  if (c.outcome == CF__OUTCOME_FAILED) { /* CF_ENOMEM, CF_E2BIG */
    /* relaxed: published by complete_claimed's seq_cst CAS */
    atomic_store_explicit(&p->err, c.err, memory_order_relaxed);
    to = CF_STATE_FAILED;
  }
  return cf__future_complete_claimed(p, to) ? rc : CF_EDONE;
}

int cf__promise_fail(cf_future *p, int err, int code, const char *msg) {
  cf__assert(p->vt == &cf__local_future_vtbl && !p->executor);
  if (err >= 0) return CF_EINVAL;
  if (is_done(p) || !cf__future_claim(p, err)) return CF_EDONE;
  if (err == CF_ETASK) {
    cf_call c;
    cf__future_call_init(p, &c);
    (void)cf_call_fail(&c, code, msg); /* code and message, as a task's */
  }
  return cf__future_complete_claimed(p, CF_STATE_FAILED) ? 0 : CF_EDONE;
}

int cf__promise_cancel(cf_future *p) {
  return cf__future_transition(p, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED) ? 0
                                                                                       : CF_EDONE;
}

/* ---- outcomes ---------------------------------------------------------- */

static void outcome_fail(cf__outcome *o, int err) {
  o->state = CF_STATE_FAILED;
  o->err = err;
  o->code = err;
  o->res = NULL;
  o->len = 0;
}

int cf__outcome_capture(cf_future *src, cf__outcome *o) {
  o->heap = NULL;
  o->res = NULL;
  o->len = 0;
  o->err = 0;
  o->code = 0;
  o->msg[0] = 0;
  o->state = cf_future_state(src);
  switch (o->state) {
    case CF_STATE_FINISHED: {
      size_t n = 0;
      int rc = cf_future_result(src, o->small, sizeof o->small, &n, 0);
      if (rc == CF_ERANGE) {
        void *h = cf__alloc(n);
        if (!h) {
          outcome_fail(o, CF_ENOMEM);
          return CF_ENOMEM;
        }
        size_t m = 0;
        rc = cf_future_result(src, h, n, &m, 0);
        if (rc != 0 || m != n) {
          cf__free(h, n);
          outcome_fail(o, rc ? rc : CF_EPROTO);
          return 0;
        }
        o->heap = h;
        o->res = h;
      } else if (rc == 0) {
        o->res = o->small;
      } else { /* CF_EPROTO: corrupt data from a worker */
        outcome_fail(o, rc);
        return 0;
      }
      o->len = n;
      return 0;
    }
    case CF_STATE_CANCELLED:
      o->err = o->code = CF_ECANCELLED;
      (void)cf_future_error(src, NULL, o->msg, sizeof o->msg);
      return 0;
    case CF_STATE_FAILED:
      o->err = cf_future_result(src, NULL, 0, NULL, 0);
      if (cf_future_error(src, &o->code, o->msg, sizeof o->msg) != 0) o->code = o->err;
      return 0;
    default: /* not done: a caller's bug */
      cf__assert(!"outcome of a future that is not done");
      outcome_fail(o, CF_EINVAL);
      return CF_EINVAL;
  }
}

void cf__outcome_free(cf__outcome *o) {
  if (o->heap) cf__free(o->heap, o->len);
  o->heap = NULL;
}

int cf__promise_settle(cf_future *p, const cf__outcome *o) {
  switch (o->state) {
    case CF_STATE_FINISHED:
      return cf__promise_finish(p, o->res, o->len);
    case CF_STATE_CANCELLED:
      return cf__promise_cancel(p);
    default:
      return cf__promise_fail(p, o->err, o->code, o->msg);
  }
}

/* ---- public ------------------------------------------------------------ */

static bool is_user_promise(const cf_future *p) {
  return p && p->magic == CF__FUTURE_MAGIC && p->vt == &cf__local_future_vtbl && !p->executor &&
         p->fn == cf__promise_user;
}

int cf_promise_new(cf_future **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf_future *p = cf__future_alloc();
  if (!p) return CF_ENOMEM;
  p->fn = cf__promise_user;
  cf__future_unref(p); /* no task: only the caller's handle is left */
  *out = p;
  return 0;
}

int cf_promise_set_result(cf_future *p, const void *value, size_t len) {
  if (!is_user_promise(p) || (len && !value)) return CF_EINVAL;
  return cf__promise_finish(p, value, len);
}

int cf_promise_set_error(cf_future *p, int code, const char *message) {
  if (!is_user_promise(p)) return CF_EINVAL;
  return cf__promise_fail(p, CF_ETASK, code, message);
}
