/* cf-test: labels=unit;shm;fault timeout=300 */
/*
 * test_forker.c — the process that forks the workers (the zygote) dies or
 * stops (issue 9, item 4).
 *
 * 1. Killed while tasks run: only the running tasks fail (CF_ECRASHED, with
 *    the worker's pid); queued and later tasks run on a new zygote's
 *    workers.
 * 2. Killed early, 100 pools in a row: cf_executor_destroy and
 *    shutdown(CF_SHUTDOWN_KILL) never hang, and a task submitted after the
 *    death runs.
 * 3. No spinning afterwards: an idle pool whose zygote was replaced costs
 *    (next to) no CPU.
 * 4. Stopped (SIGSTOP): briefly, and nothing is lost or replaced; for
 *    good, and the pool replaces it, so that the task of a worker killed
 *    meanwhile (which the stopped zygote would never report) still fails.
 * 5. Exec mode: a replacement zygote starts from what the host was when the
 *    pool was made (its environment, working directory, umask), as the
 *    first one did, not from the host as it is when the zygote dies.
 *    (Before: the replacement read the host's environ, cwd and umask anew.)
 * 6. Fork mode: no copy of the host at creation is left to replace the
 *    zygote with; a new fork would copy the host as it is now (locks its
 *    threads hold, memory written since, code unloaded since). The pool
 *    breaks instead: running tasks CF_ECRASHED, the rest CF_EBROKEN.
 *    (Before: it forked the live multi-threaded host: a task then timed
 *    out on a mutex another thread of the host held.)
 * Needs the test hooks (the pids).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "test_hooks.h"
#include "testutil.h"

typedef struct shared {
  _Atomic int release;
  _Atomic int started;
  char env[64]; /* what t_report saw */
  char cwd[256];
  int umask_seen;
} shared;
#define sh ((shared *)cf_test_shm)

static void t_block(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
  int r = 7;
  cf_call_return(c, &r, sizeof r);
}

static int square_on(cf_executor *ex, int v) {
  cf_future *f;
  int r = -1;
  if (cf_submit(ex, cf_test_square_task, &v, sizeof v, &f) != 0) return -2;
  int rc = cf_future_result(f, &r, sizeof r, NULL, -1);
  cf_future_release(f);
  return rc ? rc : r;
}

static void reset(void) {
  atomic_store(&sh->release, 0);
  atomic_store(&sh->started, 0);
}

/* Two tasks running (t_block) and npend squares queued behind them on a
 * 2-worker pool, then SIGKILL to its zygote; returns the zygote's pid. */
static pid_t kill_zygote_under_tasks(cf_executor *ex, cf_future *run[2], cf_future **pend,
                                     int npend) {
  for (int i = 0; i < 2; i++) assert_rc(cf_submit(ex, t_block, NULL, 0, &run[i]), 0);
  while (atomic_load(&sh->started) < 2) cf_test_nap_ms(1);
  for (int i = 0; i < npend; i++)
    assert_rc(cf_submit(ex, cf_test_square_task, &i, sizeof i, &pend[i]), 0);
  pid_t z = cf__test_zygote_pid(ex);
  assert_true(z > 0);
  kill(z, SIGKILL);
  return z;
}

static void test_killed_under_tasks(void) {
  reset();
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(60, "the zygote killed under running tasks");
  cf_future *run[2], *pend[4];
  pid_t z = kill_zygote_under_tasks(ex, run, pend, 4);
  for (int i = 0; i < 2; i++) {
    expect_rc(cf_future_result(run[i], NULL, 0, NULL, -1), CF_ECRASHED);
    cf_crash_info ci = {0, 0, 0};
    expect_rc(cf_future_crash_info(run[i], &ci), 0);
    expect_true(ci.pid > 0);
    cf_future_release(run[i]);
  }
  for (int i = 0; i < 4; i++) {
    int r = -1;
    expect_rc(cf_future_result(pend[i], &r, sizeof r, NULL, -1), 0);
    expect_eq(r, i * i);
    cf_future_release(pend[i]);
  }
  expect_eq(square_on(ex, 9), 81);
  pid_t z2 = cf__test_zygote_pid(ex);
  expect_true(z2 > 0 && z2 != z);
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

/* Writes what the worker's process sees into sh. */
static void t_report(cf_call *c) {
  const char *v = getenv("CF_TEST_FORKER_ENV");
  snprintf(sh->env, sizeof sh->env, "%s", v ? v : "(unset)");
  if (!getcwd(sh->cwd, sizeof sh->cwd)) snprintf(sh->cwd, sizeof sh->cwd, "(error)");
  mode_t m = umask(0);
  umask(m);
  sh->umask_seen = (int)m;
  int r = 1;
  cf_call_return(c, &r, sizeof r);
}

static int run_report(cf_executor *ex) {
  cf_future *f;
  if (cf_submit(ex, t_report, NULL, 0, &f) != 0) return -1;
  int r = 0, rc = cf_future_result(f, &r, sizeof r, NULL, -1);
  cf_future_release(f);
  return rc ? rc : r;
}

static void test_replacement_starts_as_the_first(void) {
  cf_test_watchdog(60, "an exec-mode zygote replaced after the host changed");
  char here[256];
  assert_true(getcwd(here, sizeof here) != NULL);
  setenv("CF_TEST_FORKER_ENV", "at-creation", 1);
  mode_t old = umask(022);
  cf_executor *ex = cf_test_process_pool(1); /* the default: exec mode */
  expect_eq(run_report(ex), 1);
  expect_true(strcmp(sh->env, "at-creation") == 0);
  expect_true(strcmp(sh->cwd, here) == 0);
  expect_eq(sh->umask_seen, 022);
  /* the host changes, then its zygote dies */
  setenv("CF_TEST_FORKER_ENV", "changed-later", 1);
  assert_true(chdir("/") == 0);
  umask(077);
  pid_t z = cf__test_zygote_pid(ex);
  assert_true(z > 0);
  kill(z, SIGKILL);
  for (int i = 0; i < 5000 && cf__test_zygote_pid(ex) == z; i++) cf_test_nap_ms(1);
  expect_eq(run_report(ex), 1);
  expect_true(cf__test_zygote_pid(ex) != z);
  expect_true(strcmp(sh->env, "at-creation") == 0);
  expect_true(strcmp(sh->cwd, here) == 0);
  expect_eq(sh->umask_seen, 022);
  expect_rc(cf_executor_destroy(ex), 0);
  assert_true(chdir(here) == 0);
  umask(old);
  unsetenv("CF_TEST_FORKER_ENV");
  cf_test_watchdog(0, NULL);
}

static void test_fork_mode_breaks(void) {
  reset();
  cf_test_watchdog(60, "a fork-mode zygote killed");
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.start_mode = CF_START_FORK;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  cf_future *run[2], *pend[3];
  (void)kill_zygote_under_tasks(ex, run, pend, 3);
  for (int i = 0; i < 2; i++) {
    expect_rc(cf_future_result(run[i], NULL, 0, NULL, -1), CF_ECRASHED);
    cf_future_release(run[i]);
  }
  for (int i = 0; i < 3; i++) {
    expect_rc(cf_future_result(pend[i], NULL, 0, NULL, -1), CF_EBROKEN);
    cf_future_release(pend[i]);
  }
  expect_eq(square_on(ex, 3), -2); /* submit refused: CF_EBROKEN */
  cf_future *f = NULL;
  int v = 3;
  expect_rc(cf_submit(ex, cf_test_square_task, &v, sizeof v, &f), CF_EBROKEN);
  expect_rc(cf_executor_destroy(ex), 0);
  atomic_store(&sh->release, 1);
  cf_test_watchdog(0, NULL);
}

static void test_killed_early(void) {
  cf_test_watchdog(240, "100 pools whose zygote is killed early");
  unsigned ran = 0;
  for (int k = 0; k < 100; k++) {
    cf_executor *ex = cf_test_process_pool(2);
    pid_t z = cf__test_zygote_pid(ex);
    assert_true(z > 0);
    kill(z, SIGKILL);
    if (k % 4 == 0) ran += square_on(ex, 4) == 16;
    if (k % 2) expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_KILL), 0);
    expect_rc(cf_executor_destroy(ex), 0);
  }
  expect_eq(ran, 25);
  cf_test_watchdog(0, NULL);
}

static int64_t cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static void test_no_spin(void) {
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(60, "an idle pool after its zygote died");
  pid_t z = cf__test_zygote_pid(ex);
  kill(z, SIGKILL);
  expect_eq(square_on(ex, 3), 9); /* replaced */
  cf_test_nap_ms(50);
  int64_t c0 = cpu_ns();
  cf_test_nap_ms(400);
  int64_t used = cpu_ns() - c0;
  /* a thread spinning on a dead socket would use the whole 400 ms */
  expect_true(used < 200000000LL);
  fprintf(stderr, "  idle after a replaced zygote: %lld us of CPU in 400 ms\n",
          (long long)(used / 1000));
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

static void test_stopped(void) {
  reset();
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(90, "a stopped zygote");
  /* briefly: tasks flow on, nothing is replaced */
  while (cf__test_workers_alive(ex) < 2) cf_test_nap_ms(1); /* stopped with no worker, it waits */
  pid_t z = cf__test_zygote_pid(ex);
  kill(z, SIGSTOP);
  for (int i = 0; i < 50; i++) expect_eq(square_on(ex, i), i * i);
  cf_test_nap_ms(50);
  kill(z, SIGCONT);
  expect_eq(cf__test_zygote_pid(ex), z);
  /* for good, with a worker killed under its task meanwhile */
  cf_future *f;
  assert_rc(cf_submit(ex, t_block, NULL, 0, &f), 0);
  while (atomic_load(&sh->started) < 1) cf_test_nap_ms(1);
  kill(z, SIGSTOP);
  /* whichever worker runs it: kill both (the zygote cannot report them) */
  for (unsigned i = 0; i < 2; i++) {
    pid_t pid = cf__test_worker_pid(ex, i);
    if (pid > 0) kill(pid, SIGKILL);
  }
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ECRASHED);
  cf_future_release(f);
  expect_eq(square_on(ex, 6), 36);
  expect_true(cf__test_zygote_pid(ex) != z); /* the stopped one was killed */
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

int main(void) {
  cf_test_shared(4096);
  CF_RUN(test_killed_under_tasks);
  CF_RUN(test_killed_early);
  CF_RUN(test_no_spin);
  CF_RUN(test_stopped);
  CF_RUN(test_replacement_starts_as_the_first);
  CF_RUN(test_fork_mode_breaks);
  return cf_test_done("test_forker");
}
