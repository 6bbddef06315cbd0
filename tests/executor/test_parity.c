/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_parity.c — Python parity details, on every executor:
 *   - as_completed over a list holding the same future twice yields it
 *     once (Python deduplicates: set(fs));
 *   - cf_future_error on a future that finished says "no error" (Python's
 *     exception() returns None);
 *   - cf_future_result(f, NULL, 0, ...) is a success check, also for a
 *     future with a result;
 * and the per-call wait that runs nothing meanwhile (CF_WAIT_NO_HELP).
 * (Built against the previous header the CF_WAIT_NO_HELP part is left out,
 * so the same file shows the old behaviour of the rest.)
 */
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

static void echo_task(cf_call *c) {
  size_t n;
  const void *a = cf_call_arg(c, &n);
  cf_call_return(c, a, n);
}

static void fail_task(cf_call *c) {
  cf_call_fail(c, 42, "boom");
}

/* ---- as_completed deduplicates ---- */

static void dedup_case(cf_executor *ex, size_t distinct, size_t copies) {
  size_t n = distinct * copies;
  cf_future **fs = calloc(n, sizeof *fs);
  int *seen = calloc(n, sizeof *seen);
  for (size_t i = 0; i < distinct; i++) {
    int v = (int)i;
    assert_rc(cf_submit(ex, echo_task, &v, sizeof v, &fs[i]), 0);
  }
  /* later copies interleaved: fs[k] == fs[k % distinct] */
  for (size_t k = distinct; k < n; k++) fs[k] = fs[k % distinct];
  cf_as_completed *it = NULL;
  assert_rc(cf_as_completed_new(fs, n, -1, &it), 0);
  cf_future *f;
  size_t idx, yielded = 0;
  while (cf_as_completed_next(it, &f, &idx) == 0) {
    yielded++;
    expect_true(idx < distinct); /* under its first index */
    if (idx < n) {
      seen[idx]++;
      expect_true(f == fs[idx]);
    }
  }
  expect_eq(yielded, distinct);
  for (size_t i = 0; i < distinct; i++) expect_eq(seen[i], 1);
  expect_rc(cf_as_completed_next(it, &f, &idx), CF_EDONE);
  cf_as_completed_free(it);
  for (size_t i = 0; i < distinct; i++) cf_future_release(fs[i]);
  free(fs);
  free(seen);
}

static void test_as_completed_dedup(void) {
  cf_executor *ex = make_ex(2);
  dedup_case(ex, 1, 2);  /* the case */
  dedup_case(ex, 3, 3);  /* small: compared pairwise */
  dedup_case(ex, 40, 3); /* larger: sorted */
  dedup_case(ex, 50, 1); /* no duplicates */
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- cf_future_error on success ---- */

static void test_error_of_success(void) {
  cf_executor *ex = make_ex(1);
  cf_future *ok = NULL, *bad = NULL;
  int v = 5;
  assert_rc(cf_submit(ex, echo_task, &v, sizeof v, &ok), 0);
  assert_rc(cf_submit(ex, fail_task, NULL, 0, &bad), 0);
  expect_rc(cf_future_wait(ok, -1), 0);
  expect_rc(cf_future_wait(bad, -1), 0);
  int code = -1;
  char msg[32] = "junk";
  expect_rc(cf_future_error(ok, &code, msg, sizeof msg), 0);
  expect_eq(code, 0);
  expect_eq(msg[0], 0);
  expect_rc(cf_future_error(ok, NULL, NULL, 0), 0);
  /* a failure still reads as before */
  expect_rc(cf_future_error(bad, &code, msg, sizeof msg), 0);
  expect_eq(code, 42);
  expect_true(strcmp(msg, "boom") == 0);
  cf_future_release(ok);
  cf_future_release(bad);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- cf_future_result(f, NULL, 0, ...) as a success check ---- */

static void test_result_success_check(void) {
  cf_executor *ex = make_ex(1);
  cf_future *f = NULL, *bad = NULL;
  int64_t v = 77;
  assert_rc(cf_submit(ex, echo_task, &v, sizeof v, &f), 0);
  assert_rc(cf_submit(ex, fail_task, NULL, 0, &bad), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), 0);
  size_t len = 0;
  expect_rc(cf_future_result(f, NULL, 0, &len, 0), 0);
  expect_eq(len, sizeof v);
  /* a buffer too small is still CF_ERANGE, and the result still readable */
  char small[2];
  expect_rc(cf_future_result(f, small, sizeof small, &len, 0), CF_ERANGE);
  int64_t r = 0;
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, 0), 0);
  expect_eq(r, 77);
  /* a failure is not a success */
  expect_rc(cf_future_result(bad, NULL, 0, NULL, -1), CF_ETASK);
  cf_future_release(f);
  cf_future_release(bad);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- CF_WAIT_NO_HELP ---- */

#ifdef CF_WAIT_NO_HELP
static cf_executor *tp, *child_ex;
static _Atomic int no_help_rc = 1, help_rc = 1;

/* On a one-worker thread pool: a wait that does not help cannot run the
 * child it waits for when the child is queued on this same pool (nobody
 * else can); a plain wait runs it. */
static void parent_task(cf_call *c) {
  cf_future *child = NULL;
  int v = 1;
  if (cf_submit(child_ex, echo_task, &v, sizeof v, &child) != 0) return;
  /* thread: 20 ms, to see that nothing runs the child; process: long
   * enough for any worker (an exec'ed one under a sanitizer included) */
  int64_t t = child_ex == tp ? 20 * 1000000LL : 30 * 1000000000LL;
  atomic_store(&no_help_rc, cf_future_wait_ex(child, t, CF_WAIT_NO_HELP));
  atomic_store(&help_rc, cf_future_wait(child, -1));
  cf_future_release(child);
}

static void test_wait_no_help(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  assert_rc(cf_thread_pool_new(&o, &tp), 0);
  child_ex = process_kind ? make_ex(1) : tp;
  cf_future *p = NULL;
  assert_rc(cf_submit(tp, parent_task, NULL, 0, &p), 0);
  expect_rc(cf_future_result(p, NULL, 0, NULL, -1), 0);
  /* thread: nothing ran the child meanwhile; process: another process did */
  expect_rc(atomic_load(&no_help_rc), process_kind ? 0 : CF_ETIMEDOUT);
  expect_rc(atomic_load(&help_rc), 0);
  cf_future_release(p);
  /* outside a task, and bad flags */
  cf_future *f = NULL;
  int v = 3;
  assert_rc(cf_submit(child_ex, echo_task, &v, sizeof v, &f), 0);
  expect_rc(cf_future_wait_ex(f, -1, CF_WAIT_NO_HELP), 0);
  expect_rc(cf_future_wait_ex(f, 0, 0), 0);
  expect_rc(cf_future_wait_ex(f, 0, 0x80), CF_EINVAL);
  expect_rc(cf_future_wait_ex(NULL, 0, 0), CF_EINVAL);
  cf_future_release(f);
  if (child_ex != tp) expect_rc(cf_executor_destroy(child_ex), 0);
  expect_rc(cf_executor_destroy(tp), 0);
}
#endif

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  CF_RUN(test_as_completed_dedup);
  CF_RUN(test_error_of_success);
  CF_RUN(test_result_success_check);
#ifdef CF_WAIT_NO_HELP
  CF_RUN(test_wait_no_help);
#endif
  return cf_test_done(process_kind ? "test_parity_process" : "test_parity_thread");
}
