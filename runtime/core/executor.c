/*
 * executor.c — the public executor calls: argument checks once, then
 * dispatch through the executor's vtable (executor.h). Also cf_strerror.
 */
#include "executor.h"

#include <string.h>

#include "future.h"
#include "scope.h"
#include "sys.h"

const char *cf_strerror(int code) {
  switch (code) {
    case CF_OK:
      return "success";
    case CF_EINVAL:
      return "invalid argument or handle";
    case CF_ENOMEM:
      return "out of memory";
    case CF_ETIMEDOUT:
      return "timed out";
    case CF_ECANCELLED:
      return "cancelled";
    case CF_ESHUTDOWN:
      return "executor is shut down";
    case CF_EBROKEN:
      return "executor is broken (initializer failed)";
    case CF_ECRASHED:
      return "worker process crashed";
    case CF_E2BIG:
      return "argument or result too large";
    case CF_ETASK:
      return "task failed";
    case CF_EAGAIN:
      return "would block (queue full)";
    case CF_EBUSY:
      return "task is running";
    case CF_ERANGE:
      return "output buffer too small";
    case CF_EDONE:
      return "no more items (or already done)";
    case CF_EPROTO:
      return "corrupt data from a worker";
    case CF_ESYS:
      return "system call failed";
    case CF_EDEADLINE:
      return "the task's deadline passed";
    case CF_ENOTSUP:
      return "not supported (by this build or this MPI)";
    case CF_ENOTLOADED:
      return "task function not in any module the executor's workers have";
    case CF_EDEADLK:
      return "could never proceed from here (would wait for ever)";
    case CF_EFORKED:
      return "executor belongs to another process (used after fork)";
    default:
      return "unknown error";
  }
}

static inline bool valid_ex(const cf_executor *ex) {
  return ex && ex->magic == CF__EXECUTOR_MAGIC && ex->vt;
}

/* 0, CF_EINVAL (not an executor) or CF_EFORKED (another process's). */
static inline int check_ex(const cf_executor *ex) {
  return valid_ex(ex) ? cf__executor_foreign(ex) : CF_EINVAL;
}

int cf_submit_ex(cf_executor *ex, cf_fn fn, const void *arg, size_t len, const cf_submit_opts *so,
                 cf_future **out) {
  if (out) *out = NULL;
  if (!valid_ex(ex) || !fn || !out || (!arg && len > 0)) return CF_EINVAL;
  int e = cf__executor_foreign(ex);
  if (e) return e;
  int64_t deadline = 0;
  unsigned flags = 0;
  if (so) {
    flags = so->flags & CF_SUBMIT_NOWAIT;
    if (so->timeout_ns > 0) {
      deadline = cf__deadline_after(so->timeout_ns);
      if (deadline <= 0) deadline = 1;
    }
  }
  cf_scope *scope = cf__scope_of_submit(so);
  if (__builtin_expect(scope != NULL, 0))
    return cf__scope_submit(ex, fn, arg, len, deadline, flags, scope, out);
  return ex->vt->submit(ex, fn, arg, len, deadline, flags, NULL, out);
}

int cf_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, cf_future **out) {
  if (out) *out = NULL;
  if (!valid_ex(ex) || !fn || !out || (!arg && len > 0)) return CF_EINVAL;
  int e = cf__executor_foreign(ex);
  if (e) return e;
  cf_scope *scope = cf__scope_tl;
  if (__builtin_expect(scope != NULL, 0))
    return cf__scope_submit(ex, fn, arg, len, 0, 0, scope, out);
  return ex->vt->submit(ex, fn, arg, len, 0, 0, NULL, out);
}

int cf_executor_shutdown(cf_executor *ex, unsigned flags) {
  int e = check_ex(ex);
  if (e) return e;
  return ex->vt->shutdown(ex, flags);
}

int cf_executor_destroy(cf_executor *ex) {
  if (!ex) return 0;
  int e = check_ex(ex);
  if (e) return e;
  if (ex->vt->is_worker && ex->vt->is_worker(ex)) return CF_EINVAL;
  return ex->vt->destroy(ex);
}

int cf_executor_time_tasks(cf_executor *ex, bool on) {
  int e = check_ex(ex);
  if (e) return e;
  /* relaxed: submitters read it as a hint; tasks submitted around the
   * switch are measured or not */
  atomic_store_explicit(&ex->time_tasks, on, memory_order_relaxed);
  return 0;
}

int cf_executor_stats(cf_executor *ex, cf_stats *out) {
  if (!out) return CF_EINVAL;
  int e = check_ex(ex);
  if (e) return e;
  memset(out, 0, sizeof *out);
  return ex->vt->stats(ex, out);
}

void cf__executor_scope_exit(cf_executor **ex) {
  if (ex && *ex) {
    (void)cf_executor_destroy(*ex);
    *ex = NULL;
  }
}
