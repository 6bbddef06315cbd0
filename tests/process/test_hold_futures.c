/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_hold_futures.c — a process pool bounds the tasks queued or running,
 * never the futures a program holds (issue 9, item 2).
 *
 * 1. The seed's pattern on a small pool (max_futures 64, ring 16): submit
 *    2,000 tasks with blocking submits, keep every future, read every
 *    result at the end. (Before: the 65th submit waited for ever.)
 * 2. The same with the default options and 20,000 futures (more than the
 *    16,384 slots the defaults used to have).
 * 3. CF_SUBMIT_NOWAIT: with the only worker blocked, submits fill the
 *    queue and then get CF_EAGAIN ("queue full, retry"); once the worker
 *    goes on, retrying works, and 300 futures held with NOWAIT retries all
 *    complete. (Before: once the slots were held by done futures, EAGAIN
 *    for ever.)
 * 4. "Cannot ever proceed" is its own code: a submit from inside a process
 *    task returns CF_EDEADLK, never CF_EAGAIN.
 * 5. Futures held past cf_executor_destroy read their results.
 */
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cfutures.h"
#include "testutil.h"

typedef struct shared_flags {
  _Atomic int release;
  _Atomic int started;
} shared_flags;
#define sh ((shared_flags *)cf_test_shm)

static void nap_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static void t_square(cf_call *c) {
  size_t n;
  const int64_t *x = cf_call_arg(c, &n);
  int64_t r = n == sizeof *x ? *x * *x : -1;
  cf_call_return(c, &r, sizeof r);
}

static void t_block(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->release)) nap_us(200);
  int64_t r = 7;
  cf_call_return(c, &r, sizeof r);
}

/* Submits to the pool it runs in (its handle comes as the argument). */
static void t_submit_inside(cf_call *c) {
  cf_executor *const *ex = cf_call_arg(c, NULL);
  cf_future *f = NULL;
  int64_t x = 3;
  int rc = cf_submit(*ex, t_square, &x, sizeof x, &f);
  int64_t r = rc;
  cf_call_return(c, &r, sizeof r);
}

static cf_executor *pool(unsigned workers, size_t max_futures, size_t ring) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.max_futures = max_futures;
  o.ring_capacity = ring;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static void check_all(cf_future **fs, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    int64_t r = -1;
    size_t len = 0;
    expect_rc(cf_future_result(fs[i], &r, sizeof r, &len, -1), 0);
    expect_eq(len, sizeof r);
    expect_eq(r, i * i);
    cf_future_release(fs[i]);
  }
}

static void test_seed_pattern(void) {
  enum { N = 2000 };
  static cf_future *fs[N];
  cf_executor *ex = pool(2, 64, 16);
  cf_test_watchdog(120, "the seed's pattern: a blocking submit past max_futures");
  for (int64_t i = 0; i < N; i++) assert_rc(cf_submit(ex, t_square, &i, sizeof i, &fs[i]), 0);
  cf_test_watchdog(0, NULL);
  check_all(fs, N);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_default_options(void) {
  int64_t n = 20000;
  cf_future **fs = calloc((size_t)n, sizeof *fs);
  assert_true(fs != NULL);
  cf_executor *ex = pool(2, 0, 0);
  cf_test_watchdog(240, "20,000 futures held with the default options");
  for (int64_t i = 0; i < n; i++) assert_rc(cf_submit(ex, t_square, &i, sizeof i, &fs[i]), 0);
  cf_test_watchdog(0, NULL);
  check_all(fs, n);
  free(fs);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_nowait(void) {
  atomic_store(&sh->release, 0);
  atomic_store(&sh->started, 0);
  cf_executor *ex = pool(1, 0, 4);
  cf_future *b, *fs[16];
  assert_rc(cf_submit(ex, t_block, NULL, 0, &b), 0);
  while (atomic_load(&sh->started) < 1) nap_us(500);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  int64_t n = 0;
  int rc = 0;
  while (n < 16 && (rc = cf_submit_ex(ex, t_square, &n, sizeof n, &so, &fs[n])) == 0) n++;
  expect_rc(rc, CF_EAGAIN); /* queue full: retry later */
  expect_true(n >= 1 && n <= 4);
  atomic_store(&sh->release, 1);
  check_all(fs, n);
  int64_t r = 0;
  expect_rc(cf_future_result(b, &r, sizeof r, NULL, -1), 0);
  cf_future_release(b);
  /* NOWAIT with retries, every future held: the queue always frees */
  enum { M = 300 };
  static cf_future *hs[M];
  cf_test_watchdog(120, "NOWAIT retries with every future held");
  for (int64_t i = 0; i < M; i++) {
    while ((rc = cf_submit_ex(ex, t_square, &i, sizeof i, &so, &hs[i])) == CF_EAGAIN) nap_us(100);
    assert_rc(rc, 0);
  }
  cf_test_watchdog(0, NULL);
  check_all(hs, M);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_cannot_proceed(void) {
  /* Fork mode: the worker then holds a copy of the pool, and the task is
   * handed its address (in exec mode that address means nothing there). */
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.start_mode = CF_START_FORK;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  cf_future *f;
  assert_rc(cf_submit(ex, t_submit_inside, &ex, sizeof ex, &f), 0);
  int64_t r = 0;
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, CF_EDEADLK);
  expect_true(CF_EDEADLK != CF_EAGAIN);
  expect_true(strcmp(cf_strerror(CF_EDEADLK), cf_strerror(CF_EAGAIN)) != 0);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_outlive_destroy(void) {
  enum { N = 500 };
  static cf_future *fs[N];
  cf_executor *ex = pool(2, 32, 8);
  for (int64_t i = 0; i < N; i++) assert_rc(cf_submit(ex, t_square, &i, sizeof i, &fs[i]), 0);
  expect_rc(cf_executor_destroy(ex), 0); /* every task runs first */
  check_all(fs, N);
}

int main(void) {
  cf_test_shared(4096);
  CF_RUN(test_seed_pattern);
  CF_RUN(test_default_options);
  CF_RUN(test_nowait);
  CF_RUN(test_cannot_proceed);
  CF_RUN(test_outlive_destroy);
  return cf_test_done("test_hold_futures");
}
