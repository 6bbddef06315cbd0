/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_process_start.c — how process workers start, and what they inherit
 * (README, "What a worker inherits"):
 *   - a host whose other threads hold libc locks at any moment (one calls
 *     localtime_r, one random(), in loops) still gets every pool of the
 *     default start mode working: a fork would copy a held lock into every
 *     worker for ever;
 *   - descriptors open at pool creation (an O_CLOEXEC pipe, a plain pipe, a
 *     listening socket) are not held by the default mode's workers: the
 *     parent sees end of file on its pipe;
 *   - exec mode starts from the program file: a global the host changed is
 *     at its initial value, a pointer initializer_arg is refused; the
 *     environment, working directory and resource limits are the host's;
 *     fork mode sees the host's memory as it was at creation.
 * No timing thresholds: a wait that would never end in the broken case is
 * bounded by a generous limit, so that the failure is named, not a hang.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

#define LONG_NS (20LL * 1000000000) /* "never" in the broken case */

static cf_executor *pool(unsigned mode, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.start_mode = mode;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static int run_int(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int *out) {
  cf_future *f = NULL;
  int rc = cf_submit(ex, fn, arg, len, &f);
  if (rc) return rc;
  size_t n = 0;
  rc = cf_future_result(f, out, sizeof *out, &n, LONG_NS);
  if (rc == 0 && n != sizeof *out) rc = -1000;
  cf_future_release(f);
  return rc;
}

/* ---- 1. a host with threads that hold libc locks ---- */

static _Atomic int stop_spinners;

static void *spin_localtime(void *arg) {
  time_t t = time(NULL);
  struct tm tm;
  while (!atomic_load_explicit(&stop_spinners, memory_order_relaxed)) localtime_r(&t, &tm);
  return arg;
}

static void *spin_random(void *arg) {
  while (!atomic_load_explicit(&stop_spinners, memory_order_relaxed)) (void)random();
  return arg;
}

/* Takes the two locks the spinners hold most of the time. */
static void t_clock(cf_call *c) {
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  (void)random();
  int r = 1;
  cf_call_return(c, &r, sizeof r);
}

static void test_threaded_host(void) {
  pthread_t th[2];
  atomic_store(&stop_spinners, 0);
  pthread_create(&th[0], NULL, spin_localtime, NULL);
  pthread_create(&th[1], NULL, spin_random, NULL);
  int rounds = (int)cf_test_scale(20), ok = 0;
  for (int i = 0; i < rounds; i++) {
    cf_executor *ex = pool(CF_START_DEFAULT, 1);
    int r = 0, rc = run_int(ex, t_clock, NULL, 0, &r);
    if (rc == 0 && r == 1) ok++;
    expect_rc(rc, 0);
    expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_KILL), 0); /* a hung worker too */
    expect_rc(cf_executor_destroy(ex), 0);
    if (rc != 0) break; /* one hang is the verdict: don't wait for more */
  }
  expect_eq(ok, rounds);
  atomic_store(&stop_spinners, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
}

/* ---- 1. descriptors open at creation ---- */

typedef struct ident {
  dev_t dev[4];
  ino_t ino[4];
  int n;
} ident;

static void ident_add(ident *id, int fd) {
  struct stat st;
  assert_true(fstat(fd, &st) == 0);
  id->dev[id->n] = st.st_dev;
  id->ino[id->n] = st.st_ino;
  id->n++;
}

/* How many of the files named in the argument this process has open. */
static void t_holds(cf_call *c) {
  size_t n;
  const ident *id = cf_call_arg(c, &n);
  int held = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    struct stat st;
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) != 0) continue;
    for (int k = 0; k < id->n; k++) held += st.st_dev == id->dev[k] && st.st_ino == id->ino[k];
  }
  if (d) closedir(d);
  cf_call_return(c, &held, sizeof held);
}

static void test_fds_not_inherited(void) {
  int cloexec[2], plain[2];
  assert_true(pipe2(cloexec, O_CLOEXEC) == 0);
  assert_true(pipe(plain) == 0);
  int lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(lsn >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_true(bind(lsn, (struct sockaddr *)&a, sizeof a) == 0 && listen(lsn, 4) == 0);
  ident id = {.n = 0};
  ident_add(&id, cloexec[1]);
  ident_add(&id, plain[1]);
  ident_add(&id, lsn);

  cf_executor *ex = pool(CF_START_DEFAULT, 2);
  int held = -1;
  expect_rc(run_int(ex, t_holds, &id, sizeof id, &held), 0);
  expect_eq(held, 0);
  /* The parent closes its write ends: end of file, though the pool lives. */
  close(cloexec[1]);
  close(plain[1]);
  for (int k = 0; k < 2; k++) {
    int rd = k == 0 ? cloexec[0] : plain[0];
    struct pollfd p = {.fd = rd, .events = POLLIN};
    expect_eq(poll(&p, 1, (int)(LONG_NS / 1000000)), 1);
    char b;
    expect_eq(read(rd, &b, 1), 0);
    close(rd);
  }
  close(lsn);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- exec mode starts from the program file; fork mode from the parent ---- */

static int g_state = 1; /* the host sets it to 2 before making pools */

static void t_state(cf_call *c) {
  cf_call_return(c, &g_state, sizeof g_state);
}

static int g_init_seen;
static int init_with_arg(void *arg) {
  g_init_seen = *(const int *)arg;
  return 0;
}
static void t_init_seen(cf_call *c) {
  cf_call_return(c, &g_init_seen, sizeof g_init_seen);
}

static void test_exec_starts_from_the_program(void) {
  g_state = 2;
  cf_executor *ex = pool(CF_START_EXEC, 1);
  int v = 0;
  expect_rc(run_int(ex, t_state, NULL, 0, &v), 0);
  expect_eq(v, 1); /* as before main(): nothing of the parent's memory */
  expect_rc(cf_executor_destroy(ex), 0);
  ex = pool(CF_START_FORK, 1);
  expect_rc(run_int(ex, t_state, NULL, 0, &v), 0);
  expect_eq(v, 2); /* a copy of the parent at creation */
  expect_rc(cf_executor_destroy(ex), 0);

  /* A pointer argument to the initializer: refused in exec mode. */
  static int forty_two = 42;
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.initializer = init_with_arg;
  o.initializer_arg = &forty_two;
  ex = NULL;
  expect_rc(cf_process_pool_new(&o, &ex), CF_EINVAL);
  expect_true(ex == NULL);
  o.start_mode = CF_START_EXEC;
  expect_rc(cf_process_pool_new(&o, &ex), CF_EINVAL);
  o.start_mode = CF_START_FORK;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  expect_rc(run_int(ex, t_init_seen, NULL, 0, &v), 0);
  expect_eq(v, 42);
  expect_rc(cf_executor_destroy(ex), 0);
  o.start_mode = 3; /* no such mode */
  expect_rc(cf_process_pool_new(&o, &ex), CF_EINVAL);
}

/* The environment variable CF_TEST_ENV, the working directory's inode and
 * the soft RLIMIT_NOFILE, as the worker sees them. */
typedef struct seen {
  char env[32];
  ino_t cwd;
  long nofile;
} seen;

static void t_seen(cf_call *c) {
  seen s;
  memset(&s, 0, sizeof s);
  const char *e = getenv("CF_TEST_ENV");
  snprintf(s.env, sizeof s.env, "%s", e ? e : "(none)");
  struct stat st;
  s.cwd = stat(".", &st) == 0 ? st.st_ino : 0;
  struct rlimit rl;
  s.nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : -1;
  cf_call_return(c, &s, sizeof s);
}

static void test_inherited_in_both_modes(void) {
  char cwd[4096];
  assert_true(getcwd(cwd, sizeof cwd) != NULL);
  assert_true(chdir("/") == 0);
  struct stat root;
  assert_true(stat("/", &root) == 0);
  setenv("CF_TEST_ENV", "from-the-host", 1);
  struct rlimit old, rl;
  assert_true(getrlimit(RLIMIT_NOFILE, &old) == 0);
  rl = old;
  rl.rlim_cur = old.rlim_cur > 200 ? 200 : old.rlim_cur;
  assert_true(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  unsigned modes[2] = {CF_START_EXEC, CF_START_FORK};
  for (int m = 0; m < 2; m++) {
    cf_executor *ex = pool(modes[m], 1);
    cf_future *f = NULL;
    seen s;
    memset(&s, 0, sizeof s);
    assert_rc(cf_submit(ex, t_seen, NULL, 0, &f), 0);
    expect_rc(cf_future_result(f, &s, sizeof s, NULL, LONG_NS), 0);
    cf_future_release(f);
    expect_true(strcmp(s.env, "from-the-host") == 0);
    expect_eq(s.cwd, root.st_ino);
    expect_eq(s.nofile, (long)rl.rlim_cur);
    expect_true(getenv("CFUTURES_ZYGOTE") == NULL);
    expect_rc(cf_executor_destroy(ex), 0);
  }
  assert_true(setrlimit(RLIMIT_NOFILE, &old) == 0);
  unsetenv("CF_TEST_ENV");
  assert_true(chdir(cwd) == 0);
}

/* The marker never reaches what a task runs. */
static void t_marker(cf_call *c) {
  int r = getenv("CFUTURES_ZYGOTE") != NULL;
  cf_call_return(c, &r, sizeof r);
}

static void test_no_marker_in_workers(void) {
  cf_executor *ex = pool(CF_START_EXEC, 1);
  int r = -1;
  expect_rc(run_int(ex, t_marker, NULL, 0, &r), 0);
  expect_eq(r, 0);
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(void) {
  CF_RUN(test_threaded_host);
  CF_RUN(test_fds_not_inherited);
  CF_RUN(test_exec_starts_from_the_program);
  CF_RUN(test_inherited_in_both_modes);
  CF_RUN(test_no_marker_in_workers);
  return cf_test_done("test_process_start");
}
