/* cf-test: labels=unit;shm timeout=120 */
/*
 * test_slots.c — the process pool's slot table alone (shm/slots.h), against
 * a sequential oracle.
 *
 * 1. Allocate / free: random allocations and frees; every allocation
 *    returns the slot the oracle's LIFO free list has on top, with its
 *    generation and use advanced by one and its parent-side fields cleared;
 *    "full" agrees with the oracle.
 * 2. Generation wrap: one slot allocated and freed past the generation
 *    bits of the state word; gen wraps to 0, use keeps counting.
 * 3. Deadline heap: random deadlines (ties included) added for slots in
 *    use, slots freed and reallocated in between (their entries go stale),
 *    and due deadlines popped as time advances. Each pop phase returns
 *    exactly the oracle's due entries of current uses, in order of `when`;
 *    stale entries never come out; the earliest deadline and "this one is
 *    now the earliest" agree with the oracle.
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
  uint64_t *use;
  bool *in_use;
} oracle;

static void oracle_init(oracle *o, uint32_t n) {
  o->n = n;
  o->stack = calloc(n, sizeof *o->stack);
  o->gen = calloc(n, sizeof *o->gen);
  o->use = calloc(n, sizeof *o->use);
  o->in_use = calloc(n, sizeof *o->in_use);
  assert_true(o->stack && o->gen && o->use && o->in_use);
  /* slot 0 on top, then 1, ... */
  o->nfree = n;
  for (uint32_t i = 0; i < n; i++) o->stack[i] = n - 1 - i;
}

static void oracle_fini(oracle *o) {
  free(o->stack);
  free(o->gen);
  free(o->use);
  free(o->in_use);
}

static uint32_t oracle_alloc(oracle *o) {
  uint32_t s = o->stack[--o->nfree];
  o->gen[s] = (o->gen[s] + 1) % (CF__SLOT_GEN_MAX + 1);
  o->use[s]++;
  o->in_use[s] = true;
  return s;
}

static void oracle_free(oracle *o, uint32_t s) {
  o->in_use[s] = false;
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
  expect_eq(ps->use, o->use[s]);
  expect_true(ps->in_use && !ps->watched && !ps->orphan && !ps->quarantine);
  expect_eq(ps->err, 0);
  expect_true(ps->crash.pid == 0 && ps->crash.signal == 0 && ps->crash.exit_status == -1);
  expect_true(ps->f == fake_future(k));
  return s;
}

static void free_both(cf__slots *t, oracle *o, uint32_t s) {
  cf__slots_free(t, s);
  oracle_free(o, s);
  expect_true(!t->ps[s].in_use);
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
  assert_rc(cf__slots_init(&t, n), 0);
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
      t.ps[s].orphan = 1;
      t.ps[s].err = CF_ECRASHED;
      t.ps[s].f = NULL;
      free_both(&t, &o, s);
      live--;
    }
    expect_eq(cf__slots_full(&t), live == n);
  }
  oracle_fini(&o);
  cf__slots_fini(&t);
}

/* ---- 2. generation wrap ---- */

static void test_generation_wrap(void) {
  cf__slots t;
  assert_rc(cf__slots_init(&t, 2), 0);
  uint64_t rounds = (uint64_t)CF__SLOT_GEN_MAX + 3;
  for (uint64_t i = 1; i <= rounds; i++) {
    uint32_t s = cf__slots_alloc(&t, fake_future(0));
    expect_eq(s, 0); /* the slot freed last comes back */
    expect_eq(t.ps[0].gen, i % (CF__SLOT_GEN_MAX + 1));
    expect_eq(t.ps[0].use, i);
    /* the generation fits the word's field */
    expect_eq(cf__st_gen(cf__st_make(t.ps[0].gen, 0, CF_STATE_PENDING)), t.ps[0].gen);
    cf__slots_free(&t, 0);
  }
  expect_eq(t.ps[0].gen, 2);
  expect_eq(t.ps[1].use, 0); /* never touched */
  cf__slots_fini(&t);
}

/* ---- 3. deadline heap ---- */

typedef struct entry {
  int64_t when;
  uint32_t slot;
  uint64_t use;
  bool gone; /* popped, or dropped as stale */
} entry;

static entry *ents;
static unsigned nents;

/* The earliest deadline in the oracle (stale ones count: they are still in
 * the heap until they reach the top), -1 if none. */
static int64_t oracle_next(void) {
  int64_t min = -1;
  for (unsigned k = 0; k < nents; k++)
    if (!ents[k].gone && (min < 0 || ents[k].when < min)) min = ents[k].when;
  return min;
}

/* Pop everything due at `now` and check it against the oracle: each pop is
 * an entry of a current use with the earliest `when` still due (any one of
 * ties); due stale entries never come out. Returns the number popped. */
static unsigned pop_phase(cf__slots *t, const oracle *o, int64_t now, unsigned *stale) {
  for (unsigned k = 0; k < nents; k++) {
    if (!ents[k].gone && ents[k].when <= now && ents[k].use != o->use[ents[k].slot]) {
      ents[k].gone = true; /* the table drops it on the way */
      ++*stale;
    }
  }
  unsigned got = 0;
  uint32_t s;
  while (cf__slots_deadline_pop_due(t, now, &s)) {
    int64_t min = -1;
    for (unsigned k = 0; k < nents; k++)
      if (!ents[k].gone && ents[k].when <= now && (min < 0 || ents[k].when < min))
        min = ents[k].when;
    expect_true(min >= 0);
    if (min < 0) break;
    bool match = false;
    for (unsigned k = 0; k < nents && !match; k++) {
      if (!ents[k].gone && ents[k].when == min && ents[k].slot == s) {
        ents[k].gone = true;
        match = true;
      }
    }
    expect_true(match);
    expect_eq(t->ps[s].use, o->use[s]);
    got++;
  }
  for (unsigned k = 0; k < nents; k++) expect_true(ents[k].gone || ents[k].when > now);
  expect_eq(cf__slots_deadline_next(t), oracle_next());
  return got;
}

static void test_deadline_heap(void) {
  const uint32_t n = 64;
  cf__slots t;
  assert_rc(cf__slots_init(&t, n), 0);
  oracle o;
  oracle_init(&o, n);
  unsigned seed = 7;
  unsigned cap = ops / 20;
  ents = calloc(cap, sizeof *ents);
  assert_true(ents);
  nents = 0;
  unsigned popped = 0, stale = 0;
  int64_t now = 0;
  uint32_t live = 0;
  for (uint32_t i = 0; i < n / 2; i++, live++) alloc_both(&t, &o, i);
  while (nents < cap) {
    unsigned r = (unsigned)rand_r(&seed) % 16;
    if (r < 9) {
      /* a deadline for a slot in use; few distinct values: ties are common */
      uint32_t s = pick_in_use(&o, &seed);
      int64_t when = now + 1 + rand_r(&seed) % 200;
      int64_t min = oracle_next();
      expect_eq(cf__slots_deadline_add(&t, s, when), min < 0 || when < min);
      ents[nents++] = (entry){.when = when, .slot = s, .use = o.use[s]};
    } else if (r < 13) {
      /* free a slot, maybe reuse it: its entries go stale */
      free_both(&t, &o, pick_in_use(&o, &seed));
      live--;
      if (live == 0 || rand_r(&seed) % 2) {
        alloc_both(&t, &o, nents);
        live++;
      }
    } else {
      if (live < n && rand_r(&seed) % 2) {
        alloc_both(&t, &o, nents);
        live++;
      }
      now += rand_r(&seed) % 60; /* time passes */
      popped += pop_phase(&t, &o, now, &stale);
    }
  }
  unsigned last = pop_phase(&t, &o, INT64_MAX, &stale);
  expect_eq(cf__slots_deadline_next(&t), -1);
  expect_true(popped > 0 && stale > 0);
  fprintf(stderr, "  %u deadlines: %u popped as time passed, %u at the end, %u stale dropped\n",
          nents, popped, last, stale);
  expect_eq(popped + last + stale, nents);
  free(ents);
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
