/*
 * sys.h — the small OS layer (internal): futexes, the monotonic clock,
 * the CPU pause, and allocation over jemalloc.
 *
 * Preconditions are written on each call; none of them fails silently.
 */
#ifndef CF_RUNTIME_SYS_H
#define CF_RUNTIME_SYS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The line size shared fields are kept apart by (x86-64, arm64 servers). */
#define CF__CACHE_LINE 64

/* CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall). */
int64_t cf__now_ns(void);

/* Absolute deadline for a relative timeout: < 0 -> -1 (forever),
 * 0 -> now (poll), else now + timeout (saturating). */
int64_t cf__deadline_after(int64_t timeout_ns);

/* FUTEX_WAIT_BITSET while *word == expected, until the absolute
 * CLOCK_MONOTONIC deadline (< 0: forever). `shared` selects the shared
 * futex (the word lives in memory mapped by several processes); a word must
 * always be used with the same flavour. Returns 0 (woken, or *word !=
 * expected, or a signal: callers loop on the word) or CF_ETIMEDOUT. */
int cf__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_abs, bool shared);

/* Wake up to n waiters (INT32_MAX: all). Returns how many woke. */
int cf__futex_wake(_Atomic uint32_t *word, int n, bool shared);

/* The calling process's pid, without a system call once known: it is
 * cached on a page that a fork child sees zeroed (MADV_WIPEONFORK), so a
 * child reads its own pid, never its parent's. Where the kernel has no
 * MADV_WIPEONFORK, every call is a getpid(). Any thread, any process. */
int cf__self_pid(void);

/* In a fork-mode worker of a process pool (and in the processes its tasks
 * fork): the address of the copy of its own pool's executor; NULL
 * elsewhere. Set once by the zygote before it forks any worker (zygote.c).
 * A task's call on it could never proceed: CF_EDEADLK, not CF_EFORKED
 * (executor.h). */
extern const void *cf__worker_ex;

/* One spin-wait hint (PAUSE on x86). */
void cf__cpu_relax(void);

/* Allocation: jemalloc's mallocx/sdallocx when built with CF_WITH_JEMALLOC,
 * else malloc/free. cf__free takes the size given to cf__alloc. */
void *cf__alloc(size_t size);
void *cf__calloc(size_t size);
void cf__free(void *p, size_t size);

#endif /* CF_RUNTIME_SYS_H */
