/*
 * test_hooks.h — the process pool's test hooks: the fault hook of the
 * workers and accessors for the pids the tests kill (internal, tests
 * only).
 *
 * They exist only in a library built with CF_TEST_HOOKS (a CMake option,
 * on in debug-checked builds: the Debug tree and the sanitizer trees). In
 * any other build these functions are not in the library: a test that
 * calls them does not link there, and tests/CMakeLists.txt builds such
 * tests only with the option on.
 */
#ifndef CF_SHM_TEST_HOOKS_H
#define CF_SHM_TEST_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cfutures.h"
#include "fault.h" /* the points: CF__PP_* */

/* Workers call hook at each fault point (a test kills the worker there,
 * e.g. raise(SIGKILL)); NULL: none. Set it before the pool is created:
 * the workers inherit it. */
void cf__test_set_fault_hook(cf__fault_hook_fn hook);
/* The pool's zygote pid, 0 if it has none (yet). ex: a process pool. */
pid_t cf__test_zygote_pid(cf_executor *ex);
/* Worker i's pid, 0 unless it is alive (spawned, death not yet reported). */
pid_t cf__test_worker_pid(cf_executor *ex, unsigned i);
/* How many workers are alive. */
unsigned cf__test_workers_alive(cf_executor *ex);
/* Entries in the deadline heap. */
unsigned cf__test_deadlines(cf_executor *ex);
/* Slots in use (allocated, not yet freed: queued, running, or done and not
 * yet settled). */
unsigned cf__test_slots_in_use(cf_executor *ex);
/* Notices (completion-ring hints) the supervisor has settled so far. */
uint64_t cf__test_notices(cf_executor *ex);
/* In a worker (its initializer): sleep on the idle futex without the
 * periodic look at the ring (IDLE_CHECK_NS, worker.c), so that a lost
 * wake-up hangs instead of costing a second. */
void cf__test_worker_idle_forever(void);
/* The segment memfd's seals (F_GET_SEALS when it was mapped) and its size. */
int cf__test_segment_seals(cf_executor *ex);
size_t cf__test_segment_size(cf_executor *ex);

#endif /* CF_SHM_TEST_HOOKS_H */
