#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int cf_test_failures;
static int tests_passed, tests_failed;

void cf_test_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: expectation failed: %s: ", file, line, expr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  cf_test_failures++;
}

uint64_t cf_test_scale(uint64_t n) {
  const char *s = getenv("CF_TEST_SCALE");
  uint64_t d = s ? strtoull(s, NULL, 10) : 1;
  if (d == 0) d = 1;
  n /= d;
  return n ? n : 1;
}

void cf_test_run(const char *name, void (*fn)(void)) {
  const char *only = getenv("CF_TEST_ONLY");
  if (only && strcmp(only, name) != 0) return;
  int before = cf_test_failures;
  fn();
  if (cf_test_failures == before) {
    tests_passed++;
  } else {
    tests_failed++;
    fprintf(stderr, "FAILED: %s\n", name);
  }
}

int cf_test_done(const char *name) {
  printf("%s: %d passed, %d failed\n", name, tests_passed, tests_failed);
  return cf_test_failures ? 1 : 0;
}

void *cf_test_shm;

void *cf_test_shared(size_t size) {
  assert_true(cf_test_shm == NULL);
  int fd = memfd_create("cf-test-shared", 0);
  assert_true(fd >= 0);
  assert_true(ftruncate(fd, (off_t)size) == 0);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(p != MAP_FAILED);
  char v[128];
  snprintf(v, sizeof v, "/proc/%d/fd/%d:%p:%zu", (int)getpid(), fd, p, size);
  assert_true(setenv("CF_TEST_SHARED", v, 1) == 0);
  cf_test_shm = p;
  return p;
}

int cf_test_shared_attach(void *unused) {
  (void)unused;
  if (cf_test_shm) return 0; /* this process made it, or inherited it */
  const char *v = getenv("CF_TEST_SHARED");
  if (!v) return 0; /* the test has none */
  char path[64];
  void *at;
  size_t size;
  if (sscanf(v, "%63[^:]:%p:%zu", path, &at, &size) != 3) return -1;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  close(fd);
  if (p != at) { /* the address is taken here: the pool breaks, visibly */
    fprintf(stderr, "cf_test_shared_attach: %p is taken in process %d (errno %d)\n", at,
            (int)getpid(), errno);
    return -1;
  }
  cf_test_shm = p;
  return 0;
}

cf_executor *cf_test_new_executor(bool process, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.initializer = cf_test_shared_attach;
  cf_executor *ex = NULL;
  int rc = process ? cf_process_pool_new(&o, &ex) : cf_thread_pool_new(&o, &ex);
  assert_rc(rc, 0);
  assert_true(ex != NULL);
  return ex;
}
