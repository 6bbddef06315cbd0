/*
 * compose.c — continuations (cf_future_then, cf_future_then_inline),
 * combinators (cf_when_all, cf_when_any) and callbacks routed to an
 * executor (cf_future_add_done_callback_on).
 *
 * DESIGN
 * Everything here is built on public done-callbacks
 * (cf_future_add_done_callback), so it works for futures of any executor
 * and for promises, whichever thread completes them; the futures it returns
 * are promises (promise.h) completed from those callbacks. There is no lock:
 * user code (fn, callbacks) never runs under one. Whoever settles a
 * returned future holds a reference on everything it touches across the
 * settle, whose callbacks run inside it (future.c: every completer holds a
 * reference while it completes, so a callback may drop a reference of ours
 * on the future that runs it).
 *
 * then on an executor, protocol (node n, predecessor f, result `out`, the
 * submitted task t):
 *   1. n starts with two references: out's callback (then_out_done) and
 *      the f chain (then_pred_done, later then_task_done).
 *   2. f done -> then_pred_done: if out is done (cancelled), stop. If f did
 *      not finish and CF_THEN_OUTCOME is not set, out takes f's outcome.
 *      Else fn is submitted with the argument built from f's outcome (from
 *      a completing thread with CF_SUBMIT_NOWAIT: a callback never waits
 *      for queue room; from the caller of cf_future_then it may wait). A
 *      refused submit fails out with the submit's code.
 *   3. then_pred_done stores t in n (seq_cst), registers then_task_done on
 *      t, then loads out's word (seq_cst): cancelled -> cancel t.
 *   4. out cancelled -> then_out_done loads n->task (seq_cst): set -> cancel
 *      t. Steps 3 and 4 are a store-buffering pair (store t / load word
 *      against the cancel's CAS of the word / load t): one of them sees the
 *      other, so a cancelled out never leaves its task to run unseen. Both
 *      may cancel t: cancelling twice is harmless.
 *   5. t done -> then_task_done: out takes t's outcome.
 *   6. The last reference released frees n, its handle on t and its
 *      reference on out.
 *
 * then_inline: the returned future is a local future whose fn is the
 * user's; when f is done, the callback sets its argument from f's outcome
 * and runs it in place with cf__future_run (the thread pool's runner: the
 * same cf_call, claim and completion), or, for a failure it propagates,
 * settles it as a promise. A cancel before that makes cf__future_run skip
 * it.
 *
 * when_all / when_any: one block holds the result, a reference on each
 * input and one node per input registered as a callback. when_all's last
 * callback (an atomic countdown) settles the result from the inputs, in
 * index order; when_any's first (an exchange on `won`) finishes it with its
 * index. The block is freed by the last of the creator and the callbacks.
 */
#include <stdatomic.h>
#include <string.h>

#include "executor.h"
#include "future.h"
#include "promise.h"
#include "scope.h"
#include "sys.h"

/* > 0 while the calling thread is inside a cf_future_then* or
 * cf_future_add_done_callback_on call: a callback it runs then runs in the
 * caller, which may wait for queue room. */
static _Thread_local unsigned tl_in_caller;

static bool valid_future(const cf_future *f) {
  return f && f->magic == CF__FUTURE_MAGIC;
}
static bool valid_executor(const cf_executor *ex) {
  return ex && ex->magic == CF__EXECUTOR_MAGIC && ex->vt;
}
static bool word_done(cf_future *f) {
  /* acquire: as every reader of the word (future.h); a process future's
   * word moves: cf__future_load follows it */
  return cf__st_done(cf__future_load(f));
}
static unsigned submit_flags(void) {
  return tl_in_caller ? 0 : CF_SUBMIT_NOWAIT;
}

/* ---- the argument a continuation's fn sees ----------------------------- */

/* CF_THEN_OUTCOME argument: this header, then `len` result bytes. Bytes
 * only (no pointer), so it crosses into a worker process unchanged. */
#define WIRE_MAGIC 0xcf0c7e01u
typedef struct wire {
  uint32_t magic;
  int32_t state, err, code;
  uint32_t len;
  char msg[CF_MESSAGE_MAX];
} wire;
_Static_assert(sizeof(wire) == 20 + CF_MESSAGE_MAX, "wire: no padding");

typedef struct arg_buf {
  const void *p;
  size_t len;
  void *heap;
  size_t heap_len;
  unsigned char small[sizeof(wire) + CF__OUTCOME_SMALL];
} arg_buf;

/* The argument for outcome o: its result bytes, or (CF_THEN_OUTCOME) the
 * wire. 0, CF_E2BIG (no room for the header), CF_ENOMEM. */
static int arg_build(const cf__outcome *o, unsigned flags, arg_buf *a) {
  a->heap = NULL;
  if (!(flags & CF_THEN_OUTCOME)) {
    a->p = o->res;
    a->len = o->len;
    return 0;
  }
  if (o->len > UINT32_MAX - sizeof(wire)) return CF_E2BIG;
  wire h = {.magic = WIRE_MAGIC,
            .state = o->state,
            .err = o->err,
            .code = o->code,
            .len = (uint32_t)o->len};
  size_t m = strnlen(o->msg, CF_MESSAGE_MAX - 1);
  memcpy(h.msg, o->msg, m);
  a->len = sizeof h + o->len;
  unsigned char *dst = a->small;
  if (a->len > sizeof a->small) {
    dst = cf__alloc(a->len);
    if (!dst) return CF_ENOMEM;
    a->heap = dst;
    a->heap_len = a->len;
  }
  memcpy(dst, &h, sizeof h);
  if (o->len) memcpy(dst + sizeof h, o->res, o->len);
  a->p = dst;
  return 0;
}

static void arg_free(arg_buf *a) {
  if (a->heap) cf__free(a->heap, a->heap_len);
}

int cf_call_outcome(cf_call *call, cf_outcome *out, const void **result, size_t *len) {
  size_t n = 0;
  const unsigned char *a = cf_call_arg(call, &n);
  wire h;
  if (!out || !a || n < sizeof h) return CF_EINVAL;
  memcpy(&h, a, sizeof h); /* the argument may be unaligned */
  if (h.magic != WIRE_MAGIC || h.len != n - sizeof h || h.state < CF_STATE_FINISHED ||
      h.state > CF_STATE_CANCELLED)
    return CF_EINVAL;
  out->state = h.state;
  out->error = h.err;
  out->code = h.code;
  memcpy(out->message, h.msg, CF_MESSAGE_MAX);
  out->message[CF_MESSAGE_MAX - 1] = 0;
  if (result) *result = h.state == CF_STATE_FINISHED ? a + sizeof h : NULL;
  if (len) *len = h.len;
  return 0;
}

/* ---- then on an executor ------------------------------------------------ */

typedef struct then_node {
  _Atomic uint32_t refs; /* step 1 */
  unsigned flags;
  cf_fn fn;
  cf_executor *ex;
  cf_future *out;            /* an internal reference */
  _Atomic(cf_future *) task; /* a handle on the submitted task, or NULL */
  cf_scope *scope;           /* the scope cf_future_then was called in (a reference), or NULL */
} then_node;

static void then_unref(then_node *n) {
  /* acq_rel: every use of n by the other holders happens before the free */
  if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1) return;
  cf_future *t = atomic_load_explicit(&n->task, memory_order_relaxed); /* ordered by the acq_rel */
  if (t) (void)cf_future_release(t);
  if (n->scope) cf__scope_release(n->scope);
  cf__future_unref(n->out);
  cf__free(n, sizeof *n);
}

/* Step 5. */
static void then_task_done(cf_future *t, void *arg) {
  then_node *n = arg;
  cf__outcome o;
  (void)cf__outcome_capture(t, &o);
  (void)cf__promise_settle(n->out, &o);
  cf__outcome_free(&o);
  then_unref(n);
}

/* Step 4. */
static void then_out_done(cf_future *out, void *arg) {
  then_node *n = arg;
  /* acquire: as every reader of the word (future.h); the cancel's seq_cst
   * CAS came before this callback ran */
  if (cf__st_state(atomic_load_explicit(out->word, memory_order_acquire)) == CF_STATE_CANCELLED) {
    cf_future *t = atomic_load(&n->task); /* seq_cst: step 4's load */
    if (t) (void)cf_future_cancel(t);
  }
  then_unref(n);
}

/* Steps 2 and 3. */
static void then_pred_done(cf_future *f, void *arg) {
  then_node *n = arg;
  if (word_done(n->out)) { /* cancelled before fn could start */
    then_unref(n);
    return;
  }
  cf__outcome o;
  (void)cf__outcome_capture(f, &o);
  if (!(n->flags & CF_THEN_OUTCOME) && o.state != CF_STATE_FINISHED) {
    (void)cf__promise_settle(n->out, &o);
    cf__outcome_free(&o);
    then_unref(n);
    return;
  }
  arg_buf a;
  cf_future *t = NULL;
  int rc = arg_build(&o, n->flags, &a);
  if (rc == 0) {
    /* the task joins the scope the continuation was made in (none: none,
     * not the completing thread's), so cancelling a request reaches it */
    cf_submit_opts so = {
        .timeout_ns = 0, .flags = submit_flags() | CF_SUBMIT_SCOPE, .scope = n->scope};
    rc = cf_submit_ex(n->ex, n->fn, a.p, a.len, &so, &t);
    arg_free(&a);
  }
  cf__outcome_free(&o);
  if (rc != 0) {
    (void)cf__promise_fail(n->out, rc, rc, NULL);
    then_unref(n);
    return;
  }
  atomic_store(&n->task, t);                                    /* seq_cst: step 3's store */
  atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed); /* then_task_done's; we hold one */
  rc = cf_future_add_done_callback(t, then_task_done, n);
  if (rc != 0) {
    atomic_fetch_sub_explicit(&n->refs, 1, memory_order_relaxed); /* never registered */
    (void)cf__promise_fail(n->out, rc, rc, NULL);
    (void)cf_future_cancel(t);
  } else if (cf__st_state(atomic_load(n->out->word)) == CF_STATE_CANCELLED) { /* seq_cst: step 3 */
    (void)cf_future_cancel(t);
  }
  then_unref(n);
}

int cf_future_then(cf_future *f, cf_executor *ex, cf_fn fn, unsigned flags, cf_future **out) {
  if (out) *out = NULL;
  if (!valid_future(f) || !valid_executor(ex) || !fn || !out || (flags & ~CF_THEN_OUTCOME))
    return CF_EINVAL;
  then_node *n = cf__alloc(sizeof *n);
  cf_future *p = n ? cf__promise_alloc() : NULL;
  if (!p) {
    cf__free(n, sizeof *n);
    return CF_ENOMEM;
  }
  atomic_init(&n->refs, 2);
  n->flags = flags;
  n->fn = fn;
  n->ex = ex;
  n->out = p;
  atomic_init(&n->task, NULL);
  n->scope = cf__scope_tl; /* the calling task's, kept for the submit */
  if (n->scope) cf__scope_retain(n->scope);
  int rc = cf_future_add_done_callback(p, then_out_done, n);
  if (rc != 0) {
    if (n->scope) cf__scope_release(n->scope);
    cf__free(n, sizeof *n);
    cf__future_unref(p);
    cf__future_unref(p);
    return rc;
  }
  tl_in_caller++;
  rc = cf_future_add_done_callback(f, then_pred_done, n);
  tl_in_caller--;
  if (rc != 0) {
    then_unref(n);               /* the f chain that never started */
    (void)cf__promise_cancel(p); /* then_out_done drops the last */
    (void)cf_future_release(p);
    return rc;
  }
  *out = p;
  return 0;
}

/* ---- then inline -------------------------------------------------------- */

/* d holds one internal reference for this callback: cf__future_run drops
 * it, or we do. */
static void then_inline_run(cf_future *f, cf_future *d, unsigned flags) {
  if (word_done(d)) { /* cancelled */
    cf__future_unref(d);
    return;
  }
  cf__outcome o;
  (void)cf__outcome_capture(f, &o);
  int rc = 0;
  if (!(flags & CF_THEN_OUTCOME) && o.state != CF_STATE_FINISHED) {
    (void)cf__promise_settle(d, &o);
    rc = 1;
  } else {
    arg_buf a;
    rc = arg_build(&o, flags, &a);
    /* d is PENDING and nobody but its runner reads the argument */
    if (rc == 0) {
      rc = cf__future_set_arg(d, a.p, a.len);
      arg_free(&a);
    }
    if (rc != 0) (void)cf__promise_fail(d, rc, rc, NULL);
  }
  cf__outcome_free(&o);
  if (rc != 0) {
    cf__future_unref(d);
    return;
  }
  (void)cf__future_run(d, 0); /* runs fn here unless d was cancelled meanwhile */
}

static void then_inline_value(cf_future *f, void *arg) {
  then_inline_run(f, arg, 0);
}
static void then_inline_outcome(cf_future *f, void *arg) {
  then_inline_run(f, arg, CF_THEN_OUTCOME);
}

int cf_future_then_inline(cf_future *f, cf_fn fn, unsigned flags, cf_future **out) {
  if (out) *out = NULL;
  if (!valid_future(f) || !fn || !out || (flags & ~CF_THEN_OUTCOME)) return CF_EINVAL;
  cf_future *d = cf__future_alloc(); /* a handle for the caller, a reference for the run */
  if (!d) return CF_ENOMEM;
  d->fn = fn; /* executor NULL: not a promise of the user's, run only here */
  tl_in_caller++;
  int rc = cf_future_add_done_callback(
      f, (flags & CF_THEN_OUTCOME) ? then_inline_outcome : then_inline_value, d);
  tl_in_caller--;
  if (rc != 0) {
    cf__future_unref(d);
    cf__future_unref(d);
    return rc;
  }
  *out = d;
  return 0;
}

/* ---- when_all / when_any ------------------------------------------------ */

typedef struct join join;
typedef struct join_node {
  join *j;
  size_t index;
} join_node;

struct join {
  _Atomic size_t refs;      /* the creator + one per registered callback */
  _Atomic size_t remaining; /* when_all: callbacks still to run */
  _Atomic bool won;         /* when_any: a callback finished out */
  bool any;
  size_t n, bytes;
  cf_future *out; /* an internal reference */
  cf_future **fs; /* internal references */
  join_node *nodes;
};

static void join_unref(join *j) {
  /* acq_rel: as then_unref */
  if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1) return;
  for (size_t i = 0; i < j->n; i++) cf__future_unref(j->fs[i]);
  cf__future_unref(j->out);
  cf__free(j, j->bytes);
}

/* Every input is done: out takes the outcome of the lowest-index one that
 * did not finish, else finishes. */
static void join_settle_all(join *j) {
  for (size_t i = 0; i < j->n; i++) {
    if (cf_future_state(j->fs[i]) == CF_STATE_FINISHED) continue;
    cf__outcome o;
    (void)cf__outcome_capture(j->fs[i], &o);
    (void)cf__promise_settle(j->out, &o);
    cf__outcome_free(&o);
    return;
  }
  (void)cf__promise_finish(j->out, NULL, 0);
}

static void join_done(cf_future *f, void *arg) {
  join_node *node = arg;
  join *j = node->j;
  if (j->any) {
    if (!atomic_exchange(&j->won, true)) {
      uint64_t idx = node->index;
      (void)cf__promise_finish(j->out, &idx, sizeof idx);
    }
  } else if (atomic_fetch_sub(&j->remaining, 1) == 1) {
    /* seq_cst RMW chain: every other input's done word is visible here */
    join_settle_all(j);
  }
  join_unref(j);
}

static int join_new(cf_future *const *fs, size_t n, bool any, cf_future **out) {
  if (out) *out = NULL;
  if (!out || (n > 0 && !fs) || (any && n == 0)) return CF_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!valid_future(fs[i])) return CF_EINVAL;
  if (n > (SIZE_MAX - sizeof(join)) / (sizeof(join_node) + sizeof(cf_future *))) return CF_ENOMEM;
  size_t bytes = sizeof(join) + n * (sizeof(join_node) + sizeof(cf_future *));
  join *j = cf__alloc(bytes);
  cf_future *p = j ? cf__promise_alloc() : NULL;
  if (!p) {
    if (j) cf__free(j, bytes);
    return CF_ENOMEM;
  }
  atomic_init(&j->refs, n + 1);
  atomic_init(&j->remaining, n);
  atomic_init(&j->won, false);
  j->any = any;
  j->n = n;
  j->bytes = bytes;
  j->out = p;
  j->nodes = (join_node *)(j + 1);
  j->fs = (cf_future **)(j->nodes + n);
  for (size_t i = 0; i < n; i++) {
    cf__future_ref(fs[i]);
    j->fs[i] = fs[i];
    j->nodes[i] = (join_node){j, i};
  }
  if (n == 0) (void)cf__promise_finish(p, NULL, 0);
  for (size_t i = 0; i < n; i++) {
    int rc = cf_future_add_done_callback(fs[i], join_done, &j->nodes[i]);
    if (rc != 0) {
      /* out fails first, so that a countdown ending below settles nothing */
      (void)cf__promise_fail(p, rc, rc, NULL);
      atomic_fetch_sub(&j->refs, n - i); /* never registered; the creator's is left */
      atomic_fetch_sub(&j->remaining, n - i);
      (void)cf_future_release(p);
      join_unref(j);
      return rc;
    }
  }
  *out = p;
  join_unref(j);
  return 0;
}

int cf_when_all(cf_future *const *fs, size_t n, cf_future **out) {
  return join_new(fs, n, false, out);
}

int cf_when_any(cf_future *const *fs, size_t n, cf_future **out) {
  return join_new(fs, n, true, out);
}

/* ---- callbacks routed to an executor ------------------------------------ */

typedef struct routed {
  cf_done_fn fn;
  void *arg;
  cf_future *f; /* an internal reference, until fn returned */
  cf_executor *ex;
} routed;

static void routed_call(routed *r) {
  r->fn(r->f, r->arg);
  cf__future_unref(r->f);
  cf__free(r, sizeof *r);
}

/* The task: its argument is the routed pointer (a thread pool's task runs
 * in this process: ex->local_tasks). */
static void routed_task(cf_call *c) {
  size_t n = 0;
  const void *a = cf_call_arg(c, &n);
  routed *r;
  cf__assert(n == sizeof r);
  memcpy(&r, a, sizeof r);
  routed_call(r);
}

static void routed_done(cf_future *f, void *arg) {
  routed *r = arg;
  cf_submit_opts so = {.timeout_ns = 0, .flags = submit_flags()};
  cf_future *t;
  if (cf_submit_ex(r->ex, routed_task, &r, sizeof r, &so, &t) == 0) {
    (void)cf_future_release(t);
    return;
  }
  routed_call(r); /* refused: here, so that it runs exactly once */
}

int cf_future_add_done_callback_on(cf_future *f, cf_executor *ex, cf_done_fn fn, void *arg) {
  if (!valid_future(f) || !valid_executor(ex) || !ex->local_tasks || !fn) return CF_EINVAL;
  routed *r = cf__alloc(sizeof *r);
  if (!r) return CF_ENOMEM;
  *r = (routed){fn, arg, f, ex};
  cf__future_ref(f);
  tl_in_caller++;
  int rc = cf_future_add_done_callback(f, routed_done, r);
  tl_in_caller--;
  if (rc != 0) {
    cf__future_unref(f);
    cf__free(r, sizeof *r);
  }
  return rc;
}
