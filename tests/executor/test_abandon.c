/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_abandon.c — giving up on work: cf_map_free returns at once (queued
 * items cancelled, running ones asked to stop, stop-ignoring ones left to
 * finish in the background, nothing leaked), and a shutdown with
 * CF_SHUTDOWN_CANCEL_FUTURES asks running tasks to stop, as its
 * documentation says, on both executors. Tasks talk to the test through a
 * shared anonymous mapping made before any pool. The only time bounds are
 * "within 5 s" guards; a call that blocks is run on a helper thread so that
 * the test fails instead of hanging.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;

typedef struct shared {
  _Atomic int gate;     /* held tasks wait for it */
  _Atomic int started;  /* held tasks that started */
  _Atomic int saw_stop; /* held tasks that saw cf_call_stop_requested */
  _Atomic int finished; /* held tasks that returned */
} shared;
#define sh ((shared *)cf_test_shm)

static void reset_shared(void) {
  memset((void *)sh, 0, sizeof *sh);
}

/* 200 us: a poll interval */
static void nap(void) {
  cf_test_nap_us(200);
}

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

/* Notes a stop request but keeps its worker until the gate opens. */
static void held_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  bool seen = false;
  while (!atomic_load(&sh->gate)) {
    if (!seen && cf_call_stop_requested(c)) {
      seen = true;
      atomic_fetch_add(&sh->saw_stop, 1);
    }
    nap();
  }
  atomic_fetch_add(&sh->finished, 1);
  size_t n;
  const void *a = cf_call_arg(c, &n);
  cf_call_return(c, a, n);
}

/* ---- cf_map_free ---- */

static _Atomic int freed;
static void *free_map(void *m) {
  cf_map_free(m);
  atomic_store(&freed, 1);
  return NULL;
}

static void map_free_case(size_t chunk) {
  reset_shared();
  atomic_store(&freed, 0);
  cf_executor *ex = make_ex(1);
  int items[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  cf_map_opts o = {.window = 2, .chunk = chunk, .timeout_ns = -1};
  cf_map *m = NULL;
  assert_rc(cf_map_array(ex, held_task, items, 8, sizeof items[0], &o, &m), 0);
  assert_true(cf_test_within_5s(&sh->started, 1)); /* one runs (and ignores stop), one is queued */
  pthread_t th;
  pthread_create(&th, NULL, free_map, m);
  /* before: cf_map_free waited for the running item, i.e. for the gate */
  expect_true(cf_test_within_5s(&freed, 1));
  expect_true(cf_test_within_5s(&sh->saw_stop, 1)); /* the running one was asked to stop */
  expect_eq(atomic_load(&sh->finished), 0);
  atomic_store(&sh->gate, 1); /* lets the old behaviour finish too */
  pthread_join(th, NULL);
  /* the running item finishes in the background; the queued one never ran */
  expect_true(cf_test_within_5s(&sh->finished, 1));
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->started), 1);
}

static void test_map_free_returns(void) {
  map_free_case(1);
}

static void test_map_free_returns_chunked(void) {
  map_free_case(3);
}

/* Abandoning a map in the middle, many times over: nothing leaks (ASan)
 * and the executor is destroyed normally. */
static void test_map_free_churn(void) {
  reset_shared();
  atomic_store(&sh->gate, 1);
  cf_executor *ex = make_ex(2);
  int items[64];
  for (int i = 0; i < 64; i++) items[i] = i;
  for (int round = 0; round < 50; round++) {
    cf_map_opts o = {.window = 4, .chunk = (size_t)(round % 3), .timeout_ns = -1};
    cf_map *m = NULL;
    assert_rc(cf_map_array(ex, held_task, items, 64, sizeof items[0], &o, &m), 0);
    int v;
    for (int k = 0; k < round % 5; k++) expect_rc(cf_map_next(m, &v, sizeof v, NULL), 0);
    cf_map_free(m);
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- shutdown(CF_SHUTDOWN_CANCEL_FUTURES) sets the stop flag ---- */

static void test_shutdown_cancel_stops_running(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_future *run = NULL, *queued = NULL;
  assert_rc(cf_submit(ex, held_task, NULL, 0, &run), 0);
  assert_rc(cf_submit(ex, held_task, NULL, 0, &queued), 0);
  assert_true(cf_test_within_5s(&sh->started, 1));
  expect_rc(cf_executor_shutdown(ex, CF_SHUTDOWN_CANCEL_FUTURES), 0);
  expect_true(cf_future_cancelled(queued));
  /* before: only CF_SHUTDOWN_KILL set it (and killed process tasks) */
  expect_true(cf_test_within_5s(&sh->saw_stop, 1));
  expect_true(!cf_future_done(run)); /* asked, not killed */
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(run, NULL, 0, NULL, -1), 0);
  cf_future_release(run);
  cf_future_release(queued);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->started), 1);
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  cf_test_shared(sizeof(shared));
  CF_RUN(test_map_free_returns);
  CF_RUN(test_map_free_returns_chunked);
  CF_RUN(test_map_free_churn);
  CF_RUN(test_shutdown_cancel_stops_running);
  return cf_test_done(process_kind ? "test_abandon_process" : "test_abandon_thread");
}
