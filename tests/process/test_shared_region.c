/* cf-test: labels=unit;shm timeout=120 */
/*
 * test_shared_region.c — the test harness's shared region is where an
 * exec-mode worker can map it (CI failure of stop 16).
 *
 * cf_test_shared maps one region that every worker must map at the same
 * address. An exec-mode zygote is the program started again, with its own
 * randomized layout; it attaches the region with MAP_FIXED_NOREPLACE. The
 * region used to go wherever the kernel put it: just below this process's
 * mmap base, the area where a fresh process's libraries, thread stacks and
 * sanitizer runtime also land. Now and then the zygote already had
 * something there ("cf_test_shared_attach: 0x7fec60ba7000 is taken",
 * EEXIST), its initializer failed, the pool broke, and test_api_process
 * waited for a task that never started until ctest's timeout.
 *
 * 1. The region lies at least 64 GiB from every other mapping of this
 *    process (so far from any process's mmap area). Failed before: the
 *    kernel placed it next to the other mappings.
 * 2. In an exec-mode worker, the region is at the same address, and at
 *    least 64 GiB from every other mapping there as well.
 * 3. Ten exec-mode pools in a row, each writing through the region.
 * 4. The same in a host that runs threads, holds an extra fd and ignores
 *    SIGPIPE (as a service does) while it makes the pool.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cfutures.h"
#include "testutil.h"

typedef struct shared {
  _Atomic int runs;
  _Atomic uint64_t seen_at; /* the region's address in the worker */
} shared;
#define sh ((shared *)cf_test_shm)

#define FAR (64ull << 30)

/* The smallest distance from the mapping that starts at lo to any other
 * mapping of this process, from /proc/self/maps (sorted by address: the
 * lines before lo's are below it, the ones after above); 0 if no mapping
 * starts at lo. */
static uint64_t gap_to_others(uintptr_t lo) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[512];
  uintptr_t hi = 0; /* the region's end, once its line was read */
  uint64_t best = UINT64_MAX;
  while (fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &s, &e) != 2) continue;
    if (s == lo) {
      hi = e;
      continue;
    }
    if (strstr(line, "[vsyscall]")) continue; /* the fixed top page */
    uint64_t d = !hi ? (e <= lo ? lo - e : 0) : (s >= hi ? s - hi : 0);
    if (d < best) best = d;
  }
  fclose(f);
  return hi ? best : 0;
}

static void probe_task(cf_call *c) {
  atomic_fetch_add(&sh->runs, 1);
  atomic_store(&sh->seen_at, (uint64_t)(uintptr_t)cf_test_shm);
  uint64_t g = gap_to_others((uintptr_t)cf_test_shm);
  cf_call_return(c, &g, sizeof g);
}

static cf_executor *exec_pool(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  o.start_mode = CF_START_EXEC;
  o.initializer = cf_test_shared_attach;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

/* A new exec-mode pool runs one probe: the region's distance to the other
 * mappings of its worker (the pool is destroyed). */
static uint64_t probe_in_new_pool(void) {
  cf_executor *ex = exec_pool();
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, probe_task, NULL, 0, &f), 0);
  uint64_t g = 0;
  expect_rc(cf_future_result(f, &g, sizeof g, NULL, -1), 0);
  cf_future_release(f);
  expect_rc(cf_executor_destroy(ex), 0);
  return g;
}

static void expect_far(uint64_t g, const char *where) {
  if (g < FAR)
    fprintf(stderr, "%s: region %p is %" PRIu64 " MiB from another mapping\n", where, cf_test_shm,
            g >> 20);
  expect_true(g >= FAR);
}

static void test_far_here(void) {
  expect_far(gap_to_others((uintptr_t)cf_test_shm), "here");
}

static void test_far_in_worker(void) {
  uint64_t g = probe_in_new_pool();
  expect_eq(atomic_load(&sh->seen_at), (uint64_t)(uintptr_t)cf_test_shm);
  expect_far(g, "in the worker");
}

static void test_pools_in_a_row(void) {
  int before = atomic_load(&sh->runs);
  for (int i = 0; i < 10; i++) (void)probe_in_new_pool();
  expect_eq(atomic_load(&sh->runs), before + 10);
}

/* The host as a service is: threads running (their stacks are mappings
 * too), an extra fd open, SIGPIPE ignored. */
static _Atomic int hosts_stop;
static void *host_thread(void *arg) {
  while (!atomic_load(&hosts_stop)) cf_test_nap_ms(1);
  return NULL;
}

static void test_threaded_host(void) {
  enum { T = 4 };
  pthread_t t[T];
  for (int i = 0; i < T; i++) assert_true(pthread_create(&t[i], NULL, host_thread, NULL) == 0);
  int fds[2];
  assert_true(pipe(fds) == 0);
  signal(SIGPIPE, SIG_IGN);
  int before = atomic_load(&sh->runs);
  expect_far(gap_to_others((uintptr_t)cf_test_shm), "here, with threads");
  expect_far(probe_in_new_pool(), "in the worker of a threaded host");
  expect_eq(atomic_load(&sh->runs), before + 1);
  signal(SIGPIPE, SIG_DFL);
  close(fds[0]);
  close(fds[1]);
  atomic_store(&hosts_stop, 1);
  for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
}

int main(void) {
  cf_test_shared(sizeof(shared));
  CF_RUN(test_far_here);
  CF_RUN(test_far_in_worker);
  CF_RUN(test_pools_in_a_row);
  CF_RUN(test_threaded_host);
  return cf_test_done("test_shared_region");
}
