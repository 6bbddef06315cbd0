/* cf-test: labels=unit;stress timeout=300 */
/*
 * test_future_cache.c — futures made on one thread and freed on another,
 * through the per-thread caches and their depot (runtime/core/fcache.h).
 * Only a build without CF_DEBUG reuses futures (the release tree of
 * ./build.sh test); a debug build quarantines them (told apart at run time:
 * reuses_futures), and case 1 then only checks that every task ran.
 *
 * 1. Short-lived submitter threads that only allocate: each submits one
 *    task and releases its future at once, and the task runs only after its
 *    submitter has exited, so the worker frees every future. Such a thread
 *    fills its cache from the depot without ever freeing one, and the
 *    thread-exit flush was arranged only by a free: 63 futures leaked per
 *    chain such a thread took (review of the depot). Oracle: bytes in use
 *    in the one malloc arena after the pool is destroyed grow by less than
 *    4 chains' worth (the leak grew by a chain per 64 tasks).
 * 2. Fire-and-forget and kept futures from several threads at once, for
 *    many rounds: every task runs exactly once and every kept future gives
 *    its own result (a recycled future handed to two owners, or one whose
 *    old fields leak into the new task, fails here).
 */
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>

#include "cfutures.h"
#include "fcache.h"
#include "testutil.h"

/* Does this library reuse freed futures (no CF_DEBUG quarantine)? A
 * promise made and freed on this thread comes back from its cache. */
static bool reuses_futures(void) {
  cf_future *a = NULL, *b = NULL;
  assert_rc(cf_promise_new(&a), 0);
  cf_future *was = a;
  cf_future_release(a);
  assert_rc(cf_promise_new(&b), 0);
  bool same = b == was;
  cf_future_release(b);
  return same;
}

static sem_t go;
static _Atomic long ran;
static cf_executor *ex;

static void gated_task(cf_call *c) {
  sem_wait(&go); /* runs only after its submitter thread has exited */
  atomic_fetch_add(&ran, 1);
  cf_call_return(c, NULL, 0);
}

static void *submit_once(void *arg) {
  cf_future *f;
  if (cf_submit(ex, gated_task, NULL, 0, &f) != 0) abort();
  cf_future_release(f); /* the worker drops the last reference */
  return NULL;
}

static void short_lived_submitters(long n) {
  for (long i = 0; i < n; i++) {
    pthread_t t;
    assert_true(pthread_create(&t, NULL, submit_once, NULL) == 0);
    pthread_join(t, NULL);
    long want = atomic_load(&ran) + 1;
    sem_post(&go);
    while (atomic_load(&ran) < want) cf_test_nap_us(20);
  }
}

static void test_allocating_threads_exit(void) {
  cf_test_watchdog(120, "short-lived submitter threads");
  sem_init(&go, 0, 0);
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  short_lived_submitters(200); /* warm-up: the depot and the arena settle */
  assert_rc(cf_executor_destroy(ex), 0);
  size_t before = mallinfo2().uordblks;
  const long n = (long)cf_test_scale(4000);
  atomic_store(&ran, 0);
  assert_rc(cf_thread_pool_new(&o, &ex), 0);
  short_lived_submitters(n);
  assert_rc(cf_executor_destroy(ex), 0); /* the worker's cache is flushed */
  size_t after = mallinfo2().uordblks;
  expect_eq(atomic_load(&ran), n);
  if (reuses_futures()) {
    long grew = (long)after - (long)before;
    /* the leak kept the rest of every chain a thread took: a chain per 64
     * tasks, 1 MB here; without it, about a kilobyte */
    long chain = CF__FCACHE_BATCH * (long)sizeof(struct cf_future);
    printf("  %ld submitter threads: bytes in use grew by %ld (a chain: %ld)\n", n, grew, chain);
    expect_true(grew < 4 * chain);
  }
  sem_destroy(&go);
}

enum { MIXERS = 3 };
static _Atomic uint32_t *cells;
static uint64_t per_mixer;

static void count_task(cf_call *c) {
  uint64_t i = *(const uint64_t *)cf_call_arg(c, NULL);
  atomic_fetch_add(&cells[i], 1);
  uint64_t r = i * 7 + 3;
  cf_call_return(c, &r, sizeof r);
}

static void *mixer(void *arg) {
  uint64_t k = (uint64_t)(uintptr_t)arg;
  cf_future *kept[64];
  unsigned nk = 0;
  uint64_t kept_i[64];
  for (uint64_t j = 0; j < per_mixer; j++) {
    uint64_t i = k * per_mixer + j;
    cf_future *f;
    if (cf_submit(ex, count_task, &i, sizeof i, &f) != 0) abort();
    if (j % 3 == 0) {
      cf_future_release(f); /* fire and forget */
      continue;
    }
    kept[nk] = f;
    kept_i[nk++] = i;
    if (nk == 64 || j + 1 == per_mixer) {
      for (unsigned m = 0; m < nk; m++) {
        uint64_t r = 0;
        size_t len = 0;
        if (cf_future_result(kept[m], &r, sizeof r, &len, -1) != 0 || len != sizeof r ||
            r != kept_i[m] * 7 + 3)
          abort(); /* a future that is not its own */
        cf_future_release(kept[m]);
      }
      nk = 0;
    }
  }
  return NULL;
}

static void test_mixed_owners(void) {
  cf_test_watchdog(240, "fire-and-forget and kept futures from several threads");
  per_mixer = cf_test_scale(60000);
  cells = calloc(MIXERS * per_mixer, sizeof *cells);
  assert_true(cells != NULL);
  for (int round = 0; round < 4; round++) {
    memset(cells, 0, MIXERS * per_mixer * sizeof *cells);
    ex = cf_test_new_executor(false, 2);
    pthread_t t[MIXERS];
    for (uintptr_t k = 0; k < MIXERS; k++) pthread_create(&t[k], NULL, mixer, (void *)k);
    for (int k = 0; k < MIXERS; k++) pthread_join(t[k], NULL);
    assert_rc(cf_executor_destroy(ex), 0); /* every task has run */
    uint64_t bad = 0;
    for (uint64_t i = 0; i < MIXERS * per_mixer; i++) bad += atomic_load(&cells[i]) != 1;
    expect_eq(bad, 0);
  }
  free(cells);
}

int main(void) {
  mallopt(M_ARENA_MAX, 1); /* one arena: mallinfo2 sees every thread's blocks */
  CF_RUN(test_allocating_threads_exit);
  CF_RUN(test_mixed_owners);
  return cf_test_done("test_future_cache");
}
