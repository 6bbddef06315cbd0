/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_shm_memory.c — the shared segment's memory (issue 9, item 15).
 *
 * 1. Large results give their shared pages back: tasks returning 64 MiB
 *    each, every future held until all are read; afterwards the process's
 *    RssShmem is back near nothing. (Before: 512 MiB until destroy.)
 * 2. Large arguments too (8 MiB each).
 * 3. The reservation: the default options map tens of MiB, not 2 GB, and a
 *    256 MiB result limit costs 256 MiB per worker, not 4 TB; a default pool
 *    starts under an RLIMIT_AS only 512 MiB above what the process maps.
 *    (The RLIMIT_AS part is skipped under sanitizers, which reserve
 *    terabytes of shadow.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define MiB ((size_t)1 << 20)

/* A field of /proc/self/status, in kB (-1 if absent). */
static long status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
  if (f) fclose(f);
  return v;
}

/* The size of this process's mapping of the (one) pool segment. */
static size_t segment_bytes(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  size_t n = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (strstr(line, "cfutures-pool") && sscanf(line, "%lx-%lx", &lo, &hi) == 2) n += hi - lo;
  }
  if (f) fclose(f);
  return n;
}

static void t_big_result(cf_call *c) {
  const size_t *n = cf_call_arg(c, NULL);
  unsigned char *b = malloc(*n);
  if (!b) {
    cf_call_fail(c, 1, "oom");
    return;
  }
  memset(b, 0x5a, *n);
  b[0] = 1;
  cf_call_return(c, b, *n);
  free(b);
}

static void t_arg_len(cf_call *c) {
  size_t n = 0;
  const unsigned char *a = cf_call_arg(c, &n);
  uint64_t r = n && a[0] == 7 && a[n - 1] == 7 ? n : 0;
  cf_call_return(c, &r, sizeof r);
}

static cf_executor *pool(size_t max_arg, size_t max_result) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.max_arg_size = max_arg;
  o.max_result_size = max_result;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static void test_results_give_back(void) {
  size_t size = 64 * MiB;
  int n = (int)cf_test_scale(8);
  cf_executor *ex = pool(0, size);
  cf_future *fs[8];
  for (int i = 0; i < n; i++) assert_rc(cf_submit(ex, t_big_result, &size, sizeof size, &fs[i]), 0);
  unsigned char *out = malloc(size);
  assert_true(out != NULL);
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    expect_rc(cf_future_result(fs[i], out, size, &len, -1), 0);
    expect_true(len == size && out[0] == 1 && out[size - 1] == 0x5a);
  }
  long shm = status_kb("RssShmem");
  for (int i = 0; i < n; i++) cf_future_release(fs[i]);
  free(out);
  fprintf(stderr, "  %d x 64 MiB results read: RssShmem %ld kB\n", n, shm);
  expect_true(shm >= 0 && shm < 32 * 1024);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_args_give_back(void) {
  size_t size = 8 * MiB;
  cf_executor *ex = pool(size, 0);
  unsigned char *arg = malloc(size);
  assert_true(arg != NULL);
  memset(arg, 7, size);
  cf_future *fs[6];
  for (int i = 0; i < 6; i++) assert_rc(cf_submit(ex, t_arg_len, arg, size, &fs[i]), 0);
  for (int i = 0; i < 6; i++) {
    uint64_t r = 0;
    expect_rc(cf_future_result(fs[i], &r, sizeof r, NULL, -1), 0);
    expect_eq(r, size);
    cf_future_release(fs[i]);
  }
  long shm = status_kb("RssShmem");
  fprintf(stderr, "  6 x 8 MiB arguments run: RssShmem %ld kB\n", shm);
  expect_true(shm >= 0 && shm < 16 * 1024);
  free(arg);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_reservation(void) {
  cf_executor *ex = pool(0, 0);
  size_t def = segment_bytes();
  expect_rc(cf_executor_destroy(ex), 0);
  ex = pool(0, 256 * MiB);
  size_t big = segment_bytes();
  expect_rc(cf_executor_destroy(ex), 0);
  fprintf(stderr, "  reservation: defaults %zu MiB, 256 MiB results x 2 workers %zu MiB\n",
          def / MiB, big / MiB);
  expect_true(def > 0 && def < 64 * MiB);
  expect_true(big >= 512 * MiB && big < 600 * MiB);
  if (SANITIZED) return;
  fflush(NULL);
  pid_t c = fork();
  if (c == 0) {
    long vm = status_kb("VmSize");
    struct rlimit rl = {(rlim_t)(vm * 1024 + 512 * MiB), (rlim_t)(vm * 1024 + 512 * MiB)};
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
    cf_executor *e = NULL;
    if (cf_process_pool_new(NULL, &e) != 0) _exit(1);
    _exit(cf_executor_destroy(e) == 0 ? 0 : 2);
  }
  int st = 0;
  waitpid(c, &st, 0);
  expect_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
  CF_RUN(test_results_give_back);
  CF_RUN(test_args_give_back);
  CF_RUN(test_reservation);
  return cf_test_done("test_shm_memory");
}
