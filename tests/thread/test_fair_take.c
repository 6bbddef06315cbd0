/* cf-test: labels=stress timeout=120 */
/*
 * test_fair_take.c — a worker takes a fair share of the injector, not all
 * of it (scheduler.c, cf__sched_take_injected; DESIGN, Queues).
 *
 * A worker that found the injector non-empty used to move up to BATCH (32)
 * tasks into its own deque, whatever was queued. With two tasks queued and
 * two workers, the second task then sat behind the first in the taker's
 * deque, and the other worker had to steal it instead of taking it from the
 * injector at once (open loop at 1 M/s: submit to start p90 2.64 us
 * instead of 1.90 us). Now a take is ceil(queued / workers).
 *
 * Here worker 0 is held at the start of its search by the test hook (it
 * counts as searching, so submits wake nobody), worker 1 parks, and two
 * tasks are submitted from outside. Each task waits until both have
 * started, so worker 0 cannot run the second after the first: it must run
 * on worker 1. With the fair share worker 1 takes it from the injector
 * (nothing is stolen); before, worker 0 moved it into its deque and worker
 * 1 stole it (stolen == 1). The 20 s bounds are liveness guards, not
 * timing thresholds. Needs the test hooks.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "cfutures.h"
#include "scheduler.h"
#include "testutil.h"

static _Atomic int armed, held, let_go, started, met;

static void hold_worker0(unsigned index) {
  if (index != 0 || !atomic_exchange(&armed, 0)) return;
  atomic_store(&held, 1);
  while (!atomic_load(&let_go)) cf_test_nap_ms(1);
}

/* start, then wait (bounded) until the other task has started too */
static void meet_task(cf_call *c) {
  (void)c;
  atomic_fetch_add(&started, 1);
  if (cf_test_within_s(&started, 2, 20)) atomic_fetch_add(&met, 1);
}

static void test_two_queued_two_workers(void) {
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
  cf_future *fs[2];
  for (int i = 0; i < 2; i++) assert_rc(cf_submit(ex, meet_task, NULL, 0, &fs[i]), 0);
  atomic_store(&let_go, 1);
  expect_rc(cf_wait(fs, 2, CF_ALL_COMPLETED, 60LL * 1000 * 1000 * 1000, NULL), 0);
  expect_eq(atomic_load(&met), 2); /* they ran at the same time */
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.stolen, 0); /* the second came from the injector */
  for (int i = 0; i < 2; i++) cf_future_release(fs[i]);
  expect_rc(cf_executor_destroy(ex), 0);
  cf__test_search_hook = NULL;
}

int main(void) {
  CF_RUN(test_two_queued_two_workers);
  return cf_test_done("test_fair_take");
}
