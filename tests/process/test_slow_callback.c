/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_slow_callback.c — a user's done callback that blocks delays nothing
 * but the callbacks queued after it (issue 9, item 5).
 *
 * While one callback blocks (until the test lets it go, after everything
 * below): a task's deadline fires (CF_EDEADLINE), a crashing task fails
 * (CF_ECRASHED), a plain waiter gets its result, cf_wait and as_completed
 * (built on the library's own callbacks) return, and a callback may itself
 * wait for another process future. A second user callback runs once the
 * first returns: in order, on the pool's callback thread. (Before: callbacks
 * ran on the supervisor thread, and every one of these waited for the
 * blocked callback: the watchdog reported it.)
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

typedef struct shared {
  _Atomic int release;
  _Atomic int started;
  _Atomic int gate[2]; /* t_gate(i) returns once gate[i] is set */
} shared;
#define sh ((shared *)cf_test_shm)

static void t_block(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
}

static void t_gate(cf_call *c) {
  const int *i = cf_call_arg(c, NULL);
  while (!atomic_load(&sh->gate[*i])) cf_test_nap_ms(1);
}

static void t_crash(cf_call *c) {
  raise(SIGKILL);
}

/* in the parent (callbacks run there) */
static _Atomic int let_go, first_in, first_out, second_ran, order_ok;
static cf_executor *pool;

static void slow_cb(cf_future *f, void *arg) {
  atomic_store(&first_in, 1);
  while (!atomic_load(&let_go)) cf_test_nap_ms(1);
  atomic_store(&first_out, 1);
}

static void second_cb(cf_future *f, void *arg) {
  atomic_store(&order_ok, atomic_load(&first_out));
  atomic_store(&second_ran, 1);
}

static _Atomic int waited_rc = 1;
static void waiting_cb(cf_future *f, void *arg) {
  /* a callback that waits for another future of the same pool */
  cf_future *g;
  int v = 12, r = 0;
  if (cf_submit(pool, cf_test_square_task, &v, sizeof v, &g) != 0) return;
  int rc = cf_future_result(g, &r, sizeof r, NULL, -1);
  cf_future_release(g);
  atomic_store(&waited_rc, rc == 0 && r == 144 ? 0 : -1);
}

static void test_blocked_callback(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  assert_rc(cf_process_pool_new(&o, &pool), 0);
  cf_test_watchdog(120, "the pool's machinery behind a blocked callback");

  /* the callback that blocks, and one queued behind it (both registered
   * before their tasks can finish) */
  cf_future *a, *h;
  int v = 0;
  assert_rc(cf_submit(pool, t_gate, &v, sizeof v, &a), 0);
  expect_rc(cf_future_add_done_callback(a, slow_cb, NULL), 0);
  atomic_store(&sh->gate[0], 1);
  while (!atomic_load(&first_in)) cf_test_nap_ms(1);
  v = 1;
  assert_rc(cf_submit(pool, t_gate, &v, sizeof v, &h), 0);
  expect_rc(cf_future_add_done_callback(h, second_cb, NULL), 0);
  atomic_store(&sh->gate[1], 1);
  expect_rc(cf_future_wait(h, -1), 0);

  /* a deadline */
  cf_submit_opts so = {.timeout_ns = 50 * 1000000LL, .flags = 0};
  cf_future *b;
  assert_rc(cf_submit_ex(pool, t_block, NULL, 0, &so, &b), 0);
  expect_rc(cf_future_result(b, NULL, 0, NULL, -1), CF_EDEADLINE);
  cf_future_release(b);

  /* a crash */
  cf_future *c;
  assert_rc(cf_submit(pool, t_crash, NULL, 0, &c), 0);
  expect_rc(cf_future_result(c, NULL, 0, NULL, -1), CF_ECRASHED);
  cf_future_release(c);

  /* a plain waiter */
  cf_future *d;
  int r = 0;
  v = 9;
  assert_rc(cf_submit(pool, cf_test_square_task, &v, sizeof v, &d), 0);
  expect_rc(cf_future_result(d, &r, sizeof r, NULL, -1), 0);
  expect_eq(r, 81);
  cf_future_release(d);

  /* cf_wait and as_completed, on tasks not yet done when they start */
  atomic_store(&sh->release, 0);
  atomic_store(&sh->started, 0);
  cf_future *e[3];
  assert_rc(cf_submit(pool, t_block, NULL, 0, &e[0]), 0);
  assert_rc(cf_submit(pool, t_block, NULL, 0, &e[1]), 0);
  v = 4;
  assert_rc(cf_submit(pool, cf_test_square_task, &v, sizeof v, &e[2]), 0); /* queued behind */
  while (atomic_load(&sh->started) < 2) cf_test_nap_ms(1);
  atomic_store(&sh->release, 1);
  bool done[3];
  expect_rc(cf_wait(e, 3, CF_ALL_COMPLETED, -1, done), 0);
  cf_future *g[2];
  for (int i = 0; i < 2; i++)
    assert_rc(cf_submit(pool, cf_test_square_task, &i, sizeof i, &g[i]), 0);
  cf_as_completed *it;
  assert_rc(cf_as_completed_new(g, 2, -1, &it), 0);
  cf_future *x;
  size_t idx;
  int got = 0;
  while (cf_as_completed_next(it, &x, &idx) == 0) got++;
  expect_eq(got, 2);
  cf_as_completed_free(it);
  for (int i = 0; i < 2; i++) cf_future_release(g[i]);
  for (int i = 0; i < 3; i++) cf_future_release(e[i]);

  /* the queued user callback has not run: it is behind the blocked one */
  expect_eq(atomic_load(&second_ran), 0);
  atomic_store(&let_go, 1);
  while (!atomic_load(&second_ran)) cf_test_nap_ms(1);
  expect_eq(atomic_load(&order_ok), 1);

  /* a callback that waits on the pool */
  cf_future *k;
  assert_rc(cf_submit(pool, cf_test_square_task, &v, sizeof v, &k), 0);
  expect_rc(cf_future_add_done_callback(k, waiting_cb, NULL), 0);
  while (atomic_load(&waited_rc) == 1) cf_test_nap_ms(1);
  expect_eq(atomic_load(&waited_rc), 0);
  cf_future_release(k);

  cf_future_release(a);
  cf_future_release(h);
  expect_rc(cf_executor_destroy(pool), 0);
  cf_test_watchdog(0, NULL);
}

int main(void) {
  cf_test_shared(4096);
  CF_RUN(test_blocked_callback);
  return cf_test_done("test_slow_callback");
}
