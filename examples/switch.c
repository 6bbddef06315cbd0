/*
 * switch.c — the program cfutures exists for.
 *
 *     ./switch threads                 run the batch on a thread pool
 *     ./switch processes               run the very same batch on a process pool
 *     mpirun -n 3 ./switch mpi         run it on the ranks of an MPI job
 *                                      (rank 0 submits, ranks 1-2 work)
 *
 * A batch of CPU-bound tasks is submitted inside a scope that owns the
 * executor (CF_SCOPED_EXECUTOR: leaving the scope shuts the executor down and
 * waits for every task, like Python's `with ... as ex:`). The futures are kept
 * in an array and every result is read after the scope ends. The two runs
 * print the same lines; only the last line, the time taken, differs.
 *
 * Moving from threads to processes to a cluster is the one line marked
 * below: tasks take their argument by value and return their result by
 * value, so the same function runs unchanged in a worker thread, a worker
 * process or on another MPI rank. (On an MPI worker rank cf_mpi_pool_new
 * never returns: that rank serves tasks until rank 0 is done.)
 */
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { TASKS = 32 };

typedef struct {
  uint32_t limit; /* search starting numbers below this */
} job;

typedef struct {
  uint32_t start; /* the number below `limit` with the longest Collatz chain */
  uint32_t steps; /* the length of that chain */
} answer;

/* The task: longest Collatz chain below job.limit (CPU-bound, no memory). */
static void longest_collatz(cf_call *call) {
  size_t len;
  const job *j = cf_call_arg(call, &len);
  answer best = {1, 0};
  for (uint32_t n = 1; n < j->limit; n++) {
    uint64_t x = n;
    uint32_t steps = 0;
    while (x != 1) {
      x = (x & 1) ? 3 * x + 1 : x / 2;
      steps++;
    }
    if (steps > best.steps) best = (answer){n, steps};
  }
  cf_call_return(call, &best, sizeof best);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "threads") != 0 && strcmp(argv[1], "processes") != 0 &&
                    strcmp(argv[1], "mpi") != 0)) {
    fprintf(stderr, "usage: %s threads|processes|mpi\n", argv[0]);
    return 2;
  }
  bool use_processes = strcmp(argv[1], "processes") == 0;
  bool use_mpi = strcmp(argv[1], "mpi") == 0;

  cf_options o;
  cf_options_init(&o); /* workers = 0: one per online CPU */
  cf_future *fs[TASKS];
  double t0 = now_s();
  {
    CF_SCOPED_EXECUTOR cf_executor *ex = NULL;
    /* The switch: */
    int rc = use_mpi         ? cf_mpi_pool_new(&o, &ex)
             : use_processes ? cf_process_pool_new(&o, &ex)
                             : cf_thread_pool_new(&o, &ex);
    if (rc != 0) {
      fprintf(stderr, "cannot start the pool: %s\n", cf_strerror(rc));
      return 1;
    }
    for (int i = 0; i < TASKS; i++) {
      job j = {.limit = 20000 + 2000 * (uint32_t)i};
      rc = cf_submit(ex, longest_collatz, &j, sizeof j, &fs[i]);
      if (rc != 0) {
        fprintf(stderr, "submit %d: %s\n", i, cf_strerror(rc));
        return 1;
      }
    }
  } /* here the executor shuts down, waits for all 32 tasks and is freed */
  double t1 = now_s();

  int failed = 0;
  for (int i = 0; i < TASKS; i++) {
    answer a;
    size_t len = 0;
    int rc = cf_future_result(fs[i], &a, sizeof a, &len, 0); /* done: no wait */
    if (rc == 0 && len == sizeof a) {
      printf("below %6u: %6u has the longest Collatz chain, %3u steps\n",
             20000 + 2000 * (unsigned)i, a.start, a.steps);
    } else {
      printf("below %6u: failed: %s\n", 20000 + 2000 * (unsigned)i, cf_strerror(rc));
      failed = 1;
    }
    cf_future_release(fs[i]);
  }
  printf("time: %.3f s on %s\n", t1 - t0, argv[1]);
  return failed;
}
