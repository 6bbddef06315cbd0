/* cf-test: labels=unit;shm timeout=300 */
/*
 * test_map_chunks.c — chunked maps on a process pool fit its argument and
 * result limits instead of failing (issue 9, item 14).
 *
 * 1. chunk 4096 of 24-byte items, 24-byte results, default limits (64 KiB):
 *    the packed chunk is larger than max_arg_size and its packed result
 *    larger than max_result_size; every item still succeeds, in order, and
 *    runs exactly once (a counter per item in shared memory). (Before:
 *    every item failed CF_E2BIG.)
 * 2. results much larger than the arguments (600 bytes each): chunks split
 *    on their results.
 * 3. from a source (cf_map_new) with items of varied sizes: one item too
 *    large for any chunk fails CF_E2BIG alone, one item whose result is too
 *    large fails CF_E2BIG alone; every other item succeeds, in order.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cfutures.h"
#include "testutil.h"

#define N 20000
#define runs ((_Atomic uint32_t *)cf_test_shm) /* per item, shared with the workers */

typedef struct item {
  uint32_t index;
  uint32_t out_len; /* result bytes wanted */
  uint64_t pad[2];  /* 24 bytes in all */
} item;
_Static_assert(sizeof(item) == 24, "24-byte items");

static void fill(unsigned char *b, size_t n, uint32_t index) {
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(index * 7 + i);
}

static void t_item(cf_call *c) {
  size_t n;
  const item *it = cf_call_arg(c, &n);
  if (n < sizeof *it) {
    cf_call_fail(c, 1, "short item");
    return;
  }
  atomic_fetch_add(&runs[it->index], 1);
  static unsigned char buf[1 << 17];
  fill(buf, it->out_len, it->index);
  cf_call_return(c, buf, it->out_len);
}

static cf_executor *pool(void) {
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *ex = NULL;
  assert_rc(cf_process_pool_new(&o, &ex), 0);
  return ex;
}

static void run_array(size_t out_len, size_t chunk) {
  static item items[N];
  for (uint32_t i = 0; i < N; i++) {
    items[i] = (item){.index = i, .out_len = (uint32_t)out_len};
    atomic_store(&runs[i], 0);
  }
  cf_executor *ex = pool();
  cf_map_opts mo = {.window = 4, .chunk = chunk, .timeout_ns = -1};
  cf_map *m;
  assert_rc(cf_map_array(ex, t_item, items, N, sizeof *items, &mo, &m), 0);
  static unsigned char got[1 << 17], want[1 << 17];
  unsigned ok = 0, bad = 0;
  for (uint32_t i = 0; i < N; i++) {
    size_t len = 0;
    int rc = cf_map_next(m, got, sizeof got, &len);
    fill(want, out_len, i);
    if (rc == 0 && len == out_len && memcmp(got, want, len) == 0) {
      ok++;
    } else if (bad++ < 3) {
      cf_test_fail(__FILE__, __LINE__, "item", "item %u: %s, len %zu", i, cf_strerror(rc), len);
    }
  }
  expect_rc(cf_map_next(m, got, sizeof got, NULL), CF_EDONE);
  cf_map_free(m);
  expect_eq(ok, N);
  unsigned once = 0;
  for (uint32_t i = 0; i < N; i++) once += atomic_load(&runs[i]) == 1;
  expect_eq(once, N);
  expect_rc(cf_executor_destroy(ex), 0);
  fprintf(stderr, "  chunk %zu, %zu-byte results: %u items ok, each run once\n", chunk, out_len,
          ok);
}

static void test_small_items_big_chunk(void) {
  run_array(24, 4096);
}

static void test_large_results(void) {
  run_array(600, 4096);
}

/* A source of items 0..n-1; item `huge_arg` is 100 KiB, item `huge_res`
 * asks for a result over the limit. */
typedef struct src {
  uint32_t next, n, huge_arg, huge_res;
  unsigned char *buf;
} src;

static int next_item(void *arg, const void **out, size_t *len) {
  src *s = arg;
  if (s->next >= s->n) return 0;
  uint32_t i = s->next++;
  item it = {.index = i, .out_len = i == s->huge_res ? 70000 : 8 + i % 50};
  size_t sz = i == s->huge_arg ? 100 * 1024 : sizeof it + i % 40;
  memset(s->buf, 0, sz);
  memcpy(s->buf, &it, sizeof it);
  *out = s->buf;
  *len = sz;
  return 1;
}

static void test_source(void) {
  const uint32_t n = 5000;
  for (uint32_t i = 0; i < n; i++) atomic_store(&runs[i], 0);
  src s = {.next = 0, .n = n, .huge_arg = 1234, .huge_res = 3000, .buf = malloc(100 * 1024)};
  assert_true(s.buf != NULL);
  cf_executor *ex = pool();
  cf_map_opts mo = {.window = 3, .chunk = 700, .timeout_ns = -1};
  cf_map *m;
  assert_rc(cf_map_new(ex, t_item, next_item, &s, &mo, &m), 0);
  static unsigned char got[1 << 17], want[1 << 17];
  unsigned ok = 0;
  for (uint32_t i = 0; i < n; i++) {
    size_t len = 0;
    int rc = cf_map_next(m, got, sizeof got, &len);
    if (i == s.huge_arg || i == s.huge_res) {
      expect_rc(rc, CF_E2BIG);
      continue;
    }
    size_t out_len = 8 + i % 50;
    fill(want, out_len, i);
    if (rc == 0 && len == out_len && memcmp(got, want, len) == 0)
      ok++;
    else
      cf_test_fail(__FILE__, __LINE__, "item", "item %u: %s", i, cf_strerror(rc));
  }
  expect_rc(cf_map_next(m, got, sizeof got, NULL), CF_EDONE);
  cf_map_free(m);
  expect_eq(ok, n - 2);
  unsigned once = 0;
  for (uint32_t i = 0; i < n; i++) once += atomic_load(&runs[i]) == (i == s.huge_arg ? 0u : 1u);
  expect_eq(once, n);
  free(s.buf);
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(void) {
  cf_test_shared(N * sizeof(_Atomic uint32_t));
  CF_RUN(test_small_items_big_chunk);
  CF_RUN(test_large_results);
  CF_RUN(test_source);
  return cf_test_done("test_map_chunks");
}
