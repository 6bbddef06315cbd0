/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_deadlines.c — a task's deadline fires at the deadline even when
 * nobody waits on its future: its callbacks run, and its future reads
 * CF_EDEADLINE (not CF_ETIMEDOUT, which is a wait's own timeout), while the
 * task itself may still be running (thread: it sees its stop flag; process:
 * it is killed). Tasks talk to the test through a shared anonymous mapping
 * made before any pool (a process worker sees the same page). The only time
 * bounds are generous "did not happen within 5 s" guards.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;

typedef struct shared {
  _Atomic int gate;                    /* held tasks wait for it */
  _Atomic int started;                 /* held tasks that started */
  _Atomic int saw_stop;                /* held tasks that saw cf_call_stop_requested */
  _Atomic long ran;                    /* quick tasks run */
  _Atomic int hold_gate, hold_started; /* hold_task's own gate */
} shared;
#define sh ((shared *)cf_test_shm)

static void reset_shared(void) {
  memset((void *)sh, 0, sizeof *sh);
}

/* 200 us: a poll interval */
static void nap(void) {
  cf_test_nap_us(200);
}

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

/* Holds its worker until the gate opens, whatever stop says (it notes that
 * it saw it). */
static void held_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  bool seen = false;
  while (!atomic_load(&sh->gate)) {
    if (!seen && cf_call_stop_requested(c)) {
      seen = true;
      atomic_fetch_add(&sh->saw_stop, 1);
    }
    nap();
  }
  int v = 1;
  cf_call_return(c, &v, sizeof v);
}

/* Holds its worker until hold_gate opens (no deadline, no stop). */
static void hold_task(cf_call *c) {
  atomic_fetch_add(&sh->hold_started, 1);
  while (!atomic_load(&sh->hold_gate)) nap();
}

static void quick_task(cf_call *c) {
  atomic_fetch_add(&sh->ran, 1);
}

static _Atomic int cb_fired;
static _Atomic int cb_state;
static void note_cb(cf_future *f, void *arg) {
  atomic_store(&cb_state, cf_future_state(f));
  atomic_fetch_add(&cb_fired, 1);
}

/* The case: only a callback is attached, the task ignores its stop
 * flag for as long as the gate stays closed. The callback must run at the
 * deadline, not when the task returns (before: only when the gate opened). */
static void test_fires_without_waiter(void) {
  reset_shared();
  atomic_store(&cb_fired, 0);
  cf_executor *ex = make_ex(1);
  cf_submit_opts so = {.timeout_ns = 50 * 1000000LL, .flags = 0};
  cf_future *f = NULL;
  assert_rc(cf_submit_ex(ex, held_task, NULL, 0, &so, &f), 0);
  expect_rc(cf_future_add_done_callback(f, note_cb, NULL), 0);
  expect_true(cf_test_within_5s(&cb_fired, 1)); /* the gate is still closed */
  expect_eq(atomic_load(&cb_state), CF_STATE_FAILED);
  expect_true(cf_future_done(f));
  expect_rc(cf_future_result(f, NULL, 0, NULL, 0), CF_EDEADLINE);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_EDEADLINE);
  /* thread: the running task was asked to stop (process: it was killed).
   * On a loaded machine the deadline may pass before the worker starts the
   * task, which then never runs: no stop to see. */
  if (!process_kind && cf_test_within_5s(&sh->started, 1))
    expect_true(cf_test_within_5s(&sh->saw_stop, 1));
  atomic_store(&sh->gate, 1);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&cb_fired), 1);
}

/* A queued task's deadline fires while it waits behind a held one: failed
 * unrun, its callback on time, and it never runs later. */
static void test_fires_while_queued(void) {
  reset_shared();
  atomic_store(&cb_fired, 0);
  cf_executor *ex = make_ex(1);
  cf_future *h = NULL, *q = NULL;
  assert_rc(cf_submit(ex, held_task, NULL, 0, &h), 0);
  assert_true(cf_test_within_5s(&sh->started, 1));
  cf_submit_opts so = {.timeout_ns = 20 * 1000000LL, .flags = 0};
  assert_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &q), 0);
  expect_rc(cf_future_add_done_callback(q, note_cb, NULL), 0);
  expect_true(cf_test_within_5s(&cb_fired, 1));
  expect_rc(cf_future_result(q, NULL, 0, NULL, 0), CF_EDEADLINE);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(h, NULL, 0, NULL, -1), 0);
  cf_future_release(h);
  cf_future_release(q);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->ran), 0);
}

/* The two codes: a wait that times out says CF_ETIMEDOUT and the future
 * goes on; the task's deadline says CF_EDEADLINE. */
static void test_two_codes(void) {
  reset_shared();
  cf_executor *ex = make_ex(2);
  cf_future *held = NULL, *f = NULL;
  assert_rc(cf_submit(ex, held_task, NULL, 0, &held), 0); /* no deadline */
  expect_rc(cf_future_result(held, NULL, 0, NULL, 1000), CF_ETIMEDOUT);
  expect_rc(cf_future_wait(held, 0), CF_ETIMEDOUT);
  expect_true(!cf_future_done(held));
  cf_submit_opts so = {.timeout_ns = 20 * 1000000LL, .flags = 0};
  assert_rc(cf_submit_ex(ex, held_task, NULL, 0, &so, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  expect_rc(cf_future_wait(f, 0), 0);
  expect_true(strcmp(cf_strerror(CF_EDEADLINE), cf_strerror(CF_ETIMEDOUT)) != 0);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(held, NULL, 0, NULL, -1), 0);
  cf_future_release(held);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* Tasks that finish long before their deadline leave nothing behind (the
 * timer's entry goes with the task: ASan's leak check and the debug build's
 * check at destroy), and the pool is destroyed at once, not at the
 * deadline. */
static void test_complete_first(void) {
  reset_shared();
  atomic_store(&sh->gate, 1);
  cf_executor *ex = make_ex(2);
  enum { N = 2000 };
  static cf_future *fs[N];
  cf_submit_opts so = {.timeout_ns = 3600LL * 1000000000, .flags = 0};
  for (int i = 0; i < N; i++) {
    so.timeout_ns = 3600LL * 1000000000 - i; /* all different */
    assert_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &fs[i]), 0);
    if (i % 3 == 0) cf_future_release(fs[i]), fs[i] = NULL; /* released while queued */
  }
  for (int i = 0; i < N; i++) {
    if (!fs[i]) continue;
    expect_rc(cf_future_result(fs[i], NULL, 0, NULL, -1), 0);
    cf_future_release(fs[i]);
  }
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->ran), N);
}

/* A callback of a future the pool expired may not destroy the pool there
 * (the executor runs it on one of its own threads), and may shut it down. */
static cf_executor *cb_ex;
static pthread_t main_thread;
static _Atomic int cb_destroy_rc = 1, cb_shutdown_rc = 1, cb_on_main;
static void destroy_cb(cf_future *f, void *arg) {
  if (pthread_equal(pthread_self(), main_thread)) {
    /* already expired when it was added: it runs at once, in the caller */
    atomic_store(&cb_on_main, 1);
  } else {
    atomic_store(&cb_destroy_rc, cf_executor_destroy(cb_ex));
    atomic_store(&cb_shutdown_rc, cf_executor_shutdown(cb_ex, CF_SHUTDOWN_WAIT));
  }
  atomic_fetch_add(&cb_fired, 1);
}

static void test_callback_on_pool_thread(void) {
  main_thread = pthread_self();
  /* a longer deadline if it passed before the callback was even added */
  for (int64_t dl = 10 * 1000000LL; dl <= 10000000000LL; dl *= 4) {
    reset_shared();
    atomic_store(&cb_fired, 0);
    atomic_store(&cb_on_main, 0);
    cb_ex = make_ex(1);
    cf_submit_opts so = {.timeout_ns = dl, .flags = 0};
    cf_future *f = NULL;
    assert_rc(cf_submit_ex(cb_ex, held_task, NULL, 0, &so, &f), 0);
    expect_rc(cf_future_add_done_callback(f, destroy_cb, NULL), 0);
    expect_true(cf_test_within_5s(&cb_fired, 1));
    atomic_store(&sh->gate, 1);
    cf_future_release(f);
    expect_rc(cf_executor_destroy(cb_ex), 0);
    if (!atomic_load(&cb_on_main)) break;
  }
  expect_eq(atomic_load(&cb_on_main), 0);
  expect_rc(atomic_load(&cb_destroy_rc), CF_EINVAL);
  expect_rc(atomic_load(&cb_shutdown_rc), 0);
}

/* ---- races ---- */

/* Spins for its argument's nanoseconds (or until asked to stop). */
static void spin_task(cf_call *c) {
  int64_t ns;
  memcpy(&ns, cf_call_arg(c, NULL), sizeof ns);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    if (cf_call_stop_requested(c)) return;
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000000000LL + (t.tv_nsec - t0.tv_nsec) < ns);
}

static _Atomic int race_cbs;
static void race_cb(cf_future *f, void *arg) {
  atomic_fetch_add(&race_cbs, 1);
}

/* Deadlines that fire while tasks start, finish, are cancelled or are
 * released, all at about the same time: every future ends exactly once
 * (its callback once), with CF_EDEADLINE only if it had a deadline, and
 * the pool is destroyed with nothing left on its timer (debug check, ASan). */
static void test_races(void) {
  cf_executor *ex = make_ex(3);
  int n = (int)cf_test_scale(process_kind ? 1500 : 6000);
  cf_future **fs = calloc((size_t)n, sizeof *fs);
  bool *had_deadline = calloc((size_t)n, sizeof *had_deadline);
  atomic_store(&race_cbs, 0);
  unsigned seed = 12345;
  int registered = 0;
  for (int i = 0; i < n; i++) {
    int64_t work = (int64_t)(rand_r(&seed) % 200000); /* up to 0.2 ms */
    cf_submit_opts so = {.timeout_ns = 0, .flags = 0};
    if (rand_r(&seed) % 3) so.timeout_ns = (int64_t)(rand_r(&seed) % 300000) + 1;
    had_deadline[i] = so.timeout_ns > 0;
    assert_rc(cf_submit_ex(ex, spin_task, &work, sizeof work, &so, &fs[i]), 0);
    if (cf_future_add_done_callback(fs[i], race_cb, NULL) == 0) registered++;
    switch (rand_r(&seed) % 4) {
      case 0:
        (void)cf_future_cancel(fs[i]);
        break;
      case 1:
        cf_future_release(fs[i]); /* released while pending or running */
        fs[i] = NULL;
        break;
    }
  }
  for (int i = 0; i < n; i++) {
    if (!fs[i]) continue;
    int rc = cf_future_result(fs[i], NULL, 0, NULL, -1);
    expect_true(rc == 0 || rc == CF_ECANCELLED || (rc == CF_EDEADLINE && had_deadline[i]));
    cf_future_release(fs[i]);
  }
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  /* process callbacks run on the supervisor, a little after the wait */
  expect_true(cf_test_within_5s(&race_cbs, registered));
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&race_cbs), registered);
  free(fs);
  free(had_deadline);
}

/* ---- statistics ---- */

/* The counters are summed by the workers (and the timer) after a future is
 * done, so a waiter may look first: poll them, for at most 5 s. */
static bool stats_reach(cf_executor *ex, uint64_t expired, uint64_t timed, cf_stats *st) {
  for (int i = 0; i < 25000; i++) {
    if (cf_executor_stats(ex, st) != 0) return false;
    if (st->deadline_expired >= expired && st->timed >= timed) return true;
    nap();
  }
  return false;
}

static void sleep_1ms_task(cf_call *c) {
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL);
}

/* Expiries are counted; with cf_executor_time_tasks on, so are queue wait
 * and run time (thread pool). Bounds only from below, by what nanosleep
 * guarantees: no timing thresholds. */
static void test_stats(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.deadline_expired, 0);
  expect_eq(st.timed, 0);
  cf_future *h = NULL, *q[3];
  cf_submit_opts so = {.timeout_ns = 20 * 1000000LL, .flags = 0};
  assert_rc(cf_submit_ex(ex, held_task, NULL, 0, &so, &h), 0); /* expires running (or queued) */
  so.timeout_ns = 1;
  for (int i = 0; i < 3; i++) assert_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &q[i]), 0);
  expect_rc(cf_future_result(h, NULL, 0, NULL, -1), CF_EDEADLINE);
  for (int i = 0; i < 3; i++) expect_rc(cf_future_result(q[i], NULL, 0, NULL, -1), CF_EDEADLINE);
  /* thread: every expiry; process: those its supervisor made (a task that a
   * worker took first and finished late fails in the worker) */
  expect_true(stats_reach(ex, process_kind ? 1 : 4, 0, &st));
  expect_true(st.deadline_expired <= 4);
  atomic_store(&sh->gate, 1);
  cf_future_release(h);
  for (int i = 0; i < 3; i++) cf_future_release(q[i]);

  /* The one worker is held (by an untimed task: timing is chosen at
   * submit) while the timed tasks are queued: each then waits for all the
   * ones before it. (Before, the worker ran them as they came, so a
   * submitter that lost its CPU for a while after the first shortened
   * every later wait: the bound below could fail on a loaded machine.) */
  cf_future *hold = NULL;
  assert_rc(cf_submit(ex, hold_task, NULL, 0, &hold), 0);
  expect_true(cf_test_within_5s(&sh->hold_started, 1));
  expect_rc(cf_executor_time_tasks(ex, true), 0);
  enum { N = 10 };
  cf_future *fs[N];
  for (int i = 0; i < N; i++) assert_rc(cf_submit(ex, sleep_1ms_task, NULL, 0, &fs[i]), 0);
  atomic_store(&sh->hold_gate, 1);
  expect_rc(cf_future_result(hold, NULL, 0, NULL, -1), 0);
  cf_future_release(hold);
  for (int i = 0; i < N; i++) expect_rc(cf_future_result(fs[i], NULL, 0, NULL, -1), 0);
  /* both pools (a process pool measures in its worker: before, its sums
   * stayed 0) */
  expect_true(stats_reach(ex, 0, N, &st));
  expect_eq(st.timed, N);
  expect_true(st.run_ns >= N * 1000000ull);
  /* one worker: task k waited for the k before it, 1 ms each at least */
  expect_true(st.queue_wait_ns >= (N - 1) * N / 2 * 1000000ull);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  /* futures never read (waited on, or released at once) count too (before:
   * a process pool counted only the tasks whose result was read) */
  for (int i = 0; i < N; i++) assert_rc(cf_submit(ex, sleep_1ms_task, NULL, 0, &fs[i]), 0);
  for (int i = 0; i < N / 2; i++) expect_rc(cf_future_wait(fs[i], -1), 0);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  expect_true(stats_reach(ex, 0, 2 * N, &st));
  expect_eq(st.timed, 2 * N);
  expect_rc(cf_executor_time_tasks(ex, false), 0);
  expect_rc(cf_executor_time_tasks(NULL, true), CF_EINVAL);
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  cf_test_shared(sizeof(shared));
  CF_RUN(test_fires_without_waiter);
  CF_RUN(test_fires_while_queued);
  CF_RUN(test_two_codes);
  CF_RUN(test_complete_first);
  CF_RUN(test_callback_on_pool_thread);
  CF_RUN(test_races);
  CF_RUN(test_stats);
  return cf_test_done(process_kind ? "test_deadlines_process" : "test_deadlines_thread");
}
