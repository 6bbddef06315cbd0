/*
 * bench_mpi.c — the MPI executor beside the process pool and a raw MPI
 * ping-pong, one standalone program (MPI jobs and google-benchmark's
 * repetitions do not mix: rank 0 measures, the other ranks serve). Run by
 * bench/tools/mpi_bench.sh:
 *
 *   mpirun -n 2 bench_mpi pingpong   8-byte MPI_Send/MPI_Recv round trip (the floor)
 *   mpirun -n 3 bench_mpi mpi        cf_mpi_pool_new: 2 worker ranks
 *   bench_mpi process                cf_process_pool_new: 2 workers (no MPI)
 *
 * Rows (the task is x -> x + 1 on an int64, as in py_peer.py):
 *   roundtrip   submit one, wait for its result, repeat: p50 / p99 (ns)
 *   submit      N tasks submitted, each result read once 4096 are out:
 *               tasks/s (MPI: with max_inflight 1, the default, and 16)
 *   map         cf_map_array over N items, chunk 256 (one message per chunk;
 *               MPI: max_inflight 1 and 16)
 * Each row prints one JSON object on its own line: {"row":..., ...}.
 * Sizes: CF_BENCH_RT (round trips, default 20000), CF_BENCH_TASKS (default
 * 100000), CF_BENCH_ITEMS (map items, default 2000000), CF_BENCH_REPS
 * (default 3: rates are the median). Not a test: no thresholds.
 */
#define _GNU_SOURCE
#include <cfutures.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long env_or(const char *name, long def) {
  const char *s = getenv(name);
  return s && *s ? strtol(s, NULL, 10) : def;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *sorted, size_t n, double q) {
  size_t i = (size_t)(q * (double)n);
  return sorted[i >= n ? n - 1 : i];
}

static void inc_task(cf_call *c) {
  int64_t x;
  memcpy(&x, cf_call_arg(c, NULL), sizeof x);
  x++;
  cf_call_return(c, &x, sizeof x);
}

static void check(int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "bench_mpi: %s: %s\n", what, cf_strerror(rc));
    exit(1);
  }
}

static void roundtrip(cf_executor *ex, const char *sys) {
  long n = env_or("CF_BENCH_RT", 20000);
  int64_t *t = malloc((size_t)n * sizeof *t);
  for (long i = -1000; i < n; i++) {
    int64_t x = i, r = 0;
    cf_future *f;
    int64_t a = now_ns();
    check(cf_submit(ex, inc_task, &x, sizeof x, &f), "submit");
    check(cf_future_result(f, &r, sizeof r, NULL, -1), "result");
    int64_t b = now_ns();
    cf_future_release(f);
    if (r != x + 1) check(CF_EPROTO, "wrong result");
    if (i >= 0) t[i] = b - a;
  }
  qsort(t, (size_t)n, sizeof *t, cmp64);
  printf(
      "{\"row\": \"roundtrip\", \"system\": \"%s\", \"p50_ns\": %lld, \"p99_ns\": %lld, \"n\": "
      "%ld}\n",
      sys, (long long)pct(t, (size_t)n, 0.5), (long long)pct(t, (size_t)n, 0.99), n);
  fflush(stdout);
  free(t);
}

/* N submits, at most WINDOW futures held at once (a process pool holds at
 * most max_futures live futures: submit would wait for one forever). */
#define WINDOW 4096

static void submit_all(cf_executor *ex, const char *sys) {
  long n = env_or("CF_BENCH_TASKS", 100000), reps = env_or("CF_BENCH_REPS", 3);
  cf_future *fs[WINDOW];
  double *rate = malloc((size_t)reps * sizeof *rate);
  for (long k = 0; k < reps; k++) {
    int64_t a = now_ns();
    long head = 0; /* oldest not yet read */
    for (long i = 0; i < n + WINDOW; i++) {
      if (i - head == WINDOW || (i >= n && head < n)) {
        int64_t r = 0;
        check(cf_future_result(fs[head % WINDOW], &r, sizeof r, NULL, -1), "result");
        if (r != head + 1) check(CF_EPROTO, "wrong result");
        cf_future_release(fs[head % WINDOW]);
        head++;
      }
      if (i < n) {
        int64_t x = i;
        check(cf_submit(ex, inc_task, &x, sizeof x, &fs[i % WINDOW]), "submit");
      }
    }
    rate[k] = (double)n * 1e9 / (double)(now_ns() - a);
  }
  qsort(rate, (size_t)reps, sizeof *rate, cmpd);
  printf(
      "{\"row\": \"submit\", \"system\": \"%s\", \"tasks_per_s\": %.0f, \"n\": %ld, "
      "\"window\": %d}\n",
      sys, rate[reps / 2], n, WINDOW);
  fflush(stdout);
  free(rate);
}

static void map_chunked(cf_executor *ex, const char *sys, size_t chunk) {
  long n = env_or("CF_BENCH_ITEMS", 2000000), reps = env_or("CF_BENCH_REPS", 3);
  int64_t *xs = malloc((size_t)n * sizeof *xs);
  for (long i = 0; i < n; i++) xs[i] = i;
  double *rate = malloc((size_t)reps * sizeof *rate);
  for (long k = 0; k < reps; k++) {
    cf_map_opts o = {.window = 0, .chunk = chunk, .timeout_ns = -1};
    cf_map *m;
    int64_t a = now_ns();
    check(cf_map_array(ex, inc_task, xs, (size_t)n, sizeof *xs, &o, &m), "map");
    for (long i = 0; i < n; i++) {
      int64_t r = 0;
      check(cf_map_next(m, &r, sizeof r, NULL), "map_next");
      if (r != i + 1) check(CF_EPROTO, "wrong map result");
    }
    cf_map_free(m);
    rate[k] = (double)n * 1e9 / (double)(now_ns() - a);
  }
  qsort(rate, (size_t)reps, sizeof *rate, cmpd);
  printf(
      "{\"row\": \"map\", \"system\": \"%s\", \"chunk\": %zu, \"items_per_s\": %.0f, \"n\": %ld}\n",
      sys, chunk, rate[reps / 2], n);
  fflush(stdout);
  free(xs);
  free(rate);
}

static int pingpong(void) {
  int prov;
  MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &prov);
  int r, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long n = env_or("CF_BENCH_RT", 20000) * 2;
  int64_t *t = malloc((size_t)n * sizeof *t);
  char b[8] = {0};
  for (long i = -1000; i < n; i++) {
    if (r == 0) {
      int64_t a = now_ns();
      MPI_Send(b, 8, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
      MPI_Recv(b, 8, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (i >= 0) t[i] = now_ns() - a;
    } else if (r == 1) {
      MPI_Recv(b, 8, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(b, 8, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
    }
  }
  if (r == 0) {
    qsort(t, (size_t)n, sizeof *t, cmp64);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len;
    MPI_Get_library_version(lib, &len);
    char *nl = strchr(lib, '\n');
    if (nl) *nl = 0;
    printf(
        "{\"row\": \"pingpong\", \"system\": \"mpi-raw\", \"ranks\": %d, \"p50_ns\": %lld, "
        "\"p99_ns\": %lld, \"thread_level\": %d, \"library\": \"%.40s\"}\n",
        size, (long long)pct(t, (size_t)n, 0.5), (long long)pct(t, (size_t)n, 0.99), prov, lib);
  }
  free(t);
  MPI_Finalize();
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "pingpong") == 0) return pingpong();
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *ex = NULL;
  if (strcmp(mode, "mpi") == 0) {
    check(cf_mpi_pool_new(&o, &ex), "cf_mpi_pool_new"); /* ranks != 0 serve here */
    int level = -1;
    MPI_Query_thread(&level);
    printf(
        "{\"row\": \"info\", \"system\": \"cfutures-mpi\", \"thread_level\": %d, "
        "\"thread_multiple\": %d}\n",
        level, MPI_THREAD_MULTIPLE);
    roundtrip(ex, "cfutures-mpi");
    submit_all(ex, "cfutures-mpi");
    map_chunked(ex, "cfutures-mpi", 256);
    cf_executor_destroy(ex);
    cf_mpi_options mo;
    cf_mpi_options_init(&mo);
    mo.max_inflight = 16;
    check(cf_mpi_pool_new_ex(&o, &mo, &ex), "cf_mpi_pool_new_ex");
    submit_all(ex, "cfutures-mpi/inflight:16");
    map_chunked(ex, "cfutures-mpi/inflight:16", 256);
    cf_executor_destroy(ex);
    return 0;
  }
  if (strcmp(mode, "process") == 0) {
    check(cf_process_pool_new(&o, &ex), "cf_process_pool_new");
    roundtrip(ex, "cfutures-process");
    submit_all(ex, "cfutures-process");
    map_chunked(ex, "cfutures-process", 256);
    cf_executor_destroy(ex);
    return 0;
  }
  fprintf(stderr, "usage: mpirun -n 2 %s pingpong | mpirun -n 3 %s mpi | %s process\n", argv[0],
          argv[0], argv[0]);
  return 2;
}
