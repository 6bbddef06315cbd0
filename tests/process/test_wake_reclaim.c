/* cf-test: labels=stress;fault;shm timeout=600 args=300 */
/*
 * test_wake_reclaim.c — the submit path's two protocols: the ordered
 * reclaim of done slots and the wake-up of idle workers (idle.h: a
 * producer wakes only a sleeper that set the waiter bit). Not a benchmark.
 *
 *   test_wake_reclaim [ROUNDS]
 *
 * 1. Ordered reclaim: 300 submits, each after the last task is done (its
 *    future waited on, not read): each submit settles the one before, so one
 *    slot stays in use. (Before: a submit that caught up with the newest
 *    entry of the submission-order ring dropped it unsettled, its slot then
 *    waited for a full submit's scan; hundreds were in use here.) The
 *    results are read afterwards.
 * 2. No lost wake-up: workers that never look at the ring on their own
 *    (cf__test_worker_idle_forever: a lost wake-up hangs, and the watchdog
 *    fails the test, instead of costing a second), ROUNDS rounds of: let
 *    every worker park, then three threads submit a burst each at once,
 *    wait for every result (one round in four with a short pause, so that
 *    the burst meets workers on their way to sleep). Every few rounds a
 *    parked worker is stopped (SIGSTOP) before the burst and continued
 *    after a while (it may be the one a producer woke: the others must not
 *    sleep through the burst for good), or killed (a death changes the word
 *    and wakes one).
 * 3. A second sleeper is reached after the first one is woken: with both
 *    workers asleep (never looking on their own), a task that runs until a
 *    second task has run finishes only if something wakes the other worker
 *    for the second task (the supervisor's sweep, within 100 ms: idle.h).
 * 4. Fire-and-forget: a future released before its task is done asks for
 *    no notice (each one cost a supervisor wake-up, two context switches
 *    per task at low rates): 200 tasks released at once, each followed by
 *    a probe that is waited on and read (one worker: the task before it is
 *    done then). Their slots free through the next submits' ordered
 *    reclaim (a few in use at a time), and the last ones through the
 *    supervisor's sweep with no submit after them. Before: one notice per
 *    task.
 * Needs the test hooks.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cfutures.h"
#include "test_hooks.h"
#include "testutil.h"

static unsigned rounds = 300;

/* ---- 1. ordered reclaim ---- */

static void test_reclaim_in_order(void) {
  cf_executor *ex = cf_test_process_pool(1);
  enum { N = 300 };
  static cf_future *fs[N];
  unsigned most = 0;
  for (int i = 0; i < N; i++) {
    assert_rc(cf_submit(ex, cf_test_square_task, &i, sizeof i, &fs[i]), 0);
    unsigned n = cf__test_slots_in_use(ex);
    if (n > most) most = n;
    expect_rc(cf_future_wait(fs[i], -1), 0); /* done, not moved: a submit settles it */
  }
  fprintf(stderr, "  %d submits after a done task: at most %u slots in use\n", N, most);
  expect_true(most <= 2); /* this one, and the one before until it settles */
  expect_true(cf__test_slots_in_use(ex) <= 1);
  for (int i = 0; i < N; i++) {
    int r = 0;
    expect_rc(cf_future_result(fs[i], &r, sizeof r, NULL, -1), 0);
    expect_eq(r, i * i);
    cf_future_release(fs[i]);
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- 2. no lost wake-up ---- */

#define WORKERS 3
#define THREADS 3
#define BURST 8

static int worker_init(void *arg) {
  (void)arg;
  cf__test_worker_idle_forever();
  return 0;
}

static cf_executor *wex;
static pthread_barrier_t go, done;
static _Atomic unsigned round_no;
static _Atomic unsigned bad;

/* One burst of 1..BURST tasks, every result read. */
static void *burster(void *arg) {
  unsigned seed = 0x9e3779b9u * (unsigned)((uintptr_t)arg + 1);
  for (;;) {
    pthread_barrier_wait(&go);
    if (atomic_load(&round_no) == ~0u) return NULL;
    int n = 1 + (int)(rand_r(&seed) % BURST);
    cf_future *f[BURST];
    int x[BURST];
    for (int i = 0; i < n; i++) {
      x[i] = (int)(rand_r(&seed) % 1000);
      if (cf_submit(wex, cf_test_square_task, &x[i], sizeof x[i], &f[i]) != 0) {
        atomic_fetch_add(&bad, 1);
        f[i] = NULL;
      }
    }
    for (int i = 0; i < n; i++) {
      int r = -1;
      if (!f[i]) continue;
      int rc = cf_future_result(f[i], &r, sizeof r, NULL, -1);
      /* a killed worker fails only the task it ran: none runs when one is
       * killed here (between rounds), so every task succeeds */
      if (rc != 0 || r != x[i] * x[i]) atomic_fetch_add(&bad, 1);
      cf_future_release(f[i]);
    }
    pthread_barrier_wait(&done);
  }
}

/* The pid of a live worker, 0 if none is up. */
static pid_t some_worker(unsigned r) {
  for (unsigned k = 0; k < WORKERS; k++) {
    pid_t pid = cf__test_worker_pid(wex, (r + k) % WORKERS);
    if (pid > 0) return pid;
  }
  return 0;
}

static void test_no_lost_wakeup(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = WORKERS;
  o.initializer = worker_init;
  assert_rc(cf_process_pool_new(&o, &wex), 0);
  pthread_barrier_init(&go, NULL, THREADS + 1);
  pthread_barrier_init(&done, NULL, THREADS + 1);
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, burster, (void *)i);
  unsigned stopped = 0, killed = 0;
  for (unsigned r = 0; r < rounds; r++) {
    cf_test_watchdog(60, "a burst after every worker parked (a lost wake-up?)");
    /* every worker parks; one round in four, some are still on their way
     * to sleep when the burst comes */
    cf_test_nap_us(r % 4 == 1 ? (int)(r % 13) * 5 : 1000 + (int)(r % 7) * 500);
    pid_t victim = 0;
    if (r % 11 == 3 && (victim = some_worker(r)) > 0 && kill(victim, SIGSTOP) == 0) {
      stopped++;
    } else if (r % 23 == 7 && (victim = some_worker(r)) > 0 && kill(victim, SIGKILL) == 0) {
      killed++;
      victim = 0;
    } else {
      victim = 0;
    }
    atomic_store(&round_no, r);
    pthread_barrier_wait(&go);
    if (victim) {
      cf_test_nap_us(2000);
      kill(victim, SIGCONT);
    }
    pthread_barrier_wait(&done);
  }
  atomic_store(&round_no, ~0u);
  pthread_barrier_wait(&go);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  cf_test_watchdog(0, NULL);
  cf_stats st;
  expect_rc(cf_executor_stats(wex, &st), 0);
  fprintf(stderr, "  %u rounds: %u workers stopped, %u killed; %llu parks\n", rounds, stopped,
          killed, (unsigned long long)st.parks);
  expect_eq(atomic_load(&bad), 0);
  pthread_barrier_destroy(&go);
  pthread_barrier_destroy(&done);
  expect_rc(cf_executor_destroy(wex), 0);
}

/* ---- 3. a second sleeper is not stranded by the first one's wake-up ---- */

typedef struct shared {
  _Atomic int a_started, b_ran;
} shared;
#define sh ((shared *)cf_test_shm)

/* Runs until task b has run: only a second worker can run b meanwhile. */
static void task_a(cf_call *c) {
  atomic_store(&sh->a_started, 1);
  while (!atomic_load(&sh->b_ran)) cf_test_nap_us(100);
  cf_call_return(c, NULL, 0);
}

static void task_b(cf_call *c) {
  atomic_store(&sh->b_ran, 1);
  cf_call_return(c, NULL, 0);
}

/* Both workers asleep (and never looking again on their own). Task a wakes
 * one; b, submitted once a runs, needs the other. Before: a's wake-up
 * cleared the word's waiter bit, the other sleeper could not set it again
 * while asleep, b's submit woke nobody and b waited for a (here: forever;
 * with the periodic look, up to 1 s). Now the sweep wakes it. */
static void test_second_sleeper_woken(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.initializer = worker_init;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  for (int round = 0; round < 20; round++) {
    cf_test_watchdog(60, "task b queued while one worker runs a and the other sleeps");
    atomic_store(&sh->a_started, 0);
    atomic_store(&sh->b_ran, 0);
    cf_test_nap_ms(5); /* both workers park */
    cf_future *fa, *fb;
    assert_rc(cf_submit(ex, task_a, NULL, 0, &fa), 0);
    while (!atomic_load(&sh->a_started)) cf_test_nap_us(100);
    assert_rc(cf_submit(ex, task_b, NULL, 0, &fb), 0);
    expect_rc(cf_future_result(fb, NULL, 0, NULL, -1), 0);
    expect_rc(cf_future_result(fa, NULL, 0, NULL, -1), 0);
    cf_future_release(fa);
    cf_future_release(fb);
  }
  cf_test_watchdog(0, NULL);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- 4. released futures free their slots without notices ---- */

static void test_orphans_without_notices(void) {
  cf_executor *ex = cf_test_process_pool(1);
  enum { N = 200 };
  unsigned most = 0;
  uint64_t before = cf__test_notices(ex);
  for (int i = 0; i < N; i++) {
    cf_future *orphan, *probe;
    assert_rc(cf_submit(ex, cf_test_square_task, &i, sizeof i, &orphan), 0);
    cf_future_release(orphan); /* not done yet (mostly): an orphan */
    assert_rc(cf_submit(ex, cf_test_square_task, &i, sizeof i, &probe), 0);
    int r = 0;
    expect_rc(cf_future_result(probe, &r, sizeof r, NULL, -1), 0);
    expect_eq(r, i * i);
    cf_future_release(probe);
    unsigned n = cf__test_slots_in_use(ex);
    if (n > most) most = n;
  }
  uint64_t notices = cf__test_notices(ex) - before;
  fprintf(stderr, "  %d released tasks: %llu notices, at most %u slots in use\n", N,
          (unsigned long long)notices, most);
  expect_true(notices < N / 10);
  expect_true(most <= 4);
  /* no submit after the last orphan: the sweep frees its slot */
  cf_test_watchdog(30, "the sweep frees a released task's slot");
  while (cf__test_slots_in_use(ex) != 0) cf_test_nap_ms(10);
  cf_test_watchdog(0, NULL);
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  cf_test_shared(sizeof(shared));
  if (argc > 1) rounds = (unsigned)strtoul(argv[1], NULL, 10);
  rounds = (unsigned)cf_test_scale(rounds);
  if (rounds == 0) rounds = 1;
  CF_RUN(test_reclaim_in_order);
  CF_RUN(test_no_lost_wakeup);
  CF_RUN(test_second_sleeper_woken);
  CF_RUN(test_orphans_without_notices);
  return cf_test_done("test_wake_reclaim");
}
