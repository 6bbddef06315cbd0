/* cf-test: labels=unit;shm timeout=120 */
/*
 * test_slots.c — the process pool's slot table alone (shm/slots.h), against
 * a sequential oracle.
 *
 * 1. Allocate / free: random allocations and frees; every allocation
 *    returns the slot the oracle's LIFO free list has on top, with its
 *    generation advanced by one and its parent-side fields cleared; "full"
 *    and the free count agree with the oracle. Big regions: a stack.
 * 2. Generation wrap: one slot allocated and freed past the generation
 *    bits of the state word; gen wraps to 0; prev_gen undoes it.
 * 3. Deadline heap: random deadlines (ties included) set for slots in use,
 *    cleared, slots freed (their deadline goes with them) and reallocated,
 *    and due deadlines popped as time advances. Each pop phase returns
 *    exactly the oracle's due deadlines, in order of `when`; the heap holds
 *    exactly one entry per slot with a deadline (never one for a slot that
 *    was freed); the earliest deadline and "this one is now the earliest"
 *    agree with the oracle.
 * Sizes come from the arguments: test_slots [ops].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "slots.h"
#include "testutil.h"

static cf_future *fake_future(uint32_t k) {
  return (cf_future *)(uintptr_t)(0x1000u + 16u * k);
}

/* ---- the oracle: a slot table written the obvious way ---- */

typedef struct oracle {
  uint32_t n;
  uint32_t *stack; /* free slots, top at the end */
  uint32_t nfree;
  uint32_t *gen;
  bool *in_use;
  int64_t *dl; /* the slot's deadline, -1: none */
} oracle;

static void oracle_init(oracle *o, uint32_t n) {
  o->n = n;
  o->stack = calloc(n, sizeof *o->stack);
  o->gen = calloc(n, sizeof *o->gen);
  o->in_use = calloc(n, sizeof *o->in_use);
  o->dl = calloc(n, sizeof *o->dl);
  assert_true(o->stack && o->gen && o->in_use && o->dl);
  for (uint32_t i = 0; i < n; i++) o->dl[i] = -1;
  /* slot 0 on top, then 1, ... */
  o->nfree = n;
  for (uint32_t i = 0; i < n; i++) o->stack[i] = n - 1 - i;
}

static void oracle_fini(oracle *o) {
  free(o->stack);
  free(o->gen);
  free(o->in_use);
  free(o->dl);
}

static uint32_t oracle_alloc(oracle *o) {
  uint32_t s = o->stack[--o->nfree];
  o->gen[s] = (o->gen[s] + 1) % (CF__SLOT_GEN_MAX + 1);
  o->in_use[s] = true;
  return s;
}

static void oracle_free(oracle *o, uint32_t s) {
  o->in_use[s] = false;
  o->dl[s] = -1;
  o->stack[o->nfree++] = s;
}

/* Allocate from both and compare. */
static uint32_t alloc_both(cf__slots *t, oracle *o, uint32_t k) {
  expect_true(!cf__slots_full(t));
  uint32_t want = oracle_alloc(o);
  uint32_t s = cf__slots_alloc(t, fake_future(k));
  expect_eq(s, want);
  const cf__pslot *ps = &t->ps[s];
  expect_eq(ps->gen, o->gen[s]);
  expect_true(ps->in_use && !ps->watched && !ps->quarantine);
  expect_true(ps->big == CF__NO_BIG && ps->heap_pos == CF__NO_HEAP);
  expect_eq(t->nfree, o->nfree);
  expect_eq(ps->err, 0);
  expect_true(ps->crash.pid == 0 && ps->crash.signal == 0 && ps->crash.exit_status == -1);
  expect_true(ps->f == fake_future(k));
  return s;
}

static void free_both(cf__slots *t, oracle *o, uint32_t s) {
  cf__slots_free(t, s);
  oracle_free(o, s);
  expect_true(!t->ps[s].in_use);
  expect_true(t->ps[s].heap_pos == CF__NO_HEAP);
  expect_eq(t->nfree, o->nfree);
}

static uint32_t pick_in_use(const oracle *o, unsigned *seed) {
  for (;;) {
    uint32_t s = (uint32_t)rand_r(seed) % o->n;
    if (o->in_use[s]) return s;
  }
}

/* ---- 1. allocate / free ---- */

static unsigned ops = 200000;

static void test_alloc_free(void) {
  const uint32_t n = 97;
  cf__slots t;
  assert_rc(cf__slots_init(&t, n, 5), 0);
  oracle o;
  oracle_init(&o, n);
  unsigned seed = 1;
  uint32_t live = 0;
  /* the first n allocations come in index order */
  for (uint32_t i = 0; i < n; i++) {
    expect_eq(alloc_both(&t, &o, i), i);
    live++;
  }
  expect_true(cf__slots_full(&t));
  for (unsigned i = 0; i < ops; i++) {
    bool alloc = live == 0 || (live < n && rand_r(&seed) % 2);
    if (alloc) {
      alloc_both(&t, &o, i);
      live++;
    } else {
      /* side fields set while in use are cleared by free + alloc */
      uint32_t s = pick_in_use(&o, &seed);
      t.ps[s].watched = 1;
      t.ps[s].err = CF_ECRASHED;
      t.ps[s].f = NULL;
      free_both(&t, &o, s);
      live--;
    }
    expect_eq(cf__slots_full(&t), live == n);
  }
  /* big regions: a stack of the free ones, region 0 first */
  uint32_t got[5];
  for (uint32_t r = 0; r < 5; r++) expect_eq(got[r] = cf__slots_big_take(&t), r);
  expect_eq(cf__slots_big_take(&t), CF__NO_BIG);
  cf__slots_big_give(&t, got[3]);
  expect_eq(cf__slots_big_take(&t), 3);
  oracle_fini(&o);
  cf__slots_fini(&t);
}

/* ---- 2. generation wrap ---- */

static void test_generation_wrap(void) {
  cf__slots t;
  assert_rc(cf__slots_init(&t, 2, 0), 0);
  uint64_t rounds = (uint64_t)CF__SLOT_GEN_MAX + 3;
  for (uint64_t i = 1; i <= rounds; i++) {
    uint32_t s = cf__slots_alloc(&t, fake_future(0));
    expect_eq(s, 0); /* the slot freed last comes back */
    expect_eq(t.ps[0].gen, i % (CF__SLOT_GEN_MAX + 1));
    expect_eq(cf__slots_prev_gen(t.ps[0].gen), (i - 1) % (CF__SLOT_GEN_MAX + 1));
    /* the generation fits the word's field */
    expect_eq(cf__st_gen(cf__st_make(t.ps[0].gen, 0, CF_STATE_PENDING)), t.ps[0].gen);
    cf__slots_free(&t, 0);
  }
  expect_eq(t.ps[0].gen, 2);
  expect_eq(t.ps[1].gen, 0); /* never touched */
  cf__slots_fini(&t);
}

/* ---- 3. deadline heap ---- */

/* The earliest deadline in the oracle, -1 if none. */
static int64_t oracle_next(const oracle *o) {
  int64_t min = -1;
  for (uint32_t s = 0; s < o->n; s++)
    if (o->dl[s] >= 0 && (min < 0 || o->dl[s] < min)) min = o->dl[s];
  return min;
}

static uint32_t oracle_count(const oracle *o) {
  uint32_t k = 0;
  for (uint32_t s = 0; s < o->n; s++) k += o->dl[s] >= 0;
  return k;
}

/* Pop everything due at `now` and check it against the oracle: each pop is
 * a slot in use whose deadline is the earliest one still due (any one of
 * ties). Returns the number popped. */
static unsigned pop_phase(cf__slots *t, oracle *o, int64_t now) {
  unsigned got = 0;
  uint32_t s;
  while (cf__slots_deadline_pop_due(t, now, &s)) {
    int64_t min = oracle_next(o);
    expect_true(min >= 0 && min <= now);
    expect_true(s < o->n && o->in_use[s] && o->dl[s] == min);
    if (s >= o->n || o->dl[s] != min) break;
    o->dl[s] = -1;
    got++;
  }
  int64_t min = oracle_next(o);
  expect_true(min < 0 || min > now);
  expect_eq(cf__slots_deadline_next(t), min);
  expect_eq(t->nheap, oracle_count(o));
  return got;
}

static void test_deadline_heap(void) {
  const uint32_t n = 64;
  cf__slots t;
  assert_rc(cf__slots_init(&t, n, 0), 0);
  oracle o;
  oracle_init(&o, n);
  unsigned seed = 7;
  unsigned popped = 0, cleared = 0, freed = 0, set = 0;
  int64_t now = 0;
  uint32_t live = 0;
  for (uint32_t i = 0; i < n / 2; i++, live++) alloc_both(&t, &o, i);
  for (unsigned i = 0; i < ops; i++) {
    unsigned r = (unsigned)rand_r(&seed) % 16;
    uint32_t s = pick_in_use(&o, &seed);
    if (r < 8) {
      /* a deadline for a slot in use; few distinct values: ties are common */
      if (o.dl[s] >= 0) continue;
      int64_t when = now + 1 + rand_r(&seed) % 200;
      int64_t min = oracle_next(&o);
      expect_eq(cf__slots_deadline_set(&t, s, when), min < 0 || when < min);
      o.dl[s] = when;
      set++;
    } else if (r < 10) {
      /* cleared (the task completed before its deadline) */
      cleared += o.dl[s] >= 0;
      cf__slots_deadline_clear(&t, s);
      o.dl[s] = -1;
    } else if (r < 13) {
      /* freed: its deadline goes too; maybe reused */
      freed += o.dl[s] >= 0;
      free_both(&t, &o, s);
      live--;
      if (live == 0 || rand_r(&seed) % 2) {
        alloc_both(&t, &o, i);
        live++;
      }
    } else {
      if (live < n && rand_r(&seed) % 2) {
        alloc_both(&t, &o, i);
        live++;
      }
      now += rand_r(&seed) % 60; /* time passes */
      popped += pop_phase(&t, &o, now);
    }
    expect_eq(t.nheap, oracle_count(&o));
  }
  unsigned last = pop_phase(&t, &o, INT64_MAX);
  expect_eq(cf__slots_deadline_next(&t), -1);
  expect_eq(t.nheap, 0);
  expect_true(popped > 0 && cleared > 0 && freed > 0);
  fprintf(stderr, "  %u deadlines: %u popped as time passed, %u at the end, %u cleared, %u freed\n",
          set, popped, last, cleared, freed);
  expect_eq(popped + last + cleared + freed, set);
  oracle_fini(&o);
  cf__slots_fini(&t);
}

int main(int argc, char **argv) {
  if (argc > 1) ops = (unsigned)strtoul(argv[1], NULL, 10);
  if (ops < 1000) ops = 1000;
  CF_RUN(test_alloc_free);
  CF_RUN(test_generation_wrap);
  CF_RUN(test_deadline_heap);
  return cf_test_done("test_slots");
}
