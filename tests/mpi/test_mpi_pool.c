/*
 * test_mpi_pool.c — what only the MPI executor does, under `mpirun -n 3`
 * (tests/mpi/CMakeLists.txt): tasks run on other ranks; a function outside
 * every module is refused at submit; a task sent ahead to a busy rank
 * (max_inflight > 1) is RUNNING, and cancelling it stops it there; a rank
 * runs a cfutures thread pool of its own (made by the initializer, whose
 * argument points into static data); chunked map over many items; a
 * deadline of a task that ignores it is reported at once; two pools at once.
 * `test_mpi_pool spawn` (run alone) checks the spawn mode instead.
 * No timing thresholds: every wait is for a condition.
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

typedef struct shared {
  _Atomic int gate;
  _Atomic int started;
  _Atomic int saw_stop;
  _Atomic int ran;
} shared;
#define sh ((shared *)cf_test_shm)

static void nap(void) {
  struct timespec ts = {0, 100 * 1000};
  nanosleep(&ts, NULL);
}

static void pid_task(cf_call *c) {
  int32_t pid = getpid();
  cf_call_return(c, &pid, sizeof pid);
}

static void square_task(cf_call *c) {
  int64_t x;
  memcpy(&x, cf_call_arg(c, NULL), sizeof x);
  x *= x;
  cf_call_return(c, &x, sizeof x);
}

/* Count itself started, then wait for the gate, polling the stop flag
 * (each poll is where the rank reads its messages while a task runs); at
 * the first stop count it in saw_stop, and leave or go on polling. Returns
 * whether it was told to stop. */
static int wait_gate(cf_call *c, bool leave_on_stop) {
  atomic_fetch_add(&sh->started, 1);
  int stopped = 0;
  while (!atomic_load(&sh->gate)) {
    if (cf_call_stop_requested(c)) {
      if (!stopped) atomic_fetch_add(&sh->saw_stop, 1);
      stopped = 1;
      if (leave_on_stop) break;
    }
    nap();
  }
  return stopped;
}

static void gate_task(cf_call *c) {
  int stopped = wait_gate(c, true);
  cf_call_return(c, &stopped, sizeof stopped);
}

/* told to stop, it goes on (a stop is a request) until the gate opens */
static void stubborn_task(cf_call *c) {
  int stopped = wait_gate(c, false);
  cf_call_return(c, &stopped, sizeof stopped);
}

static void deaf_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->gate)) nap();
}

static void ran_task(cf_call *c) {
  atomic_fetch_add(&sh->ran, 1);
}

static cf_executor *mpi_pool(unsigned workers, unsigned max_inflight) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  cf_mpi_options mo;
  cf_mpi_options_init(&mo);
  mo.max_inflight = max_inflight;
  mo.oversubscribe = true;
  cf_executor *ex = NULL;
  assert_rc(cf_mpi_pool_new_ex(&o, &mo, &ex), 0);
  return ex;
}

/* Submit fn (one that counts itself in started) and wait until it runs. */
static cf_future *submit_started(cf_executor *ex, cf_fn fn) {
  int before = atomic_load(&sh->started);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, fn, NULL, 0, &f), 0);
  while (atomic_load(&sh->started) <= before) nap();
  return f;
}

/* Submit fn and wait until rank 0 has sent it to a (busy) rank. */
static cf_future *submit_sent(cf_executor *ex, cf_fn fn) {
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, fn, NULL, 0, &f), 0);
  while (cf_future_state(f) != CF_STATE_RUNNING) nap();
  return f;
}

static void test_elsewhere(void) {
  cf_executor *ex = mpi_pool(0, 1);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.workers, 2); /* mpirun -n 3: two worker ranks */
  cf_future *fs[8];
  for (int i = 0; i < 8; i++) assert_rc(cf_submit(ex, pid_task, NULL, 0, &fs[i]), 0);
  for (int i = 0; i < 8; i++) {
    int32_t pid = 0;
    expect_rc(cf_future_result(fs[i], &pid, sizeof pid, NULL, -1), 0);
    expect_true(pid > 0 && pid != getpid());
    cf_future_release(fs[i]);
  }
  cf_executor_destroy(ex);
}

static void test_refused(void) {
  cf_executor *ex = mpi_pool(1, 1);
  cf_future *f = NULL;
  /* code in no module (a page of its own): refused at submit */
  unsigned char *page =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page != MAP_FAILED) {
    page[0] = 0xc3; /* ret */
    cf_fn jit = (cf_fn)(uintptr_t)page;
    expect_rc(cf_submit(ex, jit, NULL, 0, &f), CF_ENOTLOADED);
    expect_true(f == NULL);
    cf_map *m = NULL;
    int64_t x[3] = {1, 2, 3};
    cf_map_opts mo = {.window = 2, .chunk = 2, .timeout_ns = -1};
    expect_rc(cf_map_array(ex, jit, x, 3, sizeof x[0], &mo, &m), 0);
    expect_rc(cf_map_next(m, NULL, 0, NULL), CF_ENOTLOADED); /* the chunk was refused */
    cf_map_free(m);
    munmap(page, 4096);
  }
  expect_rc(cf_submit(ex, square_task, (int64_t[]){7}, 8, &f), 0);
  int64_t r = 0;
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, 49);
  cf_future_release(f);
  cf_executor_destroy(ex);
  /* an initializer argument on the heap cannot travel */
  cf_options o;
  cf_options_init(&o);
  o.initializer = (cf_init_fn)(uintptr_t)pid_task;
  o.initializer_arg = malloc(8);
  ex = NULL;
  expect_rc(cf_mpi_pool_new(&o, &ex), CF_EINVAL);
  expect_true(ex == NULL);
  free(o.initializer_arg);
}

static void test_sent_ahead(void) {
  memset((void *)sh, 0, sizeof *sh);
  cf_executor *ex = mpi_pool(1, 3);
  cf_future *g = submit_started(ex, gate_task), *a = NULL;
  assert_rc(cf_submit(ex, ran_task, NULL, 0, &a), 0);
  /* both sent ahead to the busy rank: RUNNING, not cancellable outright */
  cf_future *b = submit_sent(ex, ran_task);
  expect_eq(cf_future_state(a), CF_STATE_RUNNING);
  expect_rc(cf_future_cancel(a), CF_EBUSY);
  /* the rank drops it before it starts */
  expect_rc(cf_future_result(a, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_true(cf_future_cancelled(a));
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(b, NULL, 0, NULL, -1), 0);
  expect_eq(atomic_load(&sh->ran), 1);
  int stopped = -1;
  expect_rc(cf_future_result(g, &stopped, sizeof stopped, NULL, -1), 0);
  expect_eq(stopped, 0);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.cancelled, 1);
  expect_eq(st.completed, 2);
  cf_future_release(g);
  cf_future_release(a);
  cf_future_release(b);
  cf_executor_destroy(ex);
}

/* A task told to stop may go on. Its stop check used to answer at once
 * from then on and read nothing more: a task sent ahead and cancelled
 * meanwhile stayed on the rank until the running one returned (a caller
 * that waits for it before letting the running task go hung). Now the
 * check goes on reading, and the drop leaves at once. The 20 s bound is a
 * liveness guard, not a timing threshold. */
static void test_stopped_still_reads(void) {
  memset((void *)sh, 0, sizeof *sh);
  cf_executor *ex = mpi_pool(1, 3);
  cf_future *g = submit_started(ex, stubborn_task);
  cf_future *a = submit_sent(ex, ran_task);
  expect_rc(cf_future_cancel(g), CF_EBUSY);
  while (atomic_load(&sh->saw_stop) < 1) nap(); /* g was told, and goes on */
  expect_rc(cf_future_cancel(a), CF_EBUSY);
  expect_rc(cf_future_result(a, NULL, 0, NULL, 20 * 1000000000LL), CF_ECANCELLED);
  atomic_store(&sh->gate, 1);
  int stopped = -1;
  expect_rc(cf_future_result(g, &stopped, sizeof stopped, NULL, -1), 0);
  expect_eq(stopped, 1);
  expect_rc(cf_future_result(a, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_eq(atomic_load(&sh->ran), 0);
  cf_future_release(g);
  cf_future_release(a);
  cf_executor_destroy(ex);
}

#ifdef CF_TEST_HOOKS
/* mpi/worker.c: while true, a running task's stop check reads no queued
 * tasks until a STOP has come before its task */
extern bool cf__test_mpi_ctl_first;
/* how many STOPs wait on this rank for their task */
extern unsigned cf__test_mpi_early_stops(void);

static void early_stops_task(cf_call *c) {
  uint32_t n = cf__test_mpi_early_stops();
  cf_call_return(c, &n, sizeof n);
}

/* A STOP that reaches the rank after its task is done (the task never
 * polls its stop flag, so the rank reads the STOP only after it returns)
 * used to be kept as a STOP for a task still on its way, for ever: each
 * arriving task scanned it, 64 of them pushed out a real one (and that
 * task hung as in test_stop_before_task), and the hook of
 * test_stop_before_task went quiet. Now it is dropped. */
static void test_stale_stop(void) {
  memset((void *)sh, 0, sizeof *sh);
  cf_executor *ex = mpi_pool(1, 1);
  cf_future *d = submit_started(ex, deaf_task), *q = NULL;
  expect_rc(cf_future_cancel(d), CF_EBUSY); /* the STOP goes out now */
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(d, NULL, 0, NULL, -1), 0); /* it ran to its end */
  /* sent after the STOP, so the rank has read the STOP when this runs */
  assert_rc(cf_submit(ex, early_stops_task, NULL, 0, &q), 0);
  uint32_t n = 99;
  expect_rc(cf_future_result(q, &n, sizeof n, NULL, -1), 0);
  expect_eq(n, 0);
  cf_future_release(d);
  cf_future_release(q);
  cf_executor_destroy(ex);
}

static void hold_task(cf_call *c) {
  cf__test_mpi_ctl_first = true;
  int stopped = wait_gate(c, true);
  cf__test_mpi_ctl_first = false;
  cf_call_return(c, &stopped, sizeof stopped);
}

/* A STOP that reaches the rank before its task: the rank used to mark the
 * task stopped and queue it, to be dropped only when it came to run, after
 * the task running there. A running task that waits for the cancelled
 * one's outcome then hung (test_sent_ahead did, about 1 run in 25: its
 * stop check can read the STOP between its look for tasks and its look for
 * control messages). The hook makes that order certain; now the task is
 * dropped, and its CF_ECANCELLED sent, as it arrives. The 20 s bound is a
 * liveness guard, not a timing threshold. */
static void test_stop_before_task(void) {
  memset((void *)sh, 0, sizeof *sh);
  cf_executor *ex = mpi_pool(1, 3);
  cf_future *g = submit_started(ex, hold_task);
  cf_future *a = submit_sent(ex, ran_task);
  expect_rc(cf_future_cancel(a), CF_EBUSY);
  expect_rc(cf_future_result(a, NULL, 0, NULL, 20 * 1000000000LL), CF_ECANCELLED);
  atomic_store(&sh->gate, 1);
  int stopped = -1;
  expect_rc(cf_future_result(g, &stopped, sizeof stopped, NULL, -1), 0);
  expect_eq(stopped, 0);
  expect_rc(cf_future_result(a, NULL, 0, NULL, -1), CF_ECANCELLED);
  expect_eq(atomic_load(&sh->ran), 0);
  cf_future_release(g);
  cf_future_release(a);
  cf_executor_destroy(ex);
}
#endif

/* A thread pool inside each worker rank, made by the initializer. */
static cf_executor *rank_pool;
static unsigned rank_threads = 2; /* static data: the initializer's argument travels */

static int make_rank_pool(void *arg) {
  cf_options o;
  cf_options_init(&o);
  o.workers = *(unsigned *)arg;
  return rank_pool ? 0 : cf_thread_pool_new(&o, &rank_pool);
}

static void sum_squares_task(cf_call *c) {
  int64_t n;
  memcpy(&n, cf_call_arg(c, NULL), sizeof n);
  cf_map *m = NULL;
  int64_t total = -1;
  cf_map_opts mo = {.window = 8, .chunk = 16, .timeout_ns = -1};
  int64_t *xs = malloc((size_t)n * sizeof *xs);
  for (int64_t i = 0; i < n; i++) xs[i] = i;
  if (rank_pool && cf_map_array(rank_pool, square_task, xs, (size_t)n, sizeof *xs, &mo, &m) == 0) {
    total = 0;
    int64_t r;
    while (cf_map_next(m, &r, sizeof r, NULL) == 0) total += r;
    cf_map_free(m);
  }
  free(xs);
  cf_call_return(c, &total, sizeof total);
}

static void test_threads_in_rank(void) {
  cf_options o;
  cf_options_init(&o);
  o.initializer = make_rank_pool;
  o.initializer_arg = &rank_threads;
  cf_executor *ex = NULL;
  assert_rc(cf_mpi_pool_new(&o, &ex), 0);
  cf_future *fs[4];
  int64_t n = 1000, want = 0;
  for (int64_t i = 0; i < n; i++) want += i * i;
  for (int i = 0; i < 4; i++) assert_rc(cf_submit(ex, sum_squares_task, &n, sizeof n, &fs[i]), 0);
  for (int i = 0; i < 4; i++) {
    int64_t r = 0;
    expect_rc(cf_future_result(fs[i], &r, sizeof r, NULL, -1), 0);
    expect_eq(r, want);
    cf_future_release(fs[i]);
  }
  cf_executor_destroy(ex);
}

static void test_map_many(void) {
  cf_executor *ex = mpi_pool(0, 2);
  enum { N = 20000 };
  int64_t *xs = malloc(N * sizeof *xs);
  for (int i = 0; i < N; i++) xs[i] = i;
  for (size_t chunk = 1; chunk <= 256; chunk *= 16) {
    cf_map_opts mo = {.window = 8, .chunk = chunk, .timeout_ns = -1};
    cf_map *m = NULL;
    size_t n = chunk == 1 ? 2000 : N;
    assert_rc(cf_map_array(ex, square_task, xs, n, sizeof *xs, &mo, &m), 0);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
      int64_t r = -1;
      ok &= cf_map_next(m, &r, sizeof r, NULL) == 0 && r == (int64_t)(i * i);
    }
    expect_true(ok);
    expect_rc(cf_map_next(m, NULL, 0, NULL), CF_EDONE);
    cf_map_free(m);
  }
  free(xs);
  cf_executor_destroy(ex);
}

static void test_deadline_running(void) {
  memset((void *)sh, 0, sizeof *sh);
  cf_executor *ex = mpi_pool(1, 1);
  cf_submit_opts so = {.timeout_ns = 20 * 1000 * 1000, .flags = 0};
  cf_future *f = NULL, *g = NULL;
  assert_rc(cf_submit_ex(ex, deaf_task, NULL, 0, &so, &f), 0);
  /* the rank cannot be stopped, but the future fails at its deadline */
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EDEADLINE);
  int code = 0;
  expect_rc(cf_future_error(f, &code, NULL, 0), 0);
  expect_eq(code, CF_EDEADLINE);
  expect_true(atomic_load(&sh->started) == 1);
  assert_rc(cf_submit(ex, ran_task, NULL, 0, &g), 0);
  expect_true(!cf_future_done(g)); /* the rank still runs the deaf task */
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(g, NULL, 0, NULL, -1), 0);
  cf_future_release(f);
  cf_future_release(g);
  cf_executor_destroy(ex);
}

static void test_two_pools(void) {
  cf_executor *a = mpi_pool(1, 1), *b = mpi_pool(2, 1);
  cf_future *fa = NULL, *fb = NULL;
  int64_t x = 3, y = 4, ra = 0, rb = 0;
  assert_rc(cf_submit(a, square_task, &x, sizeof x, &fa), 0);
  assert_rc(cf_submit(b, square_task, &y, sizeof y, &fb), 0);
  expect_rc(cf_future_result(fa, &ra, sizeof ra, NULL, -1), 0);
  expect_rc(cf_future_result(fb, &rb, sizeof rb, NULL, -1), 0);
  expect_eq(ra, 9);
  expect_eq(rb, 16);
  cf_future_release(fa);
  cf_future_release(fb);
  cf_executor_destroy(a);
  cf_executor_destroy(b);
}

static void test_spawn(void) {
  /* started alone: the pool spawns its workers (children run main again
   * and become workers inside cf_mpi_pool_new) */
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_mpi_options mo;
  cf_mpi_options_init(&mo);
  mo.oversubscribe = true;
  cf_executor *ex = NULL;
  int rc = cf_mpi_pool_new_ex(&o, &mo, &ex);
  if (getenv("CF_TEST_SPAWN_UNSUPPORTED")) {
    expect_rc(rc, CF_ENOTSUP);
    return;
  }
  assert_rc(rc, 0);
  int64_t xs[100];
  for (int i = 0; i < 100; i++) xs[i] = i;
  cf_map_opts mopt = {.window = 4, .chunk = 8, .timeout_ns = -1};
  cf_map *m = NULL;
  assert_rc(cf_map_array(ex, square_task, xs, 100, sizeof xs[0], &mopt, &m), 0);
  bool ok = true;
  for (int i = 0; i < 100; i++) {
    int64_t r = -1;
    ok &= cf_map_next(m, &r, sizeof r, NULL) == 0 && r == (int64_t)i * i;
  }
  expect_true(ok);
  cf_map_free(m);
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, pid_task, NULL, 0, &f), 0);
  int32_t pid = 0;
  expect_rc(cf_future_result(f, &pid, sizeof pid, NULL, -1), 0);
  expect_true(pid > 0 && pid != getpid());
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "spawn") == 0) {
    CF_RUN(test_spawn);
    return cf_test_done("test_mpi_spawn");
  }
  char *kind[] = {argv[0], "mpi", NULL};
  cf_test_parse_kind(2, kind);
  cf_test_shared(sizeof(shared));
  CF_RUN(test_elsewhere); /* the first pool: ranks 1-2 become workers here */
  CF_RUN(test_refused);
  CF_RUN(test_sent_ahead);
#ifdef CF_TEST_HOOKS
  CF_RUN(test_stop_before_task); /* first: before any STOP can be left on a rank */
  CF_RUN(test_stale_stop);
#endif
  CF_RUN(test_stopped_still_reads);
  CF_RUN(test_threads_in_rank);
  CF_RUN(test_map_many);
  CF_RUN(test_deadline_running);
  CF_RUN(test_two_pools);
  return cf_test_done("test_mpi_pool");
}
