/* cf-test: labels=unit timeout=120 */
/*
 * test_thread_pool.c — behaviour specific to the work-stealing thread pool:
 * submit from inside a worker, recursive fork-join (checked against a
 * sequential oracle), worker names in /proc, initializer failure, the
 * max_queued bound, stats counters, parking when idle, shutdown flags.
 */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "future.h"
#include "testutil.h"
#include "thread_pool.h"

/* Counters are bumped just after a future completes: poll until the
 * completed count reaches `want` (bounded by the test timeout). */
static void stats_settle(cf_executor *ex, uint64_t want, cf_stats *st) {
  for (int i = 0; i < 100000; i++) {
    cf_executor_stats(ex, st);
    if (st->completed >= want) return;
    usleep(100);
  }
}

static cf_executor *new_pool(unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  cf_executor *ex = NULL;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  return ex;
}

static int64_t get_i64(cf_future *f) {
  int64_t v = -1;
  size_t len = 0;
  int rc = cf_future_result(f, &v, sizeof v, &len, -1);
  expect_rc(rc, 0);
  expect_eq(len, sizeof v);
  return v;
}

/* ---- fib: recursive fork-join ---- */

static cf_executor *g_ex;

static void fib_task(cf_call *c) {
  size_t len;
  const int *np = cf_call_arg(c, &len);
  int n = *np;
  int64_t r;
  if (n < 2) {
    r = n;
  } else {
    int a = n - 1, b = n - 2;
    cf_future *fa, *fb;
    if (cf_submit(g_ex, fib_task, &a, sizeof a, &fa) != 0 ||
        cf_submit(g_ex, fib_task, &b, sizeof b, &fb) != 0) {
      cf_call_fail(c, 1, "submit");
      return;
    }
    int64_t ra = -1, rb = -1;
    int e1 = cf_future_result(fb, &rb, sizeof rb, NULL, -1);
    int e2 = cf_future_result(fa, &ra, sizeof ra, NULL, -1);
    cf_future_release(fa);
    cf_future_release(fb);
    if (e1 || e2) {
      cf_call_fail(c, 2, "join");
      return;
    }
    r = ra + rb;
  }
  cf_call_return(c, &r, sizeof r);
}

static int64_t fib_seq(int n) {
  return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static void test_fib(void) {
  for (unsigned workers = 1; workers <= 4; workers *= 2) {
    g_ex = new_pool(workers);
    int n = cf_test_scale(100) >= 100 ? 25 : 18;
    cf_future *f;
    assert_rc(cf_submit(g_ex, fib_task, &n, sizeof n, &f), 0);
    expect_eq(get_i64(f), fib_seq(n));
    cf_future_release(f);
    cf_stats st;
    expect_rc(cf_executor_stats(g_ex, &st), 0);
    stats_settle(g_ex, st.submitted, &st);
    /* fib(n) spawns 2 * (fib calls - 1) tasks plus the root */
    expect_true(st.submitted >= 2);
    expect_eq(st.submitted, st.completed);
    if (st.submitted != st.completed)
      fprintf(stderr, "sub %lu comp %lu canc %lu stolen %lu q %lu\n", (unsigned long)st.submitted,
              (unsigned long)st.completed, (unsigned long)st.cancelled, (unsigned long)st.stolen,
              (unsigned long)st.queued);
    expect_eq(st.queued, 0);
    expect_eq(st.workers, workers);
    expect_rc(cf_executor_destroy(g_ex), 0);
  }
}

/* ---- submit from inside a worker goes to that worker ---- */

typedef struct inner_res {
  int outer_worker;
  int inner_worker;
  int64_t value;
} inner_res;

static void whoami(cf_call *c) {
  int w = cf__thread_pool_worker_index(g_ex);
  cf_call_return(c, &w, sizeof w);
}

static void outer_task(cf_call *c) {
  inner_res r = {cf__thread_pool_worker_index(g_ex), -2, 0};
  cf_future *f;
  if (cf_submit(g_ex, whoami, NULL, 0, &f) != 0) {
    cf_call_fail(c, 1, "inner submit");
    return;
  }
  /* the inner task sits at the bottom of our deque; the join pops it back */
  cf_future_result(f, &r.inner_worker, sizeof r.inner_worker, NULL, -1);
  cf_future_release(f);
  cf_call_return(c, &r, sizeof r);
}

static void test_submit_inside(void) {
  g_ex = new_pool(1);
  cf_future *f;
  assert_rc(cf_submit(g_ex, outer_task, NULL, 0, &f), 0);
  inner_res r;
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r.outer_worker, 0);
  expect_eq(r.inner_worker, 0);
  expect_eq(cf__thread_pool_worker_index(g_ex), -1);
  cf_future_release(f);
  cf_executor_destroy(g_ex);

  /* with more workers the inner task is still queued on the submitter's
   * deque: with the awaited task popped back inline it runs on the same one */
  g_ex = new_pool(2);
  for (int i = 0; i < 50; i++) {
    assert_rc(cf_submit(g_ex, outer_task, NULL, 0, &f), 0);
    expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
    expect_true(r.outer_worker >= 0 && r.outer_worker < 2);
    expect_true(r.inner_worker >= 0 && r.inner_worker < 2);
    cf_future_release(f);
  }
  cf_executor_destroy(g_ex);
}

/* ---- names in /proc ---- */

static void test_names(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 3;
  o.name = "tpnames";
  cf_executor *ex;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  /* a task per worker is not guaranteed; the names are set at thread start,
   * so wait until all three show up (bounded by the test timeout) */
  int found = 0;
  for (int round = 0; round < 2000 && found < 3; round++) {
    found = 0;
    DIR *d = opendir("/proc/self/task");
    assert_true(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char path[300], comm[64] = {0};
      snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
      FILE *fp = fopen(path, "r");
      if (!fp) continue;
      if (fgets(comm, sizeof comm, fp)) {
        comm[strcspn(comm, "\n")] = 0;
        if (!strcmp(comm, "tpnames-0") || !strcmp(comm, "tpnames-1") || !strcmp(comm, "tpnames-2"))
          found++;
      }
      fclose(fp);
    }
    closedir(d);
    if (found < 3) usleep(1000);
  }
  expect_eq(found, 3);
  cf_executor_destroy(ex);
}

/* ---- initializer ---- */

static atomic_int init_calls;
static int init_fail(void *arg) {
  atomic_fetch_add(&init_calls, 1);
  return *(int *)arg;
}

static void nop_task(cf_call *c) {}

static void test_initializer(void) {
  int ok = 0, bad = -1;
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.initializer = init_fail;
  o.initializer_arg = &ok;
  cf_executor *ex;
  atomic_store(&init_calls, 0);
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  cf_future *f;
  assert_rc(cf_submit(ex, nop_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), 0);
  cf_future_release(f);
  cf_executor_destroy(ex);
  expect_eq(atomic_load(&init_calls), 2);

  o.initializer_arg = &bad;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  /* submitted before or after the failure is seen: the future fails with
   * CF_EBROKEN, or the submit itself returns CF_EBROKEN */
  int rc = cf_submit(ex, nop_task, NULL, 0, &f);
  if (rc == 0) {
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EBROKEN);
    expect_eq(cf_future_state(f), CF_STATE_FAILED);
    int code = 0;
    expect_rc(cf_future_error(f, &code, NULL, 0), 0);
    expect_eq(code, CF_EBROKEN);
    cf_future_release(f);
  } else {
    expect_rc(rc, CF_EBROKEN);
  }
  /* once broken, submits fail at once */
  for (int i = 0; i < 1000; i++) {
    rc = cf_submit(ex, nop_task, NULL, 0, &f);
    if (rc != 0) break;
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EBROKEN);
    cf_future_release(f);
    usleep(1000);
  }
  expect_rc(rc, CF_EBROKEN);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- max_queued ---- */

static atomic_int gate_open;
static void gated_task(cf_call *c) {
  while (!atomic_load(&gate_open)) usleep(100);
}

static void test_max_queued(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.max_queued = 4;
  cf_executor *ex;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  atomic_store(&gate_open, 0);
  cf_future *fs[16];
  int n = 0;
  /* the worker takes one (and blocks in it); then 4 fit; then EAGAIN */
  assert_rc(cf_submit(ex, gated_task, NULL, 0, &fs[n++]), 0);
  while (!cf_future_running(fs[0])) usleep(100);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_NOWAIT};
  for (int i = 0; i < 4; i++) assert_rc(cf_submit_ex(ex, gated_task, NULL, 0, &so, &fs[n++]), 0);
  cf_future *extra = NULL;
  expect_rc(cf_submit_ex(ex, gated_task, NULL, 0, &so, &extra), CF_EAGAIN);
  expect_true(extra == NULL);
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.queued, 4);
  atomic_store(&gate_open, 1);
  /* a waiting submit (no NOWAIT) gets in once there is room */
  for (int i = 0; i < 8; i++) assert_rc(cf_submit(ex, gated_task, NULL, 0, &fs[n++]), 0);
  for (int i = 0; i < n; i++) {
    expect_rc(cf_future_result(fs[i], NULL, 0, NULL, -1), 0);
    cf_future_release(fs[i]);
  }
  cf_executor_destroy(ex);
}

/* ---- stats and parking ---- */

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_idle_parks(void) {
  cf_executor *ex = new_pool(2);
  cf_future *f;
  for (int i = 0; i < 10; i++) {
    assert_rc(cf_submit(ex, nop_task, NULL, 0, &f), 0);
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), 0);
    cf_future_release(f);
  }
  cf_stats st;
  /* both workers park within their bounded search time */
  for (int i = 0; i < 5000; i++) {
    cf_executor_stats(ex, &st);
    if (st.parks >= 2) break;
    usleep(1000);
  }
  expect_true(st.parks >= 2);
  stats_settle(ex, 10, &st);
  expect_eq(st.submitted, 10);
  expect_eq(st.completed, 10);
  /* idle: 300 ms of wall time must cost far less CPU (generous bound: a
   * spinning pool would burn ~2 x 300 ms) */
  double c0 = cpu_seconds();
  usleep(300000);
  double used = cpu_seconds() - c0;
  expect_true(used < 0.15);
  if (used >= 0.15) fprintf(stderr, "idle pool used %.3f s CPU in 0.3 s\n", used);
  /* and wakes up for new work */
  assert_rc(cf_submit(ex, nop_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), 0);
  cf_future_release(f);
  cf_executor_destroy(ex);
}

/* ---- shutdown ---- */

static void stop_aware_task(cf_call *c) {
  while (!cf_call_stop_requested(c) && !atomic_load(&gate_open)) usleep(100);
  int stopped = cf_call_stop_requested(c);
  cf_call_return(c, &stopped, sizeof stopped);
}

static void test_shutdown(void) {
  cf_executor *ex = new_pool(1);
  atomic_store(&gate_open, 0);
  cf_future *run, *queued[8];
  assert_rc(cf_submit(ex, stop_aware_task, NULL, 0, &run), 0);
  while (!cf_future_running(run)) usleep(100);
  for (int i = 0; i < 8; i++) assert_rc(cf_submit(ex, nop_task, NULL, 0, &queued[i]), 0);
  expect_rc(cf_future_cancel(run), CF_EBUSY);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_CANCEL_FUTURES | CF_SHUTDOWN_KILL), 0);
  /* queued futures are done at once */
  for (int i = 0; i < 8; i++) {
    expect_true(cf_future_done(queued[i]));
    expect_rc(cf_future_result(queued[i], NULL, 0, NULL, 0), CF_ECANCELLED);
    cf_future_release(queued[i]);
  }
  cf_future *late;
  expect_rc(cf_submit(ex, nop_task, NULL, 0, &late), CF_ESHUTDOWN);
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  int stopped = 0;
  expect_rc(cf_future_result(run, &stopped, sizeof stopped, NULL, -1), 0);
  expect_eq(stopped, 1);
  cf_future_release(run);
  cf_stats st;
  cf_executor_stats(ex, &st);
  expect_eq(st.cancelled, 8);
  expect_rc(cf_executor_destroy(ex), 0);

  /* plain shutdown with wait runs what is queued; futures outlive the pool */
  ex = new_pool(2);
  cf_future *fs[64];
  for (int i = 0; i < 64; i++) assert_rc(cf_submit(ex, nop_task, NULL, 0, &fs[i]), 0);
  expect_rc(cf_executor_destroy(ex), 0);
  for (int i = 0; i < 64; i++) {
    expect_eq(cf_future_state(fs[i]), CF_STATE_FINISHED);
    cf_future_release(fs[i]);
  }
}

/* ---- many outside submitters, checked sum ---- */

typedef struct submitter_arg {
  cf_executor *ex;
  int base, count;
  int64_t sum;
} submitter_arg;

static void square(cf_call *c) {
  const int *x = cf_call_arg(c, NULL);
  int64_t r = (int64_t)*x * *x;
  cf_call_return(c, &r, sizeof r);
}

static void *submitter(void *p) {
  submitter_arg *a = p;
  enum { WINDOW = 64 };
  cf_future *win[WINDOW];
  int inflight = 0;
  for (int i = 0; i < a->count; i++) {
    int x = a->base + i;
    if (inflight == WINDOW) {
      for (int j = 0; j < WINDOW; j++) {
        a->sum += get_i64(win[j]);
        cf_future_release(win[j]);
      }
      inflight = 0;
    }
    if (cf_submit(a->ex, square, &x, sizeof x, &win[inflight]) != 0) {
      expect_true(!"submit failed");
      break;
    }
    inflight++;
  }
  for (int j = 0; j < inflight; j++) {
    a->sum += get_i64(win[j]);
    cf_future_release(win[j]);
  }
  return NULL;
}

static void test_outside_submitters(void) {
  cf_executor *ex = new_pool(2);
  enum { T = 4 };
  pthread_t th[T];
  submitter_arg a[T];
  int count = (int)cf_test_scale(20000);
  for (int t = 0; t < T; t++) {
    a[t] = (submitter_arg){ex, t * count, count, 0};
    pthread_create(&th[t], NULL, submitter, &a[t]);
  }
  for (int t = 0; t < T; t++) {
    pthread_join(th[t], NULL);
    int64_t want = 0;
    for (int i = 0; i < count; i++) want += (int64_t)(t * count + i) * (t * count + i);
    expect_eq(a[t].sum, want);
  }
  cf_stats st;
  stats_settle(ex, (uint64_t)T * count, &st);
  expect_eq(st.submitted, (uint64_t)T * count);
  expect_eq(st.completed, (uint64_t)T * count);
  cf_executor_destroy(ex);
}

/* ---- a worker waiting on a queued outside future helps run it ---- */

static cf_future *_Atomic handed;

static void waits_for_handed(cf_call *c) {
  cf_future *f;
  while ((f = atomic_load(&handed)) == NULL) usleep(100);
  /* with one worker, only this wait can run f: it must take it from the
   * injection queue instead of blocking */
  int64_t v = -1;
  int rc = cf_future_result(f, &v, sizeof v, NULL, -1);
  int64_t r = rc == 0 ? v + 1 : rc;
  cf_call_return(c, &r, sizeof r);
}

static void returns_41(cf_call *c) {
  int64_t v = 41;
  cf_call_return(c, &v, sizeof v);
}

static void test_help_takes_injected(void) {
  cf_executor *ex = new_pool(1);
  atomic_store(&handed, NULL);
  cf_future *a, *b;
  assert_rc(cf_submit(ex, waits_for_handed, NULL, 0, &a), 0);
  while (!cf_future_running(a)) usleep(100);
  assert_rc(cf_submit(ex, returns_41, NULL, 0, &b), 0);
  atomic_store(&handed, b);
  expect_eq(get_i64(a), 42);
  cf_future_release(a);
  cf_future_release(b);
  cf_executor_destroy(ex);
}

/* ---- a poll inside a worker runs nothing ---- */

static void polls_child(cf_call *c) {
  cf_future *f;
  int64_t r = -100;
  if (cf_submit(g_ex, returns_41, NULL, 0, &f) != 0) {
    cf_call_fail(c, 1, "submit");
    return;
  }
  int rc = cf_future_result(f, NULL, 0, NULL, 0);
  int st = cf_future_state(f);
  int64_t v = 0;
  int rc2 = cf_future_result(f, &v, sizeof v, NULL, -1);
  cf_future_release(f);
  /* 0 only if: the poll timed out, the child was still pending, then ran */
  r = (rc == CF_ETIMEDOUT && st == CF_STATE_PENDING && rc2 == 0 && v == 41) ? 0 : -1;
  cf_call_return(c, &r, sizeof r);
}

static void test_poll_inside(void) {
  g_ex = new_pool(1);
  cf_future *f;
  assert_rc(cf_submit(g_ex, polls_child, NULL, 0, &f), 0);
  expect_eq(get_i64(f), 0);
  cf_future_release(f);
  cf_executor_destroy(g_ex);
}

/* ---- a full deque overflows to the injection queue ---- */

enum { MANY = 6000 }; /* more than a deque holds (CF__DEQUE_CAP) */

static void spawns_many(cf_call *c) {
  cf_future **fs = malloc(MANY * sizeof *fs);
  int64_t sum = 0;
  int n = 0;
  for (; n < MANY; n++) {
    int x = n;
    if (cf_submit(g_ex, square, &x, sizeof x, &fs[n]) != 0) break;
  }
  for (int i = 0; i < n; i++) {
    int64_t v = 0;
    if (cf_future_result(fs[i], &v, sizeof v, NULL, -1) == 0) sum += v;
    cf_future_release(fs[i]);
  }
  free(fs);
  cf_call_return(c, &sum, sizeof sum);
}

static void test_overflow_to_injector(void) {
  for (unsigned workers = 1; workers <= 2; workers++) {
    g_ex = new_pool(workers);
    cf_future *f;
    assert_rc(cf_submit(g_ex, spawns_many, NULL, 0, &f), 0);
    int64_t want = 0;
    for (int i = 0; i < MANY; i++) want += (int64_t)i * i;
    expect_eq(get_i64(f), want);
    cf_future_release(f);
    cf_stats st;
    stats_settle(g_ex, MANY + 1, &st);
    expect_eq(st.submitted, MANY + 1);
    expect_eq(st.completed, MANY + 1);
    cf_executor_destroy(g_ex);
  }
}

/* ---- pin_cpus ---- */

static void affinity_count(cf_call *c) {
  cpu_set_t set;
  int n = -1;
  if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0) n = CPU_COUNT(&set);
  cf_call_return(c, &n, sizeof n);
}

static void test_pin_cpus(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.pin_cpus = true;
  cf_executor *ex;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  for (int i = 0; i < 8; i++) {
    cf_future *f;
    assert_rc(cf_submit(ex, affinity_count, NULL, 0, &f), 0);
    int n = 0;
    expect_rc(cf_future_result(f, &n, sizeof n, NULL, -1), 0);
    expect_eq(n, 1); /* each worker runs on exactly one CPU */
    cf_future_release(f);
  }
  cf_executor_destroy(ex);
}

static void test_sizes(void) {
  /* memory per in-flight task: one future (+ heap arg/result when large) */
  printf("sizeof(cf_future) = %zu bytes\n", sizeof(struct cf_future));
  expect_true(sizeof(struct cf_future) <= 256);
}

int main(void) {
  CF_RUN(test_sizes);
  CF_RUN(test_fib);
  CF_RUN(test_submit_inside);
  CF_RUN(test_names);
  CF_RUN(test_initializer);
  CF_RUN(test_max_queued);
  CF_RUN(test_idle_parks);
  CF_RUN(test_shutdown);
  CF_RUN(test_outside_submitters);
  CF_RUN(test_pin_cpus);
  CF_RUN(test_help_takes_injected);
  CF_RUN(test_poll_inside);
  CF_RUN(test_overflow_to_injector);
  return cf_test_done("test_thread_pool");
}
