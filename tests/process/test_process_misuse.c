/* cf-test: labels=unit;shm;fault timeout=300 */
/*
 * test_process_misuse.c — what tasks and hosts do to a process pool that
 * it must survive, in both start modes:
 *   - a task closes every descriptor it did not open (close_range(3, ~0))
 *     and opens files in their place: completions that need the
 *     supervisor's attention (as_completed, callbacks of released futures)
 *     still arrive, released futures' slots still free,
 *     and the library never writes into those files (the worker that
 *     cannot signal is replaced);
 *   - a child the host forks after making a pool is refused every call on
 *     the pool and its futures (CF_EFORKED) while the parent goes on
 *     undisturbed; a process pool made inside a process task works;
 *   - processes a task starts (fork, a setsid daemon) die with the pool, with
 *     their worker (a cancelled task's), and with the parent's kill -9; a
 *     fork of a task that returns from it is not a worker: it neither
 *     completes the task nor takes another.
 * The kill -9 case runs this binary again as the host (argv[1] =
 * --host-sleepers, argv[2] the start mode).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

#define LONG_NS (20LL * 1000000000) /* "never" in the broken case */

#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif
#ifndef TSAN
#define TSAN 0
#endif

typedef struct shared {
  _Atomic int release;
  _Atomic int child_rc;    /* what cf_call_return gave a task's fork */
  _Atomic int sleepers[2]; /* pids a blocked task started */
} shared;
#define sh ((shared *)cf_test_shm)

static const unsigned modes[2] = {CF_START_EXEC, CF_START_FORK};
static unsigned cur_mode;
static const char *mode_name(unsigned m) {
  return m == CF_START_FORK ? "fork" : "exec";
}

static cf_executor *pool_opts(unsigned workers, size_t max_futures) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.start_mode = cur_mode;
  o.initializer = cf_test_shared_attach;
  if (max_futures) o.max_futures = max_futures;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}
static cf_executor *pool(unsigned workers) {
  return pool_opts(workers, 0);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void t_square(cf_call *c) {
  size_t n;
  const int *x = cf_call_arg(c, &n);
  int r = *x * *x;
  cf_call_return(c, &r, sizeof r);
}

static void t_getpid(cf_call *c) {
  int r = getpid();
  cf_call_return(c, &r, sizeof r);
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

/* ---- 8. a task closes the fds it did not open ---- */

/* close_range(3, ~0), then the file named by the argument opened 40 times
 * (fds 3..42 now name it) and left open. */
static void t_close_all(cf_call *c) {
  size_t n;
  const char *path = cf_call_arg(c, &n);
  syscall(SYS_close_range, 3u, ~0u, 0u);
  int opened = 0;
  for (int i = 0; i < 40; i++) opened += open(path, O_RDWR | O_CLOEXEC) >= 0;
  cf_call_return(c, &opened, sizeof opened);
}

static _Atomic int cb_runs;
static void count_run(cf_future *f, void *arg) {
  (void)f;
  (void)arg;
  atomic_fetch_add(&cb_runs, 1);
}

static void test_task_closes_fds(void) {
  char path[] = "/tmp/cf-test-fds-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  cf_executor *ex = pool_opts(1, 4);
  int opened = 0;
  expect_rc(run_int(ex, t_close_all, path, strlen(path) + 1, &opened), 0);
  expect_eq(opened, 40);
  /* A completion the supervisor must hear of (the supervisor sleeps: the
   * worker must kick it). */
  for (int round = 0; round < 3; round++) {
    cf_test_nap_ms(20);
    cf_future *f = NULL;
    int x = 5;
    assert_rc(cf_submit(ex, t_square, &x, sizeof x, &f), 0);
    cf_as_completed *it = NULL;
    assert_rc(cf_as_completed_new(&f, 1, LONG_NS, &it), 0);
    cf_future *got = NULL;
    size_t idx = 9;
    expect_rc(cf_as_completed_next(it, &got, &idx), 0);
    expect_true(got == f && idx == 0);
    cf_as_completed_free(it);
    cf_future_release(f);
  }
  /* Released futures free their slots (the submits reclaim them, no notice
   * needed): 16 tasks through 4. */
  expect_rc(run_int(ex, t_close_all, path, strlen(path) + 1, &opened), 0);
  int64_t end = now_ns() + LONG_NS;
  int done = 0;
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  while (done < 16 && now_ns() < end) {
    cf_future *f = NULL;
    int x = done;
    int rc = cf_submit_ex(ex, t_square, &x, sizeof x, &so, &f);
    if (rc == 0) {
      cf_future_release(f);
      done++;
    } else {
      expect_rc(rc, CF_EAGAIN);
      cf_test_nap_ms(1);
    }
  }
  expect_eq(done, 16);
  /* A released future with a callback needs a notice (the supervisor must
   * hear of it, and it sleeps: the worker must kick it). */
  expect_rc(run_int(ex, t_close_all, path, strlen(path) + 1, &opened), 0);
  atomic_store(&cb_runs, 0);
  for (int i = 0; i < 4; i++) {
    cf_test_nap_ms(20);
    cf_future *f = NULL;
    int x = i;
    assert_rc(cf_submit(ex, t_square, &x, sizeof x, &f), 0);
    expect_rc(cf_future_add_done_callback(f, count_run, NULL), 0);
    cf_future_release(f);
  }
  while (atomic_load(&cb_runs) < 4 && now_ns() < end) cf_test_nap_ms(1);
  expect_eq(atomic_load(&cb_runs), 4);
  expect_rc(cf_executor_destroy(ex), 0);
  struct stat st;
  expect_true(fstat(fd, &st) == 0 && st.st_size == 0); /* nothing written into it */
  close(fd);
  unlink(path);
}

/* ---- 9. a child the host forks after making a pool ---- */

static void t_wait_release(cf_call *c) {
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
  int r = 7;
  cf_call_return(c, &r, sizeof r);
}

static int src_one(void *arg, const void **item, size_t *len) {
  return 0;
}

/* In the fork: every call on the pool and its futures is refused, and the
 * parent's task is left alone. The number of calls that were not. */
static int child_calls(cf_executor *ex, cf_future *parents) {
  int bad = 0;
  cf_future *f = NULL;
  int x = 3;
  for (int round = 0; round < 20; round++) {
    bad += cf_submit(ex, t_square, &x, sizeof x, &f) != CF_EFORKED;
    cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
    bad += cf_submit_ex(ex, t_square, &x, sizeof x, &so, &f) != CF_EFORKED;
  }
  cf_stats st;
  bad += cf_executor_stats(ex, &st) != CF_EFORKED;
  bad += cf_executor_time_tasks(ex, true) != CF_EFORKED;
  bad += cf_future_result(parents, &x, sizeof x, NULL, 0) != CF_EFORKED;
  bad += cf_future_wait(parents, 0) != CF_EFORKED;
  bad += cf_future_state(parents) != CF_EFORKED;
  bad += cf_future_done(parents) || cf_future_running(parents) || cf_future_cancelled(parents);
  bad += cf_future_cancel(parents) != CF_EFORKED;
  bad += cf_future_error(parents, NULL, NULL, 0) != CF_EFORKED;
  cf_crash_info ci;
  bad += cf_future_crash_info(parents, &ci) != CF_EFORKED;
  bad += cf_future_retain(parents) != CF_EFORKED;
  bad += cf_wait(&parents, 1, CF_ALL_COMPLETED, 0, NULL) != CF_EFORKED;
  cf_as_completed *it = NULL;
  bad += cf_as_completed_new(&parents, 1, 0, &it) != CF_EFORKED;
  cf_map *m = NULL;
  bad += cf_map_new(ex, t_square, src_one, NULL, NULL, &m) != CF_EFORKED;
  bad += cf_future_release(parents) != CF_EFORKED;
  bad += cf_executor_shutdown(ex, CF_SHUTDOWN_KILL) != CF_EFORKED;
  bad += cf_executor_destroy(ex) != CF_EFORKED;
  return bad;
}

static void test_forked_host_child(void) {
  atomic_store(&sh->release, 0);
  cf_executor *ex = pool(2);
  cf_future *parents = NULL;
  assert_rc(cf_submit(ex, t_wait_release, NULL, 0, &parents), 0);
  fflush(NULL);
  pid_t c = fork();
  assert_true(c >= 0);
  if (c == 0) _exit(child_calls(ex, parents));
  /* meanwhile the parent's own results stay its own */
  for (int i = 0; i < 20; i++) {
    int r = 0;
    expect_rc(run_int(ex, t_square, &i, sizeof i, &r), 0);
    expect_eq(r, i * i);
  }
  int st = 0;
  while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
  }
  expect_true(WIFEXITED(st));
  expect_eq(WEXITSTATUS(st), 0); /* every call in the child refused */
  atomic_store(&sh->release, 1);
  int r = 0;
  expect_rc(cf_future_result(parents, &r, sizeof r, NULL, LONG_NS), 0);
  expect_eq(r, 7);
  cf_future_release(parents);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* A process pool made inside a process task: made, used, destroyed. */
static void t_nested_pool(cf_call *c) {
  size_t n;
  const unsigned *mode = cf_call_arg(c, &n);
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.start_mode = *mode;
  cf_executor *ex = NULL;
  int r = cf_process_pool_new(&o, &ex);
  if (r == 0) {
    int x = 7;
    cf_future *f = NULL;
    r = cf_submit(ex, t_square, &x, sizeof x, &f);
    if (r == 0) {
      int y = 0;
      r = cf_future_result(f, &y, sizeof y, NULL, LONG_NS);
      if (r == 0) r = y;
      cf_future_release(f);
    }
    int d = cf_executor_destroy(ex);
    if (d != 0) r = d;
  }
  cf_call_return(c, &r, sizeof r);
}

static cf_executor *outer_ex; /* read by a fork-mode task: a copy of the pool */

static void t_use_outer(cf_call *c) {
  int x = 2;
  cf_future *f = NULL;
  int r = cf_submit(outer_ex, t_square, &x, sizeof x, &f);
  cf_call_return(c, &r, sizeof r);
}

static void test_pool_in_task(void) {
  /* A fork-mode worker is a fork of this multi-threaded test, and TSan
   * refuses to start threads (the inner pool's supervisor) after such a
   * fork; an exec-mode worker descends from a fresh program. */
  if (TSAN && cur_mode == CF_START_FORK) return;
  cf_executor *ex = pool(1);
  for (int m = 0; m < 2; m++) {
    int r = 0;
    expect_rc(run_int(ex, t_nested_pool, &modes[m], sizeof modes[m], &r), 0);
    expect_eq(r, 49);
  }
  if (cur_mode == CF_START_FORK) {
    /* A fork-mode worker's copy of another pool of the host (outer_ex is
     * set before ex2's zygote copies the host): refused, not run. */
    outer_ex = ex;
    cf_executor *ex2 = pool(1);
    int r = 0;
    expect_rc(run_int(ex2, t_use_outer, NULL, 0, &r), 0);
    expect_eq(r, CF_EFORKED);
    expect_rc(cf_executor_destroy(ex2), 0);
    outer_ex = NULL;
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- 10. processes a task starts ---- */

/* Is `pid` gone (or a zombie nobody will reap: as good as dead)? */
static bool gone(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  return p && (p[2] == 'Z' || p[2] == 'X');
}

static bool all_gone(const int *pids, int n) {
  int64_t end = now_ns() + LONG_NS;
  for (;;) {
    bool all = true;
    for (int i = 0; i < n; i++) all &= gone(pids[i]);
    if (all || now_ns() > end) return all;
    cf_test_nap_ms(2);
  }
}

typedef struct sleepers {
  int child;  /* a plain fork, in the worker's process group */
  int daemon; /* double fork + setsid: another group and session */
} sleepers;

/* Start two processes that would sleep for ever: their pids. */
static sleepers make_sleepers(void) {
  sleepers s = {0, 0};
  int p[2];
  if (pipe(p) != 0) return s;
  pid_t a = fork();
  if (a == 0) {
    for (;;) pause();
  }
  s.child = a;
  pid_t b = fork();
  if (b == 0) {
    setsid();
    pid_t d = fork();
    if (d == 0) {
      for (;;) pause();
    }
    ssize_t w = write(p[1], &d, sizeof d);
    _exit(w == sizeof d ? 0 : 1);
  }
  pid_t d = 0;
  if (read(p[0], &d, sizeof d) != sizeof d) d = 0;
  waitpid(b, NULL, 0);
  close(p[0]);
  close(p[1]);
  s.daemon = d;
  return s;
}

static void t_start_sleepers(cf_call *c) {
  sleepers s = make_sleepers();
  cf_call_return(c, &s, sizeof s);
}

/* The same, the pids in shared memory; then block until the worker is
 * killed. */
static void t_sleepers_then_block(cf_call *c) {
  sleepers s = make_sleepers();
  atomic_store(&sh->sleepers[1], s.daemon);
  atomic_store(&sh->sleepers[0], s.child);
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
}

static sleepers start_sleepers(cf_executor *ex) {
  sleepers s = {0, 0};
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, t_start_sleepers, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, &s, sizeof s, NULL, LONG_NS), 0);
  cf_future_release(f);
  expect_true(s.child > 0 && s.daemon > 0);
  return s;
}

static void test_task_processes_die_with_the_pool(void) {
  cf_executor *ex = pool(2);
  sleepers s = start_sleepers(ex);
  int pids[2] = {s.child, s.daemon};
  expect_true(!gone(s.child) && !gone(s.daemon)); /* a task's return leaves them */
  expect_rc(cf_executor_destroy(ex), 0);
  expect_true(all_gone(pids, 2));
}

static void test_task_processes_die_with_their_worker(void) {
  atomic_store(&sh->release, 0);
  atomic_store(&sh->sleepers[0], 0);
  cf_executor *ex = pool(1);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, t_sleepers_then_block, NULL, 0, &f), 0);
  int64_t end = now_ns() + LONG_NS;
  while (atomic_load(&sh->sleepers[0]) == 0 && now_ns() < end) cf_test_nap_ms(1);
  int child = atomic_load(&sh->sleepers[0]), daemon = atomic_load(&sh->sleepers[1]);
  expect_true(child > 0 && daemon > 0);
  expect_rc(cf_future_cancel(f), 0); /* its worker is killed... */
  expect_rc(cf_future_result(f, NULL, 0, NULL, LONG_NS), CF_ECANCELLED);
  cf_future_release(f);
  expect_true(all_gone(&child, 1)); /* ...with the process in its group */
  int r = 0;
  expect_rc(run_int(ex, t_getpid, NULL, 0, &r), 0); /* the replacement works */
  expect_rc(cf_executor_destroy(ex), 0);
  expect_true(all_gone(&daemon, 1)); /* it left the group: the pool's end takes it */
  atomic_store(&sh->release, 1);
}

/* The host for the kill -9 case: prints the sleepers' pids and waits to be
 * killed. */
static int host_sleepers(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.start_mode = cur_mode;
  cf_executor *ex = NULL;
  if (cf_process_pool_new(&o, &ex) != 0) return 10;
  sleepers s = start_sleepers(ex);
  printf("%d %d\n", s.child, s.daemon);
  fflush(stdout);
  for (;;) pause();
}

static void test_task_processes_die_with_the_parent(void) {
  int p[2];
  assert_true(pipe(p) == 0);
  pid_t c = fork();
  assert_true(c >= 0);
  if (c == 0) {
    dup2(p[1], 1);
    close(p[0]);
    execl("/proc/self/exe", "test_process_misuse", "--host-sleepers", mode_name(cur_mode),
          (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  FILE *in = fdopen(p[0], "r");
  int pids[2] = {0, 0};
  expect_eq(fscanf(in, "%d %d", &pids[0], &pids[1]), 2);
  fclose(in);
  kill(c, SIGKILL);
  waitpid(c, NULL, 0);
  expect_true(pids[0] > 0 && pids[1] > 0 && all_gone(pids, 2));
}

/* A task forks; the fork returns from the task (after trying to set the
 * result); the worker waits for it and returns its own. */
static void t_fork_returns(cf_call *c) {
  pid_t k = fork();
  if (k == 0) {
    int v = -1;
    atomic_store(&sh->child_rc, cf_call_return(c, &v, sizeof v));
    return; /* into the worker loop: it must go no further */
  }
  int r = -2;
  int64_t end = now_ns() + LONG_NS;
  int st = 0;
  while (k > 0 && now_ns() < end) {
    pid_t w = waitpid(k, &st, WNOHANG);
    if (w == k) {
      r = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
      break;
    }
    cf_test_nap_ms(1);
  }
  cf_call_return(c, &r, sizeof r);
}

static void test_fork_in_task_is_no_worker(void) {
  atomic_store(&sh->child_rc, 1);
  cf_executor *ex = pool(1);
  int wpid = 0, r = -5;
  expect_rc(run_int(ex, t_getpid, NULL, 0, &wpid), 0);
  expect_rc(run_int(ex, t_fork_returns, NULL, 0, &r), 0);
  expect_eq(r, 0); /* the fork exited at once, with 0 */
  expect_eq(atomic_load(&sh->child_rc), CF_EFORKED);
  for (int i = 0; i < 20; i++) {
    int p = 0;
    expect_rc(run_int(ex, t_getpid, NULL, 0, &p), 0);
    expect_eq(p, wpid); /* only the worker takes tasks */
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  if (argc > 2 && strcmp(argv[1], "--host-sleepers") == 0) {
    cur_mode = strcmp(argv[2], "fork") == 0 ? CF_START_FORK : CF_START_EXEC;
    return host_sleepers();
  }
  cf_test_shared(sizeof(shared));
  for (int m = 0; m < 2; m++) {
    cur_mode = modes[m];
    fprintf(stderr, "-- %s mode\n", mode_name(cur_mode));
    CF_RUN(test_task_closes_fds);
    CF_RUN(test_forked_host_child);
    CF_RUN(test_pool_in_task);
    CF_RUN(test_task_processes_die_with_the_pool);
    CF_RUN(test_task_processes_die_with_their_worker);
    CF_RUN(test_task_processes_die_with_the_parent);
    CF_RUN(test_fork_in_task_is_no_worker);
  }
  return cf_test_done("test_process_misuse");
}
