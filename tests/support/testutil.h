/*
 * testutil.h — the tiny test harness (jemalloc's habit):
 *   expect_*  records a failure and goes on;
 *   assert_*  records it and stops the test binary (exit 1).
 * A test binary exits 0 only if no expectation failed.
 *
 * cf_test_scale(n) shrinks a stress size under sanitizers: it divides n by
 * $CF_TEST_SCALE (set by the harness for ASan/TSan builds), at least 1.
 */
#ifndef CF_TESTUTIL_H
#define CF_TESTUTIL_H

#include <stdbool.h>
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
/* A thread pool (process = false) or a process pool of `workers` workers
 * with default options: how one test source runs against both executors.
 * Stops the test if the pool cannot be made. */
cf_executor *cf_test_new_executor(bool process, unsigned workers);
/* Memory shared with a process pool's workers in every start mode: one
 * MAP_SHARED region of `size` zeroed bytes per test binary, at the same
 * address in the test and in each worker, so that pointers into it may
 * travel in task arguments. cf_test_shm is that address in every process
 * (NULL until made or attached). Make it before any pool. A fork-mode
 * worker inherits it; an exec-mode worker (it starts from the program
 * file: none of the test's memory) attaches it in its initializer,
 * cf_test_shared_attach, found through $CF_TEST_SHARED.
 * cf_test_new_executor sets that initializer; a test with an initializer of
 * its own calls cf_test_shared_attach first. */
extern void *cf_test_shm;
void *cf_test_shared(size_t size);
int cf_test_shared_attach(void *unused);
/* Run a named test function and count it ($CF_TEST_ONLY=name: that one
 * only, to look at one test by itself). */
void cf_test_run(const char *name, void (*fn)(void));
#define CF_RUN(fn) cf_test_run(#fn, fn)

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
