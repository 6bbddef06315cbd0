/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_promise.c — promises (cf_promise_*) used everywhere a pool's future
 * is: result, wait, cancel, errors, callbacks, cf_wait and as_completed
 * over promises mixed with the variant's pool futures, a thread-pool task
 * waiting on a promise, and promises set from several threads at once
 * (exactly one completion wins). No timing thresholds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;

static void nap(void) {
  struct timespec ts = {0, 200 * 1000};
  nanosleep(&ts, NULL);
}

static void add_task(cf_call *c) {
  int64_t x;
  memcpy(&x, cf_call_arg(c, NULL), sizeof x);
  x += 1000;
  cf_call_return(c, &x, sizeof x);
}

static void count_cb(cf_future *f, void *arg) {
  atomic_fetch_add((_Atomic int *)arg, cf_future_done(f) ? 1 : 1000);
}

static void test_basic(void) {
  cf_future *p = NULL;
  assert_rc(cf_promise_new(&p), 0);
  expect_eq(cf_future_state(p), CF_STATE_PENDING);
  expect_true(!cf_future_done(p));
  expect_rc(cf_future_wait(p, 0), CF_ETIMEDOUT);
  expect_rc(cf_future_result(p, NULL, 0, NULL, 1000), CF_ETIMEDOUT);
  _Atomic int cbs = 0;
  expect_rc(cf_future_add_done_callback(p, count_cb, (void *)&cbs), 0);
  expect_eq(atomic_load(&cbs), 0);
  int64_t v = 42, out = 0;
  expect_rc(cf_promise_set_result(p, &v, sizeof v), 0);
  expect_eq(atomic_load(&cbs), 1); /* in the setting thread */
  expect_rc(cf_promise_set_result(p, &v, sizeof v), CF_EDONE);
  expect_rc(cf_promise_set_error(p, 1, "late"), CF_EDONE);
  expect_rc(cf_future_cancel(p), CF_EDONE);
  expect_eq(cf_future_state(p), CF_STATE_FINISHED);
  size_t len = 0;
  expect_rc(cf_future_result(p, &out, sizeof out, &len, -1), 0);
  expect_eq(out, 42);
  expect_eq(len, sizeof out);
  expect_rc(cf_future_error(p, NULL, NULL, 0), 0); /* finished: "no error" (Python: None) */
  expect_rc(cf_future_add_done_callback(p, count_cb, (void *)&cbs), 0); /* at once */
  expect_eq(atomic_load(&cbs), 2);
  expect_rc(cf_future_release(p), 0);

  /* large result (heap), error, cancel */
  char big[5000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
  assert_rc(cf_promise_new(&p), 0);
  expect_rc(cf_promise_set_result(p, big, sizeof big), 0);
  char back[5000];
  expect_rc(cf_future_result(p, back, 10, &len, 0), CF_ERANGE);
  expect_eq(len, sizeof big);
  expect_rc(cf_future_result(p, back, sizeof back, &len, 0), 0);
  expect_true(memcmp(big, back, sizeof big) == 0);
  cf_future_release(p);

  assert_rc(cf_promise_new(&p), 0);
  expect_rc(cf_promise_set_error(p, 77, "connection reset"), 0);
  expect_rc(cf_future_result(p, NULL, 0, NULL, -1), CF_ETASK);
  int code = 0;
  char msg[64];
  expect_rc(cf_future_error(p, &code, msg, sizeof msg), 0);
  expect_eq(code, 77);
  expect_true(strcmp(msg, "connection reset") == 0);
  expect_eq(cf_future_state(p), CF_STATE_FAILED);
  cf_future_release(p);

  assert_rc(cf_promise_new(&p), 0);
  cbs = 0;
  expect_rc(cf_future_add_done_callback(p, count_cb, (void *)&cbs), 0);
  expect_rc(cf_future_cancel(p), 0);
  expect_rc(cf_future_cancel(p), 0);
  expect_eq(atomic_load(&cbs), 1);
  expect_true(cf_future_cancelled(p));
  expect_rc(cf_promise_set_result(p, &v, sizeof v), CF_EDONE);
  expect_rc(cf_future_result(p, NULL, 0, NULL, -1), CF_ECANCELLED);
  cf_future_release(p);

  /* a promise released before it is set: nothing leaks (ASan) */
  assert_rc(cf_promise_new(&p), 0);
  cf_future_release(p);

  expect_rc(cf_promise_new(NULL), CF_EINVAL);
  expect_rc(cf_promise_set_result(NULL, &v, sizeof v), CF_EINVAL);
  assert_rc(cf_promise_new(&p), 0);
  expect_rc(cf_promise_set_result(p, NULL, 4), CF_EINVAL);
  expect_rc(cf_promise_set_result(p, NULL, 0), 0); /* an empty result */
  expect_rc(cf_future_result(p, NULL, 0, &len, 0), 0);
  expect_eq(len, 0);
  cf_future_release(p);
}

/* A pool's future is not a promise: the set calls refuse it. */
static void test_not_a_promise(void) {
  cf_executor *ex = cf_test_new_executor(process_kind, 1);
  cf_future *f = NULL;
  int64_t x = 1;
  assert_rc(cf_submit(ex, add_task, &x, sizeof x, &f), 0);
  expect_rc(cf_promise_set_result(f, &x, sizeof x), CF_EINVAL);
  expect_rc(cf_promise_set_error(f, 1, NULL), CF_EINVAL);
  int64_t r = 0;
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, 1001);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

typedef struct setter_arg {
  cf_future **ps;
  size_t n;
  int64_t base;
} setter_arg;

static void *setter_thread(void *arg) {
  setter_arg *a = arg;
  for (size_t i = 0; i < a->n; i++) {
    nap();
    int64_t v = a->base + (int64_t)i;
    cf_promise_set_result(a->ps[i], &v, sizeof v);
  }
  return NULL;
}

/* cf_wait and as_completed over promises and pool futures mixed. */
static void test_wait_mixed(void) {
  cf_executor *ex = cf_test_new_executor(process_kind, 2);
  enum { P = 6, F = 6 };
  cf_future *fs[P + F];
  for (int i = 0; i < P; i++) assert_rc(cf_promise_new(&fs[i]), 0);
  for (int i = 0; i < F; i++) {
    int64_t x = i;
    assert_rc(cf_submit(ex, add_task, &x, sizeof x, &fs[P + i]), 0);
  }
  bool done[P + F];
  /* the pool futures finish; the promises wait */
  expect_rc(cf_wait(fs + P, F, CF_ALL_COMPLETED, -1, NULL), 0);
  expect_rc(cf_wait(fs, P + F, CF_FIRST_COMPLETED, -1, done), 0);
  for (int i = 0; i < P; i++) expect_true(!done[i]);
  expect_rc(cf_wait(fs, P + F, CF_ALL_COMPLETED, 1000 * 1000, done), CF_ETIMEDOUT);

  cf_as_completed *it = NULL;
  assert_rc(cf_as_completed_new(fs, P + F, -1, &it), 0);
  setter_arg sa = {fs, P, 100};
  pthread_t t;
  pthread_create(&t, NULL, setter_thread, &sa);
  int seen[P + F] = {0};
  cf_future *f;
  size_t idx;
  int n = 0;
  while (cf_as_completed_next(it, &f, &idx) == 0) {
    if (idx < P + F) seen[idx]++;
    n++;
  }
  expect_eq(n, P + F);
  for (int i = 0; i < P + F; i++) expect_eq(seen[i], 1);
  cf_as_completed_free(it);
  pthread_join(t, NULL);
  expect_rc(cf_wait(fs, P + F, CF_ALL_COMPLETED, -1, done), 0);
  for (int i = 0; i < P; i++) {
    int64_t v = 0;
    expect_rc(cf_future_result(fs[i], &v, sizeof v, NULL, 0), 0);
    expect_eq(v, 100 + i);
  }
  for (int i = 0; i < P + F; i++) cf_future_release(fs[i]);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* A thread-pool task that waits on a promise blocks its worker until the
 * promise is set from outside (thread pool only: a worker process cannot
 * see the parent's promise). */
static void wait_promise_task(cf_call *c) {
  cf_future *p;
  memcpy(&p, cf_call_arg(c, NULL), sizeof p);
  int64_t v = 0;
  int rc = cf_future_result(p, &v, sizeof v, NULL, -1);
  if (rc != 0) {
    cf_call_fail(c, rc, "wait");
    return;
  }
  v *= 2;
  cf_call_return(c, &v, sizeof v);
}

static void test_wait_in_worker(void) {
  if (process_kind) return;
  cf_executor *ex = cf_test_new_executor(false, 2);
  enum { N = 4 };
  cf_future *ps[N], *fs[N];
  for (int i = 0; i < N; i++) {
    assert_rc(cf_promise_new(&ps[i]), 0);
    assert_rc(cf_submit(ex, wait_promise_task, &ps[i], sizeof ps[i], &fs[i]), 0);
  }
  setter_arg sa = {ps, N, 10};
  pthread_t t;
  pthread_create(&t, NULL, setter_thread, &sa);
  for (int i = 0; i < N; i++) {
    int64_t v = 0;
    expect_rc(cf_future_result(fs[i], &v, sizeof v, NULL, -1), 0);
    expect_eq(v, 2 * (10 + i));
    cf_future_release(fs[i]);
  }
  pthread_join(t, NULL);
  for (int i = 0; i < N; i++) cf_future_release(ps[i]);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* Several threads complete the same promises at once (result, error,
 * cancel): exactly one call per promise returns 0, and the promise's state
 * is that call's; every callback ran exactly once. */
enum { RACE_K = 64 };

typedef struct race {
  cf_future *ps[RACE_K];
  _Atomic int won[RACE_K]; /* 1 result, 2 error, 3 cancel; bits if several */
  _Atomic int cbs[RACE_K];
  _Atomic int go;
} race;

typedef struct racer {
  race *r;
  int kind;
} racer;

static void *racer_thread(void *arg) {
  racer *a = arg;
  race *r = a->r;
  while (!atomic_load(&r->go)) {
  }
  for (int i = 0; i < RACE_K; i++) {
    int k = (a->kind + i) % 3, rc;
    int64_t v = i * 10 + k;
    if (k == 0)
      rc = cf_promise_set_result(r->ps[i], &v, sizeof v);
    else if (k == 1)
      rc = cf_promise_set_error(r->ps[i], (int)v, "racer");
    else
      rc = cf_future_cancel(r->ps[i]);
    if (rc == 0) atomic_fetch_or(&r->won[i], 1 << k);
    /* a cancel of a done promise is CF_EDONE; a set is CF_EDONE too */
    else if (rc != CF_EDONE)
      atomic_fetch_or(&r->won[i], 64);
  }
  return NULL;
}

static void test_set_race(void) {
  uint64_t rounds = cf_test_scale(300);
  for (uint64_t round = 0; round < rounds; round++) {
    race *r = calloc(1, sizeof *r);
    for (int i = 0; i < RACE_K; i++) {
      assert_rc(cf_promise_new(&r->ps[i]), 0);
      expect_rc(cf_future_add_done_callback(r->ps[i], count_cb, (void *)&r->cbs[i]), 0);
    }
    pthread_t t[3];
    racer a[3];
    for (int k = 0; k < 3; k++) {
      a[k] = (racer){r, (int)(k + round) % 3};
      pthread_create(&t[k], NULL, racer_thread, &a[k]);
    }
    atomic_store(&r->go, 1);
    for (int k = 0; k < 3; k++) pthread_join(t[k], NULL);
    for (int i = 0; i < RACE_K; i++) {
      int w = atomic_load(&r->won[i]);
      expect_true(w == 1 || w == 2 || w == 4);
      expect_eq(atomic_load(&r->cbs[i]), 1);
      int st = cf_future_state(r->ps[i]);
      int64_t v = -1;
      int rc = cf_future_result(r->ps[i], &v, sizeof v, NULL, 0);
      if (w == 1) {
        expect_eq(st, CF_STATE_FINISHED);
        expect_rc(rc, 0);
        expect_eq(v % 10, 0);
      } else if (w == 2) {
        expect_eq(st, CF_STATE_FAILED);
        expect_rc(rc, CF_ETASK);
        int code = 0;
        expect_rc(cf_future_error(r->ps[i], &code, NULL, 0), 0);
        expect_eq(code % 10, 1);
      } else {
        expect_eq(st, CF_STATE_CANCELLED);
        expect_rc(rc, CF_ECANCELLED);
      }
      cf_future_release(r->ps[i]);
    }
    free(r);
  }
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  CF_RUN(test_basic);
  CF_RUN(test_not_a_promise);
  CF_RUN(test_wait_mixed);
  CF_RUN(test_wait_in_worker);
  if (!process_kind) CF_RUN(test_set_race); /* no pool in it: once is enough */
  return cf_test_done(process_kind ? "test_promise_process" : "test_promise_thread");
}
