/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_plugins.c — task functions in loaded modules (issue 9, item 12).
 *
 * 1. 140 copies of a module dlopen'ed before the pool is made: a task in
 *    the last one (far past the 128th executable range) runs like one in
 *    the first. (Before: the ranges past the 128th were left out and the
 *    task failed CF_EINVAL.)
 * 2. A copy dlopen'ed after the pool was made (its workers do not have it):
 *    submit refuses its function at once with CF_ENOTLOADED, not a bare
 *    CF_EINVAL at result time; so does a pointer into no module at all.
 * The module's path comes from the build (CF_TEST_PLUGIN); copies go to a
 * temporary directory that is removed afterwards.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

#define COPIES 140

static char dir[64];

static void copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY);
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0700);
  assert_true(in >= 0 && out >= 0);
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) assert_true(write(out, buf, (size_t)n) == n);
  close(in);
  close(out);
}

static cf_fn load_copy(int k, void **handle) {
  char path[128];
  snprintf(path, sizeof path, "%s/plugin_%03d.so", dir, k);
  copy_file(CF_TEST_PLUGIN, path);
  *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_true(*handle != NULL);
  cf_fn fn = (cf_fn)dlsym(*handle, "cf_test_plugin_task");
  assert_true(fn != NULL);
  return fn;
}

static int run(cf_executor *ex, cf_fn fn) {
  cf_future *f;
  int rc = cf_submit(ex, fn, NULL, 0, &f);
  if (rc) return rc;
  int r = 0;
  rc = cf_future_result(f, &r, sizeof r, NULL, -1);
  cf_future_release(f);
  return rc ? rc : r;
}

static int not_code = 1;

static void test_plugins(void) {
  snprintf(dir, sizeof dir, "/tmp/cf-plugins-XXXXXX");
  assert_true(mkdtemp(dir) != NULL);
  static void *h[COPIES + 1];
  static cf_fn fn[COPIES + 1];
  for (int k = 0; k < COPIES; k++) fn[k] = load_copy(k, &h[k]);

  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  expect_eq(run(ex, fn[0]), 4242);
  expect_eq(run(ex, fn[COPIES / 2]), 4242);
  expect_eq(run(ex, fn[COPIES - 1]), 4242);

  fn[COPIES] = load_copy(COPIES, &h[COPIES]); /* after the pool was made */
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, fn[COPIES], NULL, 0, &f), CF_ENOTLOADED);
  expect_true(f == NULL);
  expect_rc(cf_submit(ex, (cf_fn)(void *)&not_code, NULL, 0, &f), CF_ENOTLOADED);
  expect_true(strcmp(cf_strerror(CF_ENOTLOADED), cf_strerror(CF_EINVAL)) != 0);
  /* a pool made now knows it */
  cf_executor *ex2 = NULL;
  assert_rc(cf_process_pool_new(&o, &ex2), 0);
  expect_eq(run(ex2, fn[COPIES]), 4242);
  expect_rc(cf_executor_destroy(ex2), 0);
  expect_rc(cf_executor_destroy(ex), 0);

  for (int k = 0; k <= COPIES; k++) {
    char path[128];
    snprintf(path, sizeof path, "%s/plugin_%03d.so", dir, k);
    unlink(path);
  }
  rmdir(dir);
}

int main(void) {
  CF_RUN(test_plugins);
  return cf_test_done("test_plugins");
}
