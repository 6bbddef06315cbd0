/* cf-test: labels=unit;stress timeout=120 */
/*
 * test_depot.c — the chain depot (runtime/core/depot.h) that the future
 * caches exchange batches through.
 *
 * 1. Full and empty answers, single-threaded: SLOTS puts succeed, the next
 *    fails; SLOTS takes return each chain once, the next is NULL.
 * 2. Threads putting and taking at once (each thread does both, as worker
 *    and submitter caches do): every chain whose put succeeded is taken
 *    exactly once by the end (oracle: a per-chain counter), no chain is
 *    invented, and a taker sees what the putter wrote into the chain before
 *    the put (a plain field, so that TSan checks the release/acquire pair).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "depot.h"
#include "testutil.h"

typedef struct chain {
  uint64_t id;
  uint64_t check; /* written before the put, plain */
} chain;

static cf__depot dep;

static void test_full_empty(void) {
  static cf__depot d;
  chain c[CF__DEPOT_SLOTS + 1];
  for (unsigned i = 0; i < CF__DEPOT_SLOTS; i++) expect_true(cf__depot_put(&d, &c[i]));
  expect_true(!cf__depot_put(&d, &c[CF__DEPOT_SLOTS])); /* full: the caller keeps it */
  int seen[CF__DEPOT_SLOTS + 1] = {0};
  for (unsigned i = 0; i < CF__DEPOT_SLOTS; i++) {
    chain *t = cf__depot_take(&d);
    assert_true(t != NULL);
    seen[t - c]++;
  }
  expect_true(cf__depot_take(&d) == NULL);
  for (unsigned i = 0; i < CF__DEPOT_SLOTS; i++) expect_eq(seen[i], 1);
  expect_eq(seen[CF__DEPOT_SLOTS], 0);
  expect_true(cf__depot_put(&d, &c[0])); /* empty again: a put goes in */
  expect_true(cf__depot_take(&d) == &c[0]);
}

enum { THREADS = 4 };
static uint64_t per_thread;
static chain *chains;           /* THREADS x per_thread */
static _Atomic uint32_t *taken; /* per chain */
static _Atomic uint64_t put_ok, put_full, bad_check;

static bool take_one(void) {
  chain *t = cf__depot_take(&dep);
  if (!t) return false;
  if (t->check != t->id * 3 + 1) atomic_fetch_add(&bad_check, 1);
  atomic_fetch_add(&taken[t->id], 1);
  return true;
}

static void *mixed(void *arg) {
  uint64_t k = (uint64_t)(uintptr_t)arg, x = k * 0x9e3779b97f4a7c15ull + 1;
  for (uint64_t i = 0; i < per_thread; i++) {
    chain *c = &chains[k * per_thread + i];
    c->id = k * per_thread + i;
    c->check = c->id * 3 + 1;
    if (cf__depot_put(&dep, c))
      atomic_fetch_add(&put_ok, 1);
    else
      atomic_fetch_add(&put_full, 1);
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    /* take a little less often than put, so that the depot fills */
    if (x % 8 != 0) (void)take_one();
  }
  return NULL;
}

static void test_threads(void) {
  per_thread = cf_test_scale(200000);
  uint64_t total = per_thread * THREADS;
  chains = calloc(total, sizeof *chains);
  taken = calloc(total, sizeof *taken);
  assert_true(chains && taken);
  pthread_t t[THREADS];
  for (uintptr_t k = 0; k < THREADS; k++) pthread_create(&t[k], NULL, mixed, (void *)k);
  for (int k = 0; k < THREADS; k++) pthread_join(t[k], NULL);
  while (take_one()) { /* what is left in the depot */
  }
  uint64_t once = 0, twice = 0;
  for (uint64_t i = 0; i < total; i++) {
    uint32_t n = atomic_load(&taken[i]);
    if (n == 1) once++;
    if (n > 1) twice++;
  }
  expect_eq(atomic_load(&bad_check), 0);
  expect_eq(twice, 0);
  expect_eq(atomic_load(&put_ok) + atomic_load(&put_full), total);
  expect_true(atomic_load(&put_full) > 0); /* the bound was reached */
  /* every chain put was taken exactly once; none that failed to go in */
  expect_eq(once, atomic_load(&put_ok));
  free(chains);
  free(taken);
}

int main(void) {
  CF_RUN(test_full_empty);
  CF_RUN(test_threads);
  return cf_test_done("test_depot");
}
