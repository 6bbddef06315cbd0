/*
 * test_mpi_crash.c — a worker rank killed with SIGKILL under a task, run as
 * `mpirun --enable-recovery -n 3` (Open MPI: without it the launcher takes
 * the whole job down). The tasks that rank held fail with CF_ECRASHED (pid
 * in the crash info), the pool is then broken (CF_EBROKEN for what is
 * queued and for new submits), a task on the other rank still completes,
 * and nothing hangs: not the waits, not destroy, not MPI_Finalize at exit.
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

typedef struct shared {
  _Atomic int gate;
  _Atomic int started;
  _Atomic int pid; /* the rank running hold_task */
} shared;
#define sh ((shared *)cf_test_shm)

static void nap(void) {
  struct timespec ts = {0, 100 * 1000};
  nanosleep(&ts, NULL);
}

static void hold_task(cf_call *c) {
  atomic_store(&sh->pid, getpid());
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->gate)) nap();
}

static void gate_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->gate)) nap();
  int v = 1;
  cf_call_return(c, &v, sizeof v);
}

static void test_killed_rank(void) {
  cf_options o;
  cf_options_init(&o);
  cf_executor *ex = NULL;
  assert_rc(cf_mpi_pool_new(&o, &ex), 0); /* ranks 1-2 become workers */
  cf_future *victim = NULL, *other = NULL, *queued = NULL;
  assert_rc(cf_submit(ex, hold_task, NULL, 0, &victim), 0); /* rank 1 */
  while (atomic_load(&sh->started) < 1) nap();
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &other), 0); /* rank 2 */
  while (atomic_load(&sh->started) < 2) nap();
  assert_rc(cf_submit(ex, gate_task, NULL, 0, &queued), 0); /* waits on rank 0 */
  int pid = atomic_load(&sh->pid);
  assert_true(pid > 0 && pid != getpid());
  kill(pid, SIGKILL); /* kill -9 of a worker rank during a task */
  expect_rc(cf_future_result(victim, NULL, 0, NULL, -1), CF_ECRASHED);
  cf_crash_info ci = {0, 0, 0};
  expect_rc(cf_future_crash_info(victim, &ci), 0);
  expect_eq(ci.pid, pid);
  char msg[CF_MESSAGE_MAX];
  int code = 0;
  expect_rc(cf_future_error(victim, &code, msg, sizeof msg), 0);
  expect_eq(code, CF_ECRASHED);
  printf("killed rank: %s (pid %d)\n", msg, ci.pid);
  /* broken: what was queued, and new submits */
  expect_rc(cf_future_result(queued, NULL, 0, NULL, -1), CF_EBROKEN);
  cf_future *late = NULL;
  expect_rc(cf_submit(ex, gate_task, NULL, 0, &late), CF_EBROKEN);
  cf_stats st;
  expect_rc(cf_executor_stats(ex, &st), 0);
  expect_eq(st.crashed, 1);
  /* the living rank finishes its task */
  atomic_store(&sh->gate, 1);
  int v = 0;
  expect_rc(cf_future_result(other, &v, sizeof v, NULL, -1), 0);
  expect_eq(v, 1);
  expect_rc(cf_executor_destroy(ex), 0);
  /* a new pool cannot have the dead rank */
  ex = NULL;
  expect_rc(cf_mpi_pool_new(&o, &ex), CF_EBROKEN);
  cf_future_release(victim);
  cf_future_release(other);
  cf_future_release(queued);
}

int main(int argc, char **argv) {
  char *kind[] = {argv[0], "mpi", NULL};
  cf_test_parse_kind(2, kind);
  cf_test_shared(sizeof(shared));
  CF_RUN(test_killed_rank);
  return cf_test_done("test_mpi_crash");
}
