#include "testutil.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>
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

cf_executor *cf_test_new_executor(bool process, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  cf_executor *ex = NULL;
  int rc = process ? cf_process_pool_new(&o, &ex) : cf_thread_pool_new(&o, &ex);
  assert_rc(rc, 0);
  assert_true(ex != NULL);
  return ex;
}

static const char *watchdog_what = "";

static void watchdog_fired(int sig) {
  (void)sig;
  static const char head[] = "watchdog: still waiting: ";
  ssize_t r = write(2, head, sizeof head - 1);
  r = write(2, watchdog_what, strlen(watchdog_what));
  r = write(2, "\n", 1);
  (void)r;
  _exit(1);
}

void cf_test_watchdog(unsigned seconds, const char *what) {
  watchdog_what = what ? what : "";
  if (seconds == 0) {
    alarm(0);
    return;
  }
  const char *s = getenv("CF_TEST_SCALE");
  unsigned long k = s ? strtoul(s, NULL, 10) : 1;
  if (k > 1) seconds *= (unsigned)k;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = watchdog_fired;
  sigaction(SIGALRM, &sa, NULL);
  alarm(seconds);
}
