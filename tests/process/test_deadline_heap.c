/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_deadline_heap.c — deadlines leave with their tasks, and a killed
 * task always names its worker (issue 9, item 16).
 *
 * 1. 5,000 tasks with a one-hour deadline, done and read: the deadline heap
 *    is empty again (before: an entry per task until its deadline passed);
 *    queued tasks with deadlines keep theirs (the heap never drops one).
 * 2. Tasks killed at a 1 ms deadline right after their pool was made (when
 *    the parent may not have read their worker's pid yet): 60 pools, every
 *    crash_info.pid is a real pid. (Before: 0 for some.)
 * Needs the test hooks (the heap's size).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#include "cfutures.h"
#include "test_hooks.h"
#include "testutil.h"

typedef struct shared {
  _Atomic int release;
} shared;
#define sh ((shared *)cf_test_shm)

static void t_square(cf_call *c) {
  const int *x = cf_call_arg(c, NULL);
  int r = *x * *x;
  cf_call_return(c, &r, sizeof r);
}

static void t_block(cf_call *c) {
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
}

static cf_executor *mkpool_mode(unsigned workers, unsigned start_mode) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.start_mode = start_mode;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static cf_executor *mkpool(unsigned workers) {
  return mkpool_mode(workers, CF_START_DEFAULT);
}

static void test_heap_empties(void) {
  cf_executor *ex = mkpool(2);
  cf_submit_opts so = {.timeout_ns = 3600LL * 1000000000, .flags = 0};
  enum { N = 5000 };
  static cf_future *fs[N];
  for (int i = 0; i < N; i++) {
    assert_rc(cf_submit_ex(ex, t_square, &i, sizeof i, &so, &fs[i]), 0);
    if (i >= 100) { /* keep ~100 in flight */
      int r = 0;
      expect_rc(cf_future_result(fs[i - 100], &r, sizeof r, NULL, -1), 0);
      expect_eq(r, (i - 100) * (i - 100));
    }
  }
  for (int i = N - 100; i < N; i++)
    expect_rc(cf_future_result(fs[i], NULL, 0, NULL, -1), 0) /* a success check */;
  expect_eq(cf__test_deadlines(ex), 0);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  /* queued ones keep theirs */
  atomic_store(&sh->release, 0);
  cf_future *b[2], *q[50];
  for (int i = 0; i < 2; i++) assert_rc(cf_submit(ex, t_block, NULL, 0, &b[i]), 0);
  for (int i = 0; i < 50; i++) assert_rc(cf_submit_ex(ex, t_square, &i, sizeof i, &so, &q[i]), 0);
  expect_eq(cf__test_deadlines(ex), 50);
  atomic_store(&sh->release, 1);
  for (int i = 0; i < 50; i++) {
    int r = 0;
    expect_rc(cf_future_result(q[i], &r, sizeof r, NULL, -1), 0);
    cf_future_release(q[i]);
  }
  for (int i = 0; i < 2; i++) {
    expect_rc(cf_future_wait(b[i], -1), 0);
    cf_future_release(b[i]);
  }
  expect_eq(cf__test_deadlines(ex), 0);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_killed_early_pid(void) {
  atomic_store(&sh->release, 0);
  int zero = 0, total = 0;
  for (int k = 0; k < 60; k++) {
    /* Fork mode: its workers are up within the 1 ms deadline (an exec'ed
     * zygote under a sanitizer takes longer, and then no task ever runs:
     * nothing would be killed early) */
    cf_executor *ex = mkpool_mode(2, CF_START_FORK);
    cf_submit_opts so = {.timeout_ns = 1000000, .flags = 0};
    cf_future *f[2];
    for (int i = 0; i < 2; i++) assert_rc(cf_submit_ex(ex, t_block, NULL, 0, &so, &f[i]), 0);
    for (int i = 0; i < 2; i++) {
      expect_rc(cf_future_result(f[i], NULL, 0, NULL, -1), CF_EDEADLINE);
      cf_crash_info ci = {0, 0, 0};
      if (cf_future_crash_info(f[i], &ci) == 0) { /* killed while running (else: never ran) */
        total++;
        zero += ci.pid <= 0;
      }
      cf_future_release(f[i]);
    }
    expect_rc(cf_executor_destroy(ex), 0);
  }
  fprintf(stderr, "  %d tasks killed at once: %d without a pid\n", total, zero);
  expect_eq(zero, 0);
  expect_true(total > 0);
}

int main(void) {
  cf_test_shared(4096);
  CF_RUN(test_heap_empties);
  CF_RUN(test_killed_early_pid);
  return cf_test_done("test_deadline_heap");
}
