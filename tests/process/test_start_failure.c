/* cf-test: labels=unit;shm;fault timeout=300 */
/*
 * test_start_failure.c — a worker that dies before its first task (issue 9,
 * item 3).
 *
 * 1. An initializer that aborts, segfaults, exits or returns non-zero
 *    breaks the pool (as Python's BrokenProcessPool): queued and later
 *    tasks fail CF_EBROKEN, nothing hangs, nothing is respawned.
 * 2. A segment header that does not match (a rogue task overwrites it, then
 *    crashes): the replacement worker refuses to start, the pool breaks.
 * 3. A worker killed (SIGKILL) before it starts is respawned, with backoff:
 *    an initializer killed its first three times leaves a working pool; one
 *    killed every time costs a few respawns a second, not thousands, and
 *    its tasks still end (their deadline).
 * Every wait that would hang on a broken pool runs under a watchdog.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

static pid_t main_pid;
/* LeakSanitizer must not run in a worker that exits from its initializer. */
int __lsan_is_turned_off(void) {
  return getpid() != main_pid;
}

typedef struct shared {
  _Atomic int inits; /* initializer runs */
  _Atomic int how;   /* how the initializer dies (set before each pool: an
                        exec-mode worker gets no pointer argument) */
} shared;
#define sh ((shared *)cf_test_shm)

enum { DIE_ABORT, DIE_SEGV, DIE_EXIT, DIE_FAIL, DIE_KILL3, DIE_KILL_ALWAYS };

static int init_die(void *arg) {
  (void)arg;
  int how = atomic_load(&sh->how);
  int k = atomic_fetch_add(&sh->inits, 1);
  switch (how) {
    case DIE_ABORT:
      abort();
    case DIE_SEGV:
      *(volatile int *)(uintptr_t)8 = 1;
      return 0;
    case DIE_EXIT:
      _exit(0);
    case DIE_FAIL:
      return 1;
    case DIE_KILL3:
      if (k < 3) raise(SIGKILL);
      return 0;
    default:
      raise(SIGKILL);
      return 0;
  }
}

static cf_executor *pool_with(int how, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.initializer = init_die;
  atomic_store(&sh->how, how);
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static void expect_broken(cf_executor *ex) {
  cf_test_watchdog(60, "a pool whose workers cannot start");
  cf_future *f = NULL;
  int v = 3, rc;
  /* queued before or after the breakage: either way CF_EBROKEN, at once */
  rc = cf_submit(ex, cf_test_square_task, &v, sizeof v, &f);
  if (rc == 0) {
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EBROKEN);
    cf_future_release(f);
    for (int i = 0; i < 1000 && rc == 0; i++) {
      rc = cf_submit(ex, cf_test_square_task, &v, sizeof v, &f);
      if (rc == 0) {
        expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EBROKEN);
        cf_future_release(f);
        cf_test_nap_ms(1);
      }
    }
  }
  expect_rc(rc, CF_EBROKEN);
  cf_test_watchdog(0, NULL);
}

static void test_initializer_dies(void) {
  int kinds[] = {DIE_ABORT, DIE_SEGV, DIE_EXIT, DIE_FAIL};
  const char *names[] = {"abort", "segfault", "_exit(0)", "returns 1"};
  for (int k = 0; k < 4; k++) {
    atomic_store(&sh->inits, 0);
    cf_executor *ex = pool_with(kinds[k], 2);
    expect_broken(ex);
    cf_stats st;
    cf_executor_stats(ex, &st);
    expect_eq(st.respawned, 0);
    expect_true(atomic_load(&sh->inits) <= 2); /* one per worker, no respawn loop */
    cf_test_watchdog(60, "destroy of a broken pool");
    expect_rc(cf_executor_destroy(ex), 0);
    cf_test_watchdog(0, NULL);
    fprintf(stderr, "  initializer %-9s: broken, %d initializer runs\n", names[k],
            atomic_load(&sh->inits));
  }
}

/* Find our pool's segment in /proc/self/maps and spoil its header's magic. */
static void t_spoil_header(cf_call *c) {
  FILE *m = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long lo = 0;
  while (m && fgets(line, sizeof line, m))
    if (strstr(line, "cfutures-pool") && sscanf(line, "%lx-", &lo) == 1) break;
  if (m) fclose(m);
  if (lo) ((volatile uint32_t *)(uintptr_t)lo)[0] = 0xbadu;
  raise(SIGKILL);
}

static void test_bad_header(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  cf_future *f;
  assert_rc(cf_submit(ex, t_spoil_header, NULL, 0, &f), 0);
  cf_test_watchdog(60, "a task that spoils the segment header");
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ECRASHED);
  cf_future_release(f);
  cf_test_watchdog(0, NULL);
  expect_broken(ex);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_killed_before_start(void) {
  atomic_store(&sh->inits, 0);
  cf_executor *ex = pool_with(DIE_KILL3, 1);
  cf_test_watchdog(60, "an initializer killed its first three times");
  cf_future *f;
  int v = 5, r = 0;
  assert_rc(cf_submit(ex, cf_test_square_task, &v, sizeof v, &f), 0);
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, 25);
  cf_future_release(f);
  cf_test_watchdog(0, NULL);
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.respawned, 3);
  expect_rc(cf_executor_destroy(ex), 0);

  /* killed every time: backoff, and the task ends at its deadline */
  atomic_store(&sh->inits, 0);
  ex = pool_with(DIE_KILL_ALWAYS, 1);
  cf_test_watchdog(60, "an initializer killed every time");
  cf_submit_opts so = {.timeout_ns = 1000000000LL, .flags = 0};
  assert_rc(cf_submit_ex(ex, cf_test_square_task, &v, sizeof v, &so, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  cf_future_release(f);
  int runs = atomic_load(&sh->inits);
  expect_true(runs >= 2);
  expect_true(runs < 100); /* without backoff: thousands in that second */
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
  fprintf(stderr, "  killed before start every time: %d starts in 1 s\n", runs);
}

int main(void) {
  main_pid = getpid();
  cf_test_shared(4096);
  CF_RUN(test_initializer_dies);
  CF_RUN(test_bad_header);
  CF_RUN(test_killed_before_start);
  return cf_test_done("test_start_failure");
}
