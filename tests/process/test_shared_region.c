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
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cfutures.h"
#include "testutil.h"

typedef struct shared {
  _Atomic int runs;
  _Atomic uint64_t seen_at; /* the region's address in the worker */
} shared;
#define sh ((shared *)cf_test_shm)

#define FAR (64ull << 30)

/* The smallest distance from [lo, hi) to any other mapping of this process,
 * from /proc/self/maps; 0 if the region is not found. */
static uint64_t gap_to_others(uintptr_t lo) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[512];
  uintptr_t hi = 0;
  bool found = false;
  uintptr_t a[4096], b[4096];
  size_t n = 0;
  while (fgets(line, sizeof line, f) && n < 4096) {
    uintptr_t s, e;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &s, &e) != 2) continue;
    if (s == lo) {
      hi = e;
      found = true;
      continue;
    }
    if (strstr(line, "[vsyscall]")) continue; /* the fixed top page */
    a[n] = s;
    b[n] = e;
    n++;
  }
  fclose(f);
  if (!found) return 0;
  uint64_t best = UINT64_MAX;
  for (size_t i = 0; i < n; i++) {
    uint64_t d = b[i] <= lo ? lo - b[i] : a[i] >= hi ? a[i] - hi : 0;
    if (d < best) best = d;
  }
  return best;
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

static void test_far_here(void) {
  uint64_t g = gap_to_others((uintptr_t)cf_test_shm);
  if (g < FAR)
    fprintf(stderr, "region %p is %" PRIu64 " MiB from another mapping\n", cf_test_shm, g >> 20);
  expect_true(g >= FAR);
}

static void test_far_in_worker(void) {
  cf_executor *ex = exec_pool();
  cf_future *f = NULL;
  assert_rc(cf_submit(ex, probe_task, NULL, 0, &f), 0);
  uint64_t g = 0;
  expect_rc(cf_future_result(f, &g, sizeof g, NULL, -1), 0);
  cf_future_release(f);
  expect_eq(atomic_load(&sh->seen_at), (uint64_t)(uintptr_t)cf_test_shm);
  if (g < FAR) fprintf(stderr, "in the worker: %" PRIu64 " MiB from another mapping\n", g >> 20);
  expect_true(g >= FAR);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_pools_in_a_row(void) {
  int before = atomic_load(&sh->runs);
  for (int i = 0; i < 10; i++) {
    cf_executor *ex = exec_pool();
    cf_future *f = NULL;
    assert_rc(cf_submit(ex, probe_task, NULL, 0, &f), 0);
    uint64_t g = 0;
    expect_rc(cf_future_result(f, &g, sizeof g, NULL, -1), 0);
    cf_future_release(f);
    expect_rc(cf_executor_destroy(ex), 0);
  }
  expect_eq(atomic_load(&sh->runs), before + 10);
}

int main(void) {
  cf_test_shared(sizeof(shared));
  CF_RUN(test_far_here);
  CF_RUN(test_far_in_worker);
  CF_RUN(test_pools_in_a_row);
  return cf_test_done("test_shared_region");
}
