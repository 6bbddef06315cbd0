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
   * CF_SUBMIT_NOWAIT. scope: the scope the caller makes the future a
   * member of once submit returns (scope.h); an executor that runs tasks in
   * this process stores it in f->scope before it publishes the future (its
   * runner reads it), the process pool ignores it. */
  int (*submit)(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline_abs,
                unsigned flags, struct cf_scope *scope, cf_future **out);
  int (*shutdown)(cf_executor *ex, unsigned flags);
  /* Shut down with wait, join, free everything the executor owns. */
  int (*destroy)(cf_executor *ex);
  int (*stats)(cf_executor *ex, cf_stats *out);
  /* Is the calling thread one of this executor's own workers? */
  bool (*is_worker)(cf_executor *ex);
  unsigned (*workers)(cf_executor *ex);
  size_t (*max_result)(cf_executor *ex);
  /* The largest argument submit takes (NULL: no limit of its own). */
  size_t (*max_arg)(cf_executor *ex);
} cf__executor_vtbl;

#define CF__EXECUTOR_MAGIC 0xcfe8ec01u

struct cf_executor {
  const cf__executor_vtbl *vt;
  uint32_t magic;
  /* Thread pool: set by shutdown with CF_SHUTDOWN_CANCEL_FUTURES (or KILL);
   * a thread task whose f->executor is this executor then sees
   * cf_call_stop_requested(). */
  _Atomic bool stop_all;
  /* Its tasks run in this process (a thread pool): a task may then carry
   * pointers, as the routed callbacks of compose.c do. 0 (a zeroed
   * executor) for pools whose tasks run elsewhere. */
  bool local_tasks;
  /* The deadline timer (deadline.h), made on the first watched deadline. */
  _Atomic(struct cf__timer *) timer;
  /* cf_executor_time_tasks: stamp each future at submit (f->t_submit) */
  _Atomic bool time_tasks;
  /* 0: any process may use it. Else the pid of the only process that may
   * (a process pool's creator): its futures' words and its slot table live
   * in memory that a fork copies or shares, so a call from a fork of it
   * would act on the parent's tasks. Such a call gets CF_EFORKED. */
  int owner_pid;
};

/* 0 if the caller may use ex. Else CF_EDEADLK in one of ex's own fork-mode
 * workers (a task calling into the copy of its own pool: nothing there
 * could ever run it), CF_EFORKED in any other process (a fork of the
 * owner, a worker holding a copy of another pool). */
static inline int cf__executor_foreign(const cf_executor *ex) {
  if (!ex->owner_pid || ex->owner_pid == cf__self_pid()) return 0;
  return (const void *)ex == cf__worker_ex ? CF_EDEADLK : CF_EFORKED;
}

/* The task cf_map submits for a chunk (map.c). Its argument begins with the
 * user's cf_fn as a u64: an executor whose workers live in another address
 * space (MPI) translates that word as it translates the task function. */
void cf__map_chunk_runner(cf_call *outer);

#endif /* CF_RUNTIME_EXECUTOR_H */
