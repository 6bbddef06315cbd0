/* cf-test: labels=stress timeout=300 variants=thread;process */
/*
 * test_wait_map.c — races around completion: done callbacks, cf_wait and
 * as_completed racing task completion and cancellation from several
 * threads; as_completed and cf_wait abandoned while callbacks are still to
 * fire; map against a sequential oracle with random windows, chunks and
 * early frees. Every round is checked against what must hold whatever the
 * interleaving: each callback ran exactly once, each index was yielded
 * exactly once, a future is CANCELLED iff a cancel of it returned 0, every
 * other result is the oracle's. Sizes go through cf_test_scale(); this is
 * not a benchmark.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

static bool process_kind, mpi_kind;

typedef struct work_arg {
  int64_t x;
  uint32_t spin;
} work_arg;

static int64_t oracle(int64_t x) {
  return x * 3 + 1;
}

static void work_task(cf_call *c) {
  size_t n;
  const work_arg *a = cf_call_arg(c, &n);
  if (n != sizeof *a) {
    cf_call_fail(c, -1, "size");
    return;
  }
  volatile uint32_t s = 0;
  for (uint32_t i = 0; i < a->spin; i++) s += i;
  if (a->x % 7 == 0) {
    cf_call_fail(c, (int)a->x, "seven");
    return;
  }
  int64_t r = oracle(a->x);
  cf_call_return(c, &r, sizeof r);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

static void count_cb(cf_future *f, void *arg) {
  atomic_fetch_add((_Atomic int *)arg, 1);
  if (!cf_future_done(f)) atomic_fetch_add((_Atomic int *)arg, 1000); /* ran too early */
}

/* ---- round: as_completed + cf_wait + cancellers + callbacks ---------------- */

enum { K = 32 };

typedef struct round {
  cf_future *fs[K];
  _Atomic int cb[K];
  _Atomic int cancelled_ok[K]; /* a cancel returned 0 */
  _Atomic int cancel_busy[K];  /* a cancel returned CF_EBUSY */
  int yielded[K];
  _Atomic int errors;
  uint64_t seed;
} round;

static void *as_completed_thread(void *arg) {
  round *r = arg;
  cf_as_completed *it = NULL;
  if (cf_as_completed_new(r->fs, K, -1, &it) != 0) {
    atomic_fetch_add(&r->errors, 1);
    return NULL;
  }
  cf_future *f;
  size_t idx;
  int rc, n = 0;
  while ((rc = cf_as_completed_next(it, &f, &idx)) == 0) {
    if (idx >= K || f != r->fs[idx] || !cf_future_done(f)) atomic_fetch_add(&r->errors, 1);
    if (idx < K) r->yielded[idx]++;
    n++;
  }
  if (rc != CF_EDONE || n != K) atomic_fetch_add(&r->errors, 1);
  cf_as_completed_free(it);
  return NULL;
}

static void *first_completed_thread(void *arg) {
  round *r = arg;
  cf_future *left[K];
  size_t n = K;
  memcpy(left, r->fs, sizeof left);
  bool done[K];
  while (n > 0) {
    int mode = (n & 1) ? CF_FIRST_COMPLETED : CF_FIRST_EXCEPTION;
    int rc = cf_wait(left, n, mode, -1, done);
    if (rc != 0) {
      atomic_fetch_add(&r->errors, 1);
      return NULL;
    }
    size_t kept = 0, ndone = 0;
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
      if (done[i]) {
        ndone++;
        int st = cf_future_state(left[i]);
        if (st < CF_STATE_FINISHED) atomic_fetch_add(&r->errors, 1);
        failed |= st == CF_STATE_FAILED || st == CF_STATE_CANCELLED;
      } else {
        left[kept++] = left[i];
      }
    }
    if (ndone == 0) atomic_fetch_add(&r->errors, 1);
    if (mode == CF_FIRST_EXCEPTION && !failed && ndone != n) atomic_fetch_add(&r->errors, 1);
    n = kept;
  }
  return NULL;
}

static _Atomic long total_cancelled; /* reported: the race was exercised */

typedef struct canceller {
  round *r;
  uint64_t seed;
} canceller;

static void *canceller_thread(void *arg) {
  canceller *cn = arg;
  round *r = cn->r;
  uint64_t s = cn->seed | 1;
  /* process pool: a cancel of a running task kills a worker; fewer of them */
  unsigned every = process_kind ? 8 : 3;
  for (int i = 0; i < K; i++) {
    if (rng_next(&s) % every) continue;
    int rc = cf_future_cancel(r->fs[i]);
    if (rc == 0) {
      atomic_store(&r->cancelled_ok[i], 1);
      atomic_fetch_add(&total_cancelled, 1);
    } else if (rc != CF_EDONE && rc != CF_EBUSY) {
      atomic_fetch_add(&r->errors, 1);
    }
    if (process_kind && rc == CF_EBUSY) atomic_fetch_add(&r->errors, 1);
    if (rc == CF_EBUSY) atomic_store(&r->cancel_busy[i], 1);
  }
  return NULL;
}

static void run_round(cf_executor *ex, uint64_t seed) {
  round *r = calloc(1, sizeof *r);
  r->seed = seed;
  uint64_t s = seed;
  for (int i = 0; i < K; i++) {
    work_arg a = {(int64_t)(seed % 1000) * K + i, (uint32_t)(rng_next(&s) % 20000)};
    assert_rc(cf_submit(ex, work_task, &a, sizeof a, &r->fs[i]), 0);
    /* half the callbacks before the threads start, half racing them */
    if (i % 2 == 0)
      expect_rc(cf_future_add_done_callback(r->fs[i], count_cb, (void *)&r->cb[i]), 0);
  }
  pthread_t t[4];
  pthread_create(&t[0], NULL, as_completed_thread, r);
  pthread_create(&t[1], NULL, first_completed_thread, r);
  /* two cancellers, partly over the same futures */
  canceller c1 = {r, seed}, c2 = {r, seed * 31 + 7};
  pthread_create(&t[2], NULL, canceller_thread, &c1);
  pthread_create(&t[3], NULL, canceller_thread, &c2);
  for (int i = 1; i < K; i += 2)
    expect_rc(cf_future_add_done_callback(r->fs[i], count_cb, (void *)&r->cb[i]), 0);
  bool done[K];
  expect_rc(cf_wait(r->fs, K, CF_ALL_COMPLETED, -1, done), 0);
  for (int i = 0; i < K; i++) expect_true(done[i]);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  expect_eq(atomic_load(&r->errors), 0);
  for (int i = 0; i < K; i++) {
    expect_eq(r->yielded[i], 1);
    int64_t x = (int64_t)(seed % 1000) * K + i, v = 0;
    int rc = cf_future_result(r->fs[i], &v, sizeof v, NULL, 0);
    if (atomic_load(&r->cancelled_ok[i])) {
      expect_rc(rc, CF_ECANCELLED);
      expect_true(cf_future_cancelled(r->fs[i]));
    } else if (mpi_kind && atomic_load(&r->cancel_busy[i]) && rc == CF_ECANCELLED) {
      /* sent to a rank (RUNNING, so CF_EBUSY) that dropped it unstarted */
      expect_true(cf_future_cancelled(r->fs[i]));
    } else if (x % 7 == 0) {
      expect_rc(rc, CF_ETASK);
      int code = 0;
      expect_rc(cf_future_error(r->fs[i], &code, NULL, 0), 0);
      expect_eq(code, x);
    } else {
      expect_rc(rc, 0);
      expect_eq(v, oracle(x));
    }
  }
  /* callbacks run after the done word flips: wait for every one, then
   * check none ran twice or early */
  for (int i = 0; i < K; i++) {
    while (atomic_load(&r->cb[i]) == 0) sched_yield();
    expect_eq(atomic_load(&r->cb[i]), 1);
  }
  for (int i = 0; i < K; i++) cf_future_release(r->fs[i]);
  free(r);
}

static void test_rounds(void) {
  cf_executor *ex = make_ex(2);
  uint64_t rounds = cf_test_scale(mpi_kind ? 300 : process_kind ? 1500 : 3000);
  for (uint64_t i = 0; i < rounds; i++) run_round(ex, 0x9e3779b97f4a7c15ull * (i + 1));
  printf("rounds: %llu x %d futures, %ld cancelled\n", (unsigned long long)rounds, K,
         atomic_load(&total_cancelled));
  cf_executor_destroy(ex);
}

/* ---- abandoned waiters: callbacks fire after cf_wait / as_completed left ---- */

static void test_abandoned(void) {
  cf_executor *ex = make_ex(2);
  uint64_t rounds = cf_test_scale(mpi_kind ? 500 : process_kind ? 2000 : 5000);
  uint64_t s = 12345;
  for (uint64_t i = 0; i < rounds; i++) {
    cf_future *fs[4];
    for (int j = 0; j < 4; j++) {
      work_arg a = {(int64_t)(i * 4 + j) * 7 + 1, (uint32_t)(rng_next(&s) % 50000)};
      assert_rc(cf_submit(ex, work_task, &a, sizeof a, &fs[j]), 0);
    }
    /* short timeouts: most return CF_ETIMEDOUT, their callbacks fire later */
    int rc = cf_wait(fs, 4, (int)(i % 2) + 1, (int64_t)(rng_next(&s) % 3000), NULL);
    expect_true(rc == 0 || rc == CF_ETIMEDOUT);
    cf_as_completed *it = NULL;
    assert_rc(cf_as_completed_new(fs, 4, (int64_t)(rng_next(&s) % 3000), &it), 0);
    size_t idx;
    rc = cf_as_completed_next(it, NULL, &idx);
    expect_true(rc == 0 || rc == CF_ETIMEDOUT);
    if (i % 3 == 0) {
      for (int j = 0; j < 4; j++) cf_future_release(fs[j]); /* the iterator holds them */
      cf_as_completed_free(it);
      continue;
    }
    cf_as_completed_free(it); /* before the futures finish, usually */
    if (i % 3 == 1) cf_future_cancel(fs[3]);
    expect_rc(cf_wait(fs, 4, CF_ALL_COMPLETED, -1, NULL), 0);
    for (int j = 0; j < 4; j++) cf_future_release(fs[j]);
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- timed cf_wait in a loop: the per-thread waiter cache ------------------ */

static void reuse_loop(cf_executor *ex, uint64_t rounds, uint64_t seed) {
  uint64_t s = seed;
  for (uint64_t r = 0; r < rounds; r++) {
    cf_future *fs[3];
    for (int i = 0; i < 3; i++) {
      work_arg a = {(int64_t)(r * 3 + i) * 7 + 2, (uint32_t)(rng_next(&s) % 400000)};
      assert_rc(cf_submit(ex, work_task, &a, sizeof a, &fs[i]), 0);
    }
    int mode = (r % 2) ? CF_FIRST_COMPLETED : CF_FIRST_EXCEPTION;
    int rc;
    /* the same futures again and again: one waiter, reused while nothing
     * completed; a new one once something did */
    for (int k = 0; k < 8; k++) {
      rc = cf_wait(fs, 3, mode, 2000, NULL);
      expect_true(rc == 0 || rc == CF_ETIMEDOUT);
    }
    /* a subset, then the whole set again: not reusable, still correct */
    rc = cf_wait(fs, 2, mode, 1000, NULL);
    expect_true(rc == 0 || rc == CF_ETIMEDOUT);
    bool done[3];
    /* a wake-up lost to a wrongly reused waiter would hang here */
    expect_rc(cf_wait(fs, 3, CF_FIRST_COMPLETED, -1, done), 0);
    expect_true(done[0] || done[1] || done[2]);
    expect_rc(cf_wait(fs, 3, CF_FIRST_EXCEPTION, -1, NULL), 0);
    expect_rc(cf_wait(fs, 3, CF_ALL_COMPLETED, -1, NULL), 0);
    /* released futures are recycled (release builds): the next round's
     * may have the same addresses as a cached waiter's */
    for (int i = 0; i < 3; i++) cf_future_release(fs[i]);
  }
}

typedef struct reuse_arg {
  cf_executor *ex;
  uint64_t rounds, seed;
} reuse_arg;

static void *reuse_thread(void *p) {
  reuse_arg *a = p;
  reuse_loop(a->ex, a->rounds, a->seed);
  return NULL; /* exits with a cached waiter: the key destructor frees it */
}

static void test_wait_reuse(void) {
  cf_executor *ex = make_ex(2);
  uint64_t rounds = cf_test_scale(mpi_kind ? 100 : process_kind ? 300 : 600);
  reuse_loop(ex, rounds, 99);
  pthread_t t[2];
  reuse_arg a[2] = {{ex, rounds / 2 + 1, 5}, {ex, rounds / 2 + 1, 6}};
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, reuse_thread, &a[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- futures of both executors in one wait, duplicates ------------------- */

static void test_mixed(void) {
  cf_executor *tp = NULL, *pp = NULL;
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  assert_rc(cf_thread_pool_new(&o, &tp), 0);
  assert_rc(cf_process_pool_new(&o, &pp), 0);
  uint64_t rounds = cf_test_scale(300);
  uint64_t s = 4242;
  for (uint64_t r = 0; r < rounds; r++) {
    enum { M = 6 };
    cf_future *fs[M + 2];
    for (int i = 0; i < M; i++) {
      work_arg a = {(int64_t)(r * M + i) * 7 + 3, (uint32_t)(rng_next(&s) % 30000)};
      assert_rc(cf_submit(i % 2 ? pp : tp, work_task, &a, sizeof a, &fs[i]), 0);
    }
    fs[M] = fs[0];     /* the same future twice: cf_wait counts each entry, */
    fs[M + 1] = fs[1]; /* as_completed yields it once (Python: set(fs)) */
    int mode = (int)(r % 3) + 1;
    bool done[M + 2];
    expect_rc(cf_wait(fs, M + 2, mode, -1, done), 0);
    expect_eq(done[M], done[0]);
    cf_as_completed *it = NULL;
    assert_rc(cf_as_completed_new(fs, M + 2, -1, &it), 0);
    int seen[M + 2] = {0}, n = 0;
    size_t idx;
    cf_future *f;
    while (cf_as_completed_next(it, &f, &idx) == 0) {
      if (idx < M + 2) seen[idx]++;
      expect_true(idx < M + 2 && f == fs[idx] && cf_future_done(f));
      n++;
    }
    expect_eq(n, M);
    for (int i = 0; i < M + 2; i++) expect_eq(seen[i], i < M ? 1 : 0);
    cf_as_completed_free(it);
    for (int i = 0; i < M; i++) {
      int64_t v = 0;
      expect_rc(cf_future_result(fs[i], &v, sizeof v, NULL, 0), 0);
      expect_eq(v, oracle((int64_t)(r * M + i) * 7 + 3));
      cf_future_release(fs[i]);
    }
  }
  expect_rc(cf_executor_destroy(pp), 0);
  expect_rc(cf_executor_destroy(tp), 0);
}

/* ---- map against the oracle -------------------------------------------------- */

typedef struct src_state {
  int64_t next, end, read;
  work_arg cur;
  uint64_t rng;
} src_state;

static int src_next(void *arg, const void **item, size_t *len) {
  src_state *s = arg;
  if (s->next >= s->end) return 0;
  s->cur.x = s->next++;
  s->cur.spin = (uint32_t)(rng_next(&s->rng) % 5000);
  s->read++;
  *item = &s->cur;
  *len = sizeof s->cur;
  return 1;
}

static void test_map_oracle(void) {
  cf_executor *ex = make_ex(2);
  uint64_t rounds = cf_test_scale(mpi_kind ? 100 : process_kind ? 400 : 1000);
  uint64_t rng = 777;
  for (uint64_t i = 0; i < rounds; i++) {
    size_t window = 1 + rng_next(&rng) % 6;
    size_t chunk = rng_next(&rng) % 5; /* 0..4 */
    int64_t n = (int64_t)(rng_next(&rng) % 120);
    int64_t stop_at = (i % 4 == 0) ? (int64_t)(rng_next(&rng) % (n + 1)) : n;
    src_state s = {0, n, 0, {0, 0}, rng | 1};
    cf_map_opts o = {.window = window, .chunk = chunk, .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_new(ex, work_task, src_next, &s, &o, &m), 0);
    int64_t got = 0;
    size_t per = chunk > 1 ? chunk : 1;
    for (; got < stop_at; got++) {
      expect_true(s.read - got <= (int64_t)(window * per));
      int64_t v = -1;
      int rc = cf_map_next(m, &v, sizeof v, NULL);
      if (got % 7 == 0) {
        expect_rc(rc, CF_ETASK);
        int code = 0;
        expect_rc(cf_map_error(m, &code, NULL, 0), 0);
        expect_eq(code, got);
      } else {
        expect_rc(rc, 0);
        expect_eq(v, oracle(got));
      }
    }
    if (stop_at == n) expect_rc(cf_map_next(m, NULL, 0, NULL), CF_EDONE);
    cf_map_free(m); /* early when stop_at < n */
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- map consumed from inside a task (helping, no fork-join deadlock) -------- */

static void nested_map_task(cf_call *c) {
  /* thread pool only: the nested pool is the one running us */
  cf_executor *ex = *(cf_executor *const *)cf_call_arg(c, NULL);
  int64_t items[16];
  for (int i = 0; i < 16; i++) items[i] = i + 1; /* none % 7 == 0 except 7, 14 */
  work_arg args[16];
  for (int i = 0; i < 16; i++) args[i] = (work_arg){items[i], 100};
  cf_map_opts o = {.window = 4, .chunk = (size_t)(items[0] % 3), .timeout_ns = -1};
  cf_map *m = NULL;
  int64_t sum = 0;
  if (cf_map_array(ex, work_task, args, 16, sizeof args[0], &o, &m) != 0) {
    cf_call_fail(c, 1, "map_new");
    return;
  }
  int64_t v;
  for (int i = 0; i < 16; i++) {
    int rc = cf_map_next(m, &v, sizeof v, NULL);
    if (rc == 0) sum += v;
  }
  cf_map_free(m);
  cf_call_return(c, &sum, sizeof sum);
}

static void test_nested(void) {
  if (process_kind || mpi_kind) return; /* a task in another address space */
  cf_executor *ex = make_ex(2);
  int64_t want = 0;
  for (int i = 1; i <= 16; i++)
    if (i % 7) want += oracle(i);
  uint64_t rounds = cf_test_scale(300);
  for (uint64_t r = 0; r < rounds; r++) {
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
      assert_rc(cf_submit(ex, nested_map_task, &ex, sizeof ex, &fs[i]), 0);
    /* cf_wait and as_completed inside workers too: all 2 workers block in
     * nested maps, so only helping gets them through */
    for (int i = 0; i < 4; i++) {
      int64_t v = 0;
      expect_rc(cf_future_result(fs[i], &v, sizeof v, NULL, -1), 0);
      expect_eq(v, want);
      cf_future_release(fs[i]);
    }
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

typedef struct nested_wait_arg {
  cf_executor *ex;
  int mode;
} nested_wait_arg;

static void nested_wait_task(cf_call *c) {
  const nested_wait_arg *a = cf_call_arg(c, NULL);
  cf_future *fs[6];
  for (int i = 0; i < 6; i++) {
    work_arg w = {i + 1, 1000};
    if (cf_submit(a->ex, work_task, &w, sizeof w, &fs[i]) != 0) {
      cf_call_fail(c, 1, "submit");
      return;
    }
  }
  int64_t count = 0;
  if (a->mode == 0) {
    count = cf_wait(fs, 6, CF_FIRST_COMPLETED, -1, NULL) == 0;
    count += cf_wait(fs, 6, CF_ALL_COMPLETED, -1, NULL) == 0;
  } else {
    cf_as_completed *it = NULL;
    if (cf_as_completed_new(fs, 6, -1, &it) == 0) {
      while (cf_as_completed_next(it, NULL, NULL) == 0) count++;
      cf_as_completed_free(it);
    }
  }
  for (int i = 0; i < 6; i++) cf_future_release(fs[i]);
  cf_call_return(c, &count, sizeof count);
}

static void test_nested_wait(void) {
  if (process_kind || mpi_kind) return;
  cf_executor *ex = make_ex(2);
  uint64_t rounds = cf_test_scale(500);
  for (uint64_t r = 0; r < rounds; r++) {
    cf_future *fs[4];
    for (int i = 0; i < 4; i++) {
      nested_wait_arg a = {ex, i % 2};
      assert_rc(cf_submit(ex, nested_wait_task, &a, sizeof a, &fs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
      int64_t v = 0;
      expect_rc(cf_future_result(fs[i], &v, sizeof v, NULL, -1), 0);
      expect_eq(v, i % 2 ? 6 : 2);
      cf_future_release(fs[i]);
    }
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  cf_test_kind kind = cf_test_parse_kind(argc, argv);
  process_kind = kind == CF_TEST_PROCESS;
  mpi_kind = kind == CF_TEST_MPI;
  CF_RUN(test_rounds);
  CF_RUN(test_abandoned);
  CF_RUN(test_wait_reuse);
  if (process_kind) CF_RUN(test_mixed); /* both pools: once is enough */
  CF_RUN(test_map_oracle);
  CF_RUN(test_nested);
  CF_RUN(test_nested_wait);
  return cf_test_done(mpi_kind       ? "test_wait_map_mpi"
                      : process_kind ? "test_wait_map_process"
                                     : "test_wait_map_thread");
}
