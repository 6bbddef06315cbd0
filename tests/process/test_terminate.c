/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_terminate.c — a gentle stop, and a segment that cannot be mapped
 * executable (issue 9, item 17).
 *
 * 1. shutdown(CF_SHUTDOWN_TERMINATE): running tasks get SIGTERM (a task's
 *    handler runs: it cleans up), their futures fail CF_ECANCELLED, queued
 *    ones are cancelled, the call returns once the workers are gone.
 *    (Before: the flag did nothing and the tasks ran on.)
 * 2. A task that ignores SIGTERM is killed after CF_TERMINATE_GRACE_MS: the
 *    call still returns.
 * 3. The segment's memfd carries F_SEAL_EXEC wherever the kernel can seal
 *    it (MFD_NOEXEC_SEAL, Linux 6.3): checked against what this kernel
 *    accepts.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "cfutures.h"
#include "test_hooks.h"
#include "testutil.h"

/* TSan delivers a signal to a handler only at points of its own, which a
 * worker forked from a multi-threaded TSan process does not reach: there
 * the handler's run is not checked (the rest is). */
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

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

typedef struct shared {
  _Atomic int started;
  _Atomic int cleaned; /* SIGTERM handlers that ran */
} shared;
#define sh ((shared *)cf_test_shm)

static void on_term(int sig) {
  atomic_fetch_add(&sh->cleaned, 1);
  _exit(0);
}

static void t_cleans_up(cf_call *c) {
  signal(SIGTERM, on_term);
  atomic_fetch_add(&sh->started, 1);
  for (;;) cf_test_nap_ms(1);
}

static void t_ignores(cf_call *c) {
  signal(SIGTERM, SIG_IGN);
  atomic_fetch_add(&sh->started, 1);
  for (;;) cf_test_nap_ms(1);
}

static void t_square(cf_call *c) {
  int r = 4;
  cf_call_return(c, &r, sizeof r);
}

static void test_terminate(void) {
  atomic_store(&sh->started, 0);
  atomic_store(&sh->cleaned, 0);
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(60, "shutdown(CF_SHUTDOWN_TERMINATE)");
  cf_future *run[2], *pend[3];
  for (int i = 0; i < 2; i++) assert_rc(cf_submit(ex, t_cleans_up, NULL, 0, &run[i]), 0);
  while (atomic_load(&sh->started) < 2) cf_test_nap_ms(1);
  for (int i = 0; i < 3; i++) assert_rc(cf_submit(ex, t_square, NULL, 0, &pend[i]), 0);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_TERMINATE), 0);
  if (!TSAN) expect_eq(atomic_load(&sh->cleaned), 2); /* they cleaned up before it returned */
  for (int i = 0; i < 2; i++) {
    expect_true(cf_future_done(run[i]));
    expect_rc(cf_future_result(run[i], NULL, 0, NULL, 0), CF_ECANCELLED);
    cf_crash_info ci = {0, 0, 0};
    expect_rc(cf_future_crash_info(run[i], &ci), 0);
    expect_eq(ci.signal, SIGTERM);
    cf_future_release(run[i]);
  }
  for (int i = 0; i < 3; i++) {
    expect_rc(cf_future_result(pend[i], NULL, 0, NULL, 0), CF_ECANCELLED);
    cf_future_release(pend[i]);
  }
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, t_square, NULL, 0, &f), CF_ESHUTDOWN);
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

static void test_terminate_ignored(void) {
  atomic_store(&sh->started, 0);
  cf_executor *ex = cf_test_process_pool(1);
  cf_test_watchdog(60, "shutdown(CF_SHUTDOWN_TERMINATE) of a task that ignores SIGTERM");
  cf_future *f;
  assert_rc(cf_submit(ex, t_ignores, NULL, 0, &f), 0);
  while (atomic_load(&sh->started) < 1) cf_test_nap_ms(1);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_TERMINATE), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_ECANCELLED);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

static void test_noexec_seal(void) {
  int fd = memfd_create("probe", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
  bool kernel_has_it = fd >= 0;
  if (fd >= 0) close(fd);
  cf_executor *ex = cf_test_process_pool(1);
  int seals = cf__test_segment_seals(ex);
  expect_true(seals >= 0);
  expect_true((seals & F_SEAL_SHRINK) && (seals & F_SEAL_GROW) && (seals & F_SEAL_SEAL));
  if (kernel_has_it) expect_true(seals & F_SEAL_EXEC);
  fprintf(stderr, "  memfd seals 0x%x (kernel %s MFD_NOEXEC_SEAL)\n", seals,
          kernel_has_it ? "has" : "lacks");
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(void) {
  cf_test_shared(4096);
  CF_RUN(test_terminate);
  CF_RUN(test_terminate_ignored);
  CF_RUN(test_noexec_seal);
  return cf_test_done("test_terminate");
}
