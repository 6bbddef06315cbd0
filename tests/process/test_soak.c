/* cf-test: labels=stress;fault;shm timeout=900 args=20000 */
/*
 * test_soak.c — the process pool under everything at once, against an
 * exactly-once oracle (issue 9's soak). Not a benchmark.
 *
 *   test_soak [TASKS] [--no-host-thread] [--no-localtime-in-tasks]
 *
 * ctest runs 20,000 tasks; the full soak is 300,000:
 *     build/debug/tests/test_soak 300000
 * (shrunk by $CF_TEST_SCALE under sanitizers, like every stress test).
 *
 * While 4 submitter threads push TASKS tasks (each keeps 1,000 in flight and
 * holds every future to the end), a killer thread SIGKILLs random workers,
 * SIGSTOPs them for a few milliseconds, SIGKILLs the zygote and SIGSTOPs it
 * for a few milliseconds; a canceller cancels random futures (queued and
 * running); one task in six has a deadline of 0.2-5 ms (firing while queued
 * or running); workers are recycled every 100 tasks; one task in 97 fails on
 * purpose (CF_ETASK); one in 16 returns a result that fills the worker's
 * result region, one in 16 one that goes into its slot's result area; a
 * quarter have a done callback. A host thread calls
 * localtime_r throughout (--no-host-thread: not), and so do the tasks
 * (--no-localtime-in-tasks: not): in the default start mode (exec) no
 * worker inherits the host's time-zone lock, whatever the host thread
 * holds when a worker is made.
 *
 * Oracle, for every task i (execs[i] counts its runs, in shared memory):
 *   - success: the right result, and it ran exactly once;
 *   - CF_ETASK: it is one that fails on purpose, with its code, ran once;
 *   - CF_ECRASHED (a worker or the zygote killed): ran at most once;
 *   - CF_ECANCELLED: the canceller touched it; ran at most once;
 *   - CF_EDEADLINE: it had a deadline; ran at most once;
 *   - nothing else, nothing hangs (a watchdog; idle workers never look at
 *     the ring on their own, cf__test_worker_idle_forever, so a lost
 *     wake-up is a hang too), every callback exactly once,
 *     the crash count in the statistics equals the CF_ECRASHED outcomes, the
 *     pool works afterwards, destroy returns, no segment is left mapped.
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

#define SUBMITTERS 4
#define WINDOW 1000
#define AREA 200  /* a result past the slot's inline bytes: the slot's result area */
#define BIG 12000 /* past the slot's result area (8 KiB): the worker's result region */

typedef struct work {
  uint32_t index;
  uint32_t spin_ns;
  uint8_t fail, big, localtime; /* big: 1 AREA, 2 BIG bytes of result */
} work;

static uint8_t size_class(uint64_t i) {
  return i % 16 == 5 ? 2 : i % 16 == 9 ? 1 : 0;
}
static size_t result_len(uint8_t big) {
  return big == 2 ? BIG : big == 1 ? AREA : 12;
}

#define execs ((_Atomic uint32_t *)cf_test_shm) /* runs per task, shared with the workers */

static uint64_t ntasks = 20000;
static bool host_thread = true, localtime_in_tasks = true;

static cf_executor *ex;
static cf_future **fs; /* every future, held to the end */
static _Atomic uint8_t *cancel_tried, *has_deadline, *has_cb;
static _Atomic uint32_t *cb_runs;
/* per submitter: how many of its futures are in fs[] (the canceller's part) */
static _Atomic uint64_t published[SUBMITTERS];
static _Atomic bool stop_chaos;

static void fill(unsigned char *b, size_t n, uint32_t index) {
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(index * 131 + i * 7);
}

static void t_work(cf_call *c) {
  const work *w = cf_call_arg(c, NULL);
  atomic_fetch_add(&execs[w->index], 1);
  if (w->localtime) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
  }
  if (w->spin_ns) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) < w->spin_ns);
  }
  if (w->fail) {
    cf_call_fail(c, (int)w->index, "on purpose");
    return;
  }
  unsigned char out[BIG];
  size_t n = result_len(w->big);
  fill(out, n, w->index);
  cf_call_return(c, out, n);
}

/* Every worker: a lost wake-up hangs (and the watchdog fails the soak)
 * instead of costing a second (test_hooks.h). */
static int worker_init(void *arg) {
  (void)arg;
  cf__test_worker_idle_forever();
  return 0;
}

static void on_done(cf_future *f, void *arg) {
  atomic_fetch_add(&cb_runs[(uintptr_t)arg], 1);
}

/* ---- the oracle ---- */

enum { OK, TASKFAIL, CRASHED, CANCELLED, TIMEDOUT, OUTCOMES };
static _Atomic uint64_t outcome[OUTCOMES];

static void check(uint64_t i) {
  unsigned char got[BIG], want[BIG];
  size_t len = 0;
  int rc = cf_future_result(fs[i], got, sizeof got, &len, -1);
  uint32_t ran = atomic_load(&execs[i]);
  bool fail = i % 97 == 0;
  if (rc == 0) {
    size_t n = result_len(size_class(i));
    fill(want, n, (uint32_t)i);
    if (fail || len != n || memcmp(got, want, n) != 0 || ran != 1)
      cf_test_fail(__FILE__, __LINE__, "success", "task %llu: len %zu, ran %u",
                   (unsigned long long)i, len, ran);
    atomic_fetch_add(&outcome[OK], 1);
    return;
  }
  int k = rc == CF_ETASK        ? TASKFAIL
          : rc == CF_ECRASHED   ? CRASHED
          : rc == CF_ECANCELLED ? CANCELLED
          : rc == CF_EDEADLINE  ? TIMEDOUT
                                : -1;
  bool legal = ran <= 1;
  if (k == TASKFAIL) {
    int code = 0;
    legal = fail && ran == 1 && cf_future_error(fs[i], &code, NULL, 0) == 0 && code == (int)i;
  } else if (k == CANCELLED) {
    legal &= atomic_load(&cancel_tried[i]) != 0;
  } else if (k == TIMEDOUT) {
    legal &= atomic_load(&has_deadline[i]) != 0;
  } else if (k < 0) {
    legal = false;
  }
  if (!legal)
    cf_test_fail(__FILE__, __LINE__, "outcome", "task %llu: %s, ran %u", (unsigned long long)i,
                 cf_strerror(rc), ran);
  if (k >= 0) atomic_fetch_add(&outcome[k], 1);
}

/* ---- the threads ---- */

static void *submitter(void *arg) {
  uint64_t t = (uintptr_t)arg;
  uint64_t first = ntasks * t / SUBMITTERS, end = ntasks * (t + 1) / SUBMITTERS;
  unsigned seed = (unsigned)(0x9e3779b9u * (t + 1));
  for (uint64_t i = first; i < end; i++) {
    work w = {.index = (uint32_t)i,
              .spin_ns = (uint32_t)(rand_r(&seed) % 40000),
              .fail = i % 97 == 0,
              .big = size_class(i),
              .localtime = localtime_in_tasks};
    cf_submit_opts so = {.timeout_ns = 0, .flags = 0};
    if (rand_r(&seed) % 6 == 0) {
      so.timeout_ns = 200000 + rand_r(&seed) % 4800000;
      atomic_store(&has_deadline[i], 1);
    }
    int rc = cf_submit_ex(ex, t_work, &w, sizeof w, &so, &fs[i]);
    if (rc != 0) {
      cf_test_fail(__FILE__, __LINE__, "submit", "task %llu: %s", (unsigned long long)i,
                   cf_strerror(rc));
      exit(1);
    }
    if (rand_r(&seed) % 4 == 0) {
      atomic_store(&has_cb[i], 1);
      expect_rc(cf_future_add_done_callback(fs[i], on_done, (void *)(uintptr_t)i), 0);
    }
    /* release: the canceller reads fs[i] once it sees the count (acquire) */
    atomic_store_explicit(&published[t], i + 1 - first, memory_order_release);
    if (i >= first + WINDOW) check(i - WINDOW);
  }
  for (uint64_t i = end > first + WINDOW ? end - WINDOW : first; i < end; i++) check(i);
  return NULL;
}

static void *canceller(void *arg) {
  unsigned seed = 0x5bd1e995u;
  while (!atomic_load(&stop_chaos)) {
    unsigned t = (unsigned)rand_r(&seed) % SUBMITTERS;
    uint64_t n = atomic_load_explicit(&published[t], memory_order_acquire);
    if (n) {
      uint64_t i = ntasks * t / SUBMITTERS + (uint64_t)rand_r(&seed) % n;
      atomic_store(&cancel_tried[i], 1);
      int r = cf_future_cancel(fs[i]);
      expect_true(r == 0 || r == CF_EDONE);
    }
    struct timespec ts = {0, (long)(rand_r(&seed) % 400) * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static _Atomic unsigned kills, stops, zkills, zstops;

static void *killer(void *arg) {
  unsigned seed = (unsigned)time(NULL);
  cf_stats st;
  cf_executor_stats(ex, &st);
  while (!atomic_load(&stop_chaos)) {
    struct timespec ts = {0, (long)(rand_r(&seed) % 3000) * 1000};
    nanosleep(&ts, NULL);
    unsigned r = (unsigned)rand_r(&seed) % 100;
    if (r < 3) {
      pid_t z = cf__test_zygote_pid(ex);
      if (z > 0 && kill(z, SIGKILL) == 0) atomic_fetch_add(&zkills, 1);
    } else if (r < 8) {
      pid_t z = cf__test_zygote_pid(ex);
      if (z > 0 && kill(z, SIGSTOP) == 0) {
        atomic_fetch_add(&zstops, 1);
        struct timespec d = {0, (long)(1 + rand_r(&seed) % 20) * 1000000};
        nanosleep(&d, NULL);
        kill(z, SIGCONT);
      }
    } else {
      pid_t w = cf__test_worker_pid(ex, (unsigned)rand_r(&seed) % st.workers);
      if (w <= 0) continue;
      if (r < 20) {
        if (kill(w, SIGSTOP) == 0) {
          atomic_fetch_add(&stops, 1);
          struct timespec d = {0, (long)(1 + rand_r(&seed) % 5) * 1000000};
          nanosleep(&d, NULL);
          kill(w, SIGCONT);
        }
      } else if (kill(w, SIGKILL) == 0) {
        atomic_fetch_add(&kills, 1);
      }
    }
  }
  return NULL;
}

static void *host(void *arg) {
  unsigned long n = 0;
  while (!atomic_load(&stop_chaos)) {
    time_t t = time(NULL) + (time_t)(n++ % 1000);
    struct tm tm;
    localtime_r(&t, &tm);
  }
  return NULL;
}

static int segment_mappings(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int n = 0;
  while (f && fgets(line, sizeof line, f)) n += strstr(line, "cfutures-pool") != NULL;
  if (f) fclose(f);
  return n;
}

static void test_soak(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 4;
  o.max_tasks_per_worker = 100;
  o.ring_capacity = 256;
  o.initializer = worker_init;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  size_t n = (size_t)ntasks;
  fs = calloc(n, sizeof *fs);
  cancel_tried = calloc(n, 1);
  has_deadline = calloc(n, 1);
  has_cb = calloc(n, 1);
  cb_runs = calloc(n, sizeof *cb_runs);
  assert_true(fs && cancel_tried && has_deadline && has_cb && cb_runs);
  cf_test_watchdog(600, "the soak");
  pthread_t sub[SUBMITTERS], kt, ct, ht;
  atomic_store(&stop_chaos, false);
  pthread_create(&kt, NULL, killer, NULL);
  pthread_create(&ct, NULL, canceller, NULL);
  if (host_thread) pthread_create(&ht, NULL, host, NULL);
  for (uintptr_t t = 0; t < SUBMITTERS; t++) pthread_create(&sub[t], NULL, submitter, (void *)t);
  for (int t = 0; t < SUBMITTERS; t++) pthread_join(sub[t], NULL);
  atomic_store(&stop_chaos, true);
  pthread_join(kt, NULL);
  pthread_join(ct, NULL);
  if (host_thread) pthread_join(ht, NULL);
  /* every callback exactly once (they may still be on their way) */
  uint64_t want_cbs = 0, bad_cbs = 0;
  for (size_t i = 0; i < n; i++) {
    if (!atomic_load(&has_cb[i])) continue;
    want_cbs++;
    while (atomic_load(&cb_runs[i]) == 0) sched_yield();
  }
  cf_stats st;
  cf_executor_stats(ex, &st);
  for (size_t i = 0; i < n; i++) {
    if (atomic_load(&has_cb[i]) && atomic_load(&cb_runs[i]) != 1) bad_cbs++;
    cf_future_release(fs[i]);
  }
  expect_eq(bad_cbs, 0);
  expect_eq(st.crashed, atomic_load(&outcome[CRASHED]));
  uint64_t total = 0;
  for (int k = 0; k < OUTCOMES; k++) total += atomic_load(&outcome[k]);
  expect_eq(total, ntasks);
  /* the pool works afterwards */
  for (uint32_t i = 0; i < 100; i++) {
    work w = {.index = i, .spin_ns = 0, .fail = 0, .big = 0, .localtime = 0};
    atomic_store(&execs[i], 0);
    cf_future *f;
    unsigned char got[BIG], want[BIG];
    size_t len = 0;
    assert_rc(cf_submit(ex, t_work, &w, sizeof w, &f), 0);
    expect_rc(cf_future_result(f, got, sizeof got, &len, -1), 0);
    fill(want, 12, i);
    expect_true(len == 12 && memcmp(got, want, 12) == 0);
    cf_future_release(f);
  }
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(segment_mappings(), 0);
  cf_test_watchdog(0, NULL);
  fprintf(stderr,
          "  soak: %llu tasks: %llu ok, %llu failed on purpose, %llu crashed, %llu cancelled, "
          "%llu timed out; %llu callbacks; workers: %u killed, %u stopped; zygote: %u killed, "
          "%u stopped; %llu respawns\n",
          (unsigned long long)ntasks, (unsigned long long)outcome[OK],
          (unsigned long long)outcome[TASKFAIL], (unsigned long long)outcome[CRASHED],
          (unsigned long long)outcome[CANCELLED], (unsigned long long)outcome[TIMEDOUT],
          (unsigned long long)want_cbs, kills, stops, zkills, zstops,
          (unsigned long long)st.respawned);
  free(fs);
  free((void *)cancel_tried);
  free((void *)has_deadline);
  free((void *)has_cb);
  free((void *)cb_runs);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--no-host-thread") == 0)
      host_thread = false;
    else if (strcmp(argv[i], "--no-localtime-in-tasks") == 0)
      localtime_in_tasks = false;
    else
      ntasks = strtoull(argv[i], NULL, 10);
  }
  ntasks = cf_test_scale(ntasks);
  if (ntasks < 4 * WINDOW) ntasks = 4 * WINDOW;
  cf_test_shared(ntasks * sizeof(uint32_t));
  CF_RUN(test_soak);
  return cf_test_done("test_soak");
}
