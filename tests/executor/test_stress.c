/* cf-test: labels=stress timeout=300 variants=thread;process */
/*
 * test_stress.c — many tasks, many races, one sequential oracle.
 *
 * Not a benchmark: sizes come from the command line (defaults below) and
 * shrink under sanitizers through cf_test_scale(). Nothing here measures
 * time; every check compares with what a sequential run must give.
 *
 *   test_stress thread|process [-n tiny] [-f fib_n] [-s submitters]
 *                              [-m per_submitter] [-c cancels] [-r rounds]
 *
 * Cases
 *   tiny        N tasks, each adds 1 to its own counter cell and returns a
 *               function of its index: every cell must be exactly 1 and every
 *               result right (1 in 8 futures is released unread).
 *   fib         (threads) recursive fork-join fib: every call is a task that
 *               submits its two children and waits for them inside a worker.
 *   submitters  several outside threads submit at once, each its own cells.
 *   cancel      cancel races the start of the task. Threads: cancel returned
 *               0 <=> the task never ran, exactly. Processes: a running task
 *               may be killed by cancel, so only the implications that hold.
 *   callbacks   done callbacks added (from two threads) while tasks finish
 *               and while a third party cancels; cf_wait and cf_as_completed
 *               over the same futures. Every callback runs exactly once, every
 *               future is yielded exactly once.
 *
 * The counter cells live in memory shared with the worker processes at the
 * same address in every start mode (cf_test_shared, testutil.h), made before
 * any pool, so workers update the very same cells: the oracle is the same
 * for both executors.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static bool processes; /* variant */
static uint64_t n_tiny = 7000000, n_sub_each = 500000, n_cancel = 200000, n_rounds = 4000;
static unsigned n_subs = 4, fib_n = 28;

static _Atomic uint32_t *cells; /* shared with worker processes */
static size_t n_cells;

static cf_executor *pool_new(unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.initializer = cf_test_shared_attach; /* the cells, in an exec'ed worker */
  cf_executor *ex = NULL;
  int rc = processes ? cf_process_pool_new(&o, &ex) : cf_thread_pool_new(&o, &ex);
  assert_rc(rc, 0);
  return ex;
}

static uint64_t mix(uint64_t i) {
  return i * 0x9e3779b97f4a7c15ull ^ (i >> 7);
}

static void cells_clear(size_t n) {
  assert_true(n <= n_cells);
  memset((void *)cells, 0, n * sizeof *cells);
}

/* ---- tiny ------------------------------------------------------------------ */

typedef struct {
  uint64_t i;
  _Atomic uint32_t *cells;
} tiny_arg;

static void tiny_task(cf_call *call) {
  size_t len;
  const tiny_arg *a = cf_call_arg(call, &len);
  /* relaxed: the cell is read after the future is done (acquire on its state
   * word) or after the executor is destroyed (join); a task that ran twice
   * shows up as 2 either way. */
  atomic_fetch_add_explicit(&a->cells[a->i], 1, memory_order_relaxed);
  uint64_t r = mix(a->i);
  cf_call_return(call, &r, sizeof r);
}

/* Submits [first, first + n) through a sliding window of futures, checking
 * each result as its slot is reused. Returns the number of wrong results. */
static uint64_t submit_window(cf_executor *ex, uint64_t first, uint64_t n, size_t window) {
  cf_future **win = calloc(window, sizeof *win);
  uint64_t *idx = calloc(window, sizeof *idx);
  assert_true(win && idx);
  uint64_t bad = 0;
  for (uint64_t k = 0; k < n + window; k++) {
    size_t s = k % window;
    if (win[s]) {
      uint64_t r = 0;
      size_t len = 0;
      int rc = cf_future_result(win[s], &r, sizeof r, &len, -1);
      if (rc != 0 || len != sizeof r || r != mix(idx[s])) {
        if (bad++ < 5)
          cf_test_fail(__FILE__, __LINE__, "result", "task %llu: rc %d len %zu",
                       (unsigned long long)idx[s], rc, len);
      }
      cf_future_release(win[s]);
      win[s] = NULL;
    }
    if (k >= n) continue;
    tiny_arg a = {first + k, cells};
    cf_future *f = NULL;
    int rc = cf_submit(ex, tiny_task, &a, sizeof a, &f);
    if (rc != 0) {
      cf_test_fail(__FILE__, __LINE__, "cf_submit", "task %llu: %s",
                   (unsigned long long)(first + k), cf_strerror(rc));
      exit(1);
    }
    if (k % 8 == 7) {
      cf_future_release(f); /* fire and forget: only its cell tells */
    } else {
      win[s] = f;
      idx[s] = first + k;
    }
  }
  free(win);
  free(idx);
  return bad;
}

static uint64_t count_cells_not_one(uint64_t first, uint64_t n) {
  uint64_t wrong = 0;
  for (uint64_t i = first; i < first + n; i++) {
    uint32_t v = atomic_load_explicit(&cells[i], memory_order_relaxed); /* after join */
    if (v != 1 && wrong++ < 5)
      cf_test_fail(__FILE__, __LINE__, "cell == 1", "cell %llu is %u", (unsigned long long)i, v);
  }
  return wrong;
}

static void test_tiny(void) {
  uint64_t n = cf_test_scale(n_tiny);
  cells_clear(n);
  cf_executor *ex = pool_new(0);
  expect_eq(submit_window(ex, 0, n, 4096), 0);
  /* After a waiting shutdown every task, fire-and-forget included, ran. */
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_WAIT), 0);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.submitted, n);
  expect_eq(st.completed, n);
  assert_rc(cf_executor_destroy(ex), 0);
  expect_eq(count_cells_not_one(0, n), 0);
  printf("tiny: %llu tasks\n", (unsigned long long)n);
}

/* ---- fib (fork-join inside workers; threads only) --------------------------- */

static _Atomic uint64_t fib_tasks;

typedef struct {
  cf_executor *ex;
  int n;
} fib_arg;

static void fib_task(cf_call *call) {
  size_t len;
  const fib_arg *a = cf_call_arg(call, &len);
  /* relaxed: read after the root future is done, which happens after every
   * child's result was read by its parent (acquire chains). */
  atomic_fetch_add_explicit(&fib_tasks, 1, memory_order_relaxed);
  uint64_t r = (uint64_t)a->n;
  if (a->n >= 2) {
    cf_future *f1, *f2;
    fib_arg a1 = {a->ex, a->n - 1}, a2 = {a->ex, a->n - 2};
    uint64_t r1 = 0, r2 = 0;
    int rc1 = cf_submit(a->ex, fib_task, &a1, sizeof a1, &f1);
    int rc2 = cf_submit(a->ex, fib_task, &a2, sizeof a2, &f2);
    if (rc1 || rc2) {
      cf_call_fail(call, rc1 ? rc1 : rc2, "submit failed inside a worker");
      return;
    }
    /* Waiting inside a worker: the pool runs other tasks meanwhile. */
    rc2 = cf_future_result(f2, &r2, sizeof r2, NULL, -1);
    rc1 = cf_future_result(f1, &r1, sizeof r1, NULL, -1);
    cf_future_release(f1);
    cf_future_release(f2);
    if (rc1 || rc2) {
      cf_call_fail(call, rc1 ? rc1 : rc2, "a child failed");
      return;
    }
    r = r1 + r2;
  }
  cf_call_return(call, &r, sizeof r);
}

static uint64_t fib_seq(int n) {
  uint64_t a = 0, b = 1;
  for (int i = 0; i < n; i++) {
    uint64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}

static void test_fib(void) {
  if (processes) return; /* a process task cannot submit to its parent's pool */
  /* Calls of the naive recursion: 2 fib(n+1) - 1. Shrink n with the scale. */
  int n = (int)fib_n;
  while (n > 2 && 2 * fib_seq(n + 1) - 1 > cf_test_scale(2 * fib_seq(fib_n + 1) - 1)) n--;
  atomic_store(&fib_tasks, 0);
  cf_executor *ex = pool_new(0);
  fib_arg a = {ex, n};
  cf_future *f;
  assert_rc(cf_submit(ex, fib_task, &a, sizeof a, &f), 0);
  uint64_t r = 0;
  expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, fib_seq(n));
  expect_eq(atomic_load(&fib_tasks), 2 * fib_seq(n + 1) - 1);
  cf_future_release(f);
  assert_rc(cf_executor_destroy(ex), 0);
  printf("fib(%d): %llu tasks\n", n, (unsigned long long)(2 * fib_seq(n + 1) - 1));
}

/* ---- several outside submitters ------------------------------------------ */

typedef struct {
  cf_executor *ex;
  uint64_t first, n;
  uint64_t bad;
} sub_arg;

static void *submitter(void *p) {
  sub_arg *s = p;
  s->bad = submit_window(s->ex, s->first, s->n, 1024);
  return NULL;
}

static void test_submitters(void) {
  uint64_t each = cf_test_scale(n_sub_each);
  cells_clear(each * n_subs);
  cf_executor *ex = pool_new(0);
  pthread_t th[64];
  sub_arg sa[64];
  assert_true(n_subs <= 64);
  for (unsigned t = 0; t < n_subs; t++) {
    sa[t] = (sub_arg){ex, t * each, each, 0};
    assert_true(pthread_create(&th[t], NULL, submitter, &sa[t]) == 0);
  }
  for (unsigned t = 0; t < n_subs; t++) {
    pthread_join(th[t], NULL);
    expect_eq(sa[t].bad, 0);
  }
  assert_rc(cf_executor_destroy(ex), 0);
  expect_eq(count_cells_not_one(0, each * n_subs), 0);
  printf("submitters: %u threads x %llu tasks\n", n_subs, (unsigned long long)each);
}

/* ---- cancel racing start ---------------------------------------------------- */

typedef struct {
  uint64_t i;
  _Atomic uint32_t *cells;
  unsigned spin;
} cancel_arg;

static void cancel_task(cf_call *call) {
  size_t len;
  const cancel_arg *a = cf_call_arg(call, &len);
  /* relaxed: read after the executor is destroyed (join). */
  atomic_fetch_add_explicit(&a->cells[a->i], 1, memory_order_relaxed);
  for (volatile unsigned k = 0; k < a->spin; k++) {
  }
  uint64_t r = mix(a->i);
  cf_call_return(call, &r, sizeof r);
}

typedef struct {
  int cancel_rc; /* 1: cancel not called */
  int state;     /* recorded when the future left the window */
  int result_rc;
  uint64_t result;
} cancel_rec;

static void cancel_retire(cf_future *f, cancel_rec *rec) {
  expect_rc(cf_future_wait(f, -1), 0);
  rec->state = cf_future_state(f);
  rec->result_rc = cf_future_result(f, &rec->result, sizeof rec->result, NULL, 0);
  cf_future_release(f);
}

static void test_cancel(void) {
  uint64_t n = cf_test_scale(processes ? n_cancel / 4 : n_cancel);
  /* Futures live in a ring of LIVE (a process pool bounds live futures);
   * each one's outcome is recorded as it leaves, the cells are read after
   * the join. */
  enum { LIVE = 4096, SHORT = 256 };
  cells_clear(n);
  cf_future **fs = calloc(LIVE, sizeof *fs);
  cancel_rec *rec = calloc(n, sizeof *rec);
  assert_true(fs && rec);
  for (uint64_t i = 0; i < n; i++) rec[i].cancel_rc = 1;
  cf_executor *ex = pool_new(0);
  for (uint64_t i = 0; i < n + LIVE; i++) {
    if (i >= LIVE) cancel_retire(fs[i % LIVE], &rec[i - LIVE]);
    if (i >= n) continue;
    cancel_arg a = {i, cells, (unsigned)(i % 7) * 200};
    assert_rc(cf_submit(ex, cancel_task, &a, sizeof a, &fs[i % LIVE]), 0);
    /* Cancel this one at once, or one submitted a little earlier (which may
     * be starting right now), or leave it alone. */
    uint64_t victim = i;
    switch (i % 4) {
      case 0:
        victim = i;
        break;
      case 1:
        victim = i >= 3 ? i - 3 : i;
        break;
      case 2:
        victim = i >= 17 ? i - 17 : i;
        break;
      case 3:
        victim = UINT64_MAX;
        break;
    }
    if (victim != UINT64_MAX && rec[victim].cancel_rc == 1)
      rec[victim].cancel_rc = cf_future_cancel(fs[victim % LIVE]);
    /* Keep the queue short so that cancels meet tasks about to start. */
    if (i >= SHORT) cf_future_wait(fs[(i - SHORT) % LIVE], -1);
  }
  assert_rc(cf_executor_destroy(ex), 0); /* joins: every cell is final */

  uint64_t counts[4] = {0}; /* cancelled, busy, done, untouched */
  uint64_t killed = 0;      /* processes: cancelled after it had started */
  for (uint64_t i = 0; i < n; i++) {
    uint32_t ran = atomic_load_explicit(&cells[i], memory_order_relaxed);
    const cancel_rec *c = &rec[i];
    bool ok = ran <= 1;
    if (c->cancel_rc == 0) {
      counts[0]++;
      ok = ok && c->state == CF_STATE_CANCELLED && c->result_rc == CF_ECANCELLED;
      if (!processes) ok = ok && ran == 0; /* exact for threads */
      killed += ran;
    } else {
      counts[c->cancel_rc == CF_EBUSY ? 1 : c->cancel_rc == CF_EDONE ? 2 : 3]++;
      ok = ok && (c->cancel_rc == 1 || c->cancel_rc == CF_EBUSY || c->cancel_rc == CF_EDONE);
      ok = ok && c->state == CF_STATE_FINISHED && ran == 1 && c->result_rc == 0 &&
           c->result == mix(i);
    }
    /* Both ways round: the task ran <=> its future finished. A process task
     * killed by cancel may have started: there only "never ran => cancelled". */
    if (!processes)
      ok = ok && ((ran == 1) == (c->state == CF_STATE_FINISHED));
    else if (ran == 0)
      ok = ok && c->state == CF_STATE_CANCELLED;
    if (!ok && cf_test_failures < 20)
      cf_test_fail(__FILE__, __LINE__, "cancel oracle",
                   "task %llu: cancel %d, state %d, result %d, ran %u", (unsigned long long)i,
                   c->cancel_rc, c->state, c->result_rc, ran);
    else if (!ok)
      cf_test_failures++;
  }
  free(fs);
  free(rec);
  printf(
      "cancel: %llu tasks: %llu cancelled (%llu of them killed running), %llu busy, %llu already "
      "done, %llu left alone\n",
      (unsigned long long)n, (unsigned long long)counts[0], (unsigned long long)killed,
      (unsigned long long)counts[1], (unsigned long long)counts[2], (unsigned long long)counts[3]);
}

/* ---- callbacks, cf_wait, cf_as_completed under races ------------------------- */

enum { BATCH = 64 };

/* A lost completion would hang the round: waits on a batch give up after a
 * while (the batch is microseconds of work) and fail the test instead. This
 * is a liveness bound, not a timing threshold. After a round with a
 * failure the case stops (one lost completion says enough). */
#define LOST_NS (20 * 1000000000ll)

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

typedef struct {
  cf_future *fs[BATCH];
  _Atomic uint32_t cb_a[BATCH], cb_b[BATCH], cb_late[BATCH];
  pthread_barrier_t go, added;
  _Atomic unsigned published; /* futures of this round the helper may use */
  _Atomic bool stop;
  int helper_cancel_rc[BATCH];
} cb_round;

static void on_done(cf_future *f, void *arg) {
  /* The future is done when its callbacks run. */
  if (!cf_future_done(f)) cf_test_fail(__FILE__, __LINE__, "cf_future_done(f)", "in callback");
  /* relaxed: read after cf_executor_destroy() joined the completers, or
   * in the thread that ran it. */
  atomic_fetch_add_explicit((_Atomic uint32_t *)arg, 1, memory_order_relaxed);
}

static void cb_task(cf_call *call) {
  size_t len;
  const unsigned *spin = cf_call_arg(call, &len);
  for (volatile unsigned k = 0; k < *spin; k++) {
  }
  cf_call_return(call, spin, sizeof *spin);
}

/* The helper adds a second callback to each published future while the main
 * thread is still submitting, and cancels every 7th one. */
static void *cb_helper(void *p) {
  cb_round *r = p;
  for (;;) {
    pthread_barrier_wait(&r->go);
    if (atomic_load(&r->stop)) return NULL;
    for (unsigned i = 0; i < BATCH;) {
      if (i >= atomic_load_explicit(&r->published, memory_order_acquire)) {
        sched_yield();
        continue;
      }
      int rc = cf_future_add_done_callback(r->fs[i], on_done, &r->cb_b[i]);
      if (rc != 0) cf_test_fail(__FILE__, __LINE__, "add_done_callback (helper)", "%d", rc);
      r->helper_cancel_rc[i] = i % 7 == 3 ? cf_future_cancel(r->fs[i]) : 1;
      i++;
    }
    pthread_barrier_wait(&r->added);
  }
}

static void test_callbacks(void) {
  uint64_t rounds = cf_test_scale(processes ? n_rounds / 2 : n_rounds);
  static cb_round r; /* static: big, and its cells must outlive every callback */
  memset(&r, 0, sizeof r);
  pthread_barrier_init(&r.go, NULL, 2);
  pthread_barrier_init(&r.added, NULL, 2);
  cf_executor *ex = pool_new(0); /* before the helper thread: fork a single-threaded parent */
  pthread_t helper;
  assert_true(pthread_create(&helper, NULL, cb_helper, &r) == 0);
  uint64_t cancelled = 0;

  for (uint64_t round = 0; round < rounds; round++) {
    int failures_before = cf_test_failures;
    for (unsigned i = 0; i < BATCH; i++) {
      atomic_store(&r.cb_a[i], 0);
      atomic_store(&r.cb_b[i], 0);
      atomic_store(&r.cb_late[i], 0);
    }
    atomic_store(&r.published, 0);
    pthread_barrier_wait(&r.go);
    for (unsigned i = 0; i < BATCH; i++) {
      unsigned spin = (unsigned)((round * 31 + i * 17) % 5) * 300;
      assert_rc(cf_submit(ex, cb_task, &spin, sizeof spin, &r.fs[i]), 0);
      atomic_store_explicit(&r.published, i + 1,
                            memory_order_release); /* pairs with the helper's acquire */
      expect_rc(cf_future_add_done_callback(r.fs[i], on_done, &r.cb_a[i]), 0);
      if (i % 5 == 1) cf_future_cancel(r.fs[i]);
    }
    /* FIRST_COMPLETED while the helper still adds and cancels. */
    bool done[BATCH];
    expect_rc(cf_wait(r.fs, BATCH, CF_FIRST_COMPLETED, LOST_NS, done), 0);
    unsigned ndone = 0;
    for (unsigned i = 0; i < BATCH; i++) {
      if (done[i]) {
        ndone++;
        expect_true(cf_future_done(r.fs[i]));
      }
    }
    expect_true(ndone >= 1);

    cf_as_completed *it;
    expect_rc(cf_as_completed_new(r.fs, BATCH, LOST_NS, &it), 0);
    unsigned seen[BATCH] = {0}, yielded = 0;
    cf_future *f;
    size_t index;
    int rc;
    while ((rc = cf_as_completed_next(it, &f, &index)) == 0) {
      if (index >= BATCH || f != r.fs[index]) {
        cf_test_fail(__FILE__, __LINE__, "as_completed index", "%zu", index);
        break;
      }
      seen[index]++;
      yielded++;
      expect_true(cf_future_done(f));
    }
    expect_rc(rc, CF_EDONE);
    if (rc != CF_EDONE) {
      for (unsigned i = 0; i < BATCH; i++)
        if (!seen[i])
          fprintf(stderr, "  not yielded: future %u, state %d, callbacks %u+%u\n", i,
                  cf_future_state(r.fs[i]), atomic_load(&r.cb_a[i]), atomic_load(&r.cb_b[i]));
    }
    cf_as_completed_free(it);
    expect_eq(yielded, BATCH);
    for (unsigned i = 0; i < BATCH; i++) expect_eq(seen[i], 1);

    expect_rc(cf_wait(r.fs, BATCH, CF_ALL_COMPLETED, LOST_NS, done), 0);
    pthread_barrier_wait(&r.added); /* the helper has added all its callbacks */

    for (unsigned i = 0; i < BATCH; i++) {
      /* On a done future a callback runs at once, in the caller. */
      expect_rc(cf_future_add_done_callback(r.fs[i], on_done, &r.cb_late[i]), 0);
      expect_eq(atomic_load(&r.cb_late[i]), 1);
      int st = cf_future_state(r.fs[i]);
      if (st == CF_STATE_CANCELLED) {
        cancelled++;
        expect_rc(cf_future_result(r.fs[i], NULL, 0, NULL, 0), CF_ECANCELLED);
      } else {
        unsigned v = ~0u;
        expect_eq(st, CF_STATE_FINISHED);
        expect_rc(cf_future_result(r.fs[i], &v, sizeof v, NULL, 0), 0);
        expect_eq(v, (unsigned)((round * 31 + i * 17) % 5) * 300);
        if (r.helper_cancel_rc[i] == 0)
          cf_test_fail(__FILE__, __LINE__, "cancel", "cancel returned 0 but the future finished");
      }
    }
    /* The completers may still be inside on_done for the first two callbacks
     * (the state word turns done before callbacks run): count them at the end
     * of the round only as "at most once", exactly once after the join. */
    for (unsigned i = 0; i < BATCH; i++) {
      expect_true(atomic_load(&r.cb_a[i]) <= 1);
      expect_true(atomic_load(&r.cb_b[i]) <= 1);
    }
    if (round + 1 == rounds) {
      assert_rc(cf_executor_destroy(ex), 0); /* joins every completer */
      ex = NULL;
    } else {
      /* Wait until both callbacks ran: they are due (the future is done). */
      int64_t give_up = now_ns() + LOST_NS;
      for (unsigned i = 0; i < BATCH; i++)
        while (atomic_load(&r.cb_a[i]) + atomic_load(&r.cb_b[i]) < 2 && now_ns() < give_up)
          sched_yield();
    }
    for (unsigned i = 0; i < BATCH; i++) {
      expect_eq(atomic_load(&r.cb_a[i]), 1);
      expect_eq(atomic_load(&r.cb_b[i]), 1);
      cf_future_release(r.fs[i]);
    }
    if (cf_test_failures != failures_before) {
      fprintf(stderr, "callbacks: round %llu failed; stopping\n", (unsigned long long)round);
      if (ex) {
        cf_executor_shutdown(ex, CF_SHUTDOWN_CANCEL_FUTURES);
      }
      break;
    }
  }
  atomic_store(&r.stop, true);
  pthread_barrier_wait(&r.go);
  pthread_join(helper, NULL);
  if (ex) cf_executor_destroy(ex);
  pthread_barrier_destroy(&r.go);
  pthread_barrier_destroy(&r.added);
  printf("callbacks: %llu rounds x %d futures, %llu cancelled\n", (unsigned long long)rounds, BATCH,
         (unsigned long long)cancelled);
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "thread") != 0 && strcmp(argv[1], "process") != 0)) {
    fprintf(stderr, "usage: %s thread|process [-n N] [-f fib] [-s subs] [-m each] [-c N] [-r N]\n",
            argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines survive a timeout kill */
  processes = strcmp(argv[1], "process") == 0;
  if (processes) { /* a process task costs a round trip through the ring */
    n_tiny = 3000000;
    n_sub_each = 250000;
  }
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "n:f:s:m:c:r:")) != -1) {
    uint64_t v = strtoull(optarg, NULL, 10);
    switch (opt) {
      case 'n':
        n_tiny = v;
        break;
      case 'f':
        fib_n = (unsigned)v;
        break;
      case 's':
        n_subs = (unsigned)v;
        break;
      case 'm':
        n_sub_each = v;
        break;
      case 'c':
        n_cancel = v;
        break;
      case 'r':
        n_rounds = v;
        break;
      default:
        return 2;
    }
  }
  if (n_subs == 0 || n_subs > 64 || fib_n > 40) return 2;
  n_cells = n_tiny;
  if (n_sub_each * n_subs > n_cells) n_cells = n_sub_each * n_subs;
  if (n_cancel > n_cells) n_cells = n_cancel;
  cells = cf_test_shared(n_cells * sizeof *cells);

  CF_RUN(test_tiny);
  CF_RUN(test_fib);
  CF_RUN(test_submitters);
  CF_RUN(test_cancel);
  CF_RUN(test_callbacks);
  return cf_test_done(processes ? "test_stress process" : "test_stress thread");
}
