/* cf-test: labels=unit timeout=120 */
/*
 * test_future_internal.c — the future object without an executor: futures
 * from cf__future_alloc(), run with cf__future_run() by plain pthreads.
 * Every state transition, the WAITERS bit and wake-up, callbacks (order,
 * at once when done, exactly once under races), cancel, task deadlines,
 * release before completion, double release, NULL handles.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "future.h"
#include "sys.h"
#include "testutil.h"

static cf_future *mk(cf_fn fn, const void *arg, size_t len) {
  cf_future *f = cf__future_alloc();
  assert_true(f != NULL);
  f->fn = fn;
  assert_rc(cf__future_set_arg(f, arg, len), 0);
  return f;
}

static uint32_t word(cf_future *f) {
  return atomic_load(f->word);
}

/* ---- tasks ---- */

static atomic_int calls;

static void echo(cf_call *c) {
  atomic_fetch_add(&calls, 1);
  size_t len;
  const void *a = cf_call_arg(c, &len);
  cf_call_return(c, a, len);
}

static void check_running(cf_call *c) {
  cf_future *f = c->ctx;
  int ok = cf_future_running(f) && cf__st_owner(word(f)) == 7 && !cf_future_done(f);
  cf_call_return(c, &ok, sizeof ok);
}

static void twice(cf_call *c) {
  int x = 1, rc[3];
  rc[0] = cf_call_return(c, &x, sizeof x);
  rc[1] = cf_call_return(c, &x, sizeof x);
  rc[2] = cf_call_fail(c, 5, "late");
  expect_rc(rc[0], 0);
  expect_rc(rc[1], CF_EINVAL);
  expect_rc(rc[2], CF_EINVAL);
}

static void failing(cf_call *c) {
  size_t len;
  const char *msg = cf_call_arg(c, &len);
  expect_rc(cf_call_fail(c, 42, len ? msg : NULL), 0);
  int x = 1;
  expect_rc(cf_call_return(c, &x, sizeof x), CF_EINVAL);
}

static void nothing(cf_call *c) {
  atomic_fetch_add(&calls, 1);
}

/* ---- basic transitions ---- */

static void test_alloc_and_run(void) {
  int v = 1234;
  cf_future *f = mk(echo, &v, sizeof v);
  expect_eq(cf_future_state(f), CF_STATE_PENDING);
  expect_eq(atomic_load(&f->rc), CF__RC_HANDLE + CF__RC_REF);
  expect_true(!cf_future_done(f) && !cf_future_running(f) && !cf_future_cancelled(f));
  expect_rc(cf_future_wait(f, 0), CF_ETIMEDOUT);
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_ETIMEDOUT);
  atomic_store(&calls, 0);
  expect_eq(cf__future_run(f, 3), 1);
  expect_eq(atomic_load(&calls), 1);
  expect_eq(cf_future_state(f), CF_STATE_FINISHED);
  expect_eq(cf__st_owner(word(f)), 3);
  expect_eq(atomic_load(&f->rc), CF__RC_HANDLE); /* the executor's ref is gone */
  int out = 0;
  size_t len = 0;
  expect_rc(cf_future_result(f, &out, sizeof out, &len, -1), 0);
  expect_eq(out, 1234);
  expect_eq(len, sizeof out);
  /* too small: CF_ERANGE with the size */
  char small[2];
  len = 0;
  expect_rc(cf_future_result(f, small, sizeof small, &len, 0), CF_ERANGE);
  expect_eq(len, sizeof out);
  int code = -1;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0); /* finished: no error */
  expect_eq(code, 0);
  expect_rc(cf_future_cancel(f), CF_EDONE);
  expect_rc(cf_future_wait(f, 0), 0);
  expect_rc(cf_future_release(f), 0);

  /* owner bits while running */
  f = mk(check_running, NULL, 0);
  expect_eq(cf__future_run(f, 7), 1);
  int ok = 0;
  expect_rc(cf_future_result(f, &ok, sizeof ok, NULL, -1), 0);
  expect_eq(ok, 1);
  cf_future_release(f);

  /* empty result when the task returns nothing */
  f = mk(nothing, NULL, 0);
  cf__future_run(f, 0);
  len = 99;
  expect_rc(cf_future_result(f, NULL, 0, &len, 0), 0);
  expect_eq(len, 0);
  cf_future_release(f);
}

static void test_large_arg_result(void) {
  char big[1000];
  for (int i = 0; i < 1000; i++) big[i] = (char)(i * 7);
  cf_future *f = mk(echo, big, sizeof big);
  cf__future_run(f, 0);
  char out[1000] = {0};
  size_t len = 0;
  expect_rc(cf_future_result(f, out, sizeof out, &len, -1), 0);
  expect_eq(len, sizeof big);
  expect_true(memcmp(out, big, sizeof big) == 0);
  cf_future_release(f);
}

static void test_return_fail_once(void) {
  cf_future *f = mk(twice, NULL, 0);
  cf__future_run(f, 0);
  int x = 0;
  expect_rc(cf_future_result(f, &x, sizeof x, NULL, 0), 0);
  expect_eq(x, 1);
  cf_future_release(f);

  const char *msg = "it broke";
  f = mk(failing, msg, strlen(msg) + 1);
  cf__future_run(f, 0);
  expect_eq(cf_future_state(f), CF_STATE_FAILED);
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_ETASK);
  int code = 0;
  char buf[CF_MESSAGE_MAX];
  expect_rc(cf_future_error(f, &code, buf, sizeof buf), 0);
  expect_eq(code, 42);
  expect_true(strcmp(buf, "it broke") == 0);
  char tiny[4];
  expect_rc(cf_future_error(f, &code, tiny, sizeof tiny), 0);
  expect_true(strcmp(tiny, "it ") == 0);
  cf_future_release(f);

  /* a long message is truncated to CF_MESSAGE_MAX - 1 bytes */
  char longmsg[500];
  memset(longmsg, 'x', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = 0;
  f = mk(failing, longmsg, sizeof longmsg);
  cf__future_run(f, 0);
  char big[600];
  expect_rc(cf_future_error(f, &code, big, sizeof big), 0);
  expect_eq(strlen(big), CF_MESSAGE_MAX - 1);
  cf_future_release(f);

  /* NULL message */
  f = mk(failing, NULL, 0);
  cf__future_run(f, 0);
  buf[0] = 'z';
  expect_rc(cf_future_error(f, &code, buf, sizeof buf), 0);
  expect_eq(code, 42);
  expect_eq(buf[0], 0);
  cf_future_release(f);
}

/* ---- cancel ---- */

static void test_cancel_pending(void) {
  atomic_store(&calls, 0);
  cf_future *f = mk(nothing, NULL, 0);
  expect_rc(cf_future_cancel(f), 0);
  expect_rc(cf_future_cancel(f), 0); /* again: still 0 */
  expect_true(cf_future_cancelled(f) && cf_future_done(f));
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ECANCELLED);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_ECANCELLED);
  /* the executor still holds its reference: running it only drops it */
  expect_eq(cf__future_run(f, 0), 0);
  expect_eq(atomic_load(&calls), 0);
  cf_future_release(f);
}

static atomic_int started, release_task;

static void blocker(cf_call *c) {
  atomic_store(&started, 1);
  while (!atomic_load(&release_task)) usleep(50);
  int stop = cf_call_stop_requested(c);
  cf_call_return(c, &stop, sizeof stop);
}

static void *runner_thread(void *p) {
  cf__future_run(p, 1);
  return NULL;
}

static void test_cancel_running(void) {
  atomic_store(&started, 0);
  atomic_store(&release_task, 0);
  cf_future *f = mk(blocker, NULL, 0);
  pthread_t th;
  pthread_create(&th, NULL, runner_thread, f);
  while (!atomic_load(&started)) usleep(50);
  expect_rc(cf_future_cancel(f), CF_EBUSY);
  expect_true(word(f) & CF__ST_STOP);
  expect_true(cf_future_running(f));
  atomic_store(&release_task, 1);
  pthread_join(th, NULL);
  int stop = 0;
  expect_rc(cf_future_result(f, &stop, sizeof stop, NULL, -1), 0);
  expect_eq(stop, 1);
  expect_rc(cf_future_cancel(f), CF_EDONE);
  cf_future_release(f);
}

/* ---- waiters ---- */

typedef struct waiter_arg {
  cf_future *f;
  int64_t timeout;
  int rc;
  int value;
} waiter_arg;

static void *waiter_thread(void *p) {
  waiter_arg *a = p;
  a->rc = cf_future_result(a->f, &a->value, sizeof a->value, NULL, a->timeout);
  return NULL;
}

static void test_waiters_bit_and_wake(void) {
  int v = 77;
  cf_future *f = mk(echo, &v, sizeof v);
  waiter_arg a[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    a[i] = (waiter_arg){f, -1, 99, 0};
    pthread_create(&th[i], NULL, waiter_thread, &a[i]);
  }
  /* the waiters spin ~2 us, then set WAITERS and sleep */
  while (!(word(f) & CF__ST_WAITERS)) usleep(100);
  usleep(2000);
  cf__future_run(f, 0);
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    expect_rc(a[i].rc, 0);
    expect_eq(a[i].value, 77);
  }
  /* the done word has consumed the bit */
  expect_true(!(word(f) & CF__ST_WAITERS));
  cf_future_release(f);

  /* a waiter with a timeout gives up with CF_ETIMEDOUT; the future is fine */
  f = mk(echo, &v, sizeof v);
  a[0] = (waiter_arg){f, 2000000, 99, 0};
  pthread_create(&th[0], NULL, waiter_thread, &a[0]);
  pthread_join(th[0], NULL);
  expect_rc(a[0].rc, CF_ETIMEDOUT);
  cf__future_run(f, 0);
  expect_rc(cf_future_result(f, &a[0].value, sizeof a[0].value, NULL, 0), 0);
  cf_future_release(f);

  /* cancel wakes sleeping waiters at once */
  f = mk(echo, &v, sizeof v);
  a[0] = (waiter_arg){f, -1, 99, 0};
  pthread_create(&th[0], NULL, waiter_thread, &a[0]);
  while (!(word(f) & CF__ST_WAITERS)) usleep(100);
  expect_rc(cf_future_cancel(f), 0);
  pthread_join(th[0], NULL);
  expect_rc(a[0].rc, CF_ECANCELLED);
  cf__future_run(f, 0);
  cf_future_release(f);
}

/* ---- callbacks ---- */

static int order[8], norder;
static pthread_t cb_thread[8];

static void record_cb(cf_future *f, void *arg) {
  cb_thread[norder] = pthread_self();
  order[norder++] = (int)(intptr_t)arg;
}

static void test_callbacks(void) {
  int v = 1;
  cf_future *f = mk(echo, &v, sizeof v);
  norder = 0;
  for (int i = 1; i <= 3; i++)
    expect_rc(cf_future_add_done_callback(f, record_cb, (void *)(intptr_t)i), 0);
  expect_eq(norder, 0);
  pthread_t th;
  pthread_create(&th, NULL, runner_thread, f);
  pthread_join(th, NULL);
  expect_eq(norder, 3);
  for (int i = 0; i < 3; i++) {
    expect_eq(order[i], i + 1);                   /* registration order */
    expect_true(pthread_equal(cb_thread[i], th)); /* in the completing thread */
  }
  /* on a done future: at once, in the caller */
  expect_rc(cf_future_add_done_callback(f, record_cb, (void *)(intptr_t)4), 0);
  expect_eq(norder, 4);
  expect_eq(order[3], 4);
  expect_true(pthread_equal(cb_thread[3], pthread_self()));
  expect_rc(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
  cf_future_release(f);

  /* cancel runs them too */
  f = mk(echo, &v, sizeof v);
  norder = 0;
  expect_rc(cf_future_add_done_callback(f, record_cb, (void *)(intptr_t)9), 0);
  expect_rc(cf_future_cancel(f), 0);
  expect_eq(norder, 1);
  expect_eq(order[0], 9);
  cf__future_run(f, 0);
  cf_future_release(f);
}

/* ---- deadlines ---- */

static void sleeper_until_stop(cf_call *c) {
  atomic_store(&started, 1);
  while (!cf_call_stop_requested(c)) usleep(100);
  int x = 5;
  cf_call_return(c, &x, sizeof x);
}

static void test_deadlines(void) {
  /* passed before it runs: failed without running */
  atomic_store(&calls, 0);
  cf_future *f = mk(nothing, NULL, 0);
  f->deadline = cf__now_ns() - 1;
  expect_eq(cf__future_run(f, 0), -1);
  expect_eq(atomic_load(&calls), 0);
  expect_eq(cf_future_state(f), CF_STATE_FAILED);
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_EDEADLINE);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_EDEADLINE);
  cf_future_release(f);

  /* a waiter reaching the deadline of a pending task fails it */
  f = mk(nothing, NULL, 0);
  f->deadline = cf__now_ns() + 2000000;
  norder = 0;
  expect_rc(cf_future_add_done_callback(f, record_cb, (void *)(intptr_t)1), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  expect_true(cf_future_done(f));
  expect_true(word(f) & CF__ST_STOP);
  expect_eq(norder, 1);                /* the expiry fired the callback */
  expect_eq(cf__future_run(f, 0), -1); /* failed, no longer pending: not run */
  expect_eq(atomic_load(&calls), 0);
  cf_future_release(f);

  /* a running task past its deadline: the waiter fails it, the task sees
   * stop_requested and its late result is dropped */
  /* If the runner thread is scheduled only after the deadline, the task
   * fails without running (also correct, but not the case under test):
   * retry with a longer deadline until the task was seen running. */
  for (int64_t dl = 5000000; dl <= 5000000000LL; dl *= 4) {
    atomic_store(&started, 0);
    f = mk(sleeper_until_stop, NULL, 0);
    f->deadline = cf__now_ns() + dl;
    pthread_t th;
    pthread_create(&th, NULL, runner_thread, f);
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
    pthread_join(th, NULL);
    expect_eq(cf_future_state(f), CF_STATE_FAILED);
    expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_EDEADLINE);
    cf_future_release(f);
    if (atomic_load(&started) == 1) break;
  }
  expect_eq(atomic_load(&started), 1);

  /* no waiter: the task itself finishes late and completes FAILED */
  f = mk(sleeper_until_stop, NULL, 0);
  f->deadline = cf__now_ns() + 2000000;
  cf__future_run(f, 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_EDEADLINE);
  cf_future_release(f);
}

/* ---- lifetime ---- */

static void test_release_before_complete(void) {
  int v = 3;
  cf_future *f = mk(echo, &v, sizeof v);
  expect_rc(cf_future_retain(f), 0);
  expect_eq(atomic_load(&f->rc), 2 * CF__RC_HANDLE + CF__RC_REF);
  expect_rc(cf_future_release(f), 0);
  expect_rc(cf_future_release(f), 0);         /* the user's last handle */
  expect_eq(atomic_load(&f->rc), CF__RC_REF); /* the executor's remains */
  /* handles are gone: another release is seen even while the object lives */
  expect_rc(cf_future_release(f), CF_EINVAL);
  expect_rc(cf_future_retain(f), CF_EINVAL);
  cf__future_run(f, 0); /* runs and frees: ASan checks the leak */

  /* the old contract: two unrefs free a fresh future (a rejected submit) */
  f = mk(echo, &v, sizeof v);
  cf__future_unref(f);
  cf__future_unref(f);
  /* and an internal ref taken by a waiter outlives the handle */
  f = mk(echo, &v, sizeof v);
  cf__future_ref(f);
  cf_future_release(f);
  cf__future_run(f, 0);
  expect_eq(atomic_load(&f->rc), CF__RC_REF);
  cf__future_unref(f);

  /* with a big argument and a big result, freed by the last unref */
  char big[200] = {1};
  f = mk(echo, big, sizeof big);
  cf_future_release(f);
  cf__future_run(f, 0);
}

static void test_double_release(void) {
#ifndef NDEBUG
  /* debug builds quarantine freed futures: the second release is caught */
  int v = 3;
  cf_future *f = mk(echo, &v, sizeof v);
  cf__future_run(f, 0);
  expect_rc(cf_future_release(f), 0);
  expect_rc(cf_future_release(f), CF_EINVAL);
  expect_rc(cf_future_state(f), CF_EINVAL);
#endif
}

static void test_null_handles(void) {
  expect_rc(cf_future_release(NULL), CF_EINVAL);
  expect_rc(cf_future_retain(NULL), CF_EINVAL);
  expect_rc(cf_future_cancel(NULL), CF_EINVAL);
  expect_rc(cf_future_state(NULL), CF_EINVAL);
  expect_rc(cf_future_wait(NULL, 0), CF_EINVAL);
  expect_rc(cf_future_result(NULL, NULL, 0, NULL, 0), CF_EINVAL);
  expect_rc(cf_future_error(NULL, NULL, NULL, 0), CF_EINVAL);
  cf_crash_info ci;
  expect_rc(cf_future_crash_info(NULL, &ci), CF_EINVAL);
  expect_rc(cf_future_add_done_callback(NULL, record_cb, NULL), CF_EINVAL);
  expect_true(!cf_future_done(NULL) && !cf_future_running(NULL) && !cf_future_cancelled(NULL));
  expect_rc(cf_call_return(NULL, NULL, 0), CF_EINVAL);
  expect_rc(cf_call_fail(NULL, 1, NULL), CF_EINVAL);
  expect_true(!cf_call_stop_requested(NULL));
  size_t len = 9;
  expect_true(cf_call_arg(NULL, &len) == NULL);
  expect_eq(len, 0);
  /* a thread future has no crash info */
  cf_future *f = mk(nothing, NULL, 0);
  cf__future_run(f, 0);
  expect_rc(cf_future_crash_info(f, &ci), CF_EINVAL);
  cf_future_release(f);
}

/* ---- races, against an oracle ---- */

typedef struct race {
  cf_future **fs;
  int n;
  int *cancel_rc;
  _Atomic int *cb_count;
} race;

static void count_cb(cf_future *f, void *arg) {
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void *race_runner(void *p) {
  race *r = p;
  for (int i = 0; i < r->n; i++) cf__future_run(r->fs[i], 2);
  return NULL;
}
static void *race_canceller(void *p) {
  race *r = p;
  for (int i = r->n - 1; i >= 0; i--) r->cancel_rc[i] = cf_future_cancel(r->fs[i]);
  return NULL;
}
static void *race_adder(void *p) {
  race *r = p;
  for (int i = 0; i < r->n; i++) cf_future_add_done_callback(r->fs[i], count_cb, &r->cb_count[i]);
  return NULL;
}

static void test_races(void) {
  int n = (int)cf_test_scale(20000);
  race r;
  r.n = n;
  r.fs = calloc(n, sizeof *r.fs);
  r.cancel_rc = calloc(n, sizeof *r.cancel_rc);
  r.cb_count = calloc(n, sizeof *r.cb_count);
  atomic_store(&calls, 0);
  for (int i = 0; i < n; i++) r.fs[i] = mk(nothing, NULL, 0);
  pthread_t a, b, c;
  pthread_create(&a, NULL, race_runner, &r);
  pthread_create(&b, NULL, race_canceller, &r);
  pthread_create(&c, NULL, race_adder, &r);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  pthread_join(c, NULL);
  int ran = 0, cancelled = 0, bad = 0;
  for (int i = 0; i < n; i++) {
    int st = cf_future_state(r.fs[i]);
    if (st == CF_STATE_FINISHED) {
      ran++;
      if (r.cancel_rc[i] != CF_EBUSY && r.cancel_rc[i] != CF_EDONE) bad++;
    } else if (st == CF_STATE_CANCELLED) {
      cancelled++;
      if (r.cancel_rc[i] != 0) bad++;
    } else {
      bad++;
    }
    if (atomic_load(&r.cb_count[i]) != 1) bad++;
    cf_future_release(r.fs[i]);
  }
  expect_eq(bad, 0);
  expect_eq(ran + cancelled, n);
  expect_eq(atomic_load(&calls), ran);
  free(r.fs);
  free(r.cancel_rc);
  free((void *)r.cb_count);
}

/* many waiters and a completer, repeated: no lost wake-up */
static void *wait_all(void *p) {
  race *r = p;
  for (int i = 0; i < r->n; i++) expect_rc(cf_future_wait(r->fs[i], -1), 0);
  return NULL;
}

static void test_wake_race(void) {
  int n = (int)cf_test_scale(20000);
  race r = {0};
  r.n = n;
  r.fs = calloc(n, sizeof *r.fs);
  for (int i = 0; i < n; i++) r.fs[i] = mk(nothing, NULL, 0);
  pthread_t w1, w2, run;
  pthread_create(&w1, NULL, wait_all, &r);
  pthread_create(&w2, NULL, wait_all, &r);
  pthread_create(&run, NULL, race_runner, &r);
  pthread_join(run, NULL);
  pthread_join(w1, NULL);
  pthread_join(w2, NULL);
  for (int i = 0; i < n; i++) cf_future_release(r.fs[i]);
  free(r.fs);
}

int main(void) {
  CF_RUN(test_alloc_and_run);
  CF_RUN(test_large_arg_result);
  CF_RUN(test_return_fail_once);
  CF_RUN(test_cancel_pending);
  CF_RUN(test_cancel_running);
  CF_RUN(test_waiters_bit_and_wake);
  CF_RUN(test_callbacks);
  CF_RUN(test_deadlines);
  CF_RUN(test_release_before_complete);
  CF_RUN(test_double_release);
  CF_RUN(test_null_handles);
  CF_RUN(test_races);
  CF_RUN(test_wake_race);
  return cf_test_done("test_future_internal");
}
