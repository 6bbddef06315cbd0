/* cf-test: labels=unit;stress timeout=300 variants=thread;process */
/*
 * test_compose.c — continuations (cf_future_then on the variant's pool,
 * cf_future_then_inline), their failure / cancellation propagation and
 * CF_THEN_OUTCOME, cf_when_all / cf_when_any over promises and pool futures
 * mixed, callbacks routed to a thread pool, and the race: promises set and
 * cancelled from other threads while continuations and when_all are
 * registered on them and cancelled, checked against a sequential oracle.
 * Tasks talk to the test through their bytes and a shared anonymous mapping
 * (made before any pool: a worker process sees the same page).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;

typedef struct shared {
  _Atomic int gate;     /* gate_task waits for it */
  _Atomic int started;  /* gate_task entries */
  _Atomic long squares; /* square_task runs */
} shared;
#define sh ((shared *)cf_test_shm)

static void nap(void) {
  struct timespec ts = {0, 100 * 1000};
  nanosleep(&ts, NULL);
}

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* ---- tasks ---------------------------------------------------------------- */

static int64_t arg_i64(cf_call *c, bool *ok) {
  size_t n = 0;
  const void *a = cf_call_arg(c, &n);
  int64_t x = 0;
  *ok = n == sizeof x;
  if (*ok) memcpy(&x, a, sizeof x);
  return x;
}

static void add_task(cf_call *c) {
  bool ok;
  int64_t x = arg_i64(c, &ok) + 1000;
  cf_call_return(c, &x, sizeof x);
}

/* x -> x * x; fails for a bad argument size (it must get the bytes of an
 * int64 result) */
static void square_task(cf_call *c) {
  atomic_fetch_add(&sh->squares, 1);
  bool ok;
  int64_t x = arg_i64(c, &ok);
  if (!ok) {
    cf_call_fail(c, -99, "bad argument");
    return;
  }
  x *= x;
  cf_call_return(c, &x, sizeof x);
}

static void fail_task(cf_call *c) {
  bool ok;
  int64_t x = arg_i64(c, &ok);
  cf_call_fail(c, (int)x, "seven");
}

static void gate_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->gate)) nap();
  int64_t x = 1;
  cf_call_return(c, &x, sizeof x);
}

/* What a CF_THEN_OUTCOME continuation saw. */
typedef struct seen {
  int32_t rc, state, error, code;
  int64_t value;
  uint32_t len;
  char msg[CF_MESSAGE_MAX];
} seen;

static void outcome_task(cf_call *c) {
  seen s;
  memset(&s, 0, sizeof s);
  cf_outcome o;
  const void *res = NULL;
  size_t len = 0;
  s.rc = cf_call_outcome(c, &o, &res, &len);
  if (s.rc == 0) {
    s.state = o.state;
    s.error = o.error;
    s.code = o.code;
    s.len = (uint32_t)len;
    if (res && len == sizeof s.value) memcpy(&s.value, res, sizeof s.value);
    memcpy(s.msg, o.message, sizeof s.msg);
  }
  cf_call_return(c, &s, sizeof s);
}

static int64_t result_i64(cf_future *f, int expect_rc_) {
  int64_t v = -1;
  expect_rc(cf_future_result(f, &v, sizeof v, NULL, -1), expect_rc_);
  return v;
}

/* ---- then ----------------------------------------------------------------- */

static void test_then_basic(void) {
  cf_executor *ex = make_ex(2);
  int64_t x = 5;
  cf_future *f, *g, *h, *i;
  assert_rc(cf_submit(ex, add_task, &x, sizeof x, &f), 0);
  assert_rc(cf_future_then(f, ex, square_task, 0, &g), 0);
  assert_rc(cf_future_then(g, ex, square_task, 0, &h), 0);
  assert_rc(cf_future_then_inline(f, square_task, 0, &i), 0);
  expect_eq(result_i64(h, 0), 1005LL * 1005 * 1005 * 1005);
  expect_eq(result_i64(g, 0), 1005 * 1005);
  expect_eq(result_i64(i, 0), 1005 * 1005);
  cf_future_release(f);
  cf_future_release(g);
  cf_future_release(h);
  cf_future_release(i);

  /* from a promise (mixed: the predecessor is not the pool's) */
  cf_future *p;
  assert_rc(cf_promise_new(&p), 0);
  assert_rc(cf_future_then(p, ex, square_task, 0, &g), 0);
  assert_rc(cf_future_then_inline(p, square_task, 0, &i), 0);
  expect_true(!cf_future_done(g) && !cf_future_done(i));
  /* a continuation is not the caller's promise */
  expect_rc(cf_promise_set_result(g, NULL, 0), CF_EINVAL);
  expect_rc(cf_promise_set_error(i, 1, NULL), CF_EINVAL);
  int64_t nine = 9;
  expect_rc(cf_promise_set_result(p, &nine, sizeof nine), 0);
  expect_true(cf_future_done(i)); /* inline: ran in the setting thread */
  expect_eq(result_i64(i, 0), 81);
  expect_eq(result_i64(g, 0), 81);
  /* on a done predecessor: at once */
  cf_future *j;
  assert_rc(cf_future_then(p, ex, square_task, 0, &j), 0);
  expect_eq(result_i64(j, 0), 81);
  cf_future_release(j);
  assert_rc(cf_future_then_inline(p, square_task, 0, &j), 0);
  expect_true(cf_future_done(j));
  expect_eq(result_i64(j, 0), 81);
  cf_future_release(j);
  cf_future_release(p);
  cf_future_release(g);
  cf_future_release(i);

  /* a continuation released before it runs: nothing leaks */
  assert_rc(cf_promise_new(&p), 0);
  assert_rc(cf_future_then(p, ex, square_task, 0, &g), 0);
  assert_rc(cf_future_then_inline(p, square_task, 0, &i), 0);
  cf_future_release(g);
  cf_future_release(i);
  expect_rc(cf_promise_set_result(p, &nine, sizeof nine), 0);
  cf_future_release(p);

  /* across pools: a process future continued on a thread pool and back */
  if (process_kind) {
    cf_executor *tp = cf_test_new_executor(false, 1);
    assert_rc(cf_submit(ex, add_task, &x, sizeof x, &f), 0);
    assert_rc(cf_future_then(f, tp, square_task, 0, &g), 0);
    assert_rc(cf_future_then(g, ex, square_task, 0, &h), 0);
    expect_eq(result_i64(h, 0), 1005LL * 1005 * 1005 * 1005);
    cf_future_release(f);
    cf_future_release(g);
    cf_future_release(h);
    expect_rc(cf_executor_destroy(tp), 0);
  }

  expect_rc(cf_future_then(NULL, ex, square_task, 0, &g), CF_EINVAL);
  assert_rc(cf_promise_new(&p), 0);
  expect_rc(cf_future_then(p, NULL, square_task, 0, &g), CF_EINVAL);
  expect_rc(cf_future_then(p, ex, NULL, 0, &g), CF_EINVAL);
  expect_rc(cf_future_then(p, ex, square_task, 0, NULL), CF_EINVAL);
  expect_rc(cf_future_then(p, ex, square_task, 8, &g), CF_EINVAL);
  expect_rc(cf_future_then_inline(p, NULL, 0, &g), CF_EINVAL);
  cf_future_release(p);
  expect_rc(cf_executor_destroy(ex), 0); /* the continuations' tasks ran */
}

static void test_then_failure(void) {
  cf_executor *ex = make_ex(2);
  long before = atomic_load(&sh->squares);
  int64_t x = 7;
  cf_future *f, *g, *i;
  assert_rc(cf_submit(ex, fail_task, &x, sizeof x, &f), 0);
  assert_rc(cf_future_then(f, ex, square_task, 0, &g), 0);
  assert_rc(cf_future_then_inline(f, square_task, 0, &i), 0);
  cf_future *both[2] = {g, i};
  for (int k = 0; k < 2; k++) {
    expect_rc(cf_future_result(both[k], NULL, 0, NULL, -1), CF_ETASK);
    int code = 0;
    char msg[32] = "";
    expect_rc(cf_future_error(both[k], &code, msg, sizeof msg), 0);
    expect_eq(code, 7);
    expect_true(strcmp(msg, "seven") == 0);
    cf_future_release(both[k]);
  }
  cf_future_release(f);

  /* cancellation propagates */
  cf_future *p;
  assert_rc(cf_promise_new(&p), 0);
  assert_rc(cf_future_then(p, ex, square_task, 0, &g), 0);
  assert_rc(cf_future_then_inline(p, square_task, 0, &i), 0);
  expect_rc(cf_future_cancel(p), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_rc(cf_future_result(i, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_true(cf_future_cancelled(g) && cf_future_cancelled(i));
  cf_future_release(g);
  cf_future_release(i);
  cf_future_release(p);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->squares), before); /* fn never ran */
}

static void test_then_outcome(void) {
  cf_executor *ex = make_ex(2);
  cf_future *ps[3], *gs[3], *is[3];
  for (int k = 0; k < 3; k++) {
    assert_rc(cf_promise_new(&ps[k]), 0);
    assert_rc(cf_future_then(ps[k], ex, outcome_task, CF_THEN_OUTCOME, &gs[k]), 0);
    assert_rc(cf_future_then_inline(ps[k], outcome_task, CF_THEN_OUTCOME, &is[k]), 0);
  }
  int64_t v = 31;
  expect_rc(cf_promise_set_result(ps[0], &v, sizeof v), 0);
  expect_rc(cf_promise_set_error(ps[1], 12, "twelve"), 0);
  expect_rc(cf_future_cancel(ps[2]), 0);
  for (int k = 0; k < 3; k++) {
    cf_future *pair[2] = {gs[k], is[k]};
    for (int m = 0; m < 2; m++) {
      seen s;
      memset(&s, 0, sizeof s);
      expect_rc(cf_future_result(pair[m], &s, sizeof s, NULL, -1), 0);
      expect_rc(s.rc, 0);
      if (k == 0) {
        expect_eq(s.state, CF_STATE_FINISHED);
        expect_eq(s.error, 0);
        expect_eq(s.len, sizeof(int64_t));
        expect_eq(s.value, 31);
      } else if (k == 1) {
        expect_eq(s.state, CF_STATE_FAILED);
        expect_eq(s.error, CF_ETASK);
        expect_eq(s.code, 12);
        expect_true(strcmp(s.msg, "twelve") == 0);
        expect_eq(s.len, 0);
      } else {
        expect_eq(s.state, CF_STATE_CANCELLED);
        expect_eq(s.error, CF_ECANCELLED);
      }
      cf_future_release(pair[m]);
    }
    cf_future_release(ps[k]);
  }
  /* not an outcome argument: CF_EINVAL */
  int64_t x = 3;
  cf_future *f;
  assert_rc(cf_submit(ex, outcome_task, &x, sizeof x, &f), 0);
  seen s;
  expect_rc(cf_future_result(f, &s, sizeof s, NULL, -1), 0);
  expect_rc(s.rc, CF_EINVAL);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* Cancelling the continuation before its task starts: the queued task is
 * cancelled too and fn never runs. */
static void test_then_cancel_out(void) {
  cf_executor *ex = make_ex(1);
  atomic_store(&sh->gate, 0);
  atomic_store(&sh->started, 0);
  cf_future *gate, *p, *g;
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &gate), 0);
  while (atomic_load(&sh->started) < 1) nap(); /* the one worker is busy */
  long before = atomic_load(&sh->squares);
  assert_rc(cf_promise_new(&p), 0);
  assert_rc(cf_future_then(p, ex, square_task, 0, &g), 0);
  int64_t v = 4;
  expect_rc(cf_promise_set_result(p, &v, sizeof v), 0); /* task queued */
  expect_rc(cf_future_cancel(g), 0);
  expect_true(cf_future_cancelled(g));
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_wait(gate, -1), 0);
  expect_rc(cf_executor_destroy(ex), 0); /* every queued task has run */
  expect_eq(atomic_load(&sh->squares), before);
  expect_rc(cf_future_result(g, NULL, 0, NULL, 0), CF_ECANCELLED);
  cf_future_release(gate);
  cf_future_release(p);
  cf_future_release(g);

  /* cancelled before the predecessor completes */
  ex = make_ex(1);
  assert_rc(cf_promise_new(&p), 0);
  assert_rc(cf_future_then(p, ex, square_task, 0, &g), 0);
  cf_future *i;
  assert_rc(cf_future_then_inline(p, square_task, 0, &i), 0);
  expect_rc(cf_future_cancel(g), 0);
  expect_rc(cf_future_cancel(i), 0);
  expect_rc(cf_promise_set_result(p, &v, sizeof v), 0);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->squares), before);
  expect_true(cf_future_cancelled(g) && cf_future_cancelled(i));
  cf_future_release(p);
  cf_future_release(g);
  cf_future_release(i);
}

/* An executor that refuses the task: the continuation fails with its code. */
static void test_then_refused(void) {
  cf_executor *ex = make_ex(1);
  cf_future *p, *g, *h;
  assert_rc(cf_promise_new(&p), 0);
  assert_rc(cf_future_then(p, ex, square_task, 0, &g), 0);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  int64_t v = 2;
  expect_rc(cf_promise_set_result(p, &v, sizeof v), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), CF_ESHUTDOWN);
  assert_rc(cf_future_then(p, ex, square_task, 0, &h), 0); /* done already */
  expect_rc(cf_future_result(h, NULL, 0, NULL, -1), CF_ESHUTDOWN);
  cf_future_release(p);
  cf_future_release(g);
  cf_future_release(h);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- when_all / when_any ------------------------------------------------- */

static void test_when(void) {
  cf_executor *ex = make_ex(2);
  enum { N = 6 };
  cf_future *fs[N], *all, *any;
  for (int i = 0; i < N; i++) {
    if (i % 2) {
      assert_rc(cf_promise_new(&fs[i]), 0);
    } else {
      int64_t x = i;
      assert_rc(cf_submit(ex, add_task, &x, sizeof x, &fs[i]), 0);
    }
  }
  assert_rc(cf_when_all(fs, N, &all), 0);
  assert_rc(cf_when_any(fs + 1, 1, &any), 0); /* a promise alone */
  expect_rc(cf_wait(fs, N, CF_FIRST_COMPLETED, -1, NULL), 0);
  expect_true(!cf_future_done(all) && !cf_future_done(any));
  for (int i = 1; i < N; i += 2) {
    int64_t v = 100 + i;
    expect_rc(cf_promise_set_result(fs[i], &v, sizeof v), 0);
  }
  size_t len = 9;
  expect_rc(cf_future_result(all, NULL, 0, &len, -1), 0);
  expect_eq(len, 0);
  for (int i = 0; i < N; i++) expect_true(cf_future_done(fs[i]));
  uint64_t idx = 99;
  expect_rc(cf_future_result(any, &idx, sizeof idx, NULL, -1), 0);
  expect_eq(idx, 0);
  cf_future_release(all);
  cf_future_release(any);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);

  /* failure: the lowest index that did not finish gives the outcome */
  for (int i = 0; i < N; i++) assert_rc(cf_promise_new(&fs[i]), 0);
  assert_rc(cf_when_all(fs, N, &all), 0);
  assert_rc(cf_when_any(fs, N, &any), 0);
  int64_t v = 1;
  expect_rc(cf_future_cancel(fs[5]), 0);
  expect_rc(cf_promise_set_error(fs[3], 33, "three"), 0);
  expect_rc(cf_future_result(any, &idx, sizeof idx, NULL, -1), 0);
  expect_eq(idx, 5);
  for (int i = 0; i < N; i++) {
    if (i == 3 || i == 5) continue;
    expect_true(!cf_future_done(all));
    expect_rc(cf_promise_set_result(fs[i], &v, sizeof v), 0);
  }
  expect_rc(cf_future_result(all, NULL, 0, NULL, -1), CF_ETASK);
  int code = 0;
  expect_rc(cf_future_error(all, &code, NULL, 0), 0);
  expect_eq(code, 33);
  cf_future_release(all);
  cf_future_release(any);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);

  /* a cancelled one lowest: cancelled; a when_all of when_alls */
  cf_future *a, *b, *outer;
  assert_rc(cf_promise_new(&a), 0);
  assert_rc(cf_promise_new(&b), 0);
  cf_future *ab[2] = {a, b};
  cf_future *inner;
  assert_rc(cf_when_all(ab, 2, &inner), 0);
  assert_rc(cf_when_all(&inner, 1, &outer), 0);
  expect_rc(cf_future_cancel(a), 0);
  expect_rc(cf_promise_set_error(b, 1, NULL), 0);
  expect_rc(cf_future_result(outer, NULL, 0, NULL, -1), CF_ECANCELLED);
  cf_future_release(a);
  cf_future_release(b);
  cf_future_release(inner);
  cf_future_release(outer);

  assert_rc(cf_when_all(NULL, 0, &all), 0);
  expect_rc(cf_future_result(all, NULL, 0, NULL, 0), 0);
  cf_future_release(all);
  expect_rc(cf_when_any(NULL, 0, &any), CF_EINVAL);
  cf_future *bad[2] = {NULL, NULL};
  expect_rc(cf_when_all(bad, 2, &all), CF_EINVAL);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- callbacks routed to a thread pool ------------------------------------ */

static _Thread_local bool tl_router_worker;
static int mark_router(void *arg) {
  (void)arg;
  tl_router_worker = true;
  return 0;
}

typedef struct routed_seen {
  _Atomic int runs, on_router, done;
  bool release; /* release the future's handle in the callback */
} routed_seen;

static void routed_cb(cf_future *f, void *arg) {
  routed_seen *s = arg;
  atomic_fetch_add(&s->on_router, tl_router_worker ? 1 : 0);
  atomic_fetch_add(&s->done, cf_future_done(f) ? 1 : 0);
  if (s->release) cf_future_release(f); /* allowed: the routing keeps f alive */
  atomic_fetch_add(&s->runs, 1);
}

static void test_callback_on(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.initializer = mark_router;
  cf_executor *router = NULL;
  assert_rc(cf_thread_pool_new(&o, &router), 0);
  cf_executor *ex = make_ex(2);
  enum { N = 20 };
  routed_seen s = {0};
  s.release = true;
  for (int i = 0; i < N; i++) {
    cf_future *f;
    if (i % 2) {
      int64_t x = i;
      assert_rc(cf_submit(ex, add_task, &x, sizeof x, &f), 0);
    } else {
      assert_rc(cf_promise_new(&f), 0);
    }
    assert_rc(cf_future_add_done_callback_on(f, router, routed_cb, &s), 0);
    if (i % 2 == 0) expect_rc(cf_promise_set_result(f, NULL, 0), 0);
    /* the callback releases the handle */
  }
  while (atomic_load(&s.runs) < N) nap();
  expect_eq(atomic_load(&s.on_router), N);
  expect_eq(atomic_load(&s.done), N);

  /* a process pool cannot run a callback: CF_EINVAL */
  cf_future *p;
  assert_rc(cf_promise_new(&p), 0);
  if (process_kind) expect_rc(cf_future_add_done_callback_on(p, ex, routed_cb, &s), CF_EINVAL);
  expect_rc(cf_future_add_done_callback_on(p, NULL, routed_cb, &s), CF_EINVAL);
  expect_rc(cf_future_add_done_callback_on(p, router, NULL, &s), CF_EINVAL);

  /* a router that refuses (shut down): the callback runs in the completer */
  routed_seen s2 = {0};
  expect_rc(cf_future_add_done_callback_on(p, router, routed_cb, &s2), 0);
  expect_rc(cf_executor_shutdown(router, CF_SHUTDOWN_WAIT), 0);
  expect_rc(cf_promise_set_result(p, NULL, 0), 0);
  expect_eq(atomic_load(&s2.runs), 1);
  expect_eq(atomic_load(&s2.on_router), 0);
  cf_future_release(p);
  expect_rc(cf_executor_destroy(router), 0);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- the race ------------------------------------------------------------- */

/* Promises are set (result or error) and cancelled from two threads while
 * the main thread registers then / then_inline / when_all on them and a
 * third thread cancels some continuations. Oracle, per promise: exactly one
 * completion won and its state is that one's; a continuation is CANCELLED
 * iff a cancel of it returned 0, or else follows the promise (finished:
 * fn's value; failed: the same code; cancelled: cancelled); when_all takes
 * the lowest-index promise that did not finish. */
enum { RK = 24 };

typedef struct rround {
  cf_future *ps[RK];
  cf_future *ts[RK];               /* then on the pool */
  cf_future *is[RK];               /* then_inline */
  _Atomic(cf_future *) pub_ts[RK]; /* published to the continuation canceller */
  _Atomic int won[RK];             /* bit 0 result, bit 1 error, bit 2 cancel */
  _Atomic int t_cancelled[RK];     /* a cancel of ts[i] returned 0 */
  _Atomic int bad;
  _Atomic int go;
  uint64_t seed;
} rround;

static void *r_setter(void *arg) {
  rround *r = arg;
  while (!atomic_load(&r->go)) {
  }
  uint64_t s = r->seed | 1;
  for (int i = 0; i < RK; i++) {
    int64_t v = i + 1;
    bool ok = rng_next(&s) % 4 != 0;
    int rc = ok ? cf_promise_set_result(r->ps[i], &v, sizeof v)
                : cf_promise_set_error(r->ps[i], 500 + i, "err");
    if (rc == 0)
      atomic_fetch_or(&r->won[i], ok ? 1 : 2);
    else if (rc != CF_EDONE)
      atomic_fetch_add(&r->bad, 1);
  }
  return NULL;
}

static void *r_canceller(void *arg) {
  rround *r = arg;
  while (!atomic_load(&r->go)) {
  }
  uint64_t s = r->seed * 7 + 3;
  for (int i = RK - 1; i >= 0; i--) {
    if (rng_next(&s) % 3) continue;
    int rc = cf_future_cancel(r->ps[i]);
    if (rc == 0)
      atomic_fetch_or(&r->won[i], 4);
    else if (rc != CF_EDONE)
      atomic_fetch_add(&r->bad, 1);
  }
  return NULL;
}

static void *r_then_canceller(void *arg) {
  rround *r = arg;
  uint64_t s = r->seed * 13 + 5;
  int left = RK;
  bool looked[RK] = {false};
  while (left > 0) {
    for (int i = 0; i < RK; i++) {
      if (looked[i]) continue;
      cf_future *t = atomic_load(&r->pub_ts[i]);
      if (!t) continue;
      looked[i] = true;
      left--;
      if (rng_next(&s) % (process_kind ? 8 : 4)) continue;
      int rc = cf_future_cancel(t);
      if (rc == 0)
        atomic_store(&r->t_cancelled[i], 1);
      else if (rc != CF_EDONE)
        atomic_fetch_add(&r->bad, 1);
    }
  }
  return NULL;
}

/* The promise's outcome as the oracle sees it: 1 finished, 2 failed, 4
 * cancelled (the winning bit). */
static void check_follows(cf_future *t, cf_future *p, int won, bool t_cancelled, bool squared) {
  int st = cf_future_state(t);
  if (t_cancelled) {
    expect_eq(st, CF_STATE_CANCELLED);
    return;
  }
  int64_t pv = 0;
  if (won == 1) {
    expect_rc(cf_future_result(p, &pv, sizeof pv, NULL, 0), 0);
    int64_t v = 0;
    expect_rc(cf_future_result(t, &v, sizeof v, NULL, 0), 0);
    expect_eq(v, squared ? pv * pv : pv);
  } else if (won == 2) {
    expect_rc(cf_future_result(t, NULL, 0, NULL, 0), CF_ETASK);
    int c1 = 0, c2 = 1;
    expect_rc(cf_future_error(t, &c1, NULL, 0), 0);
    expect_rc(cf_future_error(p, &c2, NULL, 0), 0);
    expect_eq(c1, c2);
  } else {
    expect_eq(st, CF_STATE_CANCELLED);
  }
}

static void run_race_round(cf_executor *ex, uint64_t seed) {
  rround *r = calloc(1, sizeof *r);
  r->seed = seed;
  for (int i = 0; i < RK; i++) assert_rc(cf_promise_new(&r->ps[i]), 0);
  pthread_t t[3];
  pthread_create(&t[0], NULL, r_setter, r);
  pthread_create(&t[1], NULL, r_canceller, r);
  pthread_create(&t[2], NULL, r_then_canceller, r);
  cf_future *all = NULL;
  for (int i = 0; i < RK; i++) {
    if (i == RK / 3) atomic_store(&r->go, 1); /* the rest race the completions */
    if (i == RK / 2) assert_rc(cf_when_all(r->ps, RK, &all), 0);
    assert_rc(cf_future_then(r->ps[i], ex, square_task, 0, &r->ts[i]), 0);
    assert_rc(cf_future_then_inline(r->ps[i], square_task, 0, &r->is[i]), 0);
    atomic_store(&r->pub_ts[i], r->ts[i]);
  }
  for (int k = 0; k < 3; k++) pthread_join(t[k], NULL);
  expect_eq(atomic_load(&r->bad), 0);
  expect_rc(cf_future_wait(all, -1), 0);
  int first_bad = -1;
  for (int i = 0; i < RK; i++) {
    int won = atomic_load(&r->won[i]);
    expect_true(won == 1 || won == 2 || won == 4);
    if (first_bad < 0 && won != 1) first_bad = i;
    expect_rc(cf_future_wait(r->ts[i], -1), 0);
    expect_rc(cf_future_wait(r->is[i], -1), 0);
    check_follows(r->ts[i], r->ps[i], won, atomic_load(&r->t_cancelled[i]), true);
    check_follows(r->is[i], r->ps[i], won, false, true);
  }
  if (first_bad < 0)
    expect_rc(cf_future_result(all, NULL, 0, NULL, 0), 0);
  else
    check_follows(all, r->ps[first_bad], atomic_load(&r->won[first_bad]), false, false);
  cf_future_release(all);
  for (int i = 0; i < RK; i++) {
    cf_future_release(r->ps[i]);
    cf_future_release(r->ts[i]);
    cf_future_release(r->is[i]);
  }
  free(r);
}

static void test_race(void) {
  cf_executor *ex = make_ex(2);
  uint64_t rounds = cf_test_scale(process_kind ? 60 : 200);
  for (uint64_t i = 0; i < rounds; i++) run_race_round(ex, 0x9e3779b97f4a7c15ull * (i + 1));
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  cf_test_shared(sizeof(shared));
  CF_RUN(test_then_basic);
  CF_RUN(test_then_failure);
  CF_RUN(test_then_outcome);
  CF_RUN(test_then_cancel_out);
  CF_RUN(test_then_refused);
  CF_RUN(test_when);
  CF_RUN(test_callback_on);
  CF_RUN(test_race);
  return cf_test_done(process_kind ? "test_compose_process" : "test_compose_thread");
}
