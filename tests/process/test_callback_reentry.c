/* cf-test: labels=unit;shm timeout=240 */
/*
 * test_callback_reentry.c — done-callbacks of process futures that call
 * back into their pool. They run with no internal lock held, on the thread
 * that cancels (a shutdown's cancel of the queued futures) or on the
 * supervisor thread (futures a worker completed, and the ones a shutdown
 * called from there cancels):
 *   main-cancel  main: shutdown(CANCEL); the callbacks (main): shutdown(CANCEL)
 *   main-wait    main: shutdown(CANCEL); the callbacks (main): shutdown(WAIT)
 *   sv-cancel    a finished future's callback (supervisor): shutdown(CANCEL);
 *                the cancelled futures' callbacks (supervisor): shutdown(CANCEL)
 *   sv-wait      the supervisor's callback: shutdown(WAIT | CANCEL): returns
 *                without waiting (the supervisor cannot wait for itself)
 *   sv-destroy   the supervisor's callback: destroy: CF_EINVAL
 * Every call returns, every queued future is done (cancelled; finished
 * where a worker took it first), every callback runs once.
 *
 * Tasks coordinate through a MAP_SHARED page mapped before any pool exists.
 * Each test arms the harness watchdog: a hang fails with the test's name.
 */
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "cfutures.h"
#include "testutil.h"

enum { NFUT = 4 };
typedef enum { MAIN_CANCEL, MAIN_WAIT, SV_CANCEL, SV_WAIT, SV_DESTROY } reentry_mode;

struct shared {
  _Atomic int gate_started, gate_open, submitted;
};
#define sh ((struct shared *)cf_test_shm) /* shared with the workers */

static struct {
  reentry_mode mode;
  cf_executor *ex;
  atomic_int cb_runs, cb_returned, sv_rc, nested_failed;
} st;

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* In a worker: holds it until the test (or a callback) opens the gate. */
static void gate_task(cf_call *c) {
  atomic_store(&sh->gate_started, 1);
  for (int i = 0; i < 10000 && !atomic_load(&sh->gate_open); i++) nap_ms(1);
}

/* sv modes: the first future, finished once the rest are queued. */
static void first_task(cf_call *c) {
  for (int i = 0; i < 10000 && !atomic_load(&sh->submitted); i++) nap_ms(1);
  int v = 1;
  cf_call_return(c, &v, sizeof v);
}

static void trivial_task(cf_call *c) {
  int v = 7;
  cf_call_return(c, &v, sizeof v);
}

/* The queued futures' callbacks. */
static void cb_queued(cf_future *f, void *arg) {
  atomic_fetch_add(&st.cb_runs, 1);
  int rc = 0;
  if (st.mode == MAIN_WAIT) {
    atomic_store(&sh->gate_open, 1); /* the gate task must not be what blocks */
    rc = cf_executor_shutdown(st.ex, CF_SHUTDOWN_WAIT);
  } else if (st.mode == MAIN_CANCEL || st.mode == SV_CANCEL) {
    rc = cf_executor_shutdown(st.ex, CF_SHUTDOWN_CANCEL_FUTURES);
  }
  if (rc) atomic_fetch_add(&st.nested_failed, 1);
  atomic_fetch_add(&st.cb_returned, 1);
}

/* The first future's callback: the supervisor thread. */
static void cb_first(cf_future *f, void *arg) {
  int rc = 0;
  if (st.mode == SV_CANCEL)
    rc = cf_executor_shutdown(st.ex, CF_SHUTDOWN_CANCEL_FUTURES);
  else if (st.mode == SV_WAIT)
    rc = cf_executor_shutdown(st.ex, CF_SHUTDOWN_WAIT | CF_SHUTDOWN_CANCEL_FUTURES);
  else if (st.mode == SV_DESTROY)
    rc = cf_executor_destroy(st.ex);
  atomic_store(&st.sv_rc, rc);
}

static void reentry(reentry_mode mode) {
  cf_test_watchdog(60, NULL);
  bool sv = mode >= SV_CANCEL;
  st.mode = mode;
  atomic_store(&st.cb_runs, 0);
  atomic_store(&st.cb_returned, 0);
  atomic_store(&st.nested_failed, 0);
  atomic_store(&st.sv_rc, 1); /* not a return code */
  atomic_store(&sh->gate_started, 0);
  atomic_store(&sh->gate_open, 0);
  atomic_store(&sh->submitted, 0);
  st.ex = cf_test_new_executor(true, 1);

  cf_future *first = NULL, *gate, *fs[NFUT];
  if (sv) {
    assert_rc(cf_submit(st.ex, first_task, NULL, 0, &first), 0);
    assert_rc(cf_future_add_done_callback(first, cb_first, NULL), 0);
  }
  assert_rc(cf_submit(st.ex, gate_task, NULL, 0, &gate), 0);
  for (int i = 0; i < NFUT; i++) {
    assert_rc(cf_submit(st.ex, trivial_task, NULL, 0, &fs[i]), 0);
    assert_rc(cf_future_add_done_callback(fs[i], cb_queued, NULL), 0);
  }
  atomic_store(&sh->submitted, 1);
  if (!sv) {
    while (!atomic_load(&sh->gate_started)) nap_ms(1);
    expect_rc(cf_executor_shutdown(st.ex, CF_SHUTDOWN_CANCEL_FUTURES), 0);
  } else {
    /* the supervisor's call: its cancel may take the gate before it starts */
    while (atomic_load(&st.sv_rc) == 1) nap_ms(1);
    expect_rc(atomic_load(&st.sv_rc), mode == SV_DESTROY ? CF_EINVAL : 0);
  }
  if (mode != SV_DESTROY) { /* sv-destroy cancels nothing: the futures run */
    for (int i = 0; i < NFUT; i++) {
      expect_rc(cf_future_wait(fs[i], -1), 0);
      int s = cf_future_state(fs[i]);
      /* main-wait: the nested waiting shutdown may let the worker run what
       * the outer cancel had not reached yet; sv modes: the worker may take
       * a queued task before the supervisor's cancel reaches it */
      bool ok = s == CF_STATE_CANCELLED || ((sv || mode == MAIN_WAIT) && s == CF_STATE_FINISHED);
      expect_true(ok);
    }
    /* a future is done before its callbacks run */
    while (atomic_load(&st.cb_returned) < NFUT) nap_ms(1);
    expect_eq(atomic_load(&st.cb_runs), NFUT);
    expect_eq(atomic_load(&st.nested_failed), 0);
  }
  atomic_store(&sh->gate_open, 1);
  if (first) cf_future_release(first);
  cf_future_release(gate);
  for (int i = 0; i < NFUT; i++) cf_future_release(fs[i]);
  expect_rc(cf_executor_destroy(st.ex), 0);
  if (mode == SV_DESTROY) expect_eq(atomic_load(&st.cb_returned), NFUT);
}

static void test_main_cancel(void) {
  reentry(MAIN_CANCEL);
}
static void test_main_wait(void) {
  reentry(MAIN_WAIT);
}
static void test_sv_cancel(void) {
  reentry(SV_CANCEL);
}
static void test_sv_wait(void) {
  reentry(SV_WAIT);
}
static void test_sv_destroy(void) {
  reentry(SV_DESTROY);
}

int main(void) {
  cf_test_shared(sizeof(struct shared));
  CF_RUN(test_main_cancel);
  CF_RUN(test_main_wait);
  CF_RUN(test_sv_cancel);
  CF_RUN(test_sv_wait);
  CF_RUN(test_sv_destroy);
  return cf_test_done("test_callback_reentry");
}
