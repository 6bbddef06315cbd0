/* cf-test: labels=stress timeout=120 */
/*
 * test_backlog_wake.c — a searcher that lost its CPU must not strand the
 * tasks submitted meanwhile (pool.c: the backlog check).
 *
 * A submit wakes a parked worker only when no worker is searching (park.h):
 * a searcher will find the task. But a searcher that has lost its CPU (to
 * the submitter, or to anything else on a shared machine) still counts as
 * searching, so nobody is woken and every task waits until it runs again:
 * in the open-loop benchmark at 200 k/s that was up to 1.5 ms, with the
 * other worker parked on an idle CPU (a monitor saw 70-240 tasks in the
 * injector, its lock free, one worker counted searching, one parked).
 *
 * Here worker 0 is held in its search by the test hook (cf__test_search_hook:
 * counted as searching, not looking), worker 1 parks, and 64 tasks are
 * submitted from outside. They must all run (on worker 1) while worker 0 is
 * still held: before the backlog check they waited for worker 0 forever
 * (the 20 s wait below is a liveness bound, not a timing threshold).
 * Needs the test hooks.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "cfutures.h"
#include "scheduler.h"
#include "testutil.h"

static _Atomic int armed, held, let_go, ran;

static void hold_worker0(unsigned index) {
  if (index != 0 || !atomic_exchange(&armed, 0)) return;
  atomic_store(&held, 1);
  while (!atomic_load(&let_go)) cf_test_nap_ms(1);
}

static void count_task(cf_call *c) {
  (void)c;
  atomic_fetch_add(&ran, 1);
}

static void test_held_searcher(void) {
  atomic_store(&armed, 1);
  cf__test_search_hook = hold_worker0;
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *ex = NULL;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  cf_test_watchdog(60, "worker 0 held, worker 1 parked");
  cf_stats st;
  for (;;) {
    expect_rc(cf_executor_stats(ex, &st), 0);
    if (atomic_load(&held) && st.parks >= 1) break;
    cf_test_nap_ms(1);
  }
  cf_test_watchdog(0, NULL);
  enum { N = 64 };
  cf_future *fs[N];
  for (int i = 0; i < N; i++) assert_rc(cf_submit(ex, count_task, NULL, 0, &fs[i]), 0);
  int rc = cf_wait(fs, N, CF_ALL_COMPLETED, 20LL * 1000 * 1000 * 1000, NULL);
  expect_rc(rc, 0);
  expect_eq(atomic_load(&ran), N);
  expect_eq(atomic_load(&let_go), 0); /* all ran while worker 0 was held */
  atomic_store(&let_go, 1);
  expect_rc(cf_wait(fs, N, CF_ALL_COMPLETED, -1, NULL), 0);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  expect_rc(cf_executor_destroy(ex), 0);
  cf__test_search_hook = NULL;
}

int main(void) {
  CF_RUN(test_held_searcher);
  return cf_test_done("test_backlog_wake");
}
