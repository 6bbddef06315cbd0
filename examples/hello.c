/* hello.c — the ten-line example of the README: one task, one future.
 * Kept exactly as the README shows it (hence no clang-format here). */
// clang-format off
#include <cfutures.h>
#include <stdio.h>

static void square(cf_call *c) {
  size_t n; const int *x = cf_call_arg(c, &n);
  int y = *x * *x;
  cf_call_return(c, &y, sizeof y);
}

int main(void) {
  CF_SCOPED_EXECUTOR cf_executor *ex = NULL;   /* shut down and joined at scope exit */
  if (cf_thread_pool_new(NULL, &ex) != 0) return 1;   /* or cf_process_pool_new */
  cf_future *f; int x = 7, y;
  cf_submit(ex, square, &x, sizeof x, &f);
  if (cf_future_result(f, &y, sizeof y, NULL, -1) == 0) printf("%d\n", y);
  cf_future_release(f);
}
// clang-format on
