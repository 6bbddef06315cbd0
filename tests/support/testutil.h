/*
 * testutil.h — the tiny test harness (jemalloc's habit):
 *   expect_*  records a failure and goes on;
 *   assert_*  records it and stops the test binary (exit 1).
 * A test binary exits 0 only if no expectation failed.
 *
 * cf_test_scale(n) shrinks a stress size under sanitizers: it divides n by
 * $CF_TEST_SCALE (set by the harness for ASan/TSan builds), at least 1.
 *
 * cf_test_watchdog(s) bounds a test that could deadlock: past s seconds the
 * binary says which test hung and exits 1 (the ctest timeout stays the
 * outer bound). $CF_TEST_ONLY (test names, comma-separated) runs only those
 * tests of a binary: how one hang is told from the next.
 */
#ifndef CF_TESTUTIL_H
#define CF_TESTUTIL_H

#include <stdbool.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cfutures.h"

extern int cf_test_failures;

void cf_test_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
uint64_t cf_test_scale(uint64_t n);
/* Exit status for main(): prints a summary line "N passed, M failed". */
int cf_test_done(const char *name);
/* The executor kind argv[1] names: "thread" (also the default), "process"
 * or "mpi" (the binary then runs under mpirun: rank 0 is the test, the
 * other ranks become the pool's workers at the first pool). */
typedef enum { CF_TEST_THREAD, CF_TEST_PROCESS, CF_TEST_MPI } cf_test_kind;
cf_test_kind cf_test_parse_kind(int argc, char **argv);
extern cf_test_kind cf_test_kind_now;
/* A thread pool (process = false) or a process pool of `workers` workers
 * with default options: how one test source runs against both executors.
 * After cf_test_parse_kind saw "mpi", an MPI pool instead. Stops the test
 * if the pool cannot be made. */
cf_executor *cf_test_new_executor(bool process, unsigned workers);
/* The same with options: the pool of the kind given (MPI as above). */
int cf_test_pool_new(bool process, const cf_options *o, cf_executor **ex);
/* Memory shared with a pool's workers in every start mode: one MAP_SHARED
 * region of `size` zeroed bytes per test binary, made before any pool.
 * cf_test_shm is its address in every process (NULL until made or
 * attached); tests name it through a macro (#define sh ((T *)cf_test_shm)).
 * Process pools: it is at the same address in the test and in each worker,
 * so pointers into it may travel in task arguments. A fork-mode worker
 * inherits it; an exec-mode zygote (the program started again: none of the
 * test's memory) attaches it from $CF_TEST_SHARED in a constructor that
 * runs before the library's, so every worker has it whatever its
 * initializer; cf_test_shared_attach (the initializer cf_test_new_executor
 * sets) does the same later and is a no-op where it is mapped. The "mpi"
 * kind: a file in /dev/shm named after the launcher's pid, which every rank
 * of the job on this host maps (rank 0 removes it at exit). */
extern void *cf_test_shm;
void *cf_test_shared(size_t size);
int cf_test_shared_attach(void *unused);
/* Run a named test function and count it (skipped when $CF_TEST_ONLY is
 * set and does not name it: a comma-separated list). Disarms the watchdog
 * when it returns. */
void cf_test_run(const char *name, void (*fn)(void));
/* Arm the watchdog (SIGALRM): a hang becomes a failure. If it is not
 * re-armed or disarmed within `seconds` (scaled up by $CF_TEST_SCALE under
 * sanitizers), print "WATCHDOG: <test> still running after <seconds> s:
 * <what>" and _exit(1). Never later than 90% of the binary's ctest timeout
 * ($CF_TEST_TIMEOUT, set by tests/CMakeLists.txt), which is also the
 * default watchdog that cf_test_run arms for every test; 0 goes back to that
 * default (none outside ctest). Main thread, outside signal handlers. */
void cf_test_watchdog(unsigned seconds, const char *what);
#define CF_RUN(fn) cf_test_run(#fn, fn)

/* Helpers the tests share. Sleep `ms` milliseconds, `us` microseconds. */
void cf_test_nap_ms(int ms);
void cf_test_nap_us(int us);
#ifndef __cplusplus
/* Wait until *p >= n, looking every 200 us for at most 5 s (a guard
 * against a hang, not a timing threshold): true if it happened. */
bool cf_test_within_5s(_Atomic int *p, int n);
/* The same for at most `seconds` by the clock (a guard that turns a pool
 * that never starts a task into a failure, not a ctest timeout). */
bool cf_test_within_s(_Atomic int *p, int n, int seconds);
#endif
/* A task: an int argument, its square as the int result (-1 for an
 * argument of another size). */
void cf_test_square_task(cf_call *c);
/* A process pool of `workers` workers with default options. Stops the
 * test if it cannot be made. */
cf_executor *cf_test_process_pool(unsigned workers);

#define expect_true(c)                                   \
  do {                                                   \
    if (!(c)) cf_test_fail(__FILE__, __LINE__, #c, " "); \
  } while (0)
#define expect_eq(a, b)                                                                   \
  do {                                                                                    \
    long long _a = (long long)(a), _b = (long long)(b);                                   \
    if (_a != _b) cf_test_fail(__FILE__, __LINE__, #a " == " #b, "%lld != %lld", _a, _b); \
  } while (0)
#define expect_rc(call, code)                                                           \
  do {                                                                                  \
    int _r = (call);                                                                    \
    if (_r != (code))                                                                   \
      cf_test_fail(__FILE__, __LINE__, #call, "returned %d (%s), expected %d (%s)", _r, \
                   cf_strerror(_r), (int)(code), cf_strerror(code));                    \
  } while (0)
#define assert_true(c)                           \
  do {                                           \
    if (!(c)) {                                  \
      cf_test_fail(__FILE__, __LINE__, #c, " "); \
      exit(1);                                   \
    }                                            \
  } while (0)
#define assert_rc(call, code)                                                           \
  do {                                                                                  \
    int _r = (call);                                                                    \
    if (_r != (code)) {                                                                 \
      cf_test_fail(__FILE__, __LINE__, #call, "returned %d (%s), expected %d (%s)", _r, \
                   cf_strerror(_r), (int)(code), cf_strerror(code));                    \
      exit(1);                                                                          \
    }                                                                                   \
  } while (0)

#endif
