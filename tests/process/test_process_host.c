/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_process_host.c — a worker leaves the host's process state alone, in
 * both start modes (README, "What a worker inherits"):
 *   - a task that calls exit() runs no atexit handler of the host (the
 *     host's lock file stays) and writes none of the host's unflushed stdio
 *     buffers (nothing printed twice); its own output is flushed once;
 *   - workers keep the host's signal mask (a signal the host blocks stays
 *     blocked) and dispositions (SIGPIPE ignored: a write to a closed pipe
 *     gives EPIPE, as on a thread), and lead process groups of their own:
 *     a Ctrl-C (SIGINT to the host's process group) reaches the host, which
 *     blocks it and takes it with sigwait, and none of its running tasks.
 * The exit and Ctrl-C cases need a host of their own: the test runs itself
 * again as that host (argv[1] = --host-exit / --host-sigint, argv[2] the
 * start mode) and checks what it did.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

#define LONG_NS (20LL * 1000000000) /* "never" in the broken case */

static const unsigned modes[2] = {CF_START_EXEC, CF_START_FORK};
static const char *mode_name(unsigned m) {
  return m == CF_START_FORK ? "fork" : "exec";
}

static cf_executor *pool(unsigned mode, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.start_mode = mode;
  o.initializer = cf_test_shared_attach;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static int run_int(cf_executor *ex, cf_fn fn, int arg, int *out) {
  cf_future *f = NULL;
  int rc = cf_submit(ex, fn, &arg, sizeof arg, &f);
  if (rc) return rc;
  size_t n = 0;
  rc = cf_future_result(f, out, sizeof *out, &n, LONG_NS);
  if (rc == 0 && n != sizeof *out) rc = -1000;
  cf_future_release(f);
  return rc;
}

/* Run this test binary as a host: its exit status (-1: killed), its
 * stdout in out[0..cap) (NUL-terminated). */
static int run_host(const char *role, unsigned mode, char *out, size_t cap) {
  char path[] = "/tmp/cf-test-host-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  pid_t c = fork();
  assert_true(c >= 0);
  if (c == 0) {
    dup2(fd, 1);
    execl("/proc/self/exe", "test_process_host", role, mode_name(mode), (char *)NULL);
    _exit(127);
  }
  int st = 0;
  while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
  }
  ssize_t n = pread(fd, out, cap - 1, 0);
  out[n > 0 ? n : 0] = 0;
  close(fd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* ---- 6. exit() in a task ---- */

static char lock_path[64];

static void remove_lock(void) {
  printf("host-atexit\n");
  unlink(lock_path);
}

static void t_exit(cf_call *c) {
  printf("task-output\n"); /* buffered: stdout is a file */
  exit(3);
}

/* The host: a lock file its atexit handler removes, unflushed output, then
 * a task that exits. Prints what it saw, then leaves through main. */
static int host_exit(unsigned mode) {
  snprintf(lock_path, sizeof lock_path, "/tmp/cf-test-lock-%d", (int)getpid());
  int fd = open(lock_path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) return 10;
  close(fd);
  atexit(remove_lock);
  printf("host-unflushed\n"); /* stays in the buffer until the host exits */
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.start_mode = mode;
  cf_executor *ex = NULL;
  if (cf_process_pool_new(&o, &ex) != 0) return 11;
  cf_future *f = NULL;
  if (cf_submit(ex, t_exit, NULL, 0, &f) != 0) return 12;
  int rc = cf_future_result(f, NULL, 0, NULL, LONG_NS);
  cf_crash_info ci = {0, 0, 0};
  cf_future_crash_info(f, &ci);
  struct stat st;
  bool lock = stat(lock_path, &st) == 0;
  printf("rc=%d exit_status=%d lock=%d\n", rc, ci.exit_status, lock);
  cf_future_release(f);
  cf_executor_destroy(ex);
  return 0;
}

static void test_exit_in_task(void) {
  for (int m = 0; m < 2; m++) {
    char out[4096];
    expect_eq(run_host("--host-exit", modes[m], out, sizeof out), 0);
    char want[64];
    snprintf(want, sizeof want, "rc=%d exit_status=3 lock=1", CF_ECRASHED);
    expect_eq(count(out, want), 1);
    expect_eq(count(out, "host-unflushed"), 1); /* not replayed by the worker */
    expect_eq(count(out, "host-atexit"), 1);    /* the host's own exit only */
    expect_eq(count(out, "task-output"), 1);    /* the task's own, flushed once */
    if (cf_test_failures)
      fprintf(stderr, "%s mode, the host printed:\n%s", mode_name(modes[m]), out);
  }
}

/* ---- 7. signal mask, dispositions, process group ---- */

/* 1 if SIGUSR1 is blocked here. */
static void t_usr1_blocked(cf_call *c) {
  sigset_t cur;
  sigprocmask(SIG_SETMASK, NULL, &cur);
  int r = sigismember(&cur, SIGUSR1);
  cf_call_return(c, &r, sizeof r);
}

/* A write to a pipe whose reader is gone: -errno, or 0 if it succeeded. */
static void t_write_closed_pipe(cf_call *c) {
  int p[2];
  int r = -1000;
  if (pipe(p) == 0) {
    close(p[0]);
    r = write(p[1], "x", 1) < 0 ? -errno : 0;
    close(p[1]);
  }
  cf_call_return(c, &r, sizeof r);
}

/* Its process group leader is itself: 1; and not the host's group. */
static void t_pgrp(cf_call *c) {
  size_t n;
  const int *host_pgrp = cf_call_arg(c, &n);
  int r = getpgrp() == getpid() && getpgrp() != *host_pgrp;
  cf_call_return(c, &r, sizeof r);
}

static void test_mask_dispositions_group(void) {
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  struct sigaction ign = {.sa_handler = SIG_IGN}, oldpipe;
  sigemptyset(&ign.sa_mask);
  for (int m = 0; m < 2; m++) {
    pthread_sigmask(SIG_BLOCK, &usr1, &old);
    sigaction(SIGPIPE, &ign, &oldpipe);
    cf_executor *ex = pool(modes[m], 1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int r = -1;
    expect_rc(run_int(ex, t_usr1_blocked, 0, &r), 0);
    expect_eq(r, 1);
    r = -1;
    expect_rc(run_int(ex, t_write_closed_pipe, 0, &r), 0); /* not CF_ECRASHED */
    expect_eq(r, -EPIPE);
    r = -1;
    expect_rc(run_int(ex, t_pgrp, (int)getpgrp(), &r), 0);
    expect_eq(r, 1);
    expect_rc(cf_executor_destroy(ex), 0);
    sigaction(SIGPIPE, &oldpipe, NULL);
  }
}

/* ---- 7. Ctrl-C in a host that blocks SIGINT and takes it with sigwait ---- */

typedef struct flags {
  _Atomic int started, release;
} flags;
#define fl ((flags *)cf_test_shm)

static void t_wait_release(cf_call *c) {
  atomic_fetch_add(&fl->started, 1);
  while (!atomic_load(&fl->release)) cf_test_nap_ms(1);
  int r = 1;
  cf_call_return(c, &r, sizeof r);
}

/* The host: its own process group (a stand-in for the terminal's
 * foreground job), SIGINT blocked everywhere, 4 tasks running; SIGINT to
 * the group, as Ctrl-C would send it; the host drains with sigwait. */
static int host_sigint(unsigned mode) {
  if (setpgid(0, 0) != 0) return 10;
  cf_test_shared(sizeof(flags));
  sigset_t intr;
  sigemptyset(&intr);
  sigaddset(&intr, SIGINT);
  pthread_sigmask(SIG_BLOCK, &intr, NULL);
  cf_executor *ex = pool(mode, 4);
  cf_future *f[4];
  for (int i = 0; i < 4; i++)
    if (cf_submit(ex, t_wait_release, NULL, 0, &f[i]) != 0) return 11;
  while (atomic_load(&fl->started) < 4) cf_test_nap_ms(1);
  kill(0, SIGINT); /* Ctrl-C: the whole foreground group */
  int sig = 0;
  if (sigwait(&intr, &sig) != 0 || sig != SIGINT) return 12;
  atomic_store(&fl->release, 1); /* drain gracefully */
  int ok = 0;
  for (int i = 0; i < 4; i++) {
    int r = 0;
    ok += cf_future_result(f[i], &r, sizeof r, NULL, LONG_NS) == 0 && r == 1;
    cf_future_release(f[i]);
  }
  printf("finished=%d\n", ok);
  cf_executor_destroy(ex);
  return ok == 4 ? 0 : 1;
}

static void test_ctrl_c(void) {
  for (int m = 0; m < 2; m++) {
    char out[256];
    expect_eq(run_host("--host-sigint", modes[m], out, sizeof out), 0);
    expect_eq(count(out, "finished=4"), 1);
    if (cf_test_failures)
      fprintf(stderr, "%s mode, the host printed: %s\n", mode_name(modes[m]), out);
  }
}

int main(int argc, char **argv) {
  if (argc > 2) {
    unsigned mode = strcmp(argv[2], "fork") == 0 ? CF_START_FORK : CF_START_EXEC;
    if (strcmp(argv[1], "--host-exit") == 0) return host_exit(mode);
    if (strcmp(argv[1], "--host-sigint") == 0) return host_sigint(mode);
    return 2;
  }
  CF_RUN(test_exit_in_task);
  CF_RUN(test_mask_dispositions_group);
  CF_RUN(test_ctrl_c);
  return cf_test_done("test_process_host");
}
