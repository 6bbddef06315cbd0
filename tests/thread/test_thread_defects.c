/* cf-test: labels=unit timeout=300 */
/*
 * test_thread_defects.c — thread-pool regressions, each a fixed schedule
 * built from flags the tasks set and wait on (no timing thresholds):
 *
 * 1. Done-callbacks that call back into the pool: every queued future is
 *    cancelled by a shutdown (CANCEL_FUTURES, KILL) or failed by a broken
 *    pool, and its callback calls shutdown(CANCEL_FUTURES), shutdown(WAIT)
 *    or destroy. No callback may run under an internal lock: every call
 *    returns, and destroy from a callback the pool's own shutdown runs is
 *    refused (CF_EINVAL) instead of freeing the pool under its caller.
 * 2. Help-while-waiting policy (cf_options.wait_help). A task holds an
 *    error-checking mutex and waits on a future RUNNING on the other worker
 *    while an unrelated task that takes the same mutex is queued there:
 *      - CF_HELP_ISOLATED (default): the unrelated task never runs on the
 *        waiter's stack (no EDEADLK);
 *      - CF_HELP_ANY: it may (EDEADLK then, and only on the waiter's
 *        thread); nothing is asserted about whether it does;
 *      - CF_HELP_NONE: the waiting task runs nothing, not even its own
 *        queued children (each task records the thread that ran it).
 * 3. A submit from a task after shutdown(0) is refused with CF_ESHUTDOWN
 *    (accepted, its child could never run on a pool whose other workers
 *    left); a spawn there still works (its join runs it).
 * 4. Frames spawned before a shutdown(CANCEL_FUTURES) all run, exactly once.
 *
 * Each test arms the harness watchdog: a hang fails with the test's name.
 * Run one test alone: CF_TEST_ONLY=test_callback_wait ./test_thread_defects
 * (-DCF_TEST_NO_WAIT_HELP builds it against a cfutures.h without
 * cf_options.wait_help: the tests of the other policies are then skipped).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cfutures.h"
#include "testutil.h"

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Wait until *flag is set, at most ms_max milliseconds (the bounds keep a
 * task from blocking its worker forever when the schedule goes wrong; the
 * test then reports what it saw). */
static void wait_flag(atomic_int *flag, int ms_max) {
  for (int i = 0; i < ms_max && !atomic_load(flag); i++) nap_ms(1);
}

static cf_executor *new_pool(unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  cf_executor *ex = NULL;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  return ex;
}

/* ---- 1. done-callbacks that call back into the pool ---------------------- */

enum { CB_NFUT = 4 };
typedef enum { CB_CANCEL, CB_KILL, CB_WAIT, CB_DESTROY, CB_BROKEN } cb_mode;

static struct {
  cb_mode mode;
  cf_executor *ex;
  atomic_int gate_started, gate_open, init_go;
  atomic_int cb_runs, cb_returned, destroy_rc, shutdown_failed;
} cb;

/* Holds the only worker until a callback (or the test) opens the gate. */
static void cb_gate_task(cf_call *c) {
  atomic_store(&cb.gate_started, 1);
  wait_flag(&cb.gate_open, 10000);
}

static void cb_trivial_task(cf_call *c) {
  int v = 42;
  cf_call_return(c, &v, sizeof v);
}

/* Breaks the pool once the futures are queued: the worker then fails them. */
static int cb_init_fail(void *arg) {
  wait_flag(&cb.init_go, 10000);
  return -1;
}

static void cb_reenter(cf_future *f, void *arg) {
  int n = atomic_fetch_add(&cb.cb_runs, 1), rc = 0;
  atomic_store(&cb.gate_open, 1); /* the gate task must not be what blocks */
  switch (cb.mode) {
    case CB_WAIT:
      rc = cf_executor_shutdown(cb.ex, CF_SHUTDOWN_WAIT);
      break;
    case CB_DESTROY:
      /* the first callback only: were it accepted, the pool would be gone */
      if (n == 0) atomic_store(&cb.destroy_rc, cf_executor_destroy(cb.ex));
      break;
    default:
      rc = cf_executor_shutdown(cb.ex, CF_SHUTDOWN_CANCEL_FUTURES);
      break;
  }
  if (rc) atomic_fetch_add(&cb.shutdown_failed, 1);
  atomic_fetch_add(&cb.cb_returned, 1);
}

static void callback_reentry(cb_mode mode) {
  cf_test_watchdog(30, NULL);
  cb.mode = mode;
  atomic_store(&cb.gate_started, 0);
  atomic_store(&cb.gate_open, 0);
  atomic_store(&cb.init_go, 0);
  atomic_store(&cb.cb_runs, 0);
  atomic_store(&cb.cb_returned, 0);
  atomic_store(&cb.destroy_rc, 1); /* not a return code of destroy */
  atomic_store(&cb.shutdown_failed, 0);
  bool broken = mode == CB_BROKEN;
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  if (broken) o.initializer = cb_init_fail;
  assert_rc(cf_thread_pool_new(&o, &cb.ex), 0);

  cf_future *gate = NULL, *fs[CB_NFUT];
  if (!broken) {
    assert_rc(cf_submit(cb.ex, cb_gate_task, NULL, 0, &gate), 0);
    while (!atomic_load(&cb.gate_started)) nap_ms(1);
  }
  /* queued behind the gate (or the initializer): pending until cancelled */
  for (int i = 0; i < CB_NFUT; i++) {
    assert_rc(cf_submit(cb.ex, cb_trivial_task, NULL, 0, &fs[i]), 0);
    assert_rc(cf_future_add_done_callback(fs[i], cb_reenter, NULL), 0);
  }
  if (broken) {
    atomic_store(&cb.init_go, 1); /* the worker breaks the pool and fails them */
    for (int i = 0; i < CB_NFUT; i++) expect_rc(cf_future_wait(fs[i], -1), 0);
  } else {
    unsigned fl = mode == CB_KILL ? CF_SHUTDOWN_KILL : CF_SHUTDOWN_CANCEL_FUTURES;
    expect_rc(cf_executor_shutdown(cb.ex, fl), 0);
    atomic_store(&cb.gate_open, 1);
  }

  bool freed = false;
  if (mode == CB_DESTROY) {
    int d = atomic_load(&cb.destroy_rc);
    freed = d == 0; /* the pool is gone: touch it no more */
    expect_rc(d, CF_EINVAL);
  }
  for (int i = 0; i < CB_NFUT; i++) {
    if (broken) {
      expect_eq(cf_future_state(fs[i]), CF_STATE_FAILED);
      expect_rc(cf_future_result(fs[i], NULL, 0, NULL, 0), CF_EBROKEN);
    } else {
      expect_eq(cf_future_state(fs[i]), CF_STATE_CANCELLED);
    }
  }
  /* a future is done before its callbacks run (the broken pool's run on
   * the worker): let them finish */
  for (int i = 0; i < 10000 && atomic_load(&cb.cb_returned) < CB_NFUT; i++) nap_ms(1);
  expect_eq(atomic_load(&cb.cb_runs), CB_NFUT);
  expect_eq(atomic_load(&cb.cb_returned), CB_NFUT);
  expect_eq(atomic_load(&cb.shutdown_failed), 0);
  if (gate) cf_future_release(gate);
  for (int i = 0; i < CB_NFUT; i++) cf_future_release(fs[i]);
  if (!freed) expect_rc(cf_executor_destroy(cb.ex), 0);
}

static void test_callback_cancel(void) {
  callback_reentry(CB_CANCEL);
}
static void test_callback_kill(void) {
  callback_reentry(CB_KILL);
}
static void test_callback_wait(void) {
  callback_reentry(CB_WAIT);
}
static void test_callback_destroy(void) {
  callback_reentry(CB_DESTROY);
}
static void test_callback_broken(void) {
  callback_reentry(CB_BROKEN);
}

/* ---- 2. what a waiting task may run ----------------------------------------
 *
 * The schedule (2 workers, W1 and W2):
 *   1. T (on W1) locks M (error-checking) and waits for `go`;
 *   2. G (on W2) waits for `batch`;
 *   3. X and U are submitted (both queued: no worker is free); `batch` lets
 *      G return, and W2 takes X (U stays queued: in W2's deque or the
 *      injector); X waits until U has started, at most 2 s;
 *   4. `go`: T waits on X (RUNNING on W2) while still holding M. If T's
 *      wait runs U on W1, U's lock of M fails with EDEADLK; otherwise U
 *      runs on W2 after X, and blocks on M until T unlocks it. */

static struct {
  pthread_mutex_t m;
  pthread_t t_thread;
  cf_future *x;
  atomic_int t_locked, go, g_started, batch, x_started, u_started;
  atomic_int u_lock_rc, u_on_t, t_waiting;
} hw;

typedef struct help_round {
  int t_rc, x_rc, u_rc, u_lock_rc;
  bool u_on_t; /* U ran on T's thread while T was waiting (on its stack) */
} help_round;

static void hw_task_t(cf_call *c) {
  int rc = pthread_mutex_lock(&hw.m);
  if (rc) {
    cf_call_fail(c, rc, "lock");
    return;
  }
  hw.t_thread = pthread_self();
  atomic_store(&hw.t_locked, 1);
  wait_flag(&hw.go, 10000);
  atomic_store(&hw.t_waiting, 1);
  int r = cf_future_result(hw.x, NULL, 0, NULL, 10000000000LL);
  atomic_store(&hw.t_waiting, 0);
  pthread_mutex_unlock(&hw.m);
  cf_call_return(c, &r, sizeof r);
}
static void hw_task_g(cf_call *c) {
  atomic_store(&hw.g_started, 1);
  wait_flag(&hw.batch, 10000);
}
static void hw_task_x(cf_call *c) {
  atomic_store(&hw.x_started, 1);
  wait_flag(&hw.u_started, 2000);
}
static void hw_task_u(cf_call *c) {
  /* on T's thread after T returned is fine (its worker is free then) */
  atomic_store(&hw.u_on_t,
               pthread_equal(pthread_self(), hw.t_thread) && atomic_load(&hw.t_waiting));
  atomic_store(&hw.u_started, 1);
  int rc = pthread_mutex_lock(&hw.m);
  atomic_store(&hw.u_lock_rc, rc);
  if (rc == 0) pthread_mutex_unlock(&hw.m);
}

/* One round of the schedule on a new pool made with `o` (workers = 2). */
static void run_help_round(cf_options *o, help_round *r) {
  atomic_store(&hw.t_locked, 0);
  atomic_store(&hw.go, 0);
  atomic_store(&hw.g_started, 0);
  atomic_store(&hw.batch, 0);
  atomic_store(&hw.x_started, 0);
  atomic_store(&hw.u_started, 0);
  atomic_store(&hw.u_lock_rc, -1);
  atomic_store(&hw.u_on_t, 0);
  atomic_store(&hw.t_waiting, 0);
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&hw.m, &a);
  pthread_mutexattr_destroy(&a);

  o->workers = 2;
  cf_executor *ex;
  assert_rc(cf_thread_pool_new(o, &ex), 0);
  cf_future *t, *g, *u;
  assert_rc(cf_submit(ex, hw_task_t, NULL, 0, &t), 0);
  wait_flag(&hw.t_locked, 10000);
  assert_rc(cf_submit(ex, hw_task_g, NULL, 0, &g), 0);
  wait_flag(&hw.g_started, 10000);
  assert_rc(cf_submit(ex, hw_task_x, NULL, 0, &hw.x), 0);
  assert_rc(cf_submit(ex, hw_task_u, NULL, 0, &u), 0);
  atomic_store(&hw.batch, 1);
  wait_flag(&hw.x_started, 10000);
  atomic_store(&hw.go, 1);
  r->x_rc = -1;
  r->t_rc = cf_future_result(t, &r->x_rc, sizeof r->x_rc, NULL, -1);
  r->u_rc = cf_future_result(u, NULL, 0, NULL, -1);
  r->u_lock_rc = atomic_load(&hw.u_lock_rc);
  r->u_on_t = atomic_load(&hw.u_on_t);
  cf_future_release(t);
  cf_future_release(g);
  cf_future_release(hw.x);
  cf_future_release(u);
  expect_rc(cf_executor_destroy(ex), 0);
  pthread_mutex_destroy(&hw.m);
}

enum { HELP_ROUNDS = 2 };

static void test_help_isolated_default(void) {
  cf_test_watchdog(60, NULL);
  for (int i = 0; i < HELP_ROUNDS; i++) {
    cf_options o;
    cf_options_init(&o); /* the default policy */
    help_round r;
    run_help_round(&o, &r);
    expect_rc(r.t_rc, 0);
    expect_rc(r.x_rc, 0);
    expect_rc(r.u_rc, 0);
    expect_eq(r.u_lock_rc, 0); /* EDEADLK: U ran on T's stack */
    expect_true(!r.u_on_t);
  }
}

#ifndef CF_TEST_NO_WAIT_HELP
static void test_help_any(void) {
  cf_test_watchdog(60, NULL);
  int ran_inside = 0;
  for (int i = 0; i < HELP_ROUNDS; i++) {
    cf_options o;
    cf_options_init(&o);
    o.wait_help = CF_HELP_ANY;
    help_round r;
    run_help_round(&o, &r);
    expect_rc(r.t_rc, 0);
    expect_rc(r.x_rc, 0);
    expect_rc(r.u_rc, 0);
    /* U may run inside T's wait; if it does, the error-checking mutex
     * says so (EDEADLK), and only there */
    expect_true(r.u_lock_rc == 0 || (r.u_lock_rc == EDEADLK && r.u_on_t));
    ran_inside += r.u_lock_rc == EDEADLK;
  }
  printf("test_help_any: the unrelated task ran inside the wait in %d/%d rounds\n", ran_inside,
         HELP_ROUNDS);
}

static void test_help_none_unrelated(void) {
  cf_test_watchdog(60, NULL);
  for (int i = 0; i < HELP_ROUNDS; i++) {
    cf_options o;
    cf_options_init(&o);
    o.wait_help = CF_HELP_NONE;
    help_round r;
    run_help_round(&o, &r);
    expect_rc(r.t_rc, 0);
    expect_rc(r.x_rc, 0);
    expect_rc(r.u_rc, 0);
    expect_eq(r.u_lock_rc, 0);
    expect_true(!r.u_on_t);
  }
}

/* CF_HELP_NONE: a task that submits children to its own deque and waits on
 * each runs none of them; the other worker steals them all. */
enum { NONE_KIDS = 8 };
static struct {
  cf_executor *ex;
  pthread_t parent;
  atomic_int kids_on_parent, kids_ran;
} nk;

static void nk_kid(cf_call *c) {
  const int *x = cf_call_arg(c, NULL);
  if (pthread_equal(pthread_self(), nk.parent)) atomic_fetch_add(&nk.kids_on_parent, 1);
  atomic_fetch_add(&nk.kids_ran, 1);
  int v = *x * *x;
  cf_call_return(c, &v, sizeof v);
}

static void nk_parent(cf_call *c) {
  nk.parent = pthread_self();
  cf_future *kids[NONE_KIDS];
  int n = 0, sum = 0, bad = 0;
  for (; n < NONE_KIDS; n++)
    if (cf_submit(nk.ex, nk_kid, &n, sizeof n, &kids[n]) != 0) break;
  for (int i = 0; i < n; i++) {
    int v = -1;
    if (cf_future_result(kids[i], &v, sizeof v, NULL, -1) != 0) bad++;
    sum += v;
    cf_future_release(kids[i]);
  }
  if (n < NONE_KIDS || bad) {
    cf_call_fail(c, 1, "submit or wait failed");
    return;
  }
  cf_call_return(c, &sum, sizeof sum);
}

static void test_help_none_runs_nothing(void) {
  cf_test_watchdog(60, NULL);
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.wait_help = CF_HELP_NONE;
  assert_rc(cf_thread_pool_new(&o, &nk.ex), 0);
  for (int round = 0; round < 20; round++) {
    atomic_store(&nk.kids_on_parent, 0);
    atomic_store(&nk.kids_ran, 0);
    cf_future *f;
    assert_rc(cf_submit(nk.ex, nk_parent, NULL, 0, &f), 0);
    int sum = -1, want = 0;
    for (int i = 0; i < NONE_KIDS; i++) want += i * i;
    expect_rc(cf_future_result(f, &sum, sizeof sum, NULL, -1), 0);
    expect_eq(sum, want);
    expect_eq(atomic_load(&nk.kids_ran), NONE_KIDS);
    expect_eq(atomic_load(&nk.kids_on_parent), 0);
    cf_future_release(f);
  }
  expect_rc(cf_executor_destroy(nk.ex), 0);
}
#endif /* CF_TEST_NO_WAIT_HELP */

/* ---- 3. submit from a task after shutdown(0) -------------------------------
 *
 * T starts, main calls cf_executor_shutdown(ex, 0), T sleeps SETTLE_MS so
 * that the idle workers see the shutdown and leave (what made an accepted
 * child unrunnable; the refusal does not depend on it), then submits. */

enum { LATE_WORKERS = 4, LATE_SETTLE_MS = 200 };
static struct {
  cf_executor *ex;
  atomic_int t_started, shut_done, child_ran, submit_rc, frame_ran;
  atomic_int child_ran_in_time, spawn_rc, join_rc, join_val;
} late;

static void late_child(cf_call *c) {
  atomic_store(&late.child_ran, 1);
}

static void late_frame(cf_call *c) {
  const int *x = cf_call_arg(c, NULL);
  atomic_fetch_add(&late.frame_ran, 1);
  int v = *x + 1;
  cf_call_return(c, &v, sizeof v);
}

static void late_task(cf_call *c) {
  atomic_store(&late.t_started, 1);
  wait_flag(&late.shut_done, 10000);
  nap_ms(LATE_SETTLE_MS);
  cf_future *f = NULL;
  int rc = cf_submit(late.ex, late_child, NULL, 0, &f);
  atomic_store(&late.submit_rc, rc);
  if (rc == 0) { /* wrong, but see whether the child can run: bounded */
    wait_flag(&late.child_ran, 3000);
    atomic_store(&late.child_ran_in_time, atomic_load(&late.child_ran));
    cf_future_release(f);
  }
  /* a frame still works after a plain shutdown: its join runs it */
  cf_frame fr;
  int x = 41;
  rc = cf_spawn(late.ex, &fr, late_frame, &x, sizeof x);
  atomic_store(&late.spawn_rc, rc);
  if (rc == 0) {
    int v = 0;
    atomic_store(&late.join_rc, cf_join(&fr, &v, sizeof v, NULL));
    atomic_store(&late.join_val, v);
  }
}

static void test_submit_after_shutdown_in_task(void) {
  cf_test_watchdog(60, NULL);
  for (int round = 0; round < 2; round++) {
    atomic_store(&late.t_started, 0);
    atomic_store(&late.shut_done, 0);
    atomic_store(&late.child_ran, 0);
    atomic_store(&late.child_ran_in_time, 0);
    atomic_store(&late.submit_rc, 1);
    atomic_store(&late.frame_ran, 0);
    atomic_store(&late.spawn_rc, 1);
    atomic_store(&late.join_rc, 1);
    atomic_store(&late.join_val, 0);
    late.ex = new_pool(LATE_WORKERS);
    cf_future *t;
    assert_rc(cf_submit(late.ex, late_task, NULL, 0, &t), 0);
    while (!atomic_load(&late.t_started)) nap_ms(1);
    expect_rc(cf_executor_shutdown(late.ex, 0), 0);
    atomic_store(&late.shut_done, 1);
    expect_rc(cf_future_wait(t, -1), 0);
    int src = atomic_load(&late.submit_rc);
    expect_rc(src, CF_ESHUTDOWN);
    if (src == 0)
      fprintf(stderr, "  round %d: the submit was accepted; its child %s within 3 s\n", round,
              atomic_load(&late.child_ran_in_time) ? "ran" : "did NOT run");
    expect_rc(atomic_load(&late.spawn_rc), 0);
    expect_rc(atomic_load(&late.join_rc), 0);
    expect_eq(atomic_load(&late.join_val), 42);
    expect_eq(atomic_load(&late.frame_ran), 1);
    cf_future_release(t);
    expect_rc(cf_executor_destroy(late.ex), 0);
  }
}

/* ---- 4. frames spawned before a cancelling shutdown all run ----------------
 *
 * Y holds W2. T (on W1) spawns NFRAMES frames (kept by W1, or published to
 * its deque), main shuts the pool down with CANCEL_FUTURES, then T waits on
 * Y (its wait may publish the frames and run them, or let W2 steal them
 * once Y returns) and joins them, last first. */

enum { NFRAMES = 4 };
static struct {
  cf_executor *ex;
  cf_future *y;
  atomic_int y_started, t_spawned, shut_done, t_waiting;
  atomic_int ran[NFRAMES], spawn_rc[NFRAMES], join_rc[NFRAMES], join_val[NFRAMES];
} fx;

static void fx_frame(cf_call *c) {
  const int *i = cf_call_arg(c, NULL);
  atomic_fetch_add(&fx.ran[*i], 1);
  int v = 1000 + *i;
  cf_call_return(c, &v, sizeof v);
}

static void fx_task_y(cf_call *c) {
  atomic_store(&fx.y_started, 1);
  wait_flag(&fx.t_waiting, 10000);
  nap_ms(50); /* T is inside cf_future_wait(Y) by now, or soon */
}

static void fx_task_t(cf_call *c) {
  cf_frame fr[NFRAMES];
  int n = 0;
  for (; n < NFRAMES; n++) {
    int rc = cf_spawn(fx.ex, &fr[n], fx_frame, &n, sizeof n);
    atomic_store(&fx.spawn_rc[n], rc);
    if (rc) break;
  }
  atomic_store(&fx.t_spawned, 1);
  wait_flag(&fx.shut_done, 10000);
  atomic_store(&fx.t_waiting, 1);
  (void)cf_future_wait(fx.y, 10000000000LL);
  while (n-- > 0) {
    int v = 0;
    atomic_store(&fx.join_rc[n], cf_join(&fr[n], &v, sizeof v, NULL));
    atomic_store(&fx.join_val[n], v);
  }
}

static void test_frames_run_after_cancel(void) {
  cf_test_watchdog(60, NULL);
  for (int round = 0; round < 3; round++) {
    atomic_store(&fx.y_started, 0);
    atomic_store(&fx.t_spawned, 0);
    atomic_store(&fx.shut_done, 0);
    atomic_store(&fx.t_waiting, 0);
    for (int i = 0; i < NFRAMES; i++) {
      atomic_store(&fx.ran[i], 0);
      atomic_store(&fx.spawn_rc[i], 1);
      atomic_store(&fx.join_rc[i], 1);
      atomic_store(&fx.join_val[i], 0);
    }
    fx.ex = new_pool(2);
    cf_future *t;
    assert_rc(cf_submit(fx.ex, fx_task_y, NULL, 0, &fx.y), 0);
    while (!atomic_load(&fx.y_started)) nap_ms(1);
    assert_rc(cf_submit(fx.ex, fx_task_t, NULL, 0, &t), 0);
    while (!atomic_load(&fx.t_spawned)) nap_ms(1);
    expect_rc(cf_executor_shutdown(fx.ex, CF_SHUTDOWN_CANCEL_FUTURES), 0);
    atomic_store(&fx.shut_done, 1);
    expect_rc(cf_future_wait(t, -1), 0);
    for (int i = 0; i < NFRAMES; i++) {
      expect_rc(atomic_load(&fx.spawn_rc[i]), 0);
      expect_rc(atomic_load(&fx.join_rc[i]), 0);
      expect_eq(atomic_load(&fx.join_val[i]), 1000 + i);
      expect_eq(atomic_load(&fx.ran[i]), 1);
    }
    cf_future_release(t);
    cf_future_release(fx.y);
    expect_rc(cf_executor_destroy(fx.ex), 0);
  }
}

int main(void) {
  CF_RUN(test_callback_cancel);
  CF_RUN(test_callback_kill);
  CF_RUN(test_callback_wait);
  CF_RUN(test_callback_destroy);
  CF_RUN(test_callback_broken);
  CF_RUN(test_help_isolated_default);
#ifndef CF_TEST_NO_WAIT_HELP
  CF_RUN(test_help_any);
  CF_RUN(test_help_none_unrelated);
  CF_RUN(test_help_none_runs_nothing);
#endif
  CF_RUN(test_submit_after_shutdown_in_task);
  CF_RUN(test_frames_run_after_cancel);
  return cf_test_done("test_thread_defects");
}
