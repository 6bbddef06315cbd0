/*
 * alloc_probe — a program that links cfutures keeps its own allocator.
 *
 * Built by tests/install_test.sh against an installed cfutures and run; it
 * prints one line,
 *   alloc_probe: malloc=<object defining malloc> mallctl=<absent|present> cfutures-heap=<owner>
 * where
 *   malloc=        the object the program's `malloc` resolves to (dladdr of
 *                  dlsym(RTLD_DEFAULT)): libc.so.6 for a plain host, the
 *                  host's allocator when it links one, "static" in a static
 *                  executable (no dynamic symbol table to ask);
 *   mallctl=       whether jemalloc's mallctl is in the program at all (a
 *                  weak reference: non-NULL only if some object defines it);
 *   cfutures-heap= whose heap the blocks cfutures allocates come from. The
 *                  probe holds N tasks pending behind a blocked worker, each
 *                  with an argument over the future's inline room (48 bytes),
 *                  which the library copies into a block of its own; then
 *                    glibc:    glibc's in-use bytes (mallinfo2) grew by at
 *                              least those N copies;
 *                    mimalloc: each task finds its argument in mimalloc's
 *                              heap (mi_is_in_heap_region);
 *                    tcmalloc: each task finds its argument owned by
 *                              tcmalloc (MallocExtension_GetOwnership);
 *                  "unchecked" under a sanitizer (its runtime owns malloc
 *                  and mallinfo2 reports nothing useful).
 *
 * Variants (-D): CF_PROBE_REFERENCE links no cfutures and prints the first
 * two fields only (what the host has on its own, to compare with);
 * CF_PROBE_MIMALLOC / CF_PROBE_TCMALLOC: the host links that allocator.
 * Exit status 0 when every check of the variant passed.
 */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT, mallinfo2 */
#include <dlfcn.h>
#include <libgen.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CF_PROBE_REFERENCE
#include <cfutures.h>
#endif
#ifdef CF_PROBE_MIMALLOC
#include <mimalloc.h>
#endif
#ifdef CF_PROBE_TCMALLOC
/* gperftools' C interface (malloc_extension_c.h, not in libtcmalloc-minimal4). */
int MallocExtension_GetOwnership(const void *p);
enum { TC_OWNED = 1 };
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PROBE_SANITIZER 1
#endif

/* jemalloc's control entry point: NULL unless some object defines it. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

static const char *malloc_owner(void) {
  static char name[256];
  void *p = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info;
  if (p == NULL || dladdr(p, &info) == 0 || info.dli_fname == NULL) return "static";
  snprintf(name, sizeof name, "%s", info.dli_fname);
  return basename(name);
}

#ifndef CF_PROBE_REFERENCE
enum { N = 1000, ARG = 64 };
struct arg {
  unsigned char bytes[ARG]; /* over CF's 48 inline bytes: copied to a heap block */
};
static atomic_int release_worker;

static void block(cf_call *call) {
  while (!atomic_load(&release_worker)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  cf_call_return(call, NULL, 0);
}

/* Returns 1 when the argument's block belongs to the host's allocator (or
 * when this variant has no per-block check: the glibc one is a heap total). */
static void touch(cf_call *call) {
  size_t len = 0;
  const struct arg *a = cf_call_arg(call, &len);
  int owned = len == sizeof *a && a->bytes[ARG - 1] == 0x5a;
#if defined(CF_PROBE_MIMALLOC)
  owned = owned && mi_is_in_heap_region(a);
#elif defined(CF_PROBE_TCMALLOC)
  owned = owned && MallocExtension_GetOwnership(a) == TC_OWNED;
#endif
  cf_call_return(call, &owned, sizeof owned);
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "alloc_probe: %s: %s\n", what, cf_strerror(rc));
  return 1;
}
#endif

int main(void) {
  const char *owner = malloc_owner();
  const char *jem = mallctl ? "present" : "absent";
#ifdef CF_PROBE_REFERENCE
  printf("alloc_probe: malloc=%s mallctl=%s\n", owner, jem);
  return 0;
#else
  cf_options o;
  cf_options_init(&o);
  o.workers = 1;
  cf_executor *ex = NULL;
  int rc = cf_thread_pool_new(&o, &ex);
  if (rc != 0) return fail("cf_thread_pool_new", rc);
  cf_future *blocker = NULL;
  rc = cf_submit(ex, block, NULL, 0, &blocker);
  if (rc != 0) return fail("cf_submit", rc);

  static cf_future *fs[N];
  struct arg a;
  memset(&a, 0x5a, sizeof a);
#if !defined(PROBE_SANITIZER)
  struct mallinfo2 before = mallinfo2();
#endif
  for (int i = 0; i < N; i++) {
    rc = cf_submit(ex, touch, &a, sizeof a, &fs[i]);
    if (rc != 0) return fail("cf_submit", rc);
  }
  const char *heap = "unchecked";
  int ok = 1;
#if !defined(PROBE_SANITIZER)
  /* N argument copies are live now (the only worker is blocked). */
  struct mallinfo2 after = mallinfo2();
  size_t grew = after.uordblks > before.uordblks ? after.uordblks - before.uordblks : 0;
#if defined(CF_PROBE_MIMALLOC) || defined(CF_PROBE_TCMALLOC)
  (void)grew; /* checked block by block in touch() */
#else
  heap = grew >= (size_t)N * ARG ? "glibc" : "not-glibc";
  ok = grew >= (size_t)N * ARG;
#endif
#endif
  atomic_store(&release_worker, 1);
  if ((rc = cf_future_result(blocker, NULL, 0, NULL, -1)) != 0) return fail("blocker", rc);
  cf_future_release(blocker);
  int owned_all = 1;
  for (int i = 0; i < N; i++) {
    int owned = 0;
    size_t len = 0;
    rc = cf_future_result(fs[i], &owned, sizeof owned, &len, -1);
    if (rc != 0) return fail("cf_future_result", rc);
    owned_all &= len == sizeof owned && owned;
    cf_future_release(fs[i]);
  }
  cf_executor_destroy(ex);
#if defined(CF_PROBE_MIMALLOC)
  heap = owned_all ? "mimalloc" : "not-mimalloc";
  ok = owned_all;
#elif defined(CF_PROBE_TCMALLOC)
  heap = owned_all ? "tcmalloc" : "not-tcmalloc";
  ok = owned_all;
#else
  ok = ok && owned_all;
#endif
  printf("alloc_probe: malloc=%s mallctl=%s cfutures-heap=%s\n", owner, jem, heap);
  return ok ? 0 : 1;
#endif
}
