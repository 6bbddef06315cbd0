/* cf-test: labels=stress timeout=180 args=-t 10 */
/*
 * test_lost_wakeup.c — a push from inside a worker must wake a parking
 * worker (the store-buffering pair of park.h: the pusher's store of its
 * deque's bottom, then its load of the idle word; the parker's update of
 * the idle word, then its loads of every deque). If both loads miss the
 * other's store, the pusher wakes nobody and the parker sleeps: a task that
 * submits a child and waits for it by non-library means (a condvar, a pipe,
 * a flag) never sees it run, since its own worker is the only one awake.
 *
 * Each iteration (2 workers, A and B): main submits O and D; D ends on B,
 * which then searches for work and parks. O (on A) waits until D has ended,
 * spins until D's end + OFFSET, dirties some cache lines D dirtied on B
 * (the stores queue in A's store buffer ahead of the push: a wider window,
 * the same mechanism), submits child C and waits for it (condvar, pipe or
 * flag, in turn) at most -T ms. OFFSET steers the push to the moment B
 * parks, by the pool's park count (O reads it before the push, C when it
 * runs): B parked before C ran, so push earlier; B found C while searching
 * (or in its re-check), so push later. A child not run within -T ms is a
 * lost wake-up: a failure. (The iteration then recovers: O returns and A
 * runs C.) Oracle: every child runs exactly once.
 *
 * Not a benchmark, and no timing threshold: -t bounds the run (divided by
 * CF_TEST_SCALE under sanitizers), -T is only how long a child may take to
 * start before it counts as lost.
 *
 * Options: -t SECONDS (10) -T TIMEOUT_MS (2000) -w WORKERS (2) -p LINES (32)
 *          -m cond|pipe|flag|all (all: in turn)
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

static struct {
  int seconds, timeout_ms, pollute, mode; /* mode: 0 cond, 1 pipe, 2 flag, 3 all */
  unsigned workers;
} opt = {10, 2000, 32, 3, 2};

enum { MODE_COND, MODE_PIPE, MODE_FLAG };
static const char *const mode_name[] = {"cond", "pipe", "flag", "all"};

static cf_executor *ex;
static int mode; /* this iteration's: written by main before O is submitted */
static int64_t offset_ns = 50000;
static cf_future *child_f; /* written by O, read by main after O's result */
static int pfd[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static atomic_int c_done, d_started;
static atomic_long children_run;
static _Atomic int64_t d_end;
static _Atomic uint64_t parks_at_push, parks_at_child;

static uint64_t parks_now(void) {
  cf_stats st;
  return cf_executor_stats(ex, &st) == 0 ? st.parks : 0;
}

#define MAX_POLLUTE 64
static struct {
  _Alignas(64) volatile long v;
  char pad[56];
} lines[MAX_POLLUTE];

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void child_task(cf_call *c) {
  atomic_store(&parks_at_child, parks_now());
  atomic_fetch_add(&children_run, 1);
  if (mode == MODE_PIPE) {
    char x = 1;
    ssize_t r = write(pfd[1], &x, 1);
    (void)r;
  } else if (mode == MODE_COND) {
    pthread_mutex_lock(&mu);
    atomic_store(&c_done, 1);
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
  } else {
    atomic_store(&c_done, 1);
  }
}

static void dummy_task(cf_call *c) {
  atomic_store(&d_started, 1);
  for (int i = 0; i < opt.pollute; i++) lines[i].v++;
  atomic_store(&d_end, now_ns());
}

/* Wait for the child by other means than the library, at most
 * opt.timeout_ms. 1 if it signalled. */
static int wait_child(void) {
  if (mode == MODE_PIPE) {
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    int r;
    do r = poll(&p, 1, opt.timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r != 1) return 0;
    char x;
    ssize_t n = read(pfd[0], &x, 1);
    return n == 1;
  }
  if (mode == MODE_COND) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += opt.timeout_ms / 1000;
    ts.tv_nsec += (long)(opt.timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&mu);
    int r = 0;
    while (!atomic_load(&c_done) && r != ETIMEDOUT) r = pthread_cond_timedwait(&cv, &mu, &ts);
    int ok = atomic_load(&c_done);
    pthread_mutex_unlock(&mu);
    return ok;
  }
  int64_t until = now_ns() + (int64_t)opt.timeout_ms * 1000000LL;
  while (!atomic_load(&c_done)) {
    if (now_ns() > until) return 0;
    sched_yield();
  }
  return 1;
}

/* Returns 1 (child ran in time), 0 (lost wake-up), -1 (D did not run on
 * another worker: not usable), -2 (submit failed). */
static void outer_task(cf_call *c) {
  int v = -1;
  int64_t lim = now_ns() + 100000000LL;
  while (!atomic_load(&d_started))
    if (now_ns() > lim) goto out;
  int64_t de;
  while ((de = atomic_load(&d_end)) == 0) {
  }
  /* B's earlier parks are counted: it bumped the count before running D */
  atomic_store(&parks_at_push, parks_now());
  int64_t target = de + offset_ns;
  while (now_ns() < target) {
  }
  for (int i = 0; i < opt.pollute; i++) lines[i].v = i;
  cf_future *f;
  if (cf_submit(ex, child_task, NULL, 0, &f) != 0) {
    v = -2;
    goto out;
  }
  child_f = f;
  v = wait_child();
out:
  cf_call_return(c, &v, sizeof v);
}

static void test_inner_push_wakes_parker(void) {
  assert_true(pipe(pfd) == 0);
  cf_options o;
  cf_options_init(&o);
  o.workers = opt.workers;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  int64_t t0 = now_ns();
  int64_t budget = (int64_t)cf_test_scale((uint64_t)opt.seconds * 1000) * 1000000LL;
  long iters = 0, usable = 0, submitted = 0, lost = 0;
  uint64_t rng = 88172645463325252ull;
  int64_t step_ns = 200;
  int last_dir = 0;
  while (now_ns() - t0 < budget) {
    /* progress, not speed: one iteration takes at most ~timeout_ms */
    cf_test_watchdog((unsigned)(opt.timeout_ms / 1000) * 3 + 30, NULL);
    mode = opt.mode == 3 ? (int)(iters % 3) : opt.mode;
    atomic_store(&d_started, 0);
    atomic_store(&d_end, 0);
    atomic_store(&c_done, 0);
    atomic_store(&parks_at_child, 0);
    child_f = NULL;
    cf_future *fo, *fd;
    assert_rc(cf_submit(ex, outer_task, NULL, 0, &fo), 0);
    assert_rc(cf_submit(ex, dummy_task, NULL, 0, &fd), 0);
    int v = -3;
    expect_rc(cf_future_result(fo, &v, sizeof v, NULL, -1), 0);
    expect_rc(cf_future_wait(fd, -1), 0);
    iters++;
    expect_true(v != -2);
    if (v >= 0) {
      usable++;
      submitted++;
      if (v == 0) {
        lost++;
        fprintf(stderr,
                "lost wake-up %ld at iteration %ld (%s): child not run %d ms after its push "
                "(offset %lld ns)\n",
                lost, iters, mode_name[mode], opt.timeout_ms, (long long)offset_ns);
      }
      /* the child has run by now, or runs right after O: collect it */
      expect_rc(cf_future_wait(child_f, -1), 0);
      cf_future_release(child_f);
      if (mode == MODE_PIPE && v == 0) {
        char x;
        ssize_t n = read(pfd[0], &x, 1); /* the late child's byte */
        (void)n;
      }
      bool parked = atomic_load(&parks_at_child) > atomic_load(&parks_at_push);
      /* a step that doubles while the push stays on one side of B's park
       * and halves when it crosses (B's search time varies with the load),
       * with a random part so the push sweeps the window */
      int dir = parked ? -1 : 1;
      step_ns = dir == last_dir ? step_ns * 2 : step_ns / 2;
      if (step_ns < 100) step_ns = 100;
      if (step_ns > 100000) step_ns = 100000;
      last_dir = dir;
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      if (v == 1) offset_ns += dir * (step_ns / 2 + (int64_t)(rng % (uint64_t)step_ns));
      if (offset_ns < 0) offset_ns = 0;
      if (offset_ns > 2000000) offset_ns = 2000000;
    }
    cf_future_release(fo);
    cf_future_release(fd);
  }
  cf_test_watchdog(60, NULL);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_rc(cf_executor_destroy(ex), 0);
  close(pfd[0]);
  close(pfd[1]);
  printf(
      "test_lost_wakeup: %d workers, mode %s, %d lines: %ld iterations (%ld usable) in %.1f s, "
      "%llu parks; lost wake-ups %ld\n",
      opt.workers, mode_name[opt.mode], opt.pollute, iters, usable, (double)(now_ns() - t0) / 1e9,
      (unsigned long long)st.parks, lost);
  expect_eq(lost, 0);
  expect_eq(atomic_load(&children_run), submitted); /* each child ran once */
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "t:T:w:p:m:")) != -1) {
    switch (c) {
      case 't':
        opt.seconds = atoi(optarg);
        break;
      case 'T':
        opt.timeout_ms = atoi(optarg);
        break;
      case 'w':
        opt.workers = (unsigned)atoi(optarg);
        break;
      case 'p':
        opt.pollute = atoi(optarg);
        break;
      case 'm':
        opt.mode = -1;
        for (int i = 0; i < 4; i++)
          if (!strcmp(optarg, mode_name[i])) opt.mode = i;
        break;
      default:
        opt.mode = -1;
    }
  }
  if (opt.mode < 0 || opt.seconds < 1 || opt.timeout_ms < 1 || opt.workers < 2 || opt.pollute < 0 ||
      opt.pollute > MAX_POLLUTE) {
    fprintf(stderr,
            "usage: %s [-t seconds] [-T timeout_ms] [-w workers>=2] [-p 0..%d] "
            "[-m cond|pipe|flag|all]\n",
            argv[0], MAX_POLLUTE);
    return 2;
  }
  CF_RUN(test_inner_push_wakes_parker);
  return cf_test_done("test_lost_wakeup");
}
