/*
 * executor.h — the interface both executors implement (internal).
 *
 * cf_executor is an abstract base: each implementation embeds
 * `struct cf_executor` as its first member and fills in `vt`. The public
 * calls in executor.c check their arguments once and dispatch here, so
 * cf_submit() on a thread pool and on a process pool is the same call.
 */
#ifndef CF_RUNTIME_EXECUTOR_H
#define CF_RUNTIME_EXECUTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfutures.h"
#include "sys.h"

typedef struct cf__executor_vtbl {
  /* Arguments are checked (ex, fn, out non-NULL; arg non-NULL if len > 0).
   * deadline_abs: absolute CLOCK_MONOTONIC ns, 0 for none. flags:
   * CF_SUBMIT_*. */
  int (*submit)(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline_abs,
                unsigned flags, cf_future **out);
  int (*shutdown)(cf_executor *ex, unsigned flags);
  /* Shut down with wait, join, free everything the executor owns. */
  int (*destroy)(cf_executor *ex);
  int (*stats)(cf_executor *ex, cf_stats *out);
  /* Is the calling thread one of this executor's own workers? */
  bool (*is_worker)(cf_executor *ex);
  unsigned (*workers)(cf_executor *ex);
  size_t (*max_result)(cf_executor *ex);
} cf__executor_vtbl;

#define CF__EXECUTOR_MAGIC 0xcfe8ec01u

struct cf_executor {
  const cf__executor_vtbl *vt;
  uint32_t magic;
  /* Thread pool: set by shutdown with CF_SHUTDOWN_KILL; a thread task whose
   * f->executor is this executor then sees cf_call_stop_requested(). */
  _Atomic bool stop_all;
  /* 0: any process may use it. Else the pid of the only process that may
   * (a process pool's creator): its futures' words and its slot table live
   * in memory that a fork copies or shares, so a call from a fork of it
   * would act on the parent's tasks. Such a call gets CF_EFORKED. */
  int owner_pid;
};

/* CF_EFORKED if ex belongs to another process than the caller, else 0. */
static inline int cf__executor_foreign(const cf_executor *ex) {
  return ex->owner_pid && ex->owner_pid != cf__self_pid() ? CF_EFORKED : 0;
}

#endif /* CF_RUNTIME_EXECUTOR_H */
