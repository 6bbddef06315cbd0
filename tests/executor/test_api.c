/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_api.c — every public call, state transition and error code, run once
 * per executor kind (argv[1] = "thread", "process" or "mpi", the last under
 * mpirun: tests/mpi). Tasks are plain functions and talk to the test only
 * through their bytes and a shared mapping made before any pool exists (a
 * process worker is forked, so it sees the same page; MPI ranks map the
 * same file). No timing thresholds: every wait is for a condition, and the
 * ctest timeout catches a hang. An MPI task sent to a rank is RUNNING and
 * cannot be killed: there the running-task cases behave as for threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static bool process_kind, mpi_kind;

typedef struct shared {
  _Atomic int gate;     /* tasks in gate_task wait for it */
  _Atomic int started;  /* gate_task entries */
  _Atomic int saw_stop; /* tasks that saw cf_call_stop_requested */
  _Atomic long counter; /* count_task runs */
  _Atomic int rc_again; /* second cf_call_return's result */
  _Atomic int rc_fail_after;
  _Atomic int init_runs;
} shared;
/* In memory every worker process sees, in every start mode (testutil.h). */
#define sh ((shared *)cf_test_shm)

static void reset_shared(void) {
  memset((void *)sh, 0, sizeof *sh);
}

static void nap(void) {
  struct timespec ts = {0, 100 * 1000};
  nanosleep(&ts, NULL);
}

/* Wait for *p >= n, with a guard so that a lost callback fails the test
 * here (after 10 s) instead of hanging it: not a timing threshold. */
static void wait_for_int(_Atomic int *p, int n) {
  for (int i = 0; i < 100000 && atomic_load(p) < n; i++) nap();
}

/* Bounded (60 s by the clock: a guard, not a timing threshold): a pool
 * whose workers never start (a broken initializer) fails the test instead
 * of hanging it until ctest's timeout. */
static void wait_started(int n) {
  assert_true(cf_test_within_s(&sh->started, n, 60));
}

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

/* ---- tasks ---------------------------------------------------------------- */

static void echo_task(cf_call *c) {
  size_t n;
  const void *a = cf_call_arg(c, &n);
  cf_call_return(c, a, n);
}

/* arg: size_t n; result: n bytes of pattern (i * 7 + 3) */
static void gen_task(cf_call *c) {
  size_t n, len;
  memcpy(&n, cf_call_arg(c, &len), sizeof n);
  unsigned char *b = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 7 + 3);
  cf_call_return(c, b, n);
  free(b);
}

static void empty_task(cf_call *c) {}

static void fail_task(cf_call *c) {
  cf_call_fail(c, 42, "boom");
}

static void fail_null_msg_task(cf_call *c) {
  cf_call_fail(c, 7, NULL);
}

static void fail_long_msg_task(cf_call *c) {
  char m[300];
  memset(m, 'x', sizeof m - 1);
  m[sizeof m - 1] = 0;
  cf_call_fail(c, 1, m);
}

static void twice_task(cf_call *c) {
  int v = 1;
  cf_call_return(c, &v, sizeof v);
  atomic_store(&sh->rc_again, cf_call_return(c, &v, sizeof v));
  atomic_store(&sh->rc_fail_after, cf_call_fail(c, 1, "late"));
}

/* Waits for the gate (or a stop request); returns 1 if it saw stop. */
static void gate_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  int stopped = 0;
  while (!atomic_load(&sh->gate)) {
    if (cf_call_stop_requested(c)) {
      stopped = 1;
      atomic_fetch_add(&sh->saw_stop, 1);
      break;
    }
    nap();
  }
  cf_call_return(c, &stopped, sizeof stopped);
}

/* Like gate_task but ignores stop requests (process: must be killed). */
static void deaf_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->gate)) nap();
}

static void count_task(cf_call *c) {
  while (!atomic_load(&sh->gate)) nap();
  atomic_fetch_add(&sh->counter, 1);
}

static void square_task(cf_call *c) {
  size_t n;
  const int64_t *v = cf_call_arg(c, &n);
  if (n != sizeof(int64_t)) {
    cf_call_fail(c, -1, "bad size");
    return;
  }
  int64_t x = *v;
  if (x % 5 == 3) {
    char m[32];
    snprintf(m, sizeof m, "item %lld", (long long)x);
    cf_call_fail(c, (int)x, m);
    return;
  }
  int64_t r = x * x;
  cf_call_return(c, &r, sizeof r);
}

/* ---- submit / result ------------------------------------------------------- */

static void check_size(cf_executor *ex, size_t n) {
  unsigned char *in = malloc(n ? n : 1), *out = malloc(n + 16);
  for (size_t i = 0; i < n; i++) in[i] = (unsigned char)(i * 13 + n);
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, echo_task, n ? in : NULL, n, &f), 0);
  if (!f) goto out;
  size_t len = 12345;
  expect_rc(cf_future_result(f, out, n + 16, &len, -1), 0);
  expect_eq(len, n);
  expect_true(n == 0 || memcmp(in, out, n) == 0);
  expect_eq(cf_future_state(f), CF_STATE_FINISHED);
  expect_rc(cf_future_release(f), 0);

  /* result size independent of the argument size */
  expect_rc(cf_submit(ex, gen_task, &n, sizeof n, &f), 0);
  expect_rc(cf_future_result(f, out, n + 16, &len, -1), 0);
  expect_eq(len, n);
  bool ok = true;
  for (size_t i = 0; i < n && i < len; i++) ok &= out[i] == (unsigned char)(i * 7 + 3);
  expect_true(ok);
  /* reading twice gives the same */
  expect_rc(cf_future_result(f, out, n + 16, &len, 0), 0);
  expect_eq(len, n);
  if (n > 0) {
    len = 0;
    expect_rc(cf_future_result(f, out, n - 1, &len, 0), CF_ERANGE);
    expect_eq(len, n);
    len = 0; /* no buffer: a success check, with the size */
    expect_rc(cf_future_result(f, NULL, 0, &len, 0), 0);
    expect_eq(len, n);
    expect_rc(cf_future_result(f, NULL, 0, NULL, 0), 0);
  } else {
    expect_rc(cf_future_result(f, NULL, 0, NULL, 0), 0);
  }
  expect_rc(cf_future_release(f), 0);
out:
  free(in);
  free(out);
}

static void test_submit_sizes(void) {
  cf_executor *ex = make_ex(2);
  size_t sizes[] = {0, 1, 8, 31, 32, 33, 47, 48, 49, 64, 1000, 4096, 60000};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_size(ex, sizes[i]);
  if (!process_kind && !mpi_kind) check_size(ex, 1 << 20); /* no size limit in the thread pool */
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_size_limits(void) {
  if (!process_kind && !mpi_kind) return;
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.max_arg_size = 1024;
  o.max_result_size = 512;
  o.initializer = cf_test_shared_attach;
  cf_executor *ex = NULL;
  assert_rc(cf_test_pool_new(true, &o, &ex), 0);
  char big[2048] = {0};
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, echo_task, big, sizeof big, &f), CF_E2BIG);
  expect_rc(cf_submit(ex, echo_task, big, 1024, &f), 0);
  if (f) {
    /* the echo of 1024 bytes exceeds the 512-byte result limit */
    expect_rc(cf_future_result(f, big, sizeof big, NULL, -1), CF_E2BIG);
    expect_eq(cf_future_state(f), CF_STATE_FAILED);
    cf_future_release(f);
  }
  size_t n = 512;
  expect_rc(cf_submit(ex, gen_task, &n, sizeof n, &f), 0);
  if (f) {
    expect_rc(cf_future_result(f, big, sizeof big, NULL, -1), 0);
    cf_future_release(f);
  }
  /* map: an item whose result is too big fails alone, chunked or not */
  size_t sizes[3] = {8, 600, 8};
  for (size_t chunk = 1; chunk <= 3; chunk += 2) {
    cf_map_opts mo = {.window = 2, .chunk = chunk, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, gen_task, sizes, 3, sizeof sizes[0], &mo, &m), 0);
    size_t len = 0;
    expect_rc(cf_map_next(m, big, sizeof big, &len), 0);
    expect_eq(len, 8);
    expect_rc(cf_map_next(m, big, sizeof big, &len), CF_E2BIG);
    int code = 0;
    expect_rc(cf_map_error(m, &code, NULL, 0), 0);
    expect_eq(code, CF_E2BIG);
    expect_rc(cf_map_next(m, big, sizeof big, &len), 0);
    expect_eq(len, 8);
    expect_rc(cf_map_next(m, big, sizeof big, &len), CF_EDONE);
    cf_map_free(m);
  }
  cf_executor_destroy(ex);
}

static void test_fail(void) {
  cf_executor *ex = make_ex(2);
  cf_future *f = NULL;
  char msg[CF_MESSAGE_MAX];
  int code = 0;
  assert_rc(cf_submit(ex, fail_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ETASK);
  expect_eq(cf_future_state(f), CF_STATE_FAILED);
  expect_true(cf_future_done(f));
  expect_true(!cf_future_cancelled(f));
  expect_rc(cf_future_error(f, &code, msg, sizeof msg), 0);
  expect_eq(code, 42);
  expect_true(strcmp(msg, "boom") == 0);
  char small[3];
  expect_rc(cf_future_error(f, NULL, small, sizeof small), 0);
  expect_true(strcmp(small, "bo") == 0);
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  cf_crash_info ci;
  expect_true(cf_future_crash_info(f, &ci) != 0); /* not a crash */
  cf_future_release(f);

  assert_rc(cf_submit(ex, fail_null_msg_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ETASK);
  msg[0] = 'z';
  expect_rc(cf_future_error(f, &code, msg, sizeof msg), 0);
  expect_eq(code, 7);
  expect_eq(msg[0], 0);
  cf_future_release(f);

  assert_rc(cf_submit(ex, fail_long_msg_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ETASK);
  char big[400];
  expect_rc(cf_future_error(f, &code, big, sizeof big), 0);
  expect_eq(strlen(big), CF_MESSAGE_MAX - 1);
  cf_future_release(f);

  /* a finished future has no error */
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &f), 0);
  size_t len = 99;
  expect_rc(cf_future_result(f, NULL, 0, &len, -1), 0);
  expect_eq(len, 0);
  /* Python's exception() is None: 0, code 0, an empty message */
  code = -1;
  msg[0] = 'x';
  expect_rc(cf_future_error(f, &code, msg, sizeof msg), 0);
  expect_eq(code, 0);
  expect_eq(msg[0], 0);
  cf_future_release(f);

  /* cf_call_return twice, cf_call_fail after return */
  reset_shared();
  assert_rc(cf_submit(ex, twice_task, NULL, 0, &f), 0);
  int v = 0;
  expect_rc(cf_future_result(f, &v, sizeof v, NULL, -1), 0);
  expect_eq(v, 1);
  expect_eq(atomic_load(&sh->rc_again), CF_EINVAL);
  expect_eq(atomic_load(&sh->rc_fail_after), CF_EINVAL);
  cf_future_release(f);
  cf_executor_destroy(ex);
}

/* ---- states, timeouts, cancel ------------------------------------------------ */

static void test_states_and_timeouts(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_future *run = NULL, *pend = NULL;
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &run), 0);
  wait_started(1);
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &pend), 0);
  expect_eq(cf_future_state(run), CF_STATE_RUNNING);
  expect_true(cf_future_running(run));
  expect_true(!cf_future_done(run));
  expect_true(!cf_future_cancelled(run));
  expect_eq(cf_future_state(pend), CF_STATE_PENDING);
  expect_true(!cf_future_running(pend));
  expect_true(!cf_future_done(pend));
  expect_rc(cf_future_result(run, NULL, 0, NULL, 0), CF_ETIMEDOUT);
  expect_rc(cf_future_result(run, NULL, 0, NULL, 1000000), CF_ETIMEDOUT);
  expect_rc(cf_future_wait(run, 0), CF_ETIMEDOUT);
  expect_rc(cf_future_wait(pend, 1000), CF_ETIMEDOUT);
  int code;
  expect_rc(cf_future_error(run, &code, NULL, 0), CF_EINVAL);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_wait(run, -1), 0);
  expect_rc(cf_future_wait(pend, -1), 0);
  expect_rc(cf_future_wait(pend, 0), 0);
  int stopped = -1;
  expect_rc(cf_future_result(run, &stopped, sizeof stopped, NULL, -1), 0);
  expect_eq(stopped, 0);
  expect_eq(cf_future_state(pend), CF_STATE_FINISHED);
  expect_true(!cf_future_running(pend));
  cf_future_release(run);
  cf_future_release(pend);
  cf_executor_destroy(ex);
}

static _Atomic int cb_runs;
static _Atomic int cb_last_state;
static void count_cb(cf_future *f, void *arg) {
  atomic_fetch_add(&cb_runs, 1);
  atomic_store(&cb_last_state, cf_future_state(f));
  if (arg) atomic_fetch_add((_Atomic int *)arg, 1);
}

static void *wait_first_exc_thread(void *arg) {
  cf_future *f = arg;
  bool done = false;
  /* guarded: a lost wake-up fails after 10 s instead of hanging */
  intptr_t rc = cf_wait(&f, 1, CF_FIRST_EXCEPTION, 10000000000, &done);
  return (void *)(intptr_t)(rc == 0 && done ? 1 : 0);
}

static void test_cancel(void) {
  reset_shared();
  atomic_store(&cb_runs, 0);
  cf_executor *ex = make_ex(1);
  cf_future *run = NULL, *pend = NULL, *pend2 = NULL;
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &run), 0);
  wait_started(1);
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &pend), 0);
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &pend2), 0);

  /* a thread blocked in cf_wait on a pending future wakes when it is cancelled */
  pthread_t th;
  pthread_create(&th, NULL, wait_first_exc_thread, pend2);
  cf_as_completed *it = NULL;
  expect_rc(cf_as_completed_new(&pend, 1, 10000000000, &it), 0); /* guarded */
  expect_rc(cf_future_add_done_callback(pend, count_cb, NULL), 0);
  expect_eq(atomic_load(&cb_runs), 0);

  /* cancel pending: done at once for everybody (a process future's
   * callbacks run on the pool's supervisor thread: wait for it) */
  expect_rc(cf_future_cancel(pend), 0);
  wait_for_int(&cb_runs, 1);
  expect_eq(atomic_load(&cb_runs), 1);
  expect_eq(atomic_load(&cb_last_state), CF_STATE_CANCELLED);
  expect_rc(cf_future_cancel(pend), 0); /* again: still 0 */
  expect_eq(atomic_load(&cb_runs), 1);
  expect_eq(cf_future_state(pend), CF_STATE_CANCELLED);
  expect_true(cf_future_cancelled(pend));
  expect_true(cf_future_done(pend));
  expect_rc(cf_future_result(pend, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_rc(cf_future_result(pend, NULL, 0, NULL, 0), CF_ECANCELLED);
  expect_rc(cf_future_wait(pend, 0), 0);
  bool d = false;
  expect_rc(cf_wait(&pend, 1, CF_ALL_COMPLETED, 0, &d), 0);
  expect_true(d);
  expect_rc(cf_wait(&pend, 1, CF_FIRST_EXCEPTION, 0, NULL), 0);
  cf_future *yf = NULL;
  size_t idx = 9;
  expect_rc(cf_as_completed_next(it, &yf, &idx), 0);
  expect_true(yf == pend);
  expect_eq(idx, 0);
  expect_rc(cf_as_completed_next(it, &yf, &idx), CF_EDONE);
  cf_as_completed_free(it);
  /* callback added after cancel runs at once */
  expect_rc(cf_future_add_done_callback(pend, count_cb, NULL), 0);
  expect_eq(atomic_load(&cb_runs), 2);

  expect_rc(cf_future_cancel(pend2), 0);
  void *tr = NULL;
  pthread_join(th, &tr);
  expect_true(tr == (void *)1);

  /* cancel running */
  if (process_kind) {
    expect_rc(cf_future_cancel(run), 0);
    expect_rc(cf_future_result(run, NULL, 0, NULL, -1), CF_ECANCELLED);
    expect_true(cf_future_done(run));
  } else {
    expect_rc(cf_future_cancel(run), CF_EBUSY);
    int stopped = 0;
    expect_rc(cf_future_result(run, &stopped, sizeof stopped, NULL, -1), 0);
    expect_eq(stopped, 1);
    expect_eq(atomic_load(&sh->saw_stop), 1);
    expect_eq(cf_future_state(run), CF_STATE_FINISHED);
  }
  /* cancel finished (process: it is CANCELLED, and cancelling again is 0) */
  expect_rc(cf_future_cancel(run), process_kind ? 0 : CF_EDONE);
  cf_future *fin = NULL, *failed = NULL;
  atomic_store(&sh->gate, 1);
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &fin), 0);
  assert_rc(cf_submit(ex, fail_task, NULL, 0, &failed), 0);
  expect_rc(cf_future_wait(fin, -1), 0);
  expect_rc(cf_future_wait(failed, -1), 0);
  expect_rc(cf_future_cancel(fin), CF_EDONE);
  expect_rc(cf_future_cancel(failed), CF_EDONE);
  expect_rc(cf_future_result(fin, NULL, 0, NULL, 0), 0);
  expect_rc(cf_future_result(failed, NULL, 0, NULL, 0), CF_ETASK);

  /* the pool still works after a kill (process: the worker was replaced) */
  int64_t x = 6, r = 0;
  cf_future *after = NULL;
  assert_rc(cf_submit(ex, square_task, &x, sizeof x, &after), 0);
  expect_rc(cf_future_result(after, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, 36);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_true(st.cancelled >= 2);
  cf_future_release(after);
  cf_future_release(fin);
  cf_future_release(failed);
  cf_future_release(run);
  cf_future_release(pend);
  cf_future_release(pend2);
  cf_executor_destroy(ex);
}

static void test_callbacks(void) {
  reset_shared();
  atomic_store(&cb_runs, 0);
  cf_executor *ex = make_ex(2);
  cf_future *f = NULL;
  _Atomic int mine = 0;
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &f), 0);
  expect_rc(cf_future_add_done_callback(f, count_cb, (void *)&mine), 0);
  expect_rc(cf_future_add_done_callback(f, count_cb, (void *)&mine), 0);
  expect_eq(atomic_load(&mine), 0);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_wait(f, -1), 0);
  /* callbacks run after the state is done: wait for both, no more */
  while (atomic_load(&mine) < 2) nap();
  expect_eq(atomic_load(&cb_last_state), CF_STATE_FINISHED);
  /* after completion: at once, in the caller */
  expect_rc(cf_future_add_done_callback(f, count_cb, (void *)&mine), 0);
  expect_eq(atomic_load(&mine), 3);
  expect_rc(cf_future_add_done_callback(NULL, count_cb, NULL), CF_EINVAL);
  expect_rc(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
  cf_future_release(f);
  cf_executor_destroy(ex);
  expect_eq(atomic_load(&mine), 3);
  expect_eq(atomic_load(&cb_runs), 3);
}

static void test_refcount(void) {
  reset_shared();
  cf_executor *ex = make_ex(2);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &f), 0);
  expect_rc(cf_future_retain(f), 0);
  expect_rc(cf_future_release(f), 0);
  expect_rc(cf_future_wait(f, -1), 0);
  expect_rc(cf_future_release(f), 0);
  expect_rc(cf_future_retain(NULL), CF_EINVAL);
  expect_rc(cf_future_release(NULL), CF_EINVAL);
  /* release before completion: the task still runs, nothing leaks */
  for (int i = 0; i < 10; i++) {
    assert_rc(cf_submit(ex, count_task, NULL, 0, &f), 0);
    if (i % 2) cf_future_retain(f), cf_future_release(f);
    expect_rc(cf_future_release(f), 0);
  }
  atomic_store(&sh->gate, 1);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  expect_eq(atomic_load(&sh->counter), 10);
  cf_executor_destroy(ex);
}

static void test_deadline(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_submit_opts so = {.timeout_ns = 20 * 1000 * 1000, .flags = 0};
  cf_future *f = NULL, *q = NULL;
  /* process: deaf_task is killed at the deadline; thread: gate_task stops */
  assert_rc(cf_submit_ex(ex, process_kind ? deaf_task : gate_task, NULL, 0, &so, &f), 0);
  /* queued behind it, with a deadline that passes while it waits */
  cf_submit_opts so2 = {.timeout_ns = 1000, .flags = 0};
  assert_rc(cf_submit_ex(ex, empty_task, NULL, 0, &so2, &q), 0);
  expect_rc(cf_future_result(q, NULL, 0, NULL, -1), CF_EDEADLINE);
  expect_true(cf_future_done(q));
  expect_eq(cf_future_state(q), CF_STATE_FAILED);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  expect_true(cf_future_done(f));
  expect_eq(cf_future_state(f), CF_STATE_FAILED);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_EDEADLINE);
  /* The one worker runs g only after f's task has returned (thread: it saw
   * the stop request; the gate is still closed) or was killed (process). */
  cf_future *g = NULL;
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &g), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), 0);
  cf_future_release(g);
  /* (on a loaded machine the deadline may pass before the worker starts
   * gate_task: then it never ran, and saw nothing) */
  if (!process_kind) expect_eq(atomic_load(&sh->saw_stop), atomic_load(&sh->started) > 0 ? 1 : 0);
  /* no deadline: 0 and negative mean none */
  cf_submit_opts none = {.timeout_ns = 0, .flags = 0};
  atomic_store(&sh->gate, 1);
  assert_rc(cf_submit_ex(ex, empty_task, NULL, 0, &none, &g), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), 0);
  cf_future_release(g);
  none.timeout_ns = -1;
  assert_rc(cf_submit_ex(ex, empty_task, NULL, 0, &none, &g), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), 0);
  cf_future_release(g);
  expect_rc(cf_submit_ex(ex, empty_task, NULL, 0, NULL, &g), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), 0);
  cf_future_release(g);
  cf_future_release(f);
  cf_future_release(q);
  cf_executor_destroy(ex);
}

/* ---- wait, as_completed ---------------------------------------------------- */

static void test_wait(void) {
  reset_shared();
  cf_executor *ex = make_ex(2);
  cf_future *fs[3] = {0};
  bool done[3];
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &fs[0]), 0);
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &fs[1]), 0);
  expect_rc(cf_wait(fs, 2, CF_FIRST_COMPLETED, -1, done), 0);
  expect_true(done[1]);
  expect_true(!done[0]);
  expect_rc(cf_wait(fs, 2, CF_ALL_COMPLETED, 0, done), CF_ETIMEDOUT);
  expect_rc(cf_wait(fs, 2, CF_ALL_COMPLETED, 1000000, done), CF_ETIMEDOUT);
  expect_true(done[1] && !done[0]);
  /* FIRST_EXCEPTION: no failure, not all done */
  expect_rc(cf_wait(fs, 2, CF_FIRST_EXCEPTION, 1000000, done), CF_ETIMEDOUT);
  expect_rc(cf_wait(fs, 2, CF_FIRST_EXCEPTION, 0, NULL), CF_ETIMEDOUT);
  assert_rc(cf_submit(ex, fail_task, NULL, 0, &fs[2]), 0);
  expect_rc(cf_wait(fs, 3, CF_FIRST_EXCEPTION, -1, done), 0);
  expect_true(done[2] && done[1] && !done[0]);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_wait(fs, 3, CF_ALL_COMPLETED, -1, done), 0);
  expect_true(done[0] && done[1] && done[2]);
  /* all done without failure satisfies FIRST_EXCEPTION */
  expect_rc(cf_wait(fs, 2, CF_FIRST_EXCEPTION, 0, done), 0);
  expect_rc(cf_wait(fs, 3, CF_FIRST_COMPLETED, 0, NULL), 0);
  /* bad input */
  expect_rc(cf_wait(fs, 0, CF_ALL_COMPLETED, -1, NULL), 0);
  expect_rc(cf_wait(NULL, 0, CF_FIRST_COMPLETED, -1, NULL), 0);
  expect_rc(cf_wait(fs, 3, 0, -1, NULL), CF_EINVAL);
  expect_rc(cf_wait(fs, 3, 4, -1, NULL), CF_EINVAL);
  expect_rc(cf_wait(NULL, 3, CF_ALL_COMPLETED, -1, NULL), CF_EINVAL);
  cf_future *withnull[2] = {fs[0], NULL};
  expect_rc(cf_wait(withnull, 2, CF_FIRST_COMPLETED, -1, NULL), CF_EINVAL);
  for (int i = 0; i < 3; i++) cf_future_release(fs[i]);
  cf_executor_destroy(ex);
}

static void test_as_completed(void) {
  reset_shared();
  cf_executor *ex = make_ex(2);
  enum { N = 8 };
  cf_future *fs[N];
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &fs[0]), 0);
  for (int i = 1; i < N; i++) assert_rc(cf_submit(ex, empty_task, NULL, 0, &fs[i]), 0);
  cf_as_completed *it = NULL;
  assert_rc(cf_as_completed_new(fs, N, -1, &it), 0);
  /* the iterator retains: the caller may release its handles */
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  int seen[N] = {0};
  cf_future *f;
  size_t idx;
  for (int k = 0; k < N - 1; k++) {
    expect_rc(cf_as_completed_next(it, &f, &idx), 0);
    if (idx < N) seen[idx]++;
    expect_true(idx != 0);
    expect_true(cf_future_done(f));
  }
  /* fs[0] is blocked on the gate */
  cf_as_completed *it2 = NULL;
  expect_rc(cf_as_completed_new(&fs[0], 1, 1000000, &it2), 0);
  expect_rc(cf_as_completed_next(it2, &f, &idx), CF_ETIMEDOUT);
  expect_rc(cf_as_completed_next(it2, &f, &idx), CF_ETIMEDOUT);
  cf_as_completed_free(it2);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_as_completed_next(it, &f, NULL), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), 0); /* a success check */
  seen[0]++;
  expect_rc(cf_as_completed_next(it, &f, &idx), CF_EDONE);
  expect_rc(cf_as_completed_next(it, NULL, NULL), CF_EDONE);
  for (int i = 0; i < N; i++) expect_eq(seen[i], 1);
  cf_as_completed_free(it);
  /* empty and bad input */
  expect_rc(cf_as_completed_new(NULL, 0, -1, &it), 0);
  expect_rc(cf_as_completed_next(it, &f, &idx), CF_EDONE);
  cf_as_completed_free(it);
  cf_as_completed_free(NULL);
  expect_rc(cf_as_completed_new(NULL, 2, -1, &it), CF_EINVAL);
  expect_rc(cf_as_completed_new(fs, 1, -1, NULL), CF_EINVAL);
  cf_future *nul = NULL;
  expect_rc(cf_as_completed_new(&nul, 1, -1, &it), CF_EINVAL);
  expect_rc(cf_as_completed_next(NULL, &f, &idx), CF_EINVAL);
  cf_executor_destroy(ex);
}

/* ---- map ------------------------------------------------------------------- */

typedef struct counting_src {
  int64_t next, end;
  int64_t read;
  int64_t fail_at; /* return fail_code when next reaches it (0: never) */
  int fail_code;
  int64_t cur;
} counting_src;

static int counting_next(void *arg, const void **item, size_t *len) {
  counting_src *s = arg;
  if (s->fail_at && s->next == s->fail_at) return s->fail_code;
  if (s->next >= s->end) return 0;
  s->cur = s->next++;
  s->read++;
  *item = &s->cur;
  *len = sizeof s->cur;
  return 1;
}

/* Map over [0, n) with square_task; check order, failures, laziness. */
static void check_map(cf_executor *ex, size_t window, size_t chunk, int64_t n) {
  counting_src s = {0, n, 0, 0, 0, 0};
  cf_map_opts o = {.window = window, .chunk = chunk, .timeout_ns = -1};
  cf_map *m = NULL;
  assert_rc(cf_map_new(ex, square_task, counting_next, &s, &o, &m), 0);
  size_t bound = (window ? window : 64) * (chunk > 1 ? chunk : 1);
  int64_t consumed = 0;
  for (;;) {
    expect_true(s.read - consumed <= (int64_t)bound);
    int64_t r = -1;
    size_t len = 0;
    int rc = cf_map_next(m, &r, sizeof r, &len);
    if (rc == CF_EDONE) break;
    int64_t x = consumed++;
    if (x % 5 == 3) {
      expect_rc(rc, CF_ETASK);
      int code = 0;
      char msg[CF_MESSAGE_MAX], want[32];
      expect_rc(cf_map_error(m, &code, msg, sizeof msg), 0);
      expect_eq(code, x);
      snprintf(want, sizeof want, "item %lld", (long long)x);
      expect_true(strcmp(msg, want) == 0);
    } else {
      expect_rc(rc, 0);
      expect_eq(len, sizeof r);
      expect_eq(r, x * x);
    }
    if (consumed > n) break;
  }
  expect_eq(consumed, n);
  expect_eq(s.read, n);
  expect_rc(cf_map_next(m, NULL, 0, NULL), CF_EDONE);
  cf_map_free(m);
}

static void test_map(void) {
  reset_shared();
  cf_executor *ex = make_ex(2);
  check_map(ex, 3, 1, 50);
  check_map(ex, 3, 4, 50);
  check_map(ex, 1, 1, 7);
  check_map(ex, 2, 7, 100);
  check_map(ex, 0, 0, 20); /* defaults: 2 x workers, one item per task */
  check_map(ex, 4, 1, 0);
  check_map(ex, 4, 3, 0);

  /* cf_map_array, chunked and not */
  int64_t arr[40];
  for (int i = 0; i < 40; i++) arr[i] = i;
  for (size_t chunk = 1; chunk <= 5; chunk += 4) {
    cf_map_opts o = {.window = 4, .chunk = chunk, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, square_task, arr, 40, sizeof arr[0], &o, &m), 0);
    int64_t r;
    for (int i = 0; i < 40; i++) {
      int rc = cf_map_next(m, &r, sizeof r, NULL);
      if (i % 5 == 3) {
        expect_rc(rc, CF_ETASK);
      } else {
        expect_rc(rc, 0);
        expect_eq(r, (int64_t)i * i);
      }
    }
    expect_rc(cf_map_next(m, &r, sizeof r, NULL), CF_EDONE);
    cf_map_free(m);
  }

  /* chunked results larger than the runner's stack buffer */
  {
    size_t sizes[6] = {100, 3000, 0, 10, 5000, 1};
    cf_map_opts o = {.window = 2, .chunk = 4, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, gen_task, sizes, 6, sizeof sizes[0], &o, &m), 0);
    static unsigned char buf[6000];
    for (int i = 0; i < 6; i++) {
      size_t len = 0;
      expect_rc(cf_map_next(m, buf, sizeof buf, &len), 0);
      expect_eq(len, sizes[i]);
      bool ok = true;
      for (size_t k = 0; k < len; k++) ok &= buf[k] == (unsigned char)(k * 7 + 3);
      expect_true(ok);
    }
    expect_rc(cf_map_next(m, buf, sizeof buf, NULL), CF_EDONE);
    cf_map_free(m);
  }

  /* too small a buffer: CF_ERANGE and *len; the item stays */
  for (size_t chunk = 1; chunk <= 2; chunk++) {
    cf_map_opts o = {.window = 2, .chunk = chunk, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, square_task, arr + 2, 1, sizeof arr[0], &o, &m), 0);
    int64_t r = 0;
    size_t len = 0;
    int code;
    expect_rc(cf_map_error(m, &code, NULL, 0), CF_EINVAL);
    expect_rc(cf_map_next(m, &r, 4, &len), CF_ERANGE);
    expect_eq(len, sizeof r);
    expect_rc(cf_map_next(m, &r, sizeof r, &len), 0);
    expect_eq(r, 4);
    expect_rc(cf_map_next(m, &r, sizeof r, &len), CF_EDONE);
    cf_map_free(m);
  }

  /* the source fails: items before it, then its code once, then the end */
  for (size_t chunk = 1; chunk <= 3; chunk += 2) {
    counting_src s = {0, 100, 0, 5, CF_EPROTO, 0};
    cf_map_opts o = {.window = 2, .chunk = chunk, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_new(ex, square_task, counting_next, &s, &o, &m), 0);
    int64_t r;
    for (int i = 0; i < 5; i++) {
      int rc = cf_map_next(m, &r, sizeof r, NULL);
      expect_rc(rc, i == 3 ? CF_ETASK : 0);
    }
    expect_rc(cf_map_next(m, &r, sizeof r, NULL), CF_EPROTO);
    expect_rc(cf_map_next(m, &r, sizeof r, NULL), CF_EDONE);
    cf_map_free(m);
  }

  /* timeout: the first item blocks; free waits for it once the gate opens */
  for (size_t chunk = 1; chunk <= 2; chunk++) {
    reset_shared();
    cf_map_opts o = {.window = 2, .chunk = chunk, .timeout_ns = 2000000};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, gate_task, arr, 6, sizeof arr[0], &o, &m), 0);
    int stopped;
    expect_rc(cf_map_next(m, &stopped, sizeof stopped, NULL), CF_ETIMEDOUT);
    expect_rc(cf_map_next(m, &stopped, sizeof stopped, NULL), CF_ETIMEDOUT);
    atomic_store(&sh->gate, 1);
    cf_map_free(m);
  }
  /* timeout 0 polls */
  {
    reset_shared();
    cf_map_opts o = {.window = 2, .chunk = 1, .timeout_ns = 0};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, gate_task, arr, 3, sizeof arr[0], &o, &m), 0);
    int v;
    expect_rc(cf_map_next(m, &v, sizeof v, NULL), CF_ETIMEDOUT);
    atomic_store(&sh->gate, 1);
    cf_map_free(m); /* frees with items not consumed */
  }

  /* free before consuming anything: pending chunks cancelled, running ones waited */
  {
    reset_shared();
    cf_map_opts o = {.window = 8, .chunk = 2, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, count_task, arr, 40, sizeof arr[0], &o, &m), 0);
    atomic_store(&sh->gate, 1);
    cf_map_free(m);
    expect_true(atomic_load(&sh->counter) <= 16);
  }

  /* bad input */
  cf_map *m = NULL;
  cf_map_opts o = {.window = 2, .chunk = 1, .timeout_ns = -1};
  expect_rc(cf_map_new(NULL, square_task, counting_next, NULL, &o, &m), CF_EINVAL);
  expect_rc(cf_map_new(ex, NULL, counting_next, NULL, &o, &m), CF_EINVAL);
  expect_rc(cf_map_new(ex, square_task, NULL, NULL, &o, &m), CF_EINVAL);
  expect_rc(cf_map_new(ex, square_task, counting_next, NULL, &o, NULL), CF_EINVAL);
  expect_rc(cf_map_array(ex, square_task, NULL, 3, 8, &o, &m), CF_EINVAL);
  expect_rc(cf_map_array(ex, square_task, arr, SIZE_MAX, 8, &o, &m), CF_EINVAL);
  expect_rc(cf_map_next(NULL, NULL, 0, NULL), CF_EINVAL);
  expect_rc(cf_map_error(NULL, NULL, NULL, 0), CF_EINVAL);
  cf_map_free(NULL);
  expect_rc(cf_map_array(ex, square_task, NULL, 0, 8, NULL, &m), 0);
  expect_rc(cf_map_next(m, NULL, 0, NULL), CF_EDONE);
  cf_map_free(m);

  /* a shut-down executor refuses a map */
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  expect_rc(cf_map_array(ex, square_task, arr, 3, sizeof arr[0], NULL, &m), CF_ESHUTDOWN);
  cf_executor_destroy(ex);
}

/* ---- shutdown, scope, initializer, stats --------------------------------------- */

static void test_shutdown(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_future *run = NULL, *pend[4];
  /* deaf: CANCEL_FUTURES asks it to stop (test_abandon.c), it runs on */
  assert_rc(cf_submit(ex, deaf_task, NULL, 0, &run), 0);
  wait_started(1);
  for (int i = 0; i < 4; i++) assert_rc(cf_submit(ex, empty_task, NULL, 0, &pend[i]), 0);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_CANCEL_FUTURES), 0);
  for (int i = 0; i < 4; i++) {
    expect_true(cf_future_cancelled(pend[i]));
    expect_rc(cf_future_result(pend[i], NULL, 0, NULL, -1), CF_ECANCELLED);
  }
  /* cancelled by shutdown: done at once for wait and as_completed */
  bool done[4];
  expect_rc(cf_wait(pend, 4, CF_ALL_COMPLETED, -1, done), 0);
  expect_rc(cf_wait(pend, 4, CF_FIRST_EXCEPTION, -1, NULL), 0);
  cf_as_completed *it;
  expect_rc(cf_as_completed_new(pend, 4, -1, &it), 0);
  int k = 0;
  while (cf_as_completed_next(it, NULL, NULL) == 0) k++;
  expect_eq(k, 4);
  cf_as_completed_free(it);
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, empty_task, NULL, 0, &f), CF_ESHUTDOWN);
  expect_rc(cf_executor_shutdown(ex, 0), 0); /* idempotent */
  expect_true(!cf_future_done(run));
  atomic_store(&sh->gate, 1);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  expect_true(cf_future_done(run));
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  expect_rc(cf_submit(ex, empty_task, NULL, 0, &f), CF_ESHUTDOWN);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.submitted, 5);
  expect_eq(st.cancelled, 4);
  expect_eq(st.completed, 1);
  expect_eq(st.workers, 1);
  expect_rc(cf_executor_destroy(ex), 0);
  /* futures outlive their executor */
  size_t len = 99;
  expect_rc(cf_future_result(run, NULL, 0, &len, 0), 0);
  expect_eq(len, 0);
  cf_future_release(run);
  for (int i = 0; i < 4; i++) cf_future_release(pend[i]);
  expect_rc(cf_executor_destroy(NULL), 0);
}

static void test_shutdown_kill(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_future *run = NULL;
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &run), 0);
  wait_started(1);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_KILL | CF_SHUTDOWN_WAIT), 0);
  expect_true(cf_future_done(run));
  int stopped = 0;
  if (process_kind) {
    expect_rc(cf_future_result(run, &stopped, sizeof stopped, NULL, -1), CF_ECANCELLED);
  } else {
    expect_rc(cf_future_result(run, &stopped, sizeof stopped, NULL, -1), 0);
    expect_eq(stopped, 1);
  }
  cf_future_release(run);
  cf_executor_destroy(ex);
}

static int scope_result;
static void scoped(void) {
  CF_SCOPED_EXECUTOR cf_executor *ex = make_ex(2);
  int64_t x = 9, r = 0;
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, square_task, &x, sizeof x, &f), 0);
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  scope_result = (int)r;
  cf_future_release(f);
}

static void test_scope(void) {
  scoped();
  expect_eq(scope_result, 81);
  CF_SCOPED_EXECUTOR cf_executor *none = NULL; /* NULL leaves quietly */
  (void)none;
}

static int init_ok(void *arg) {
  if (cf_test_shared_attach(NULL) != 0) return 1;
  atomic_fetch_add(&sh->init_runs, 1);
  return 0;
}
static int init_bad(void *arg) {
  return 1;
}

static void test_initializer(void) {
  reset_shared();
  cf_options o;
  cf_options_init(&o);
  expect_eq(o.size, sizeof o);
  o.workers = 2;
  o.initializer = init_ok;
  cf_executor *ex = NULL;
  assert_rc(cf_test_pool_new(process_kind, &o, &ex), 0);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, empty_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), 0);
  cf_future_release(f);
  cf_executor_destroy(ex);
  expect_true(atomic_load(&sh->init_runs) >= 1);

  o.initializer = init_bad;
  ex = NULL;
  int rc = cf_test_pool_new(process_kind, &o, &ex);
  if (rc == 0) {
    /* the pool exists but is broken: submit or the future says so */
    rc = cf_submit(ex, empty_task, NULL, 0, &f);
    if (rc == 0) {
      rc = cf_future_result(f, NULL, 0, NULL, -1);
      cf_future_release(f);
    }
    expect_rc(rc, CF_EBROKEN);
    cf_executor_destroy(ex);
  } else {
    expect_rc(rc, CF_EBROKEN);
    expect_true(ex == NULL);
  }
}

static void test_stats(void) {
  reset_shared();
  atomic_store(&sh->gate, 1);
  cf_executor *ex = make_ex(2);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.workers, 2);
  expect_eq(st.submitted, 0);
  cf_future *fs[20];
  for (int i = 0; i < 20; i++) assert_rc(cf_submit(ex, empty_task, NULL, 0, &fs[i]), 0);
  expect_rc(cf_wait(fs, 20, CF_ALL_COMPLETED, -1, NULL), 0);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.submitted, 20);
  expect_eq(st.completed, 20);
  expect_eq(st.cancelled, 0);
  expect_eq(st.queued, 0);
  expect_eq(st.crashed, 0);
  expect_rc(cf_executor_stats(NULL, &st), CF_EINVAL);
  expect_rc(cf_executor_stats(ex, NULL), CF_EINVAL);
  for (int i = 0; i < 20; i++) cf_future_release(fs[i]);
  cf_executor_destroy(ex);
}

static void suicide_task(cf_call *c) {
  kill(getpid(), SIGKILL);
}

static void test_crash(void) {
  if (!process_kind) return; /* a thread task cannot crash alone */
  cf_executor *ex = make_ex(1);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, suicide_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ECRASHED);
  expect_eq(cf_future_state(f), CF_STATE_FAILED);
  cf_crash_info ci = {0, 0, 0};
  expect_rc(cf_future_crash_info(f, &ci), 0);
  expect_true(ci.pid > 0);
  expect_eq(ci.signal, SIGKILL);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_ECRASHED);
  cf_future_release(f);
  /* only that task failed: the pool goes on with a new worker */
  int64_t x = 5, r = 0;
  assert_rc(cf_submit(ex, square_task, &x, sizeof x, &f), 0);
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, 25);
  cf_future_release(f);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.crashed, 1);
  cf_executor_destroy(ex);
}

static void test_queue_bound(void) {
  reset_shared();
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.max_queued = 2;
  o.initializer = cf_test_shared_attach;
  cf_executor *ex = NULL;
  assert_rc(cf_test_pool_new(process_kind, &o, &ex), 0);
  cf_future *fs[12] = {0};
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &fs[0]), 0);
  wait_started(1);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  int accepted = 1, again = 0;
  for (int i = 1; i < 12; i++) {
    int rc = cf_submit_ex(ex, empty_task, NULL, 0, &so, &fs[accepted]);
    if (rc == 0) {
      accepted++;
    } else {
      expect_rc(rc, CF_EAGAIN);
      again++;
    }
  }
  expect_true(again > 0);
  expect_true(accepted <= 1 + 2);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_wait(fs, (size_t)accepted, CF_ALL_COMPLETED, -1, NULL), 0);
  /* room again: a waiting submit goes through */
  cf_future *g = NULL;
  expect_rc(cf_submit(ex, empty_task, NULL, 0, &g), 0);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), 0);
  cf_future_release(g);
  for (int i = 0; i < accepted; i++) cf_future_release(fs[i]);
  cf_executor_destroy(ex);
}

static void test_strerror(void) {
  for (int c = CF_EFORKED; c <= 0; c++) {
    const char *s = cf_strerror(c);
    expect_true(s != NULL && s[0] != 0);
    for (int d = CF_EFORKED; d < c; d++) expect_true(strcmp(s, cf_strerror(d)) != 0);
  }
  expect_true(cf_strerror(12345) != NULL);
  expect_true(cf_strerror(-12345) != NULL);
}

int main(int argc, char **argv) {
  cf_test_kind kind = cf_test_parse_kind(argc, argv);
  process_kind = kind == CF_TEST_PROCESS;
  mpi_kind = kind == CF_TEST_MPI;
  cf_test_shared(sizeof(shared));
  CF_RUN(test_strerror);
  CF_RUN(test_submit_sizes);
  CF_RUN(test_size_limits);
  CF_RUN(test_fail);
  CF_RUN(test_states_and_timeouts);
  CF_RUN(test_cancel);
  CF_RUN(test_callbacks);
  CF_RUN(test_refcount);
  CF_RUN(test_deadline);
  CF_RUN(test_wait);
  CF_RUN(test_as_completed);
  CF_RUN(test_map);
  CF_RUN(test_shutdown);
  CF_RUN(test_shutdown_kill);
  CF_RUN(test_scope);
  CF_RUN(test_initializer);
  CF_RUN(test_stats);
  CF_RUN(test_crash);
  CF_RUN(test_queue_bound);
  return cf_test_done(mpi_kind       ? "test_api_mpi"
                      : process_kind ? "test_api_process"
                                     : "test_api_thread");
}
