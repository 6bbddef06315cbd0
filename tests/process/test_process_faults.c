/* cf-test: labels=stress;fault;shm timeout=300 variants=exec;fork */
/*
 * test_process_faults.c — fault injection into the process pool.
 *
 * In the start mode argv[1] names ("exec" or "fork").
 * 1. Named points of the protocol: a test hook (cf__test_set_fault_hook,
 *    set in each worker by its initializer) SIGKILLs the worker every k-th time it reaches one
 *    point: after popping a hint (before the claim), after claiming, while
 *    writing the result, after the completing CAS (before the wake-up and
 *    the completion notice).
 * 2. Random kills: the test SIGKILLs random workers at random moments while
 *    thousands of tasks run.
 * 3. Chaos: random kills, random cancels (queued and running tasks), short
 *    deadlines (firing while queued or running) and worker recycling, all
 *    at once.
 * Oracle, every time: a task either completes once with the right result
 * (it ran exactly once: a per-task counter in shared memory), or fails with
 * CF_ECRASHED (chaos: or CF_ECANCELLED / CF_EDEADLINE) and ran at most
 * once — and fails only if it was killed (never
 * for the points before the claim or after the completion); every done
 * callback runs exactly once; nothing hangs (result() without timeout; the
 * ctest timeout is the only bound); the pool stays usable; no segment is
 * left mapped after destroy.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "test_hooks.h"
#include "testutil.h"

#define MAXN 20000
#define PAYLOAD 200 /* past the slot's inline area: results go to the arena */

typedef struct shared {
  _Atomic int point;       /* CF__PP_* to kill at, 0: none */
  _Atomic unsigned every;  /* kill at every k-th visit */
  _Atomic unsigned visits; /* visits of `point` */
  _Atomic unsigned kills;  /* kills done by the hook */
  _Atomic uint32_t execs[MAXN];
} shared;
#define sh ((shared *)cf_test_shm) /* testutil.h */
static unsigned start_mode;

static void fault_hook(int point, uint32_t slot) {
  if (point != atomic_load(&sh->point)) return;
  unsigned every = atomic_load(&sh->every);
  if (atomic_fetch_add(&sh->visits, 1) % every == every - 1) {
    atomic_fetch_add(&sh->kills, 1);
    raise(SIGKILL);
  }
}

typedef struct work {
  uint32_t index;
  uint32_t spin_ns;
} work;

static void fill(unsigned char *b, uint32_t index) {
  for (int i = 0; i < PAYLOAD; i++) b[i] = (unsigned char)(index * 31 + i);
}

static void t_work(cf_call *c) {
  size_t n;
  const work *w = cf_call_arg(c, &n);
  atomic_fetch_add(&sh->execs[w->index], 1);
  if (w->spin_ns) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) < w->spin_ns);
  }
  unsigned char out[PAYLOAD];
  fill(out, w->index);
  cf_call_return(c, out, sizeof out);
}

static _Atomic uint32_t cb_runs[MAXN];
static void on_done(cf_future *f, void *arg) {
  atomic_fetch_add(&cb_runs[(uintptr_t)arg], 1);
}

static int segment_mappings(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strstr(line, "cfutures-pool") != NULL;
  fclose(f);
  return n;
}

/* Every worker: the shared page and the hook (an exec-mode worker starts
 * from the program file: neither is there before this runs). */
static int worker_init(void *arg) {
  if (cf_test_shared_attach(arg) != 0) return 1;
  cf__test_set_fault_hook(fault_hook);
  return 0;
}

static cf_executor *mkpool(unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.start_mode = start_mode;
  o.initializer = worker_init;
  o.max_futures = MAXN + 256; /* the test holds every future of a batch */
  o.ring_capacity = 256;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

/* Run n tasks; half are waited on with result(), half through callbacks
 * and cf_wait. Checks the oracle; returns the number that crashed. */
static unsigned run_batch(cf_executor *ex, uint32_t n, bool may_crash, uint32_t spin_ns,
                          void (*during)(cf_executor *)) {
  static cf_future *fs[MAXN];
  assert_true(n <= MAXN);
  for (uint32_t i = 0; i < n; i++) {
    atomic_store(&sh->execs[i], 0);
    atomic_store(&cb_runs[i], 0);
  }
  for (uint32_t i = 0; i < n; i++) {
    work w = {i, spin_ns ? (uint32_t)(rand() % spin_ns) : 0};
    assert_rc(cf_submit(ex, t_work, &w, sizeof w, &fs[i]), 0);
    if (i % 2) expect_rc(cf_future_add_done_callback(fs[i], on_done, (void *)(uintptr_t)i), 0);
  }
  if (during) during(ex);
  unsigned crashed = 0;
  unsigned char want[PAYLOAD], got[PAYLOAD];
  for (uint32_t i = 0; i < n; i += 2) {
    size_t len = 0;
    int r = cf_future_result(fs[i], got, sizeof got, &len, -1);
    fill(want, i);
    if (r == 0) {
      expect_eq(len, PAYLOAD);
      expect_true(memcmp(got, want, PAYLOAD) == 0);
      expect_eq(atomic_load(&sh->execs[i]), 1);
    } else {
      expect_rc(r, CF_ECRASHED);
      expect_true(may_crash);
      expect_true(atomic_load(&sh->execs[i]) <= 1);
      crashed++;
    }
  }
  /* the odd ones: cf_wait (callbacks underneath), then the results */
  for (uint32_t i = 1; i < n; i += 2) {
    cf_future *one = fs[i];
    expect_rc(cf_wait(&one, 1, CF_ALL_COMPLETED, -1, NULL), 0);
    size_t len = 0;
    int r = cf_future_result(fs[i], got, sizeof got, &len, 0);
    fill(want, i);
    if (r == 0) {
      expect_true(len == PAYLOAD && memcmp(got, want, PAYLOAD) == 0);
      expect_eq(atomic_load(&sh->execs[i]), 1);
    } else {
      expect_rc(r, CF_ECRASHED);
      expect_true(may_crash);
      expect_true(atomic_load(&sh->execs[i]) <= 1);
      crashed++;
    }
  }
  /* every callback exactly once (they run on the supervisor thread) */
  for (uint32_t i = 1; i < n; i += 2) {
    while (atomic_load(&cb_runs[i]) == 0) sched_yield();
    expect_eq(atomic_load(&cb_runs[i]), 1);
  }
  for (uint32_t i = 0; i < n; i++) cf_future_release(fs[i]);
  return crashed;
}

static const char *point_name(int p) {
  switch (p) {
    case CF__PP_AFTER_POP:
      return "after pop";
    case CF__PP_AFTER_CLAIM:
      return "after claim";
    case CF__PP_MID_RESULT:
      return "mid result";
    default:
      return "after complete";
  }
}

static void test_named_points(void) {
  int points[] = {CF__PP_AFTER_POP, CF__PP_AFTER_CLAIM, CF__PP_MID_RESULT, CF__PP_AFTER_COMPLETE};
  uint32_t n = (uint32_t)cf_test_scale(1500);
  if (n < 40) n = 40;
  for (unsigned k = 0; k < 4; k++) {
    int point = points[k];
    cf_executor *ex = mkpool(3);
    atomic_store(&sh->visits, 0);
    atomic_store(&sh->kills, 0);
    atomic_store(&sh->every, 7);
    atomic_store(&sh->point, point);
    bool may_crash = point == CF__PP_AFTER_CLAIM || point == CF__PP_MID_RESULT;
    unsigned crashed = run_batch(ex, n, may_crash, 0, NULL);
    atomic_store(&sh->point, 0);
    unsigned kills = atomic_load(&sh->kills);
    expect_true(kills > 0);
    cf_stats st;
    cf_executor_stats(ex, &st);
    expect_eq(st.crashed, crashed);
    if (may_crash) expect_eq(crashed, kills);
    /* deaths are reported asynchronously: wait for the replacements */
    while (st.respawned < kills) {
      sched_yield();
      cf_executor_stats(ex, &st);
    }
    /* usable afterwards, with nobody being killed */
    expect_eq(run_batch(ex, 40, false, 0, NULL), 0);
    expect_rc(cf_executor_destroy(ex), 0);
    expect_eq(segment_mappings(), 0);
    fprintf(stderr, "  %-15s: %u tasks, %u workers killed, %u tasks crashed\n", point_name(point),
            n, kills, crashed);
  }
}

static unsigned random_kills;
static _Atomic bool killer_stop;

/* Kill a random worker every 0..2 ms until told to stop. */
static void *killer(void *arg) {
  cf_executor *ex = arg;
  cf_stats st;
  cf_executor_stats(ex, &st);
  unsigned seed = (unsigned)time(NULL);
  while (!atomic_load(&killer_stop)) {
    struct timespec ts = {0, (long)(rand_r(&seed) % 2000) * 1000};
    nanosleep(&ts, NULL);
    unsigned i = (unsigned)rand_r(&seed) % st.workers;
    pid_t pid = cf__test_worker_pid(ex, i);
    if (pid > 0 && kill(pid, SIGKILL) == 0) random_kills++;
  }
  return NULL;
}

static void test_random_kills(void) {
  cf_executor *ex = mkpool(4);
  atomic_store(&sh->point, 0);
  random_kills = 0;
  uint32_t n = (uint32_t)cf_test_scale(8000);
  if (n < 100) n = 100;
  atomic_store(&killer_stop, false);
  pthread_t kt;
  pthread_create(&kt, NULL, killer, ex);
  unsigned crashed = run_batch(ex, n, true, 20000, NULL);
  atomic_store(&killer_stop, true);
  pthread_join(kt, NULL);
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.crashed, crashed);
  expect_true(crashed <= random_kills);
  expect_eq(run_batch(ex, 100, false, 0, NULL), 0);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(segment_mappings(), 0);
  fprintf(stderr, "  random: %u tasks, %u workers killed, %u tasks crashed\n", n, random_kills,
          crashed);
}

/* Everything at once: random kills, cancels of queued and running tasks,
 * deadlines that fire while queued or running, worker recycling. Every
 * future ends in exactly one legal way and every callback runs once. */
static cf_future *chaos_fs[MAXN];
static _Atomic uint32_t chaos_n;
static _Atomic bool chaos_stop;

static void *canceller(void *arg) {
  unsigned seed = (unsigned)time(NULL) ^ 0x5bd1e995u;
  while (!atomic_load(&chaos_stop)) {
    uint32_t n = atomic_load(&chaos_n);
    if (n) {
      cf_future *f = chaos_fs[rand_r(&seed) % n];
      int r = cf_future_cancel(f);
      expect_true(r == 0 || r == CF_EDONE);
    }
    struct timespec ts = {0, (long)(rand_r(&seed) % 300) * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void recycle_often(cf_options *o) {
  o->max_tasks_per_worker = 50;
}

static void test_chaos(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 3;
  o.max_futures = MAXN + 256;
  o.ring_capacity = 256;
  o.start_mode = start_mode;
  o.initializer = worker_init;
  recycle_often(&o);
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  atomic_store(&sh->point, 0);
  random_kills = 0;
  uint32_t n = (uint32_t)cf_test_scale(6000);
  if (n < 200) n = 200;
  for (uint32_t i = 0; i < n; i++) {
    atomic_store(&sh->execs[i], 0);
    atomic_store(&cb_runs[i], 0);
  }
  atomic_store(&chaos_n, 0);
  atomic_store(&chaos_stop, false);
  atomic_store(&killer_stop, false);
  pthread_t kt, ct;
  pthread_create(&kt, NULL, killer, ex);
  pthread_create(&ct, NULL, canceller, NULL);
  unsigned seed = 12345;
  for (uint32_t i = 0; i < n; i++) {
    work w = {i, (uint32_t)(rand_r(&seed) % 30000)};
    cf_submit_opts so = {.timeout_ns = 0, .flags = 0};
    if (i % 5 == 0) so.timeout_ns = (int64_t)(rand_r(&seed) % 3000000) + 1; /* up to 3 ms */
    assert_rc(cf_submit_ex(ex, t_work, &w, sizeof w, &so, &chaos_fs[i]), 0);
    expect_rc(cf_future_add_done_callback(chaos_fs[i], on_done, (void *)(uintptr_t)i), 0);
    atomic_store(&chaos_n, i + 1);
  }
  unsigned outcome[5] = {0}; /* ok, crashed, cancelled, timed out, other */
  unsigned char want[PAYLOAD], got[PAYLOAD];
  for (uint32_t i = 0; i < n; i++) {
    size_t len = 0;
    int r = cf_future_result(chaos_fs[i], got, sizeof got, &len, -1);
    uint32_t ran = atomic_load(&sh->execs[i]);
    fill(want, i);
    if (r == 0) {
      outcome[0]++;
      expect_true(len == PAYLOAD && memcmp(got, want, PAYLOAD) == 0);
      expect_eq(ran, 1);
    } else {
      outcome[r == CF_ECRASHED ? 1 : r == CF_ECANCELLED ? 2 : r == CF_EDEADLINE ? 3 : 4]++;
      expect_true(r == CF_ECRASHED || r == CF_ECANCELLED || r == CF_EDEADLINE);
      expect_true(ran <= 1);
      if (r == CF_EDEADLINE) expect_true(i % 5 == 0);
    }
  }
  atomic_store(&chaos_stop, true);
  atomic_store(&killer_stop, true);
  pthread_join(ct, NULL);
  pthread_join(kt, NULL);
  for (uint32_t i = 0; i < n; i++) {
    while (atomic_load(&cb_runs[i]) == 0) sched_yield();
    expect_eq(atomic_load(&cb_runs[i]), 1);
    cf_future_release(chaos_fs[i]);
  }
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.crashed, outcome[1]);
  expect_eq(run_batch(ex, 100, false, 0, NULL), 0);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(segment_mappings(), 0);
  fprintf(stderr,
          "  chaos: %u tasks: %u ok, %u crashed, %u cancelled, %u timed out; %u workers "
          "killed, %llu respawned\n",
          n, outcome[0], outcome[1], outcome[2], outcome[3], random_kills,
          (unsigned long long)st.respawned);
}

int main(int argc, char **argv) {
  start_mode = argc > 1 && strcmp(argv[1], "fork") == 0 ? CF_START_FORK : CF_START_EXEC;
  cf_test_shared(sizeof(shared));
  srand((unsigned)time(NULL));
  CF_RUN(test_named_points);
  CF_RUN(test_random_kills);
  CF_RUN(test_chaos);
  return cf_test_done(start_mode == CF_START_FORK ? "test_process_faults fork"
                                                  : "test_process_faults exec");
}
