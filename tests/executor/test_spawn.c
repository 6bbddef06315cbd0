/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_spawn.c — fork-join frames (cf_spawn / cf_join), run once per
 * executor kind (argv[1] = "thread" or "process"). On a thread pool, tasks
 * spawn frames from inside a worker (the inline fast path, steals, the
 * join's helping); from the main thread, and on a process pool, every frame
 * holds a future (the fallback), with the same results. Every value is
 * checked against a sequential oracle, every task run is counted (exactly
 * once), no timing thresholds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;
static cf_executor *g_ex;

/* Counters the tasks bump: in memory the process workers share in every
 * start mode (testutil.h), so they count too. */
#define NSLOTS 4096
typedef struct shared {
  _Atomic long runs;
  _Atomic int slot[NSLOTS];
} shared;
#define sh ((shared *)cf_test_shm)

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

static int64_t seq_fib(int n) {
  return n < 2 ? n : seq_fib(n - 1) + seq_fib(n - 2);
}

/* ---- tasks ---------------------------------------------------------------- */

static void echo_task(cf_call *c) {
  size_t n;
  const void *a = cf_call_arg(c, &n);
  atomic_fetch_add(&sh->runs, 1);
  cf_call_return(c, a, n);
}

/* arg: size_t n; result: n bytes of pattern (i * 7 + 3) */
static void gen_task(cf_call *c) {
  size_t n, len;
  memcpy(&n, cf_call_arg(c, &len), sizeof n);
  unsigned char *b = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 7 + 3);
  cf_call_return(c, b, n);
  free(b);
}

/* arg: int code; fails with it; a second outcome is refused */
static void fail_task(cf_call *c) {
  int code;
  memcpy(&code, cf_call_arg(c, NULL), sizeof code);
  if (cf_call_fail(c, code, "frame failed") != 0) return;
  int x = 1;
  if (cf_call_return(c, &x, sizeof x) != CF_EINVAL) atomic_fetch_add(&sh->runs, 1000000);
}

static void seq_fib_task(cf_call *c) {
  int n;
  memcpy(&n, cf_call_arg(c, NULL), sizeof n);
  int64_t r = seq_fib(n);
  cf_call_return(c, &r, sizeof r);
}

/* fib(n) with one frame per call: spawn fib(n-1), compute fib(n-2), join */
static int64_t spawn_fib(int n, _Atomic int *err);

static void spawn_fib_task(cf_call *c) {
  const int *np = cf_call_arg(c, NULL);
  _Atomic int dummy = 0;
  int64_t r = spawn_fib(*np, &dummy);
  if (atomic_load(&dummy)) {
    cf_call_fail(c, atomic_load(&dummy), "nested");
    return;
  }
  cf_call_return(c, &r, sizeof r);
}

static int64_t spawn_fib(int n, _Atomic int *err) {
  if (n < 2) return n;
  cf_frame fr;
  int m = n - 1;
  int rc = cf_spawn(g_ex, &fr, spawn_fib_task, &m, sizeof m);
  if (rc != 0) {
    atomic_store(err, rc);
    return 0;
  }
  int64_t b = spawn_fib(n - 2, err);
  int64_t a = -1;
  size_t len = 0;
  rc = cf_join(&fr, &a, sizeof a, &len);
  if (rc != 0 || len != sizeof a) atomic_store(err, rc ? rc : -1000);
  return a + b;
}

/* Runs `spawn_fib(n)` inside a worker and returns it (thread pools only). */
static void fib_root_task(cf_call *c) {
  spawn_fib_task(c);
}

static int64_t run_in_worker(cf_fn fn, int n, int *rc_out) {
  cf_future *f = NULL;
  int64_t r = -1;
  int rc = cf_submit(g_ex, fn, &n, sizeof n, &f);
  if (rc == 0) {
    rc = cf_future_result(f, &r, sizeof r, NULL, -1);
    cf_future_release(f);
  }
  *rc_out = rc;
  return r;
}

/* ---- fib: the fast path, with and without thieves ------------------------ */

static void test_fib(void) {
  if (process_kind) {
    /* a process task cannot reach the pool: spawn from here, join LIFO */
    g_ex = make_ex(2);
    enum { K = 22 };
    cf_frame fr[K];
    for (int i = 0; i < K; i++) assert_rc(cf_spawn(g_ex, &fr[i], seq_fib_task, &i, sizeof i), 0);
    for (int i = K - 1; i >= 0; i--) {
      int64_t r = -1;
      size_t len = 0;
      expect_rc(cf_join(&fr[i], &r, sizeof r, &len), 0);
      expect_eq(len, sizeof r);
      expect_eq(r, seq_fib(i));
    }
    cf_executor_destroy(g_ex);
    return;
  }
  for (unsigned workers = 1; workers <= 4; workers *= 2) {
    g_ex = make_ex(workers);
    for (int n = 0; n <= 20; n += 5) {
      int rc;
      int64_t r = run_in_worker(fib_root_task, n, &rc);
      expect_rc(rc, 0);
      expect_eq(r, seq_fib(n));
    }
    cf_executor_destroy(g_ex);
  }
}

/* Deep recursion with thieves: the joiner's helping must keep the stack
 * bounded (leapfrogging), and the value must be right. */
static void test_deep(void) {
  if (process_kind) return;
  g_ex = make_ex(2);
  int n = cf_test_scale(8) == 8 ? 27 : 24;
  int rc;
  int64_t r = run_in_worker(fib_root_task, n, &rc);
  expect_rc(rc, 0);
  expect_eq(r, seq_fib(n));
  cf_executor_destroy(g_ex);
}

/* ---- sizes: inline and over the inline areas ----------------------------- */

static void check_sizes(void) {
  static const size_t arg_sizes[] = {
      0, 1, CF_FRAME_INLINE_ARG - 1, CF_FRAME_INLINE_ARG, CF_FRAME_INLINE_ARG + 1, 1000};
  for (size_t i = 0; i < sizeof arg_sizes / sizeof *arg_sizes; i++) {
    size_t n = arg_sizes[i];
    unsigned char in[1000], out[1000];
    for (size_t k = 0; k < n; k++) in[k] = (unsigned char)(k * 13 + i);
    memset(out, 0xee, sizeof out);
    cf_frame fr;
    expect_rc(cf_spawn(g_ex, &fr, echo_task, n ? in : NULL, n), 0);
    size_t len = 12345;
    expect_rc(cf_join(&fr, out, sizeof out, &len), 0);
    expect_eq(len, n);
    expect_true(memcmp(in, out, n) == 0);
  }
  static const size_t res_sizes[] = {
      0, 1, CF_FRAME_INLINE_RESULT - 1, CF_FRAME_INLINE_RESULT, CF_FRAME_INLINE_RESULT + 1, 5000};
  for (size_t i = 0; i < sizeof res_sizes / sizeof *res_sizes; i++) {
    size_t n = res_sizes[i];
    unsigned char out[5000];
    cf_frame fr;
    expect_rc(cf_spawn(g_ex, &fr, gen_task, &n, sizeof n), 0);
    size_t len = 12345;
    expect_rc(cf_join(&fr, n ? out : NULL, n, &len), 0);
    expect_eq(len, n);
    bool ok = true;
    for (size_t k = 0; k < n; k++) ok = ok && out[k] == (unsigned char)(k * 7 + 3);
    expect_true(ok);
    if (n == 0) continue;
    /* too small: CF_ERANGE with the size; the frame is joined all the same
     * (a heap result is freed: ASan would see a leak) */
    expect_rc(cf_spawn(g_ex, &fr, gen_task, &n, sizeof n), 0);
    len = 0;
    expect_rc(cf_join(&fr, out, n - 1, &len), CF_ERANGE);
    expect_eq(len, n);
    expect_rc(cf_join(&fr, out, n, &len), CF_EINVAL); /* joined already */
  }
}

static void sizes_task(cf_call *c) {
  check_sizes();
  int ok = 1;
  cf_call_return(c, &ok, sizeof ok);
}

static void run_check_in_worker(cf_fn fn) {
  cf_future *f = NULL;
  int ok = 0;
  assert_rc(cf_submit(g_ex, fn, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, &ok, sizeof ok, NULL, -1), 0);
  expect_eq(ok, 1);
  cf_future_release(f);
}

static void test_sizes(void) {
  g_ex = make_ex(2);
  check_sizes(); /* from outside: the fallback */
  if (!process_kind) run_check_in_worker(sizes_task);
  cf_executor_destroy(g_ex);
}

/* ---- failure -------------------------------------------------------------- */

static void check_fail(void) {
  cf_frame fr;
  int code = 42;
  expect_rc(cf_spawn(g_ex, &fr, fail_task, &code, sizeof code), 0);
  int64_t r;
  expect_rc(cf_join(&fr, &r, sizeof r, NULL), CF_ETASK);
  int got = 0;
  expect_rc(cf_frame_error(&fr, &got), 0);
  expect_eq(got, 42);
  /* a successful join has no error */
  expect_rc(cf_spawn(g_ex, &fr, echo_task, &code, sizeof code), 0);
  expect_rc(cf_join(&fr, &got, sizeof got, NULL), 0);
  expect_rc(cf_frame_error(&fr, &got), CF_EINVAL);
}

static void fail_check_task(cf_call *c) {
  check_fail();
  int ok = 1;
  cf_call_return(c, &ok, sizeof ok);
}

static void test_fail(void) {
  atomic_store(&sh->runs, 0);
  g_ex = make_ex(2);
  check_fail();
  if (!process_kind) run_check_in_worker(fail_check_task);
  cf_executor_destroy(g_ex);
  expect_true(atomic_load(&sh->runs) < 1000000); /* a second outcome was refused */
}

/* ---- misuse ---------------------------------------------------------------- */

static void *join_other(void *arg) {
  int r = 0;
  return (void *)(intptr_t)cf_join(arg, &r, sizeof r, NULL);
}

static void test_misuse(void) {
  g_ex = make_ex(1);
  cf_frame fr;
  memset(&fr, 0, sizeof fr);
  int x = 1;
  expect_rc(cf_join(&fr, &x, sizeof x, NULL), CF_EINVAL); /* never spawned */
  expect_rc(cf_join(NULL, NULL, 0, NULL), CF_EINVAL);
  expect_rc(cf_spawn(NULL, &fr, echo_task, &x, sizeof x), CF_EINVAL);
  expect_rc(cf_join(&fr, &x, sizeof x, NULL), CF_EINVAL); /* a failed spawn */
  expect_rc(cf_spawn(g_ex, NULL, echo_task, &x, sizeof x), CF_EINVAL);
  expect_rc(cf_spawn(g_ex, &fr, NULL, &x, sizeof x), CF_EINVAL);
  expect_rc(cf_spawn(g_ex, &fr, echo_task, NULL, 4), CF_EINVAL);
  expect_rc(cf_frame_error(NULL, &x), CF_EINVAL);
  /* joined by another thread: debug builds refuse it (CF_EINVAL), release
   * builds cannot tell; either way exactly one join takes the frame */
  expect_rc(cf_spawn(g_ex, &fr, echo_task, &x, sizeof x), 0);
  pthread_t t;
  assert_true(pthread_create(&t, NULL, join_other, &fr) == 0);
  void *ret;
  pthread_join(t, &ret);
  int other = (int)(intptr_t)ret;
  int mine = cf_join(&fr, &x, sizeof x, NULL);
  expect_true((other == 0 && mine == CF_EINVAL) || (other == CF_EINVAL && mine == 0));
  cf_executor_destroy(g_ex);
}

/* ---- frames and futures in one recursion ---------------------------------- */

static int64_t mixed_fib(int n, _Atomic int *err);

static void mixed_task(cf_call *c) {
  const int *np = cf_call_arg(c, NULL);
  _Atomic int e = 0;
  int64_t r = mixed_fib(*np, &e);
  if (atomic_load(&e)) {
    cf_call_fail(c, atomic_load(&e), "nested");
    return;
  }
  cf_call_return(c, &r, sizeof r);
}

/* even n: a frame for n-1 and a future for n-2; odd n: the other way, and
 * the future is joined first (out of LIFO order between the two kinds) */
static int64_t mixed_fib(int n, _Atomic int *err) {
  if (n < 2) return n;
  int a = n - 1, b = n - 2;
  cf_frame fr;
  cf_future *f = NULL;
  int64_t ra = -1, rb = -1;
  int rc;
  if (n % 2 == 0) {
    if ((rc = cf_spawn(g_ex, &fr, mixed_task, &a, sizeof a)) != 0) goto fail;
    if ((rc = cf_submit(g_ex, mixed_task, &b, sizeof b, &f)) != 0) {
      (void)cf_join(&fr, &ra, sizeof ra, NULL);
      goto fail;
    }
    int r1 = cf_future_result(f, &rb, sizeof rb, NULL, -1);
    int r2 = cf_join(&fr, &ra, sizeof ra, NULL);
    cf_future_release(f);
    if ((rc = r1 ? r1 : r2) != 0) goto fail;
  } else {
    if ((rc = cf_submit(g_ex, mixed_task, &a, sizeof a, &f)) != 0) goto fail;
    if ((rc = cf_spawn(g_ex, &fr, mixed_task, &b, sizeof b)) != 0) {
      cf_future_release(f);
      goto fail;
    }
    int r1 = cf_future_result(f, &ra, sizeof ra, NULL, -1);
    int r2 = cf_join(&fr, &rb, sizeof rb, NULL);
    cf_future_release(f);
    if ((rc = r1 ? r1 : r2) != 0) goto fail;
  }
  return ra + rb;
fail:
  atomic_store(err, rc);
  return 0;
}

static void test_mixed(void) {
  if (process_kind) return;
  g_ex = make_ex(2);
  int n = cf_test_scale(4) == 4 ? 20 : 16;
  int rc;
  int64_t r = run_in_worker(mixed_task, n, &rc);
  expect_rc(rc, 0);
  expect_eq(r, seq_fib(n));
  cf_executor_destroy(g_ex);
}

/* ---- many joins racing thieves: every task runs exactly once ---------------- */

typedef struct slot_arg {
  int slot;
  int spin;
} slot_arg;

static void slot_task(cf_call *c) {
  slot_arg a;
  memcpy(&a, cf_call_arg(c, NULL), sizeof a);
  volatile uint64_t x = (uint64_t)a.slot;
  for (int i = 0; i < a.spin; i++) x = x * 6364136223846793005ull + 1;
  atomic_fetch_add(&sh->slot[a.slot], 1);
  int64_t r = a.slot * 3 + 1;
  cf_call_return(c, &r, sizeof r);
}

/* arg: int round. Spawns NSLOTS frames (varying work, so thieves take some
 * and some joins find their frame stolen and still running), joins LIFO. */
static void race_task(cf_call *c) {
  int round;
  memcpy(&round, cf_call_arg(c, NULL), sizeof round);
  enum { WIDTH = 64 };
  cf_frame fr[WIDTH];
  int bad = 0;
  for (int base = 0; base < NSLOTS; base += WIDTH) {
    for (int i = 0; i < WIDTH; i++) {
      slot_arg a = {base + i, ((base + i + round) % 7) * 50};
      if (cf_spawn(g_ex, &fr[i], slot_task, &a, sizeof a) != 0) bad++;
    }
    for (int i = WIDTH - 1; i >= 0; i--) {
      int64_t r = -1;
      if (cf_join(&fr[i], &r, sizeof r, NULL) != 0 || r != (base + i) * 3 + 1) bad++;
    }
  }
  cf_call_return(c, &bad, sizeof bad);
}

static void test_race(void) {
  if (process_kind) return;
  g_ex = make_ex(4); /* more workers than cores: preempted thieves too */
  int rounds = (int)cf_test_scale(40);
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < NSLOTS; i++) atomic_store(&sh->slot[i], 0);
    /* one spawner; the other workers are the thieves */
    cf_future *f = NULL;
    int bad = -1;
    assert_rc(cf_submit(g_ex, race_task, &round, sizeof round, &f), 0);
    expect_rc(cf_future_result(f, &bad, sizeof bad, NULL, -1), 0);
    cf_future_release(f);
    expect_eq(bad, 0);
    int wrong = 0;
    for (int i = 0; i < NSLOTS; i++) wrong += atomic_load(&sh->slot[i]) != 1;
    expect_eq(wrong, 0);
    if (wrong || bad) break;
  }
  cf_executor_destroy(g_ex);
}

/* ---- joins out of LIFO order ------------------------------------------------ */

/* The contract asks for LIFO joins; the implementation still gives every
 * frame its own result when they come in another order (a join that does not
 * find its frame on top runs the newer ones first). */
static void order_task(cf_call *c) {
  enum { K = 6 };
  static const int order[K] = {0, 3, 5, 1, 4, 2};
  cf_frame fr[K];
  int bad = 0;
  for (int i = 0; i < K; i++) {
    slot_arg a = {i, 0};
    if (cf_spawn(g_ex, &fr[i], slot_task, &a, sizeof a) != 0) bad += 100;
  }
  for (int k = 0; k < K && bad < 100; k++) {
    int i = order[k];
    int64_t r = -1;
    if (cf_join(&fr[i], &r, sizeof r, NULL) != 0 || r != i * 3 + 1) bad++;
  }
  cf_call_return(c, &bad, sizeof bad);
}

static void test_out_of_order(void) {
  if (process_kind) return;
  for (unsigned workers = 1; workers <= 2; workers++) {
    g_ex = make_ex(workers);
    for (int i = 0; i < NSLOTS; i++) atomic_store(&sh->slot[i], 0);
    for (int round = 0; round < 20; round++) {
      cf_future *f = NULL;
      int bad = -1;
      assert_rc(cf_submit(g_ex, order_task, NULL, 0, &f), 0);
      expect_rc(cf_future_result(f, &bad, sizeof bad, NULL, -1), 0);
      cf_future_release(f);
      expect_eq(bad, 0);
    }
    for (int i = 0; i < 6; i++) expect_eq(atomic_load(&sh->slot[i]), 20);
    cf_executor_destroy(g_ex);
  }
}

/* ---- a stolen frame the joiner must wait for ------------------------------- */

static _Atomic int g_started;

static void sleepy_task(cf_call *c) {
  atomic_store(&g_started, 1);
  struct timespec ts = {0, 5 * 1000 * 1000}; /* the joiner gets to block */
  nanosleep(&ts, NULL);
  int64_t r = 7;
  cf_call_return(c, &r, sizeof r);
}

/* Spawns sleepy_task and waits (without running anything) until another
 * worker started it: the join then finds its frame stolen and running, so
 * it helps, spins, and blocks on the frame's word until the thief publishes. */
static void stolen_root(cf_call *c) {
  cf_frame fr;
  int bad = 0;
  atomic_store(&g_started, 0);
  if (cf_spawn(g_ex, &fr, sleepy_task, NULL, 0) != 0) bad = 100;
  /* (a worker's own push wakes a parked worker without a fence, so a wake-up
   * can be missed: give up after ~2 s and let the join run it instead) */
  struct timespec ts = {0, 100 * 1000};
  for (int i = 0; i < 20000 && !bad && !atomic_load(&g_started); i++) nanosleep(&ts, NULL);
  int seen = atomic_load(&g_started);
  int64_t r = -1;
  if (!bad && (cf_join(&fr, &r, sizeof r, NULL) != 0 || r != 7)) bad = 1;
  int out[2] = {bad, seen};
  cf_call_return(c, out, sizeof out);
}

static void test_stolen(void) {
  if (process_kind) return;
  g_ex = make_ex(2);
  uint64_t seen = 0;
  for (int i = 0; i < 3; i++) {
    cf_future *f = NULL;
    int out[2] = {-1, 0};
    assert_rc(cf_submit(g_ex, stolen_root, NULL, 0, &f), 0);
    expect_rc(cf_future_result(f, out, sizeof out, NULL, -1), 0);
    cf_future_release(f);
    expect_eq(out[0], 0);
    seen += out[1] != 0;
  }
  cf_stats st;
  expect_rc(cf_executor_stats(g_ex, &st), 0);
  /* a sleepy_task that started before its join ran on the other worker */
  expect_true(st.stolen >= seen);
  cf_executor_destroy(g_ex);
}

/* ---- a full deque: spawn runs the task at once ----------------------------- */

#define MANY 5000 /* more than a worker's deque holds */

static void many_task(cf_call *c) {
  cf_frame *fr = aligned_alloc(_Alignof(cf_frame), sizeof(cf_frame) * MANY);
  int bad = 0;
  for (int i = 0; i < MANY; i++) {
    slot_arg a = {i % NSLOTS, 0};
    if (cf_spawn(g_ex, &fr[i], slot_task, &a, sizeof a) != 0) bad++;
  }
  for (int i = MANY - 1; i >= 0; i--) {
    int64_t r = -1;
    if (cf_join(&fr[i], &r, sizeof r, NULL) != 0 || r != (i % NSLOTS) * 3 + 1) bad++;
  }
  free(fr);
  cf_call_return(c, &bad, sizeof bad);
}

static void test_deque_full(void) {
  if (process_kind) return;
  for (unsigned workers = 1; workers <= 2; workers++) {
    g_ex = make_ex(workers);
    for (int i = 0; i < NSLOTS; i++) atomic_store(&sh->slot[i], 0);
    cf_future *f = NULL;
    int bad = -1;
    assert_rc(cf_submit(g_ex, many_task, NULL, 0, &f), 0);
    expect_rc(cf_future_result(f, &bad, sizeof bad, NULL, -1), 0);
    cf_future_release(f);
    expect_eq(bad, 0);
    long total = 0;
    for (int i = 0; i < NSLOTS; i++) total += atomic_load(&sh->slot[i]);
    expect_eq(total, MANY);
    cf_executor_destroy(g_ex);
  }
}

/* ---- shutdown with cancel_futures never cancels frames ---------------------- */

/* One worker, K frames spawned and not joined: a worker keeps up to 128 of
 * its newest frames private (they run at their join), the rest sit in its
 * deque, where the drain of a shutdown with cancel_futures finds them. A
 * frame belongs to its spawner's running task, so every one of them runs
 * (the regression: the ones in the deque failed with CF_ECANCELLED, so what
 * a join reported depended on where the frame happened to be). */
enum { CANCEL_K = 300 };

static void cancel_task(cf_call *c) {
  cf_frame *fr = aligned_alloc(_Alignof(cf_frame), sizeof(cf_frame) * CANCEL_K);
  int bad = 0, ran = 0, cancelled = 0;
  for (int i = 0; i < CANCEL_K; i++) {
    slot_arg a = {i, 0};
    if (cf_spawn(g_ex, &fr[i], slot_task, &a, sizeof a) != 0) bad++;
  }
  cf_executor_shutdown(g_ex, CF_SHUTDOWN_CANCEL_FUTURES);
  int x = 0;
  cf_frame extra;
  if (cf_spawn(g_ex, &extra, slot_task, &x, sizeof x) != CF_ESHUTDOWN) bad += 1000;
  for (int i = CANCEL_K - 1; i >= 0 && bad == 0; i--) {
    int64_t r = -1;
    int rc = cf_join(&fr[i], &r, sizeof r, NULL);
    if (rc == 0 && r == i * 3 + 1) {
      ran++;
    } else if (rc == CF_ECANCELLED) {
      cancelled++;
    } else {
      bad++;
    }
  }
  free(fr);
  int out[3] = {bad, ran, cancelled};
  cf_call_return(c, out, sizeof out);
}

static void test_shutdown_cancel(void) {
  if (process_kind) return;
  g_ex = make_ex(1);
  for (int i = 0; i < NSLOTS; i++) atomic_store(&sh->slot[i], 0);
  cf_future *f = NULL;
  int out[3] = {-1, 0, 0};
  assert_rc(cf_submit(g_ex, cancel_task, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, out, sizeof out, NULL, -1), 0);
  cf_future_release(f);
  expect_eq(out[0], 0);
  expect_eq(out[1], CANCEL_K);
  expect_eq(out[2], 0); /* none cancelled, wherever it was */
  long total = 0;
  for (int i = 0; i < NSLOTS; i++) total += atomic_load(&sh->slot[i]);
  expect_eq(total, out[1]); /* exactly the joined-with-0 ones ran */
  cf_executor_destroy(g_ex);
}

int main(int argc, char **argv) {
  /* an MPI task runs on another rank, like a process task: the same cases */
  cf_test_kind kind = cf_test_parse_kind(argc, argv);
  process_kind = kind != CF_TEST_THREAD;
  cf_test_shared(sizeof(shared));
  CF_RUN(test_fib);
  CF_RUN(test_deep);
  CF_RUN(test_sizes);
  CF_RUN(test_fail);
  CF_RUN(test_misuse);
  CF_RUN(test_mixed);
  CF_RUN(test_out_of_order);
  CF_RUN(test_race);
  CF_RUN(test_stolen);
  CF_RUN(test_deque_full);
  CF_RUN(test_shutdown_cancel);
  return cf_test_done(kind == CF_TEST_MPI ? "test_spawn_mpi"
                      : process_kind      ? "test_spawn_process"
                                          : "test_spawn_thread");
}
