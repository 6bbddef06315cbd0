/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_frames_process.c — cf_spawn / cf_join inside a process task (issue
 * 9, item 13): the frame runs inline in the worker, so the same recursive
 * code runs on either executor.
 *
 * 1. fib(n) by cf_spawn/cf_join, the one function, inside a task of a
 *    thread pool and inside a task of a process pool: the same results.
 *    (Before: cf_spawn returned CF_EINVAL in the worker.)
 * 2. What a frame carries, inside a process task: an argument over the
 *    frame's inline size, a result over its inline size, a failure
 *    (CF_ETASK and its code), CF_ERANGE, the outer task's stop request, and
 *    the frame rules (a second join, a NULL executor: CF_EINVAL).
 */
#include <string.h>

#include "cfutures.h"
#include "testutil.h"

typedef struct fib_arg {
  cf_executor *ex; /* the executor the task runs on (a copy, in a worker) */
  int n;
} fib_arg;

static int64_t fib(cf_executor *ex, int n);

static void fib_task(cf_call *c) {
  const fib_arg *a = cf_call_arg(c, NULL);
  int64_t r = fib(a->ex, a->n);
  cf_call_return(c, &r, sizeof r);
}

/* The recursive code: the same for every executor. */
static int64_t fib(cf_executor *ex, int n) {
  if (n < 2) return n;
  cf_frame fr;
  fib_arg a = {ex, n - 1};
  int64_t x = 0;
  if (cf_spawn(ex, &fr, fib_task, &a, sizeof a) != 0) return -1000000;
  int64_t y = fib(ex, n - 2);
  if (cf_join(&fr, &x, sizeof x, NULL) != 0) return -1000000;
  return x + y;
}

static int64_t fib_on(cf_executor *ex, int n) {
  fib_arg a = {ex, n};
  cf_future *f;
  int64_t r = -1;
  if (cf_submit(ex, fib_task, &a, sizeof a, &f) != 0) return -2;
  int rc = cf_future_result(f, &r, sizeof r, NULL, -1);
  cf_future_release(f);
  return rc ? rc : r;
}

static void test_fib_both(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *tp = NULL, *pp = NULL;
  assert_rc(cf_thread_pool_new(&o, &tp), 0);
  assert_rc(cf_process_pool_new(&o, &pp), 0);
  const int64_t want[] = {0,  1,   1,   2,   3,   5,   8,    13,   21,   34,  55,
                          89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765};
  for (int n = 0; n <= 20; n += 4) {
    expect_eq(fib_on(tp, n), want[n]);
    expect_eq(fib_on(pp, n), want[n]);
  }
  expect_rc(cf_executor_destroy(tp), 0);
  expect_rc(cf_executor_destroy(pp), 0);
}

/* ---- what a frame carries ---- */

static void echo(cf_call *c) {
  size_t n;
  const void *a = cf_call_arg(c, &n);
  cf_call_return(c, a, n);
}
static void fails(cf_call *c) {
  cf_call_fail(c, 77, "no");
}
static void not_stopped(cf_call *c) {
  int r = cf_call_stop_requested(c) ? 1 : 2; /* the outer task's: not asked */
  cf_call_return(c, &r, sizeof r);
}

/* Runs in the worker; returns a bit per check that passed. */
static void frames_inside(cf_call *c) {
  cf_executor *const *ex = cf_call_arg(c, NULL);
  int ok = 0;
  unsigned char big[200], back[200];
  for (int i = 0; i < 200; i++) big[i] = (unsigned char)i;
  cf_frame fr;
  size_t len = 0;
  if (cf_spawn(*ex, &fr, echo, big, sizeof big) == 0 &&
      cf_join(&fr, back, sizeof back, &len) == 0 && len == 200 && memcmp(back, big, 200) == 0)
    ok |= 1; /* argument and result over the frame's inline sizes */
  int code = 0;
  if (cf_spawn(*ex, &fr, fails, NULL, 0) == 0 && cf_join(&fr, NULL, 0, NULL) == CF_ETASK &&
      cf_frame_error(&fr, &code) == 0 && code == 77)
    ok |= 2;
  if (cf_spawn(*ex, &fr, echo, big, 100) == 0 && cf_join(&fr, back, 10, &len) == CF_ERANGE &&
      len == 100)
    ok |= 4;
  int r = 0;
  if (cf_spawn(*ex, &fr, not_stopped, NULL, 0) == 0 && cf_join(&fr, &r, sizeof r, NULL) == 0 &&
      r == 2)
    ok |= 8;
  if (cf_join(&fr, NULL, 0, NULL) == CF_EINVAL) ok |= 16; /* joined twice */
  if (cf_spawn(NULL, &fr, echo, NULL, 0) == CF_EINVAL) ok |= 32;
  cf_call_return(c, &ok, sizeof ok);
}

static void test_frame_kinds(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  cf_executor *pp = NULL;
  assert_rc(cf_process_pool_new(&o, &pp), 0);
  cf_future *f;
  assert_rc(cf_submit(pp, frames_inside, &pp, sizeof pp, &f), 0);
  int ok = 0;
  expect_rc(cf_future_result(f, &ok, sizeof ok, NULL, -1), 0);
  expect_eq(ok, 63);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(pp), 0);
}

int main(void) {
  CF_RUN(test_fib_both);
  CF_RUN(test_frame_kinds);
  return cf_test_done("test_frames_process");
}
