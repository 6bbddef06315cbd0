/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_options.c — cf_options mean the same in every executor (argv[1] =
 * "thread" or "process"): a zeroed struct gives the defaults, a struct from
 * an older header takes defaults past its size, invalid values are refused
 * alike, pin_cpus stays inside the creating thread's CPU mask, and workers
 * are named "<prefix>-<i>" the same way. Public header only.
 */
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static bool process_kind;

static int pool_new(const cf_options *o, cf_executor **ex) {
  if (!ex) return process_kind ? cf_process_pool_new(o, ex) : cf_thread_pool_new(o, ex);
  *ex = NULL;
  return process_kind ? cf_process_pool_new(o, ex) : cf_thread_pool_new(o, ex);
}

/* ---- tasks ------------------------------------------------------------------ */

static void echo_task(cf_call *c) {
  size_t n;
  const void *a = cf_call_arg(c, &n);
  cf_call_return(c, a, n);
}

static void pid_task(cf_call *c) {
  int pid = (int)getpid();
  cf_call_return(c, &pid, sizeof pid);
}

/* The worker's placement: the CPU it runs on and its affinity mask. */
typedef struct placement {
  int cpu;
  int count;
  cpu_set_t mask;
} placement;

static void placement_task(cf_call *c) {
  placement pl;
  memset(&pl, 0, sizeof pl);
  pl.cpu = sched_getcpu();
  pl.count = sched_getaffinity(0, sizeof pl.mask, &pl.mask) == 0 ? CPU_COUNT(&pl.mask) : -1;
  cf_call_return(c, &pl, sizeof pl);
}

/* The worker's name, from /proc/thread-self/comm (thread or process). */
static void comm_task(cf_call *c) {
  char name[32] = {0};
  FILE *fp = fopen("/proc/thread-self/comm", "r");
  if (fp) {
    if (!fgets(name, sizeof name, fp)) name[0] = 0;
    fclose(fp);
  }
  name[strcspn(name, "\n")] = 0;
  cf_call_return(c, name, strlen(name) + 1);
}

/* ---- a zeroed struct: the usual C idiom ------------------------------------- */

static void check_echo(cf_executor *ex, size_t n) {
  unsigned char in[4096], out[4096];
  for (size_t i = 0; i < n; i++) in[i] = (unsigned char)(i * 31 + 7);
  cf_future *f = NULL;
  expect_rc(cf_submit(ex, echo_task, in, n, &f), 0);
  if (!f) return;
  size_t len = 0;
  expect_rc(cf_future_result(f, out, sizeof out, &len, -1), 0);
  expect_eq(len, n);
  expect_true(memcmp(in, out, n) == 0);
  cf_future_release(f);
}

static void test_zeroed_options(void) {
  cf_options o = {0};
  o.workers = 2;
  cf_executor *ex = NULL;
  expect_rc(pool_new(&o, &ex), 0);
  if (!ex) return;
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.workers, 2);
  check_echo(ex, 1024); /* max_arg_size 0 means the default, not 0 bytes */
  check_echo(ex, 4000);
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_null_options(void) {
  cf_executor *ex = NULL;
  expect_rc(pool_new(NULL, &ex), 0);
  if (!ex) return;
  check_echo(ex, 1024);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* max_tasks_per_worker from a zeroed struct: a process worker is replaced
 * after each task (a thread pool ignores it). */
static void test_zeroed_recycle(void) {
  cf_options o = {0};
  o.workers = 1;
  o.max_tasks_per_worker = 1;
  cf_executor *ex = NULL;
  expect_rc(pool_new(&o, &ex), 0);
  if (!ex) return;
  int pids[3] = {0};
  for (int i = 0; i < 3; i++) {
    cf_future *f = NULL;
    expect_rc(cf_submit(ex, pid_task, NULL, 0, &f), 0);
    if (!f) break;
    expect_rc(cf_future_result(f, &pids[i], sizeof pids[i], NULL, -1), 0);
    cf_future_release(f);
  }
  if (process_kind) {
    expect_true(pids[0] != (int)getpid() && pids[0] > 0);
    expect_true(pids[0] != pids[1]);
    expect_true(pids[1] != pids[2]);
    expect_true(pids[0] != pids[2]);
  } else {
    for (int i = 0; i < 3; i++) expect_eq(pids[i], getpid());
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* A struct from an older header: `size` covers only the fields it has; the
 * ones past it take their defaults, whatever bytes follow. */
static void test_older_size(void) {
  struct {
    cf_options o;
    unsigned char junk[64];
  } big;
  memset(&big, 0xff, sizeof big);
  big.o.size = offsetof(cf_options, max_queued); /* up to pin_cpus */
  big.o.workers = 2;
  big.o.name = "old";
  big.o.initializer = NULL;
  big.o.initializer_arg = NULL;
  big.o.pin_cpus = false;
  cf_executor *ex = NULL;
  expect_rc(pool_new(&big.o, &ex), 0);
  if (!ex) return;
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.workers, 2);
  check_echo(ex, 1024);
  expect_rc(cf_executor_destroy(ex), 0);

  /* a size larger than ours: the fields we know are read */
  cf_options_init(&big.o);
  big.o.size = sizeof big;
  big.o.workers = 1;
  expect_rc(pool_new(&big.o, &ex), 0);
  if (!ex) return;
  check_echo(ex, 100);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* Invalid values get CF_EINVAL from both pools. */
static void expect_refused(const cf_options *o, int line) {
  cf_executor *ex = (cf_executor *)1;
  int rc = pool_new(o, &ex);
  if (rc != CF_EINVAL) cf_test_fail(__FILE__, line, "refused", "pool_new returned %d", rc);
  if (rc == 0) {
    cf_executor_destroy(ex);
  } else if (ex != NULL) {
    cf_test_fail(__FILE__, line, "ex == NULL", " ");
  }
}

static void test_invalid(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 256;
  expect_refused(&o, __LINE__);
  size_t bad_rings[] = {1, 3, 1000, (size_t)1 << 25};
  for (size_t i = 0; i < sizeof bad_rings / sizeof *bad_rings; i++) {
    cf_options_init(&o);
    o.workers = 1;
    o.ring_capacity = bad_rings[i];
    expect_refused(&o, __LINE__);
  }
  cf_options_init(&o);
  o.workers = 1;
  o.max_arg_size = (size_t)UINT32_MAX + 1;
  expect_refused(&o, __LINE__);
  cf_options_init(&o);
  o.workers = 1;
  o.max_result_size = (size_t)UINT32_MAX + 1;
  expect_refused(&o, __LINE__);
  cf_options_init(&o);
  o.workers = 1;
  o.max_futures = (size_t)1 << 21;
  expect_refused(&o, __LINE__);
  cf_options_init(&o);
  o.workers = 1;
  o.start_mode = CF_START_FORK + 1;
  expect_refused(&o, __LINE__);
  expect_rc(pool_new(&o, NULL), CF_EINVAL);
}

/* ---- pin_cpus: worker i on the i-th CPU of the creator's mask -------------- */

static void test_pin_inside_mask(void) {
  cpu_set_t saved, only;
  assert_true(sched_getaffinity(0, sizeof saved, &saved) == 0);
  int last = -1;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &saved)) last = c;
  assert_true(last >= 0);
  CPU_ZERO(&only);
  CPU_SET(last, &only);
  assert_true(sched_setaffinity(0, sizeof only, &only) == 0);

  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  o.pin_cpus = true;
  cf_executor *ex = NULL;
  expect_rc(pool_new(&o, &ex), 0);
  /* the pool keeps what it read: the creator's mask may change at once */
  assert_true(sched_setaffinity(0, sizeof saved, &saved) == 0);
  if (!ex) return;
  for (int i = 0; i < 8; i++) {
    cf_future *f = NULL;
    expect_rc(cf_submit(ex, placement_task, NULL, 0, &f), 0);
    if (!f) break;
    placement pl;
    memset(&pl, 0, sizeof pl);
    expect_rc(cf_future_result(f, &pl, sizeof pl, NULL, -1), 0);
    expect_eq(pl.count, 1);
    expect_true(CPU_ISSET(last, &pl.mask));
    expect_eq(pl.cpu, last);
    cf_future_release(f);
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- worker names ------------------------------------------------------------ */

/* Every task's comm is "<prefix>-<i>" with i < workers. */
static void check_names(const char *name, const char *prefix, unsigned workers) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.name = name;
  cf_executor *ex = NULL;
  expect_rc(pool_new(&o, &ex), 0);
  if (!ex) return;
  size_t pl = strlen(prefix);
  for (int i = 0; i < 8; i++) {
    cf_future *f = NULL;
    expect_rc(cf_submit(ex, comm_task, NULL, 0, &f), 0);
    if (!f) break;
    char comm[32] = {0};
    expect_rc(cf_future_result(f, comm, sizeof comm, NULL, -1), 0);
    cf_future_release(f);
    unsigned idx = 0;
    char extra = 0;
    bool ok = strncmp(comm, prefix, pl) == 0 && comm[pl] == '-' &&
              sscanf(comm + pl + 1, "%u%c", &idx, &extra) == 1 && idx < workers;
    if (!ok) cf_test_fail(__FILE__, __LINE__, "worker name", "'%s' is not '%s-<i>'", comm, prefix);
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

static void test_names(void) {
  check_names(NULL, "cfpool", 2);
  check_names("", "cfpool", 2);
  check_names("tst", "tst", 2);
  check_names("abcdefghijklmnop", "abcdefghij", 2); /* the prefix fits the comm limit */
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  CF_RUN(test_zeroed_options);
  CF_RUN(test_null_options);
  CF_RUN(test_zeroed_recycle);
  CF_RUN(test_older_size);
  CF_RUN(test_invalid);
  CF_RUN(test_pin_inside_mask);
  CF_RUN(test_names);
  return cf_test_done(process_kind ? "test_options_process" : "test_options_thread");
}
