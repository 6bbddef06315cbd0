/* cf-test: labels=unit;shm;fault timeout=300 */
/*
 * test_rogue_control.c — a rogue task writes the pool's control words in
 * the shared segment (issue 9, item 11). Nothing it writes may make the
 * parent hang: the pool must go on, every future must end, destroy must
 * return.
 *
 * 1. The control block: every word after the ring indices set to 1 (the
 *    idle and wake words, the supervisor's flags — and, in the first
 *    layout, the exit phase, which stopped the pool).
 * 2. Its worker record: the slot it claimed rewritten, then the worker
 *    dies: its task still fails CF_ECRASHED (the parent scans the slots
 *    instead of trusting the record).
 * 3. A slot word's generation: its own, then it returns (the completing
 *    CAS fails, the worker exits), and a queued task's: both fail
 *    CF_EPROTO instead of hanging.
 * Afterwards the pool still runs tasks and destroy returns. Everything runs
 * under a watchdog.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"
#include "future.h"  /* cf_call: a rogue task reaches its slot through c->ctx */
#include "segment.h" /* the layout it scribbles on */
#include "testutil.h"

typedef struct shared {
  _Atomic int release;
  _Atomic int started;
  _Atomic int go; /* t_queued_gen waits for it */
} shared;
#define sh ((shared *)cf_test_shm)

static unsigned char *segment_base(void) {
  FILE *m = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long lo = 0;
  while (m && fgets(line, sizeof line, m))
    if (strstr(line, "cfutures-pool") && sscanf(line, "%lx-", &lo) == 1) break;
  if (m) fclose(m);
  return (unsigned char *)(uintptr_t)lo;
}

static void t_block(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->release)) cf_test_nap_ms(1);
  int r = 7;
  cf_call_return(c, &r, sizeof r);
}

/* 1: every 32-bit control word past the two ring index blocks := 1 */
static void t_scribble_ctl(cf_call *c) {
  unsigned char *base = segment_base();
  if (!base) return;
  const cf__seg_header *h = (const cf__seg_header *)base;
  _Atomic uint32_t *w = (_Atomic uint32_t *)(base + h->off_ctl + 2 * sizeof(cf__ring_idx));
  size_t n = (h->ctl_size - 2 * sizeof(cf__ring_idx)) / sizeof *w;
  for (size_t i = 0; i < n; i++) atomic_store(&w[i], 1);
  int r = 1;
  cf_call_return(c, &r, sizeof r);
}

/* 2: its record says it claimed another slot, then it dies */
static void t_lie_and_die(cf_call *c) {
  unsigned char *base = segment_base();
  if (base) {
    const cf__seg_header *h = (const cf__seg_header *)base;
    cf__worker_rec *rec = (cf__worker_rec *)(base + h->off_workers);
    for (uint32_t i = 0; i < h->nworkers; i++) {
      if (atomic_load(&rec[i].pid) == getpid()) {
        atomic_store(&rec[i].cur_slot,
                     h->nslots - 1 == atomic_load(&rec[i].cur_slot) ? 0 : h->nslots - 1);
        atomic_store(&rec[i].taking, CF__HINT_NONE);
      }
    }
  }
  raise(SIGKILL);
}

/* 3a: its own slot word gets another generation */
static void t_own_gen(cf_call *c) {
  cf__slot *sl = c->ctx;
  atomic_fetch_add(&sl->word, 1u << CF__ST_GEN_SHIFT);
  int r = 1;
  cf_call_return(c, &r, sizeof r);
}

/* 3b: the word of every queued (PENDING) slot gets another generation */
static void t_queued_gen(cf_call *c) {
  while (!atomic_load(&sh->go)) cf_test_nap_ms(1);
  unsigned char *base = segment_base();
  int hit = 0;
  if (base) {
    const cf__seg_header *h = (const cf__seg_header *)base;
    cf__slot *slots = (cf__slot *)(base + h->off_slots);
    for (uint32_t s = 0; s < h->nslots; s++) {
      uint32_t w = atomic_load(&slots[s].word);
      if (cf__st_state(w) == CF_STATE_PENDING && w != 0 &&
          atomic_compare_exchange_strong(&slots[s].word, &w, w + (1u << CF__ST_GEN_SHIFT)))
        hit++;
    }
  }
  cf_call_return(c, &hit, sizeof hit);
}

static void expect_works(cf_executor *ex, int n) {
  for (int i = 0; i < n; i++) {
    cf_future *f;
    int r = -1;
    assert_rc(cf_submit(ex, cf_test_square_task, &i, sizeof i, &f), 0);
    expect_rc(cf_future_result(f, &r, sizeof r, NULL, -1), 0);
    expect_eq(r, i * i);
    cf_future_release(f);
  }
}

static void test_control_block(void) {
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(60, "after a task scribbled the control block");
  cf_future *f;
  assert_rc(cf_submit(ex, t_scribble_ctl, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1),
            0); /* ran, returned 4 bytes (a NULL buffer: a success check) */
  cf_future_release(f);
  cf_test_nap_ms(20); /* let the workers go idle and see the words */
  expect_works(ex, 200);
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

static void test_lying_record(void) {
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(60, "a dead worker whose record lies");
  for (int k = 0; k < 5; k++) {
    cf_future *f;
    assert_rc(cf_submit(ex, t_lie_and_die, NULL, 0, &f), 0);
    expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_ECRASHED);
    cf_future_release(f);
  }
  expect_works(ex, 50);
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
}

static void test_generations(void) {
  atomic_store(&sh->release, 0);
  atomic_store(&sh->started, 0);
  cf_executor *ex = cf_test_process_pool(2);
  cf_test_watchdog(60, "slot words with a scribbled generation");
  cf_future *f;
  assert_rc(cf_submit(ex, t_own_gen, NULL, 0, &f), 0);
  expect_rc(cf_future_result(f, NULL, 0, NULL, -1), CF_EPROTO);
  cf_future_release(f);
  /* one worker blocked, the other scribbles what is queued meanwhile */
  cf_future *b, *q[4], *rogue;
  assert_rc(cf_submit(ex, t_block, NULL, 0, &b), 0);
  while (atomic_load(&sh->started) < 1) cf_test_nap_ms(1);
  atomic_store(&sh->go, 0);
  assert_rc(cf_submit(ex, t_queued_gen, NULL, 0, &rogue), 0);
  while (!cf_future_running(rogue)) cf_test_nap_ms(1);
  for (int i = 0; i < 4; i++) assert_rc(cf_submit(ex, cf_test_square_task, &i, sizeof i, &q[i]), 0);
  atomic_store(&sh->go, 1);
  int hit = 0;
  expect_rc(cf_future_result(rogue, &hit, sizeof hit, NULL, -1), 0);
  expect_eq(hit, 4);
  atomic_store(&sh->release, 1);
  for (int i = 0; i < 4; i++) {
    expect_rc(cf_future_result(q[i], NULL, 0, NULL, -1), CF_EPROTO);
    cf_future_release(q[i]);
  }
  int v = 0;
  expect_rc(cf_future_result(b, &v, sizeof v, NULL, -1), 0);
  cf_future_release(b);
  cf_future_release(rogue);
  expect_works(ex, 50);
  expect_rc(cf_executor_destroy(ex), 0);
  cf_test_watchdog(0, NULL);
  fprintf(stderr, "  generations: %d queued words scribbled, each failed CF_EPROTO\n", hit);
}

int main(void) {
  cf_test_shared(4096);
  CF_RUN(test_control_block);
  CF_RUN(test_lying_record);
  CF_RUN(test_generations);
  return cf_test_done("test_rogue_control");
}
