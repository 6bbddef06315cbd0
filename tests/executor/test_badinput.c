/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_badinput.c — every public call fed NULL handles, NULL functions, zero
 * and huge sizes, extreme timeouts and codes, and handles used too often.
 * Each must answer with its documented code and leave the executor usable.
 * Run once per executor kind (argv[1] = "thread", "process" or "mpi").
 */
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

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

/* Misuse from inside a task: the result says what each call answered. */
static void misuse_task(cf_call *c) {
  int r[4];
  r[0] = cf_call_return(c, NULL, 5);   /* NULL bytes with a length */
  r[1] = cf_call_fail(NULL, 1, "x");   /* NULL call */
  r[2] = cf_call_return(NULL, "x", 1); /* NULL call */
  r[3] = cf_call_stop_requested(NULL) ? 1 : 0;
  size_t len = 77;
  const void *a = cf_call_arg(NULL, &len);
  if (a != NULL || len != 0) r[3] = 99;
  (void)cf_call_arg(c, NULL); /* len may be NULL */
  cf_call_return(c, r, sizeof r);
}

static void noop_cb(cf_future *f, void *arg) {}

static void test_null_everywhere(void) {
  cf_executor *ex = make_ex(1);
  cf_future *f = (cf_future *)&f; /* must be reset to NULL on failure */
  char buf[16];
  size_t len;

  expect_rc(cf_thread_pool_new(NULL, NULL), CF_EINVAL);
  expect_rc(cf_process_pool_new(NULL, NULL), CF_EINVAL);
  expect_rc(cf_mpi_pool_new(NULL, NULL), CF_EINVAL);
  cf_options_init(NULL); /* no crash */

  expect_rc(cf_submit(NULL, echo_task, NULL, 0, &f), CF_EINVAL);
  expect_true(f == NULL);
  expect_rc(cf_submit(ex, NULL, NULL, 0, &f), CF_EINVAL);
  expect_rc(cf_submit(ex, echo_task, NULL, 0, NULL), CF_EINVAL);
  expect_rc(cf_submit(ex, echo_task, NULL, 1, &f), CF_EINVAL);
  expect_rc(cf_submit_ex(NULL, echo_task, NULL, 0, NULL, &f), CF_EINVAL);
  expect_rc(cf_submit_ex(ex, NULL, NULL, 0, NULL, &f), CF_EINVAL);
  expect_rc(cf_submit_ex(ex, echo_task, NULL, 3, NULL, &f), CF_EINVAL);
  expect_rc(cf_executor_shutdown(NULL, 0), CF_EINVAL);
  expect_rc(cf_executor_stats(NULL, NULL), CF_EINVAL);
  expect_rc(cf_executor_destroy(NULL), 0);

  expect_rc(cf_future_result(NULL, buf, sizeof buf, &len, 0), CF_EINVAL);
  expect_rc(cf_future_result(NULL, NULL, 0, NULL, -1), CF_EINVAL);
  expect_rc(cf_future_wait(NULL, -1), CF_EINVAL);
  expect_rc(cf_future_wait(NULL, 0), CF_EINVAL);
  expect_rc(cf_future_cancel(NULL), CF_EINVAL);
  expect_rc(cf_future_state(NULL), CF_EINVAL);
  expect_true(!cf_future_done(NULL));
  expect_true(!cf_future_running(NULL));
  expect_true(!cf_future_cancelled(NULL));
  int code;
  expect_rc(cf_future_error(NULL, &code, buf, sizeof buf), CF_EINVAL);
  cf_crash_info ci;
  expect_rc(cf_future_crash_info(NULL, &ci), CF_EINVAL);
  expect_rc(cf_future_add_done_callback(NULL, noop_cb, NULL), CF_EINVAL);
  expect_rc(cf_future_retain(NULL), CF_EINVAL);
  expect_rc(cf_future_release(NULL), CF_EINVAL);

  expect_rc(cf_wait(NULL, 1, CF_ALL_COMPLETED, -1, NULL), CF_EINVAL);
  cf_future *nulls[3] = {NULL, NULL, NULL};
  expect_rc(cf_wait(nulls, 3, CF_FIRST_COMPLETED, 0, NULL), CF_EINVAL);
  expect_rc(cf_wait(nulls, 3, CF_FIRST_EXCEPTION, -1, NULL), CF_EINVAL);
  expect_rc(cf_wait(nulls, 3, CF_ALL_COMPLETED, -1, NULL), CF_EINVAL);
  cf_as_completed *it = (cf_as_completed *)&it;
  expect_rc(cf_as_completed_new(nulls, 3, -1, &it), CF_EINVAL);
  expect_true(it == NULL);
  expect_rc(cf_as_completed_new(NULL, 3, -1, &it), CF_EINVAL);
  expect_rc(cf_as_completed_next(NULL, NULL, NULL), CF_EINVAL);
  cf_as_completed_free(NULL);

  cf_map *m = (cf_map *)&m;
  expect_rc(cf_map_new(NULL, echo_task, NULL, NULL, NULL, &m), CF_EINVAL);
  expect_true(m == NULL);
  expect_rc(cf_map_array(NULL, echo_task, buf, 1, 1, NULL, &m), CF_EINVAL);
  expect_rc(cf_map_array(ex, NULL, buf, 1, 1, NULL, &m), CF_EINVAL);
  expect_rc(cf_map_array(ex, echo_task, buf, 1, 1, NULL, NULL), CF_EINVAL);
  expect_rc(cf_map_next(NULL, buf, sizeof buf, &len), CF_EINVAL);
  expect_rc(cf_map_error(NULL, &code, buf, sizeof buf), CF_EINVAL);
  cf_map_free(NULL);

  /* the executor still works */
  int v = 5, out = 0;
  assert_rc(cf_submit(ex, echo_task, &v, sizeof v, &f), 0);
  expect_rc(cf_future_result(f, NULL, 4, NULL, -1), CF_EINVAL); /* out NULL, cap > 0 */
  expect_rc(cf_future_result(f, &out, sizeof out, NULL, -1), 0);
  expect_eq(out, 5);
  expect_rc(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
  expect_rc(cf_future_crash_info(f, NULL), CF_EINVAL);
  cf_future_release(f);

  int r[4] = {0};
  assert_rc(cf_submit(ex, misuse_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, r, sizeof r, NULL, -1), 0);
  expect_eq(r[0], CF_EINVAL);
  expect_eq(r[1], CF_EINVAL);
  expect_eq(r[2], CF_EINVAL);
  expect_eq(r[3], 0);
  cf_future_release(f);
  cf_executor_destroy(ex);
}

static void test_sizes(void) {
  cf_executor *ex = make_ex(1);
  cf_future *f = NULL;
  char b[8] = "1234567";
  /* len = SIZE_MAX: refused up front, never read */
  int rc = cf_submit(ex, echo_task, b, SIZE_MAX, &f);
  expect_true(rc == CF_E2BIG || rc == CF_ENOMEM);
  expect_true(f == NULL);
  rc = cf_submit(ex, echo_task, b, (size_t)UINT32_MAX + 1, &f);
  expect_true(rc == CF_E2BIG || rc == CF_ENOMEM);
  /* zero size with a NULL or non-NULL pointer */
  assert_rc(cf_submit(ex, echo_task, NULL, 0, &f), 0);
  size_t len = 9;
  expect_rc(cf_future_result(f, NULL, 0, &len, -1), 0);
  expect_eq(len, 0);
  /* huge cap: only the result's bytes are written */
  char big[64];
  memset(big, 'z', sizeof big);
  expect_rc(cf_future_result(f, big, SIZE_MAX, &len, -1), 0);
  expect_eq(big[0], 'z');
  cf_future_release(f);
  assert_rc(cf_submit(ex, echo_task, b, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), 0);
  cf_future_release(f);
  assert_rc(cf_submit(ex, echo_task, b, 8, &f), 0);
  memset(big, 'z', sizeof big);
  expect_rc(cf_future_result(f, big, SIZE_MAX, &len, -1), 0);
  expect_eq(len, 8);
  expect_true(memcmp(big, b, 8) == 0 && big[8] == 'z');
  cf_future_release(f);

  /* map with extreme window and chunk over a small array */
  int arr[5] = {1, 2, 3, 4, 5};
  cf_map_opts o = {.window = SIZE_MAX, .chunk = SIZE_MAX, .timeout_ns = -1};
  cf_map *m = NULL;
  assert_rc(cf_map_array(ex, echo_task, arr, 5, sizeof arr[0], &o, &m), 0);
  for (int i = 0; i < 5; i++) {
    int v = 0;
    expect_rc(cf_map_next(m, &v, sizeof v, &len), 0);
    expect_eq(v, arr[i]);
  }
  expect_rc(cf_map_next(m, NULL, 0, NULL), CF_EDONE);
  cf_map_free(m);
  /* zero-size items */
  assert_rc(cf_map_array(ex, echo_task, arr, 3, 0, NULL, &m), 0);
  for (int i = 0; i < 3; i++) {
    len = 9;
    expect_rc(cf_map_next(m, NULL, 0, &len), 0);
    expect_eq(len, 0);
  }
  expect_rc(cf_map_next(m, NULL, 0, NULL), CF_EDONE);
  cf_map_free(m);
  expect_rc(cf_map_array(ex, echo_task, arr, SIZE_MAX / 2, 4, NULL, &m), CF_EINVAL);
  cf_executor_destroy(ex);
}

static void test_release_twice(void) {
  cf_executor *ex = make_ex(1);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, echo_task, NULL, 0, &f), 0);
  expect_rc(cf_future_wait(f, -1), 0);
  /* An iterator keeps the object alive, so the extra release is seen in
   * every build: the user's handle count is already 0. */
  cf_as_completed *it = NULL;
  assert_rc(cf_as_completed_new(&f, 1, -1, &it), 0);
  expect_rc(cf_future_release(f), 0);
  expect_rc(cf_future_release(f), CF_EINVAL);
  expect_rc(cf_future_retain(f), CF_EINVAL); /* no handle left to copy */
  cf_future *y = NULL;
  expect_rc(cf_as_completed_next(it, &y, NULL), 0);
  expect_true(y == f);
  expect_rc(cf_future_result(y, NULL, 0, NULL, 0), 0);
  cf_as_completed_free(it);
  cf_executor_destroy(ex);
}

static void test_shutdown_misuse(void) {
  cf_executor *ex = make_ex(1);
  cf_future *f = NULL;
  expect_rc(cf_executor_shutdown(ex, 0), 0);
  expect_rc(cf_executor_shutdown(ex, 0), 0);
  expect_rc(cf_submit(ex, echo_task, NULL, 0, &f), CF_ESHUTDOWN);
  expect_true(f == NULL);
  cf_submit_opts so = {.timeout_ns = 1000, .flags = CF_SUBMIT_NOWAIT};
  expect_rc(cf_submit_ex(ex, echo_task, NULL, 0, &so, &f), CF_ESHUTDOWN);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT | CF_SHUTDOWN_CANCEL_FUTURES), 0);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  cf_map *m = NULL;
  int x = 1;
  expect_rc(cf_map_array(ex, echo_task, &x, 1, sizeof x, NULL, &m), CF_ESHUTDOWN);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.submitted, 0);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_timeouts(void) {
  cf_executor *ex = make_ex(1);
  cf_future *f = NULL;
  int v = 3, out = 0;
  assert_rc(cf_submit(ex, echo_task, &v, sizeof v, &f), 0);
  expect_rc(cf_future_wait(f, INT64_MIN), 0); /* negative: forever */
  expect_rc(cf_future_result(f, &out, sizeof out, NULL, 0), 0);
  expect_rc(cf_future_result(f, &out, sizeof out, NULL, INT64_MAX), 0);
  expect_rc(cf_future_result(f, &out, sizeof out, NULL, -1), 0);
  expect_rc(cf_wait(&f, 1, CF_FIRST_COMPLETED, INT64_MAX, NULL), 0);
  expect_rc(cf_wait(&f, 1, CF_ALL_COMPLETED, INT64_MIN, NULL), 0);
  cf_as_completed *it = NULL;
  assert_rc(cf_as_completed_new(&f, 1, INT64_MAX, &it), 0);
  expect_rc(cf_as_completed_next(it, NULL, NULL), 0);
  expect_rc(cf_as_completed_next(it, NULL, NULL), CF_EDONE);
  cf_as_completed_free(it);
  /* a submit deadline of INT64_MAX or negative is no deadline */
  cf_submit_opts so = {.timeout_ns = INT64_MAX, .flags = 0};
  cf_future *g = NULL;
  assert_rc(cf_submit_ex(ex, echo_task, &v, sizeof v, &so, &g), 0);
  expect_rc(cf_future_result(g, &out, sizeof out, NULL, -1), 0);
  cf_future_release(g);
  so.timeout_ns = INT64_MIN;
  assert_rc(cf_submit_ex(ex, echo_task, &v, sizeof v, &so, &g), 0);
  expect_rc(cf_future_result(g, &out, sizeof out, NULL, -1), 0);
  cf_future_release(g);
  cf_future_release(f);
  cf_executor_destroy(ex);
}

static void test_strerror(void) {
  int codes[] = {CF_OK,         CF_EINVAL,   CF_ENOMEM, CF_ETIMEDOUT, CF_ECANCELLED, CF_ESHUTDOWN,
                 CF_EBROKEN,    CF_ECRASHED, CF_E2BIG,  CF_ETASK,     CF_EAGAIN,     CF_EBUSY,
                 CF_ERANGE,     CF_EDONE,    CF_EPROTO, CF_ESYS,      CF_EDEADLINE,  CF_ENOTSUP,
                 CF_ENOTLOADED, CF_EDEADLK,  CF_EFORKED};
  const char *unknown = cf_strerror(INT_MIN);
  expect_true(unknown != NULL);
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
    const char *s = cf_strerror(codes[i]);
    expect_true(s != NULL && s[0] != 0 && strcmp(s, unknown) != 0);
  }
  int garbage[] = {INT_MIN, INT_MAX, 1, 2, -21, -22, -100, -1000000};
  for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
    const char *s = cf_strerror(garbage[i]);
    expect_true(s != NULL);
    expect_true(strcmp(s, unknown) == 0);
  }
}

int main(int argc, char **argv) {
  cf_test_kind kind = cf_test_parse_kind(argc, argv);
  process_kind = kind == CF_TEST_PROCESS;
  CF_RUN(test_strerror);
  CF_RUN(test_null_everywhere);
  CF_RUN(test_sizes);
  CF_RUN(test_release_twice);
  CF_RUN(test_shutdown_misuse);
  CF_RUN(test_timeouts);
  return cf_test_done(kind == CF_TEST_MPI ? "test_badinput_mpi"
                      : process_kind      ? "test_badinput_process"
                                          : "test_badinput_thread");
}
