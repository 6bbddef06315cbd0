/*
 * consumer — a program outside the cfutures tree, built against an installed
 * copy (find_package and pkg-config --static). It prints one line that
 * install_test.sh checks: "consumer: sum of squares 0..99 = 328350", the
 * same on a thread pool and on a process pool.
 */
#include <cfutures.h>
#include <stdio.h>

static void square(cf_call *call) {
  size_t len;
  const long *x = cf_call_arg(call, &len);
  long y = *x * *x;
  cf_call_return(call, &y, sizeof y);
}

/* The sum of squares 0..n-1 on a thread pool or a process pool (the
 * default start mode execs this program: the library's constructor, pulled
 * in by the static link, turns that copy into the pool's zygote). -1 on
 * error. */
static long run(bool processes) {
  enum { N = 100 };
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *ex = NULL;
  int rc = processes ? cf_process_pool_new(&o, &ex) : cf_thread_pool_new(&o, &ex);
  if (rc != 0) {
    fprintf(stderr, "consumer: pool: %s\n", cf_strerror(rc));
    return -1;
  }
  cf_future *fs[N];
  for (long i = 0; i < N; i++) {
    rc = cf_submit(ex, square, &i, sizeof i, &fs[i]);
    if (rc != 0) {
      fprintf(stderr, "consumer: cf_submit: %s\n", cf_strerror(rc));
      return -1;
    }
  }
  long sum = 0;
  for (int i = 0; i < N; i++) {
    long y = 0;
    size_t len = 0;
    rc = cf_future_result(fs[i], &y, sizeof y, &len, -1);
    if (rc != 0 || len != sizeof y) {
      fprintf(stderr, "consumer: result %d: %s\n", i, cf_strerror(rc));
      return -1;
    }
    sum += y;
    cf_future_release(fs[i]);
  }
  cf_executor_destroy(ex);
  return sum;
}

int main(void) {
  long threads = run(false), processes = run(true);
  if (threads != processes) {
    fprintf(stderr, "consumer: threads %ld, processes %ld\n", threads, processes);
    return 1;
  }
  printf("consumer: sum of squares 0..99 = %ld\n", threads);
  return threads == 328350 ? 0 : 1;
}
