/* cf-test: labels=unit;stress timeout=120 */
/*
 * test_deque.c — the Chase–Lev deque (deque.h) against an oracle: one owner
 * pushes and pops, several thieves steal, and every item must be taken
 * exactly once. Covers LIFO/FIFO order, the single-element race between
 * pop and steal, a full ring (push returns false: the caller overflows),
 * and wrap-around of a small ring. Not a benchmark: sizes shrink under
 * sanitizers.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "deque.h"
#include "testutil.h"

/* Items are fake pointers: i + 2 (0 is "empty", 1 is CF__DEQUE_ABORT). */
static inline cf_future *item(uint64_t i) {
  return (cf_future *)(uintptr_t)(i + 2);
}
static inline uint64_t index_of(cf_future *f) {
  return (uint64_t)(uintptr_t)f - 2;
}

static void test_sequential(void) {
  cf__deque d;
  assert_rc(cf__deque_init(&d, 16), 0);
  expect_true(cf__deque_pop(&d) == NULL);
  expect_true(cf__deque_steal(&d) == NULL);
  for (uint64_t i = 0; i < 16; i++) expect_true(cf__deque_push(&d, item(i)));
  expect_eq(cf__deque_size(&d), 16);
  /* full: the push fails and leaves the ring as it was */
  expect_true(!cf__deque_push(&d, item(99)));
  expect_eq(cf__deque_size(&d), 16);
  /* owner pops LIFO, thieves steal FIFO */
  expect_true(cf__deque_pop(&d) == item(15));
  expect_true(cf__deque_steal(&d) == item(0));
  expect_true(cf__deque_steal(&d) == item(1));
  /* room again after taking */
  expect_true(cf__deque_push(&d, item(16)));
  expect_true(cf__deque_push(&d, item(17)));
  expect_true(cf__deque_push(&d, item(18)));
  expect_true(!cf__deque_push(&d, item(19)));
  expect_true(cf__deque_pop(&d) == item(18));
  uint64_t want = 2;
  cf_future *f;
  /* wrap-around: steal the rest in order */
  for (int i = 0; i < 13; i++) {
    f = cf__deque_steal(&d);
    expect_true(f == item(want));
    want++;
  }
  expect_true(cf__deque_steal(&d) == item(16));
  expect_true(cf__deque_pop(&d) == item(17));
  expect_true(cf__deque_pop(&d) == NULL);
  expect_true(cf__deque_steal(&d) == NULL);
  expect_eq(cf__deque_size(&d), 0);
  cf__deque_free(&d);
}

/* ---- concurrent: owner + thieves, oracle of take counts ---- */

typedef struct shared {
  cf__deque d;
  uint64_t n;
  _Atomic uint8_t *taken; /* take count per item */
  atomic_bool done;
  _Atomic uint64_t stolen;
} shared;

static void take(shared *s, cf_future *f) {
  uint64_t i = index_of(f);
  if (i >= s->n) {
    expect_true(!"item out of range");
    return;
  }
  atomic_fetch_add(&s->taken[i], 1);
}

static void *thief(void *p) {
  shared *s = p;
  uint64_t mine = 0;
  for (;;) {
    bool was_done = atomic_load(&s->done);
    cf_future *f = cf__deque_steal(&s->d);
    if (f == CF__DEQUE_ABORT) continue;
    if (f) {
      take(s, f);
      mine++;
    } else if (was_done) {
      break;
    }
  }
  atomic_fetch_add(&s->stolen, mine);
  return NULL;
}

/* mode 0: bursts of pushes, then pops of part of them;
 * mode 1: push one, pop one (the single-element race every time);
 * mode 2: push until full (the overflow goes to the owner's own list). */
static void run_concurrent(int mode, int64_t cap, uint64_t n, int thieves) {
  shared s;
  memset(&s, 0, sizeof s);
  assert_rc(cf__deque_init(&s.d, cap), 0);
  s.n = n;
  s.taken = calloc(n, 1);
  assert_true(s.taken != NULL);
  pthread_t th[8];
  for (int t = 0; t < thieves; t++) pthread_create(&th[t], NULL, thief, &s);
  uint64_t next = 0, popped = 0, overflowed = 0, rng = 88172645463325252ull;
  while (next < n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    if (mode == 1) {
      expect_true(cf__deque_push(&s.d, item(next++)));
      cf_future *f = cf__deque_pop(&s.d);
      if (f) {
        take(&s, f);
        popped++;
      }
      continue;
    }
    uint64_t burst = mode == 2 ? (uint64_t)cap * 2 : 1 + rng % 64;
    for (uint64_t k = 0; k < burst && next < n; k++) {
      if (!cf__deque_push(&s.d, item(next))) {
        /* full: the pool would overflow this to its injector */
        take(&s, item(next));
        overflowed++;
      }
      next++;
    }
    uint64_t pops = mode == 2 ? (uint64_t)cap / 2 : rng % 48;
    for (uint64_t k = 0; k < pops; k++) {
      cf_future *f = cf__deque_pop(&s.d);
      if (!f) break;
      take(&s, f);
      popped++;
    }
  }
  cf_future *f;
  while ((f = cf__deque_pop(&s.d)) != NULL) {
    take(&s, f);
    popped++;
  }
  atomic_store(&s.done, true);
  for (int t = 0; t < thieves; t++) pthread_join(th[t], NULL);
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; i++)
    if (atomic_load(&s.taken[i]) != 1) {
      if (bad++ < 5)
        fprintf(stderr, "mode %d: item %llu taken %d times\n", mode, (unsigned long long)i,
                (int)atomic_load(&s.taken[i]));
    }
  expect_eq(bad, 0);
  expect_eq(popped + overflowed + atomic_load(&s.stolen), n);
  if (mode == 2) expect_true(overflowed > 0);
  expect_eq(cf__deque_size(&s.d), 0);
  free((void *)s.taken);
  cf__deque_free(&s.d);
}

static void test_bursts(void) {
  run_concurrent(0, 4096, cf_test_scale(2000000), 3);
}
static void test_bursts_small_ring(void) {
  run_concurrent(0, 8, cf_test_scale(1000000), 3);
}
static void test_single_element_race(void) {
  run_concurrent(1, 4, cf_test_scale(1000000), 3);
}
static void test_overflow(void) {
  run_concurrent(2, 64, cf_test_scale(1000000), 2);
}

int main(void) {
  CF_RUN(test_sequential);
  CF_RUN(test_bursts);
  CF_RUN(test_bursts_small_ring);
  CF_RUN(test_single_element_race);
  CF_RUN(test_overflow);
  return cf_test_done("test_deque");
}
