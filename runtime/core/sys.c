/*
 * sys.c — the OS layer: futexes, the monotonic clock, the CPU pause hint and
 * allocation (jemalloc's sized API when CF_WITH_JEMALLOC, else libc).
 *
 * Futex waits use FUTEX_WAIT_BITSET with FUTEX_BITSET_MATCH_ANY because it
 * takes an *absolute* CLOCK_MONOTONIC deadline: a waiter that loops on a
 * word after spurious or stale wake-ups keeps one deadline instead of
 * re-computing a relative timeout each round.
 */
#include "sys.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#ifdef CF_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "cfutures.h"

int64_t cf__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const void *cf__worker_ex;

/* The pid cache (cf__self_pid): one page, wiped in every fork child. */
static _Atomic(_Atomic int *) pid_page;
static _Atomic bool pid_no_wipe; /* the kernel refused MADV_WIPEONFORK */

int cf__self_pid(void) {
  /* acquire: pairs with the CAS that installs the page; the pid on it is
   * only ever our own (relaxed) */
  _Atomic int *pg = atomic_load_explicit(&pid_page, memory_order_acquire);
  if (__builtin_expect(pg != NULL, 1)) {
    int v = atomic_load_explicit(pg, memory_order_relaxed);
    if (__builtin_expect(v != 0, 1)) return v;
    v = (int)getpid();
    atomic_store_explicit(pg, v, memory_order_relaxed);
    return v;
  }
  if (atomic_load_explicit(&pid_no_wipe, memory_order_relaxed)) return (int)getpid();
  void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return (int)getpid();
  if (madvise(m, 4096, MADV_WIPEONFORK) != 0) {
    munmap(m, 4096);
    atomic_store_explicit(&pid_no_wipe, true, memory_order_relaxed);
    return (int)getpid();
  }
  _Atomic int *none = NULL;
  /* acq_rel: pairs with the acquire load above (the page is mapped) */
  if (!atomic_compare_exchange_strong_explicit(&pid_page, &none, (_Atomic int *)m,
                                               memory_order_acq_rel, memory_order_acquire))
    munmap(m, 4096); /* another thread installed one first */
  return cf__self_pid();
}

int64_t cf__deadline_after(int64_t timeout_ns) {
  if (timeout_ns < 0) return -1;
  int64_t now = cf__now_ns();
  if (timeout_ns == 0) return now;
  if (timeout_ns > INT64_MAX - now) return INT64_MAX;
  return now + timeout_ns;
}

int cf__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_abs, bool shared) {
  struct timespec ts, *tsp = NULL;
  if (deadline_abs >= 0) {
    if (cf__now_ns() >= deadline_abs) return CF_ETIMEDOUT;
    ts.tv_sec = deadline_abs / 1000000000;
    ts.tv_nsec = deadline_abs % 1000000000;
    tsp = &ts;
  }
  int op = FUTEX_WAIT_BITSET | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  long r = syscall(SYS_futex, (uint32_t *)word, op, expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
  if (r == -1 && errno == ETIMEDOUT) return CF_ETIMEDOUT;
  /* 0: woken (perhaps spuriously); EAGAIN: the word changed; EINTR: a signal.
   * All of them send the caller back to its loop on the word. */
  return 0;
}

int cf__futex_wake(_Atomic uint32_t *word, int n, bool shared) {
  int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  long r = syscall(SYS_futex, (uint32_t *)word, op, n, NULL, NULL, 0);
  return r < 0 ? 0 : (int)r;
}

void cf__cpu_relax(void) {
  ck_pr_stall();
}

#ifdef CF_WITH_JEMALLOC
void *cf__alloc(size_t size) {
  return mallocx(size ? size : 1, 0);
}
void *cf__calloc(size_t size) {
  return mallocx(size ? size : 1, MALLOCX_ZERO);
}
void cf__free(void *p, size_t size) {
  if (p) sdallocx(p, size ? size : 1, 0);
}
#else
void *cf__alloc(size_t size) {
  return malloc(size ? size : 1);
}
void *cf__calloc(size_t size) {
  return calloc(1, size ? size : 1);
}
void cf__free(void *p, size_t size) {
  (void)size;
  free(p);
}
#endif
