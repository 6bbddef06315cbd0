/* cf-test: labels=unit;shm;fault timeout=240 variants=exec;fork */
/*
 * test_process_pool.c — what only the process pool does: size limits, bad
 * function pointers, crashing tasks, respawn and recycling, deadline kills,
 * cancelling a running task, forced shutdown, a rogue worker writing
 * corrupt lengths into its slot, the zygote or the parent killed with
 * SIGKILL (with CF_TEST_HOOKS only: they need the pids), full ring/slots
 * with CF_SUBMIT_NOWAIT, callbacks and orphaned futures — and no
 * segment left behind after any of them (no mapping of the memfd in this
 * process, nothing in /dev/shm).
 *
 * Every test runs in the start mode argv[1] names ("exec" or "fork").
 * Tasks coordinate with the test through a shared page made before any
 * pool exists (cf_test_shared: inherited by fork-mode workers, attached by
 * the initializer in exec-mode ones). No timing thresholds: waits poll a
 * condition and are bounded only by the ctest timeout.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "future.h"  /* cf_call: a rogue task reaches its slot through c->ctx */
#include "segment.h" /* cf__slot */
#ifdef CF_TEST_HOOKS
#include "test_hooks.h"
#endif
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif
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

static pid_t main_pid;
static unsigned start_mode; /* CF_START_EXEC or CF_START_FORK: argv[1] */
/* Keep LeakSanitizer out of any other process of the test (a fork-mode
 * worker's heap is a copy of the parent's). */
int __lsan_is_turned_off(void) {
  return getpid() != main_pid;
}

typedef struct shared_flags {
  _Atomic int release; /* blocking tasks return once it is set */
  _Atomic int started; /* blocking tasks started */
} shared_flags;
#define sh ((shared_flags *)cf_test_shm)

/* ---- tasks ---- */

static void t_echo(cf_call *c) {
  size_t n;
  const void *a = cf_call_arg(c, &n);
  cf_call_return(c, a, n);
}

static void t_big_result(cf_call *c) {
  size_t n;
  const size_t *want = cf_call_arg(c, &n);
  static char buf[1 << 16];
  memset(buf, 'x', sizeof buf);
  cf_call_return(c, buf, *want);
}

static void t_getpid(cf_call *c) {
  int pid = getpid();
  cf_call_return(c, &pid, sizeof pid);
}

static void t_name(cf_call *c) {
  char name[17] = {0};
  prctl(PR_GET_NAME, name, 0, 0, 0);
  cf_call_return(c, name, strlen(name) + 1);
}

static void t_block(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
  int r = 7;
  cf_call_return(c, &r, sizeof r);
}

static void t_until_stop(cf_call *c) {
  while (!cf_call_stop_requested(c)) cf_test_nap_ms(1);
  int r = 1;
  cf_call_return(c, &r, sizeof r);
}

static void t_fail(cf_call *c) {
  cf_call_fail(c, 42, "boom");
}

enum { CRASH_SEGV, CRASH_ABORT, CRASH_EXIT, CRASH_KILL, CRASH_KINDS };
static void t_crash(cf_call *c) {
  size_t n;
  const int *kind = cf_call_arg(c, &n);
  switch (*kind) {
    case CRASH_SEGV:
      *(volatile int *)(uintptr_t)8 = 1;
      break;
    case CRASH_ABORT:
      abort();
    case CRASH_EXIT:
      exit(7);
    default:
      raise(SIGKILL);
  }
}

/* A rogue task scribbles over its own slot after producing its outcome. */
static void t_rogue_len(cf_call *c) {
  int r = 1;
  cf_call_return(c, &r, sizeof r);
  atomic_store(&((cf__slot *)c->ctx)->res_len, 0xfffffff0u);
}
static void t_rogue_err(cf_call *c) {
  cf_call_fail(c, 5, "x");
  atomic_store(&((cf__slot *)c->ctx)->err, 12345);
}
static void t_rogue_msg(cf_call *c) {
  cf_call_fail(c, 5, "x");
  atomic_store(&((cf__slot *)c->ctx)->msg_len, 5000u);
}
static void t_rogue_big_ok(cf_call *c) {
  /* a length just inside the limit but past the inline area: the parent
   * reads the arena region, in bounds */
  int r = 1;
  cf_call_return(c, &r, sizeof r);
  atomic_store(&((cf__slot *)c->ctx)->res_len, 1000u);
}

/* ---- helpers ---- */

static cf_executor *mkpool(unsigned workers, void (*tweak)(cf_options *)) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.max_futures = 256;
  o.start_mode = start_mode;
  o.initializer = cf_test_shared_attach;
  if (tweak) tweak(&o);
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static int submit_int(cf_executor *ex, cf_fn fn, int v, cf_future **f) {
  return cf_submit(ex, fn, &v, sizeof v, f);
}

static int result_int(cf_future *f, int *out) {
  size_t len = 0;
  int r = cf_future_result(f, out, sizeof *out, &len, -1);
  if (r == 0 && len != sizeof *out) return -1000;
  return r;
}

/* Bounded (60 s by the clock: a guard): a pool that never starts the
 * task fails the test instead of hanging it until ctest's timeout. */
static void wait_started(int n) {
  assert_true(cf_test_within_s(&sh->started, n, 60));
}

static void reset_flags(void) {
  atomic_store(&sh->release, 0);
  atomic_store(&sh->started, 0);
}

/* Mappings of a pool segment in this process (0 once every pool is gone). */
static int segment_mappings(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strstr(line, "cfutures-pool") != NULL;
  fclose(f);
  return n;
}

static int dev_shm_entries(void) {
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  /* the library's own names only: other programs here (an MPI pool's test,
   * a benchmark) make and remove cf* entries of their own meanwhile */
  while ((e = readdir(d))) n += strstr(e->d_name, "cfutures") != NULL;
  closedir(d);
  return n;
}
static int shm_before;

/* Descriptors of a pool segment's memfd in this process. */
static int segment_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[300], to[256];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t k = readlink(path, to, sizeof to - 1);
    if (k <= 0) continue;
    to[k] = 0;
    n += strstr(to, "cfutures-pool") != NULL;
  }
  closedir(d);
  return n;
}

static void expect_no_leak(void) {
  expect_eq(segment_mappings(), 0);
  expect_eq(segment_fds(), 0);
  expect_eq(dev_shm_entries(), shm_before);
}

/* ---- tests ---- */

static void test_basic_and_sizes(void) {
  cf_executor *ex = mkpool(2, NULL);
  cf_future *fs[200];
  for (int i = 0; i < 200; i++) assert_rc(submit_int(ex, cf_test_square_task, i, &fs[i]), 0);
  for (int i = 0; i < 200; i++) {
    int r = 0;
    expect_rc(result_int(fs[i], &r), 0);
    expect_eq(r, i * i);
    cf_future_release(fs[i]);
  }
  /* payloads past the inline area, up to the limits */
  static unsigned char big[64 * 1024];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 7);
  size_t sizes[] = {0, 1, 96, 97, 4000, sizeof big};
  static unsigned char back[64 * 1024];
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    cf_future *f;
    assert_rc(cf_submit(ex, t_echo, sizes[k] ? big : NULL, sizes[k], &f), 0);
    size_t len = 0;
    expect_rc(cf_future_result(f, back, sizeof back, &len, -1), 0);
    expect_eq(len, sizes[k]);
    expect_true(memcmp(back, big, sizes[k]) == 0);
    if (sizes[k] > 1) {
      expect_rc(cf_future_result(f, back, 1, &len, -1), CF_ERANGE);
      expect_eq(len, sizes[k]);
    }
    cf_future_release(f);
  }
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.submitted, 206);
  while (st.completed < 206) { /* counted by the worker just after it completes */
    cf_test_nap_ms(1);
    cf_executor_stats(ex, &st);
  }
  expect_eq(st.completed, 206);
  expect_eq(st.workers, 2);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void small_limits(cf_options *o) {
  o->max_arg_size = 1000;
  o->max_result_size = 1000;
}

static void test_e2big(void) {
  cf_executor *ex = mkpool(1, small_limits);
  static char arg[1001];
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, t_echo, arg, sizeof arg, &f), CF_E2BIG);
  expect_true(f == NULL);
  size_t want = 1001;
  assert_rc(cf_submit(ex, t_big_result, &want, sizeof want, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_E2BIG);
  expect_eq(cf_future_state(f), CF_STATE_FAILED);
  cf_future_release(f);
  want = 1000;
  assert_rc(cf_submit(ex, t_big_result, &want, sizeof want, &f), 0);
  size_t len = 0;
  static char out[1000];
  expect_rc(cf_future_result(f, out, sizeof out, &len, -1), 0);
  expect_eq(len, 1000);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static int not_code = 42;

static void test_bad_function_pointer(void) {
  cf_executor *ex = mkpool(1, NULL);
  cf_future *f;
  int pid1 = 0, pid2 = 0;
  assert_rc(cf_submit(ex, t_getpid, NULL, 0, &f), 0);
  expect_rc(result_int(f, &pid1), 0);
  cf_future_release(f);
  /* not code at all: refused at submit, nothing runs */
  f = NULL;
  expect_rc(cf_submit(ex, (cf_fn)(void *)&not_code, NULL, 0, &f), CF_ENOTLOADED);
  expect_true(f == NULL);
  /* a worker still checks what it reads from the slot (a rogue may rewrite
   * it): a task that points the slot's fn elsewhere before it completes
   * does not matter, but a scribbled queued slot is refused by its worker */
  assert_rc(cf_submit(ex, t_getpid, NULL, 0, &f), 0);
  expect_rc(result_int(f, &pid2), 0);
  cf_future_release(f);
  expect_eq(pid1, pid2); /* the same worker lived on */
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.respawned, 0);
  expect_eq(st.crashed, 0);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void test_task_failure(void) {
  cf_executor *ex = mkpool(1, NULL);
  cf_future *f;
  assert_rc(cf_submit(ex, t_fail, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ETASK);
  int code = 0;
  char msg[CF_MESSAGE_MAX];
  expect_rc(cf_future_error(f, &code, msg, sizeof msg), 0);
  expect_eq(code, 42);
  expect_true(strcmp(msg, "boom") == 0);
  cf_crash_info ci;
  expect_rc(cf_future_crash_info(f, &ci), CF_EINVAL);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_crashes_fail_only_their_task(void) {
  cf_executor *ex = mkpool(2, NULL);
  enum { N = 60 };
  cf_future *fs[N];
  for (int i = 0; i < N; i++) {
    int kind = (i / 5) % CRASH_KINDS;
    if (i % 5 == 4)
      assert_rc(submit_int(ex, t_crash, kind, &fs[i]), 0);
    else
      assert_rc(submit_int(ex, cf_test_square_task, i, &fs[i]), 0);
  }
  int crashes = 0;
  for (int i = 0; i < N; i++) {
    int r = 0;
    if (i % 5 != 4) {
      expect_rc(result_int(fs[i], &r), 0);
      expect_eq(r, i * i);
    } else {
      crashes++;
      int kind = (i / 5) % CRASH_KINDS;
      expect_rc(result_int(fs[i], &r), CF_ECRASHED);
      cf_crash_info ci = {0, 0, 0};
      expect_rc(cf_future_crash_info(fs[i], &ci), 0);
      expect_true(ci.pid > 0);
      switch (kind) {
        case CRASH_SEGV: /* a sanitizer's SEGV handler reports and exits */
          expect_true(ci.signal == SIGSEGV ||
                      ((ASAN || TSAN) && (ci.signal || ci.exit_status > 0)));
          break;
        case CRASH_ABORT:
          expect_eq(ci.signal, SIGABRT);
          break;
        case CRASH_EXIT:
          expect_eq(ci.signal, 0);
          expect_eq(ci.exit_status, 7);
          break;
        default:
          expect_eq(ci.signal, SIGKILL);
          expect_eq(ci.exit_status, -1);
      }
      int code = 0;
      expect_rc(cf_future_error(fs[i], &code, NULL, 0), 0);
      expect_eq(code, CF_ECRASHED);
    }
    cf_future_release(fs[i]);
  }
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.crashed, crashes);
  while (st.respawned < (uint64_t)crashes) { /* replacements come asynchronously */
    cf_test_nap_ms(1);
    cf_executor_stats(ex, &st);
  }
  /* the pool still works at full strength */
  cf_future *f;
  int r = 0;
  assert_rc(submit_int(ex, cf_test_square_task, 9, &f), 0);
  expect_rc(result_int(f, &r), 0);
  expect_eq(r, 81);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void recycle3(cf_options *o) {
  o->max_tasks_per_worker = 3;
}

static void test_recycling(void) {
  cf_executor *ex = mkpool(1, recycle3);
  int pids[12];
  for (int i = 0; i < 12; i++) {
    cf_future *f;
    assert_rc(cf_submit(ex, t_getpid, NULL, 0, &f), 0);
    expect_rc(result_int(f, &pids[i]), 0);
    cf_future_release(f);
  }
  for (int i = 0; i < 12; i++) {
    expect_eq(pids[i], pids[i - i % 3]); /* three tasks per worker */
    if (i >= 3) expect_true(pids[i] != pids[i - 3]);
  }
  cf_stats st;
  cf_executor_stats(ex, &st);
  while (st.respawned < 3) {
    cf_test_nap_ms(1);
    cf_executor_stats(ex, &st);
  }
  expect_eq(st.crashed, 0);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void test_deadlines(void) {
  reset_flags();
  cf_executor *ex = mkpool(1, NULL);
  /* running past its deadline: killed, CF_EDEADLINE (with the worker up
   * first: an exec-mode start under a sanitizer may take longer than the
   * deadline, which would fail the task unrun) */
  cf_future *f;
  assert_rc(submit_int(ex, cf_test_square_task, 1, &f), 0);
  expect_rc(cf_future_wait(f, -1), 0);
  cf_future_release(f);
  /* (a worker that went to sleep after the warm-up may take longer than
   * the deadline to wake on a loaded machine, which fails the task unrun:
   * then again with 4 x the deadline) */
  cf_submit_opts so = {.timeout_ns = 0, .flags = 0};
  for (int64_t ms = 50;; ms *= 4) {
    atomic_store(&sh->started, 0);
    so.timeout_ns = ms * 1000000LL;
    assert_rc(cf_submit_ex(ex, t_block, NULL, 0, &so, &f), 0);
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
    if (atomic_load(&sh->started) > 0 || ms >= 3200) break;
    cf_future_release(f);
  }
  expect_true(cf_future_done(f));
  cf_crash_info ci;
  expect_rc(cf_future_crash_info(f, &ci), 0);
  expect_eq(ci.signal, SIGKILL);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_EDEADLINE);
  cf_future_release(f);
  /* pending past its deadline (the only worker is busy): fails unrun */
  reset_flags();
  cf_future *blocker;
  assert_rc(cf_submit(ex, t_block, NULL, 0, &blocker), 0);
  wait_started(1);
  so.timeout_ns = 1000000;
  assert_rc(cf_submit_ex(ex, cf_test_square_task, &code, sizeof code, &so, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  expect_rc(cf_future_crash_info(f, &ci), CF_EINVAL); /* nobody was killed */
  atomic_store(&sh->release, 1);
  int r = 0;
  expect_rc(result_int(blocker, &r), 0);
  expect_eq(r, 7);
  cf_future_release(f);
  cf_future_release(blocker);
  /* a task that watches cf_call_stop_requested() sees its deadline; the
   * future fails CF_EDEADLINE whether the task returns or is killed first */
  so.timeout_ns = 30 * 1000000LL;
  assert_rc(cf_submit_ex(ex, t_until_stop, NULL, 0, &so, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  cf_future_release(f);
  /* a generous deadline does not fire */
  so.timeout_ns = 60LL * 1000000000;
  assert_rc(cf_submit_ex(ex, cf_test_square_task, &r, sizeof r, &so, &f), 0);
  expect_rc(result_int(f, &r), 0);
  expect_eq(r, 49);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void test_cancel_running(void) {
  reset_flags();
  cf_executor *ex = mkpool(1, NULL);
  cf_future *f, *g;
  assert_rc(cf_submit(ex, t_block, NULL, 0, &f), 0);
  wait_started(1);
  while (!cf_future_running(f)) cf_test_nap_ms(1);
  assert_rc(submit_int(ex, cf_test_square_task, 3, &g), 0);
  expect_rc(cf_future_cancel(f), 0);
  expect_true(cf_future_cancelled(f));
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_rc(cf_future_cancel(f), 0);
  cf_crash_info ci;
  expect_rc(cf_future_crash_info(f, &ci), 0);
  expect_eq(ci.signal, SIGKILL);
  int r = 0;
  expect_rc(result_int(g, &r), 0); /* the replacement worker runs it */
  expect_eq(r, 9);
  expect_rc(cf_future_cancel(g), CF_EDONE);
  cf_future_release(f);
  cf_future_release(g);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void test_forced_shutdown(void) {
  reset_flags();
  cf_executor *ex = mkpool(2, NULL);
  cf_future *run[2], *pend[6];
  for (int i = 0; i < 2; i++) assert_rc(cf_submit(ex, t_block, NULL, 0, &run[i]), 0);
  wait_started(2);
  for (int i = 0; i < 6; i++) assert_rc(submit_int(ex, cf_test_square_task, i, &pend[i]), 0);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_KILL), 0);
  for (int i = 0; i < 2; i++) {
    expect_true(cf_future_done(run[i]));
    expect_rc(cf_future_result(run[i], NULL, 0, NULL, 0), CF_ECANCELLED);
  }
  for (int i = 0; i < 6; i++) {
    expect_true(cf_future_cancelled(pend[i]));
    expect_rc(cf_future_result(pend[i], NULL, 0, NULL, 0), CF_ECANCELLED);
  }
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, cf_test_square_task, &f, sizeof f, &f), CF_ESHUTDOWN);
  for (int i = 0; i < 2; i++) cf_future_release(run[i]);
  for (int i = 0; i < 6; i++) cf_future_release(pend[i]);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void test_rogue_worker(void) {
  cf_executor *ex = mkpool(1, small_limits);
  cf_future *f;
  int r;
  assert_rc(cf_submit(ex, t_rogue_len, NULL, 0, &f), 0);
  expect_rc(result_int(f, &r), CF_EPROTO);
  cf_future_release(f);
  assert_rc(cf_submit(ex, t_rogue_err, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EPROTO);
  cf_future_release(f);
  assert_rc(cf_submit(ex, t_rogue_msg, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EPROTO);
  char msg[CF_MESSAGE_MAX];
  int code = 0;
  expect_rc(cf_future_error(f, &code, msg, sizeof msg), 0);
  expect_eq(code, CF_EPROTO);
  cf_future_release(f);
  static char out[1000];
  size_t len = 0;
  assert_rc(cf_submit(ex, t_rogue_big_ok, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, out, sizeof out, &len, -1), 0);
  expect_eq(len, 1000);
  cf_future_release(f);
  /* the pool is fine afterwards */
  assert_rc(submit_int(ex, cf_test_square_task, 5, &f), 0);
  expect_rc(result_int(f, &r), 0);
  expect_eq(r, 25);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void tiny_ring(cf_options *o) {
  o->ring_capacity = 4;
  o->max_futures = 64;
}

static void test_ring_full_nowait(void) {
  reset_flags();
  cf_executor *ex = mkpool(1, tiny_ring);
  cf_future *b, *fs[16];
  assert_rc(cf_submit(ex, t_block, NULL, 0, &b), 0);
  wait_started(1);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  int n = 0, rc = 0;
  while (n < 16 && (rc = cf_submit_ex(ex, cf_test_square_task, &n, sizeof n, &so, &fs[n])) == 0)
    n++;
  expect_rc(rc, CF_EAGAIN);
  expect_true(n >= 1 && n <= 4);
  atomic_store(&sh->release, 1);
  int r;
  expect_rc(result_int(b, &r), 0);
  for (int i = 0; i < n; i++) {
    expect_rc(result_int(fs[i], &r), 0);
    expect_eq(r, i * i);
    cf_future_release(fs[i]);
  }
  cf_future_release(b);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void three_slots(cf_options *o) {
  o->max_futures = 3;
}

/* A slot is held while its task is not done; a done task's outcome moves
 * into its future, so a future held but unread does not pin a slot (the
 * next submit reclaims it), and its outcome survives the slot's reuse.
 * The first version of this test held three quick tasks' futures and
 * expected the fourth submit to find no slot: it raced with those tasks
 * finishing (and failed in CI once the ordered reclaim worked). */
static void test_slots_full_nowait(void) {
  reset_flags();
  cf_executor *ex = mkpool(1, three_slots);
  cf_future *fs[3], *more[3], *f = NULL;
  assert_rc(cf_submit(ex, t_block, NULL, 0, &fs[0]), 0);
  wait_started(1);
  for (int i = 1; i < 3; i++) assert_rc(submit_int(ex, cf_test_square_task, i, &fs[i]), 0);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  int v = 3;
  cf_test_nap_ms(20); /* time for anything that would free a slot early */
  int rc = cf_submit_ex(ex, cf_test_square_task, &v, sizeof v, &so, &f);
  expect_rc(rc, CF_EAGAIN);
  if (rc == 0) cf_future_release(f);
  atomic_store(&sh->release, 1);
  for (int i = 0; i < 3; i++)
    while (!cf_future_done(fs[i])) cf_test_nap_ms(1);
  /* all three done, held, unread: each submit reclaims one */
  for (int i = 0; i < 3; i++) {
    v = 10 + i;
    expect_rc(cf_submit_ex(ex, cf_test_square_task, &v, sizeof v, &so, &more[i]), 0);
  }
  int r;
  expect_rc(result_int(fs[0], &r), 0);
  expect_eq(r, 7);
  for (int i = 1; i < 3; i++) {
    expect_rc(result_int(fs[i], &r), 0);
    expect_eq(r, i * i);
  }
  for (int i = 0; i < 3; i++) {
    expect_rc(result_int(more[i], &r), 0);
    expect_eq(r, (10 + i) * (10 + i));
  }
  for (int i = 0; i < 3; i++) {
    cf_future_release(fs[i]);
    cf_future_release(more[i]);
  }
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static _Atomic int cb_count;
static void count_cb(cf_future *f, void *arg) {
  atomic_fetch_add(&cb_count, 1);
}

static void test_callbacks_and_orphans(void) {
  reset_flags();
  atomic_store(&cb_count, 0);
  cf_executor *ex = mkpool(2, NULL);
  enum { N = 100 };
  cf_future *fs[N];
  for (int i = 0; i < N; i++) {
    assert_rc(submit_int(ex, cf_test_square_task, i, &fs[i]), 0);
    expect_rc(cf_future_add_done_callback(fs[i], count_cb, NULL), 0);
  }
  expect_rc(cf_wait(fs, N, CF_ALL_COMPLETED, -1, NULL), 0);
  while (atomic_load(&cb_count) < N) cf_test_nap_ms(1);
  expect_eq(atomic_load(&cb_count), N);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  /* a cancelled pending future runs its callbacks at once */
  cf_future *b, *p;
  assert_rc(cf_submit(ex, t_block, NULL, 0, &b), 0);
  assert_rc(cf_submit(ex, t_block, NULL, 0, &fs[0]), 0);
  wait_started(2);
  assert_rc(submit_int(ex, cf_test_square_task, 1, &p), 0);
  atomic_store(&cb_count, 0);
  expect_rc(cf_future_add_done_callback(p, count_cb, NULL), 0);
  expect_rc(cf_future_cancel(p), 0);
  expect_eq(atomic_load(&cb_count), 1);
  atomic_store(&sh->release, 1);
  cf_future_release(p);
  cf_future_release(b);
  cf_future_release(fs[0]);
  /* futures released before they complete: nothing leaks */
  for (int i = 0; i < 500; i++) {
    cf_future *f;
    assert_rc(submit_int(ex, cf_test_square_task, i, &f), 0);
    cf_future_release(f);
  }
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void test_future_outlives_pool(void) {
  cf_executor *ex = mkpool(1, NULL);
  cf_future *f;
  assert_rc(submit_int(ex, cf_test_square_task, 6, &f), 0);
  expect_rc(cf_executor_destroy(ex), 0); /* waits for f's task */
  expect_true(segment_mappings() > 0);   /* f still reads its slot */
  int r = 0;
  expect_rc(result_int(f, &r), 0);
  expect_eq(r, 36);
  cf_future_release(f);
  expect_no_leak();
}

static int init_fails(void *arg) {
  return 1;
}
static void failing_init(cf_options *o) {
  o->initializer = init_fails;
}

static void test_initializer_failure_breaks(void) {
  cf_executor *ex = mkpool(1, failing_init);
  int rc = 0;
  for (int i = 0; i < 100000 && rc == 0; i++) {
    cf_future *f;
    rc = submit_int(ex, cf_test_square_task, i, &f);
    if (rc == 0) {
      int r;
      expect_rc(result_int(f, &r), CF_EBROKEN);
      cf_future_release(f);
    }
  }
  expect_rc(rc, CF_EBROKEN);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_no_leak();
}

static void named(cf_options *o) {
  o->name = "tpool";
}

static void test_worker_name(void) {
  cf_executor *ex = mkpool(1, named);
  cf_future *f;
  char name[32] = {0};
  assert_rc(cf_submit(ex, t_name, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, name, sizeof name, NULL, -1), 0);
  expect_true(strcmp(name, "tpool-0") == 0);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- options: pin_cpus, max_queued; the supervisor refuses to join itself ---- */

static void t_ncpus(cf_call *c) {
  cpu_set_t set;
  int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
  cf_call_return(c, &n, sizeof n);
}

static void pinned(cf_options *o) {
  o->pin_cpus = true;
}

static void test_pin_cpus(void) {
  cf_executor *ex = mkpool(1, pinned);
  cf_future *f;
  int n = 0;
  assert_rc(cf_submit(ex, t_ncpus, NULL, 0, &f), 0);
  expect_rc(result_int(f, &n), 0);
  expect_eq(n, 1);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void two_queued(cf_options *o) {
  o->max_queued = 2;
}

static void test_max_queued(void) {
  reset_flags();
  cf_executor *ex = mkpool(1, two_queued);
  cf_future *b, *fs[8];
  assert_rc(cf_submit(ex, t_block, NULL, 0, &b), 0);
  wait_started(1);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  int n = 0, rc = 0;
  while (n < 8 && (rc = cf_submit_ex(ex, cf_test_square_task, &n, sizeof n, &so, &fs[n])) == 0) n++;
  expect_rc(rc, CF_EAGAIN);
  expect_eq(n, 2);
  atomic_store(&sh->release, 1);
  int r;
  for (int i = 0; i < n; i++) {
    expect_rc(result_int(fs[i], &r), 0);
    cf_future_release(fs[i]);
  }
  expect_rc(result_int(b, &r), 0);
  cf_future_release(b);
  expect_rc(cf_executor_destroy(ex), 0);
}

static cf_executor *cb_ex;
static _Atomic int cb_destroy_rc = 1;
static void destroy_from_cb(cf_future *f, void *arg) {
  atomic_store(&cb_destroy_rc, cf_executor_destroy(cb_ex));
}

static void test_destroy_from_callback_refused(void) {
  reset_flags();
  cb_ex = mkpool(1, NULL);
  cf_future *f;
  assert_rc(cf_submit(cb_ex, t_block, NULL, 0, &f), 0);
  expect_rc(cf_future_add_done_callback(f, destroy_from_cb, NULL), 0);
  atomic_store(&sh->release, 1);
  expect_rc(cf_future_wait(f, -1), 0);
  while (atomic_load(&cb_destroy_rc) == 1) cf_test_nap_ms(1); /* runs on the supervisor */
  expect_rc(atomic_load(&cb_destroy_rc), CF_EINVAL);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(cb_ex), 0);
  expect_no_leak();
}

/* ---- two pools: neither's processes map the other's segment ---- */

static int segment_mappings(void);
static void t_count_segments(cf_call *c) {
  int n = segment_mappings();
  cf_call_return(c, &n, sizeof n);
}

static void test_two_pools(void) {
  cf_executor *a = mkpool(1, NULL), *b = mkpool(1, NULL);
  cf_executor *both[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    cf_future *f;
    int n = -1;
    assert_rc(cf_submit(both[k], t_count_segments, NULL, 0, &f), 0);
    expect_rc(result_int(f, &n), 0);
    expect_eq(n, 1); /* its own segment only */
    cf_future_release(f);
  }
  expect_eq(segment_mappings(), 2);
  expect_rc(cf_executor_destroy(a), 0);
  expect_rc(cf_executor_destroy(b), 0);
  expect_no_leak();
}

/* The two kill tests need the pids of the pool's processes: the test hooks
 * (test_hooks.h), in builds with CF_TEST_HOOKS only. */
#ifdef CF_TEST_HOOKS

/* ---- the zygote killed: its running tasks fail, the pool goes on ---- */

static void test_zygote_killed(void) {
  reset_flags();
  cf_executor *ex = mkpool(2, NULL);
  cf_future *run[2], *pend[3];
  for (int i = 0; i < 2; i++) assert_rc(cf_submit(ex, t_block, NULL, 0, &run[i]), 0);
  wait_started(2);
  for (int i = 0; i < 3; i++) assert_rc(submit_int(ex, cf_test_square_task, i, &pend[i]), 0);
  pid_t z = cf__test_zygote_pid(ex);
  assert_true(z > 0);
  kill(z, SIGKILL); /* the workers die with it (PDEATHSIG) */
  for (int i = 0; i < 2; i++) expect_rc(cf_future_result(run[i], NULL, 0, NULL, -1), CF_ECRASHED);
  if (start_mode == CF_START_FORK) { /* no copy of the host at creation is left: broken */
    for (int i = 0; i < 3; i++) expect_rc(cf_future_result(pend[i], NULL, 0, NULL, -1), CF_EBROKEN);
    for (int i = 0; i < 2; i++) cf_future_release(run[i]);
    for (int i = 0; i < 3; i++) cf_future_release(pend[i]);
    expect_rc(cf_executor_destroy(ex), 0);
    atomic_store(&sh->release, 1);
    expect_no_leak();
    return;
  }
  for (int i = 0; i < 3; i++) { /* a new zygote's workers run them */
    int r = -1;
    expect_rc(result_int(pend[i], &r), 0);
    expect_eq(r, i * i);
  }
  cf_future *f = NULL;
  int v = 7, r = 0;
  assert_rc(cf_submit(ex, cf_test_square_task, &v, sizeof v, &f), 0);
  expect_rc(result_int(f, &r), 0);
  expect_eq(r, 49);
  expect_true(cf__test_zygote_pid(ex) != z);
  cf_future_release(f);
  for (int i = 0; i < 2; i++) cf_future_release(run[i]);
  for (int i = 0; i < 3; i++) cf_future_release(pend[i]);
  expect_rc(cf_executor_destroy(ex), 0);
  atomic_store(&sh->release, 1);
  expect_no_leak();
}

/* ---- the parent killed with SIGKILL ---- */

static int child_pool(void) {
  cf_executor *ex = NULL;
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.start_mode = start_mode;
  if (cf_process_pool_new(&o, &ex) != 0) return 1;
  for (;;) {
    bool up = cf__test_workers_alive(ex) == 2;
    int z = cf__test_zygote_pid(ex), w0 = cf__test_worker_pid(ex, 0),
        w1 = cf__test_worker_pid(ex, 1);
    if (up) {
      printf("%d %d %d\n", z, w0, w1);
      fflush(stdout);
      break;
    }
    cf_test_nap_ms(1);
  }
  for (;;) pause();
}

static void test_parent_killed(void) {
  /* Orphans re-parent to us, so we can reap them and know they are gone. */
  assert_true(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
  int pfd[2];
  assert_true(pipe(pfd) == 0);
  pid_t c = fork();
  if (c == 0) {
    dup2(pfd[1], 1);
    close(pfd[0]);
    execl("/proc/self/exe", "test_process_pool", start_mode == CF_START_FORK ? "fork" : "exec",
          "--child-pool", (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  FILE *in = fdopen(pfd[0], "r");
  int pids[3] = {0, 0, 0};
  expect_eq(fscanf(in, "%d %d %d", &pids[0], &pids[1], &pids[2]), 3);
  fclose(in);
  kill(c, SIGKILL);
  waitpid(c, NULL, 0);
  /* the zygote dies with the pool's thread, the workers with the zygote;
   * orphans come to us (subreaper) once their parent is gone */
  int left = 3;
  bool gone[3] = {false, false, false};
  while (left > 0) {
    pid_t r = waitpid(-1, NULL, WNOHANG);
    for (int i = 0; i < 3; i++) {
      bool g = r > 0 ? r == pids[i] : (kill(pids[i], 0) != 0 && errno == ESRCH);
      if (g && !gone[i]) {
        gone[i] = true;
        left--;
      }
    }
    if (r <= 0) cf_test_nap_ms(1);
  }
  expect_eq(left, 0);
  for (int i = 0; i < 3; i++) expect_true(pids[i] > 0 && kill(pids[i], 0) != 0 && errno == ESRCH);
  prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  expect_no_leak();
}

#endif /* CF_TEST_HOOKS */

int main(int argc, char **argv) {
  start_mode = argc > 1 && strcmp(argv[1], "fork") == 0 ? CF_START_FORK : CF_START_EXEC;
#ifdef CF_TEST_HOOKS
  if (argc > 2 && strcmp(argv[2], "--child-pool") == 0) return child_pool();
#endif
  main_pid = getpid();
  cf_test_shared(4096);
  shm_before = dev_shm_entries();
  CF_RUN(test_basic_and_sizes);
  CF_RUN(test_e2big);
  CF_RUN(test_bad_function_pointer);
  CF_RUN(test_task_failure);
  CF_RUN(test_crashes_fail_only_their_task);
  CF_RUN(test_recycling);
  CF_RUN(test_deadlines);
  CF_RUN(test_cancel_running);
  CF_RUN(test_forced_shutdown);
  CF_RUN(test_rogue_worker);
  CF_RUN(test_ring_full_nowait);
  CF_RUN(test_slots_full_nowait);
  CF_RUN(test_callbacks_and_orphans);
  CF_RUN(test_future_outlives_pool);
  CF_RUN(test_initializer_failure_breaks);
  CF_RUN(test_worker_name);
  CF_RUN(test_pin_cpus);
  CF_RUN(test_max_queued);
  CF_RUN(test_destroy_from_callback_refused);
  CF_RUN(test_two_pools);
#ifdef CF_TEST_HOOKS
  CF_RUN(test_zygote_killed);
  CF_RUN(test_parent_killed);
#endif
  return cf_test_done(start_mode == CF_START_FORK ? "test_process_pool fork"
                                                  : "test_process_pool exec");
}
