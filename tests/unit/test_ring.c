/* cf-test: labels=unit;stress;shm timeout=120 */
/*
 * test_ring.c — the crash-tolerant MPMC ring (shm/ring.h).
 *
 * 1. Threads over a MAP_SHARED mapping: P producers push disjoint values,
 *    C consumers pop; every value is delivered exactly once (oracle: a
 *    per-value counter), through a ring much smaller than the traffic.
 * 2. Wrap-around and full/empty answers, single-threaded.
 * 3. Processes killed at random instants: consumer processes popping from a
 *    shared ring are SIGKILLed at random; the ring never stalls, no value is
 *    delivered twice, and every value never delivered is the one a killed
 *    consumer was taking (its `taking` word) — what the process pool's
 *    supervisor puts back.
 * 4. The same with producer processes killed too (a producer may die
 *    between its cell CAS and the tail advance): the value it was pushing
 *    is "uncertain" (delivered at most once, never pushed again); every
 *    other value is delivered exactly once or was a killed consumer's.
 * 5. A consumer that loses the race for a value does not keep naming it in
 *    its `taking` word: two threads pop one value at once, round after
 *    round, and the loser's word is empty after its CF_EAGAIN. (A stale
 *    word was put back into the process pool's ring when that worker was
 *    reaped at shutdown: a phantom queued task in cf_executor_stats.)
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "testutil.h"

typedef struct shared_ring {
  cf__ring_idx idx;
  _Atomic uint64_t cells[];
} shared_ring;

static shared_ring *ring_map(unsigned log2cap, size_t extra, void **extra_out) {
  size_t sz = sizeof(shared_ring) + (sizeof(uint64_t) << log2cap);
  sz = (sz + 63) & ~(size_t)63;
  void *m = mmap(NULL, sz + extra, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  if (extra_out) *extra_out = (char *)m + sz;
  return m;
}

/* ---- 1. threads ---- */

#define LOG2CAP 6
static shared_ring *tr;
static _Atomic uint32_t *seen;
static uint32_t per_producer;
static _Atomic unsigned producers_left;

static void *producer(void *arg) {
  uint32_t id = (uint32_t)(uintptr_t)arg;
  for (uint32_t i = 0; i < per_producer; i++) {
    uint32_t v = id * per_producer + i;
    while (cf__ring_push(&tr->idx, tr->cells, LOG2CAP, v) != 0) sched_yield();
  }
  atomic_fetch_sub(&producers_left, 1);
  return NULL;
}

static void *consumer(void *arg) {
  _Atomic uint32_t taking;
  for (;;) {
    uint32_t v;
    if (cf__ring_pop(&tr->idx, tr->cells, LOG2CAP, &v, &taking) == 0) {
      atomic_fetch_add(&seen[v], 1);
      continue;
    }
    if (atomic_load(&producers_left) == 0) {
      /* producers done: one more look, the ring may have been refilled */
      if (cf__ring_pop(&tr->idx, tr->cells, LOG2CAP, &v, NULL) == 0) {
        atomic_fetch_add(&seen[v], 1);
        continue;
      }
      return NULL;
    }
    sched_yield();
  }
}

static void test_threads_exactly_once(void) {
  enum { P = 4, C = 4 };
  per_producer = (uint32_t)cf_test_scale(50000);
  uint32_t total = P * per_producer;
  void *extra;
  tr = ring_map(LOG2CAP, total * sizeof(uint32_t), &extra);
  seen = extra;
  atomic_store(&producers_left, P);
  pthread_t pt[P], ct[C];
  for (uintptr_t i = 0; i < C; i++) pthread_create(&ct[i], NULL, consumer, (void *)i);
  for (uintptr_t i = 0; i < P; i++) pthread_create(&pt[i], NULL, producer, (void *)i);
  for (int i = 0; i < P; i++) pthread_join(pt[i], NULL);
  for (int i = 0; i < C; i++) pthread_join(ct[i], NULL);
  uint32_t missing = 0, dup = 0;
  for (uint32_t v = 0; v < total; v++) {
    uint32_t n = atomic_load(&seen[v]);
    missing += n == 0;
    dup += n > 1;
  }
  expect_eq(missing, 0);
  expect_eq(dup, 0);
  expect_eq(cf__ring_count(&tr->idx), 0);
}

/* ---- 2. single-threaded edges ---- */

static void test_full_empty_wrap(void) {
  shared_ring *r = ring_map(2, 0, NULL); /* 4 cells */
  uint32_t v;
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), CF_EAGAIN);
  for (uint32_t lap = 0; lap < 100; lap++) {
    for (uint32_t i = 0; i < 4; i++) expect_rc(cf__ring_push(&r->idx, r->cells, 2, lap * 4 + i), 0);
    expect_rc(cf__ring_push(&r->idx, r->cells, 2, 999), CF_EAGAIN);
    expect_eq(cf__ring_count(&r->idx), 4);
    for (uint32_t i = 0; i < 4; i++) {
      expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
      expect_eq(v, lap * 4 + i);
    }
    expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), CF_EAGAIN);
  }
  /* a producer that died after its cell CAS, before advancing tail: the
   * next caller helps */
  expect_rc(cf__ring_push(&r->idx, r->cells, 2, 7), 0);
  atomic_fetch_sub(&r->idx.tail, 1); /* as if the advance never happened */
  expect_rc(cf__ring_push(&r->idx, r->cells, 2, 8), 0);
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
  expect_eq(v, 7);
  /* a consumer that died after its cell CAS, before advancing head */
  atomic_fetch_sub(&r->idx.head, 1);
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
  expect_eq(v, 8);
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), CF_EAGAIN);
  /* a producer stalled (or died) between its cell CAS and the tail
   * advance while a consumer already drained that cell: the next producer
   * finds the cell a whole step ahead of tail and must help, not reload */
  expect_rc(cf__ring_push(&r->idx, r->cells, 2, 9), 0);
  atomic_fetch_sub(&r->idx.tail, 1);
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
  expect_eq(v, 9);
  expect_rc(cf__ring_push(&r->idx, r->cells, 2, 10), 0);
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
  expect_eq(v, 10);
  /* the mirror: a consumer stalled before the head advance while producers
   * refilled its cell for the next lap */
  expect_rc(cf__ring_push(&r->idx, r->cells, 2, 11), 0);
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
  atomic_fetch_sub(&r->idx.head, 1);
  for (uint32_t i = 0; i < 3; i++) expect_rc(cf__ring_push(&r->idx, r->cells, 2, 20 + i), 0);
  expect_rc(cf__ring_push(&r->idx, r->cells, 2, 23), 0); /* lands in the stalled cell */
  for (uint32_t i = 0; i < 4; i++) {
    expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), 0);
    expect_eq(v, 20 + i);
  }
  expect_rc(cf__ring_pop(&r->idx, r->cells, 2, &v, NULL), CF_EAGAIN);
  /* garbage in the cells: bounded, no hang */
  for (int i = 0; i < 4; i++) atomic_store(&r->cells[i], 0x7777777700000000ull);
  int rc = cf__ring_push(&r->idx, r->cells, 2, 1);
  expect_true(rc == CF_EAGAIN || rc == CF_EPROTO);
  munmap(r, 4096);
}

/* ---- 3. processes killed at random ---- */

#define KLOG2 5
typedef struct kshared {
  _Atomic uint32_t taking[64]; /* per consumer incarnation */
  _Atomic uint32_t popped[];   /* per value */
} kshared;

static void consumer_proc(shared_ring *r, kshared *k, unsigned slot) {
  for (;;) {
    uint32_t v;
    if (cf__ring_pop(&r->idx, r->cells, KLOG2, &v, &k->taking[slot]) == 0) {
      atomic_fetch_add(&k->popped[v], 1);
      atomic_store(&k->taking[slot], 0xffffffffu);
    } else {
      sched_yield();
    }
  }
}

static void consumer_proc2(shared_ring *r, _Atomic uint32_t *taking, _Atomic uint32_t *popped,
                           unsigned slot) {
  for (;;) {
    uint32_t v;
    if (cf__ring_pop(&r->idx, r->cells, KLOG2, &v, &taking[slot]) == 0) {
      atomic_fetch_add(&popped[v], 1);
      atomic_store(&taking[slot], 0xffffffffu);
    } else {
      sched_yield();
    }
  }
}

static void test_processes_killed(void) {
  uint32_t total = (uint32_t)cf_test_scale(60000);
  void *extra;
  shared_ring *r = ring_map(KLOG2, sizeof(kshared) + total * sizeof(uint32_t), &extra);
  kshared *k = extra;
  enum { C = 3 };
  pid_t pid[C];
  unsigned slot_of[C], next_slot = 0, killed = 0;
  for (int i = 0; i < 64; i++) atomic_store(&k->taking[i], 0xffffffffu);
  for (int i = 0; i < C; i++) {
    slot_of[i] = next_slot++;
    pid[i] = fork();
    if (pid[i] == 0) consumer_proc(r, k, slot_of[i]);
  }
  unsigned seed = (unsigned)time(NULL);
  uint32_t v = 0;
  while (v < total) {
    if (cf__ring_push(&r->idx, r->cells, KLOG2, v) == 0) {
      v++;
    } else {
      sched_yield();
    }
    if (next_slot < 64 && rand_r(&seed) % 2000 == 0) {
      int i = rand_r(&seed) % C;
      kill(pid[i], SIGKILL);
      waitpid(pid[i], NULL, 0);
      killed++;
      slot_of[i] = next_slot++;
      pid[i] = fork();
      if (pid[i] == 0) consumer_proc(r, k, slot_of[i]);
    }
  }
  /* let the consumers drain, then stop them */
  while (cf__ring_count(&r->idx) != 0) sched_yield();
  for (int i = 0; i < C; i++) {
    kill(pid[i], SIGKILL);
    waitpid(pid[i], NULL, 0);
  }
  uint32_t h;
  while (cf__ring_pop(&r->idx, r->cells, KLOG2, &h, NULL) == 0) atomic_fetch_add(&k->popped[h], 1);
  /* the ring still works after all that */
  expect_rc(cf__ring_push(&r->idx, r->cells, KLOG2, 1), 0);
  expect_rc(cf__ring_pop(&r->idx, r->cells, KLOG2, &h, NULL), 0);
  expect_eq(h, 1);
  uint32_t dup = 0, lost_unexplained = 0, lost = 0;
  for (uint32_t x = 0; x < total; x++) {
    uint32_t n = atomic_load(&k->popped[x]);
    dup += n > 1;
    if (n == 0) {
      lost++;
      bool explained = false;
      for (unsigned s = 0; s < next_slot; s++) explained |= atomic_load(&k->taking[s]) == x;
      lost_unexplained += !explained;
    }
  }
  expect_eq(dup, 0);
  expect_eq(lost_unexplained, 0);
  expect_true(lost <= next_slot);
  fprintf(stderr, "  %u consumers killed, %u values lost with them (all recorded in taking)\n",
          killed, lost);
}

/* ---- 4. producers and consumers killed at random ---- */

#define NONE CF__RING_NONE
typedef struct pcshared {
  _Atomic uint32_t taking[256]; /* per consumer incarnation */
  _Atomic uint32_t next[4];     /* per producer: next value to push */
  _Atomic uint32_t pushing[4];  /* per producer: value being pushed, or NONE */
  uint32_t end[4];
  _Atomic uint32_t popped[]; /* per value, then uncertain[] after it */
} pcshared;

static void producer_proc(shared_ring *r, pcshared *k, int p) {
  for (;;) {
    uint32_t v = atomic_load(&k->next[p]);
    if (v >= k->end[p]) _exit(0);
    atomic_store(&k->pushing[p], v);
    while (cf__ring_push(&r->idx, r->cells, KLOG2, v) != 0) sched_yield();
    atomic_store(&k->next[p], v + 1);
    atomic_store(&k->pushing[p], NONE);
  }
}

static void test_producers_and_consumers_killed(void) {
  enum { P = 2, C = 2 };
  uint32_t per = (uint32_t)cf_test_scale(40000), total = P * per;
  void *extra;
  shared_ring *r = ring_map(KLOG2, sizeof(pcshared) + 2 * total * sizeof(uint32_t), &extra);
  pcshared *k = extra;
  _Atomic uint32_t *uncertain = k->popped + total;
  for (int i = 0; i < 256; i++) atomic_store(&k->taking[i], NONE);
  pid_t ppid_[P], cpid[C];
  unsigned next_slot = 0, kills = 0;
  for (int p = 0; p < P; p++) {
    atomic_store(&k->next[p], p * per);
    atomic_store(&k->pushing[p], NONE);
    k->end[p] = (p + 1) * per;
    ppid_[p] = fork();
    if (ppid_[p] == 0) producer_proc(r, k, p);
  }
  for (int c = 0; c < C; c++) {
    unsigned slot = next_slot++;
    cpid[c] = fork();
    if (cpid[c] == 0) consumer_proc2(r, k->taking, k->popped, slot);
  }
  unsigned seed = (unsigned)time(NULL);
  int producers_left = P;
  while (producers_left > 0) {
    struct timespec ts = {0, (long)(rand_r(&seed) % 300) * 1000};
    nanosleep(&ts, NULL);
    int victim = rand_r(&seed) % (P + C);
    if (victim < P) {
      int p = victim;
      if (ppid_[p] <= 0) continue;
      kill(ppid_[p], SIGKILL);
      int st;
      waitpid(ppid_[p], &st, 0);
      kills++;
      uint32_t u = atomic_load(&k->pushing[p]);
      if (u != NONE) { /* it may or may not have landed: never pushed again */
        atomic_store(&uncertain[u], 1);
        atomic_store(&k->next[p], u + 1);
        atomic_store(&k->pushing[p], NONE);
      }
      if (WIFEXITED(st) || atomic_load(&k->next[p]) >= k->end[p]) {
        ppid_[p] = 0;
        producers_left--;
        continue;
      }
      ppid_[p] = fork();
      if (ppid_[p] == 0) producer_proc(r, k, p);
    } else if (next_slot < 256) {
      int c = victim - P;
      kill(cpid[c], SIGKILL);
      waitpid(cpid[c], NULL, 0);
      kills++;
      unsigned slot = next_slot++;
      cpid[c] = fork();
      if (cpid[c] == 0) consumer_proc2(r, k->taking, k->popped, slot);
    }
    /* reap producers that finished on their own */
    for (int p = 0; p < P; p++) {
      if (ppid_[p] > 0 && waitpid(ppid_[p], NULL, WNOHANG) == ppid_[p]) {
        ppid_[p] = 0;
        producers_left--;
      }
    }
  }
  while (cf__ring_count(&r->idx) != 0) sched_yield();
  for (int c = 0; c < C; c++) {
    kill(cpid[c], SIGKILL);
    waitpid(cpid[c], NULL, 0);
  }
  uint32_t h;
  while (cf__ring_pop(&r->idx, r->cells, KLOG2, &h, NULL) == 0) atomic_fetch_add(&k->popped[h], 1);
  expect_rc(cf__ring_push(&r->idx, r->cells, KLOG2, 1), 0); /* not stalled */
  expect_rc(cf__ring_pop(&r->idx, r->cells, KLOG2, &h, NULL), 0);
  uint32_t dup = 0, unexplained = 0, lost = 0;
  for (uint32_t x = 0; x < total; x++) {
    uint32_t n = atomic_load(&k->popped[x]);
    dup += n > 1;
    if (n == 0 && !atomic_load(&uncertain[x])) {
      lost++;
      bool explained = false;
      for (unsigned s2 = 0; s2 < next_slot; s2++) explained |= atomic_load(&k->taking[s2]) == x;
      unexplained += !explained;
    }
  }
  expect_eq(dup, 0);
  expect_eq(unexplained, 0);
  fprintf(stderr, "  %u processes killed, %u values lost with consumers (recorded)\n", kills, lost);
}

/* ---- 5. the loser's taking word ---- */

/* Two threads pop the one value in the ring at the same instant, round
 * after round; the one whose CAS lost must leave its taking word empty.
 * The racers run the rounds themselves (racer 0 pushes), meeting at a
 * spinning two-thread barrier before and after each pop: both are on a
 * CPU when they pop, and no third thread needs one (a main thread that
 * handed out the rounds made every round wait for a scheduler slice on 2
 * vCPUs: 30-45 s per run). */
static _Atomic unsigned race_bar;
static _Atomic uint32_t race_taking[2];
static unsigned race_rounds, race_stale[2], race_taken[2];

static void race_barrier(unsigned *phase) {
  unsigned target = 2 * ++*phase;
  atomic_fetch_add(&race_bar, 1);
  for (unsigned spins = 0; atomic_load(&race_bar) < target; spins++)
    if (spins >= 1000) sched_yield(); /* the other racer lost its CPU */
}

static void *racer(void *arg) {
  unsigned me = (unsigned)(uintptr_t)arg, phase = 0;
  for (unsigned round = 1; round <= race_rounds; round++) {
    if (me == 0 && cf__ring_push(&tr->idx, tr->cells, LOG2CAP, round) != 0) abort();
    race_barrier(&phase); /* the value is in the ring: both pop it now */
    uint32_t v;
    int rc = cf__ring_pop(&tr->idx, tr->cells, LOG2CAP, &v, &race_taking[me]);
    race_barrier(&phase); /* both popped */
    if (rc == 0) {
      race_taken[me] += v == round && atomic_load(&race_taking[me]) == round;
      atomic_store(&race_taking[me], NONE); /* what a worker does after its claim */
    } else {
      race_stale[me] += atomic_load(&race_taking[me]) != NONE; /* took nothing: names nothing */
    }
  }
  return NULL;
}

static void test_loser_taking_cleared(void) {
  tr = ring_map(LOG2CAP, 0, NULL);
  race_rounds = (unsigned)cf_test_scale(20000);
  pthread_t t[2];
  for (uintptr_t i = 0; i < 2; i++) {
    atomic_store(&race_taking[i], NONE);
    pthread_create(&t[i], NULL, racer, (void *)i);
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  unsigned stale = race_stale[0] + race_stale[1], taken = race_taken[0] + race_taken[1];
  fprintf(stderr, "  %u rounds, %u stale taking words\n", race_rounds, stale);
  expect_eq(taken, race_rounds);
  expect_eq(stale, 0);
  expect_eq(cf__ring_count(&tr->idx), 0);
}

int main(void) {
  CF_RUN(test_full_empty_wrap);
  CF_RUN(test_threads_exactly_once);
  CF_RUN(test_processes_killed);
  CF_RUN(test_producers_and_consumers_killed);
  CF_RUN(test_loser_taking_cleared);
  return cf_test_done("test_ring");
}
