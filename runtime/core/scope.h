/*
 * scope.h — cancellation scopes (internal): cf_scope_* (cfutures.h) and
 * what the submit path and the runners need of them.
 *
 * DESIGN
 * A scope is a set of futures (its members) and of child scopes, under one
 * mutex. Cancelling it (once: `cancelled` never goes back) cancels every
 * member the way cf_future_cancel does (pending: cancelled; a running
 * thread task: its stop flag; a running process task: killed), then every
 * child scope, and makes later submits into it fail with CF_ECANCELLED.
 *
 * Membership. A future joins at submit (cf__scope_submit): the member node
 * and its done-callback node are allocated first, so nothing can fail once
 * the task is submitted; the member is linked under the mutex, then its
 * callback registered. The callback (run when the future is done, by
 * whoever completes it) unlinks and frees the member, so a scope holds only
 * futures not yet done. A member does not hold a reference on its future:
 * while it is linked its callback has not run, so the future is alive (its
 * completer holds a reference while callbacks run); cancel takes one under
 * the mutex before it lets go of the mutex.
 *
 * No lost member: cancel sets `cancelled` under the mutex before it walks
 * the members, and a submit links its member under the mutex and reads
 * `cancelled` there: either cancel sees the member or the submit sees the
 * flag and cancels its own future.
 *
 * Cancel walks without holding the mutex across user code (cf_future_cancel
 * runs callbacks): it moves one member at a time from the `fresh` list to
 * the `asked` list under the mutex, takes a reference on its future, and
 * cancels it after the unlock. A running thread task stays a member (on
 * `asked`) until it returns.
 *
 * Inheritance. f->scope is set by the executor before the future is
 * published; the thread pool's runner (cf__future_run) makes it the calling
 * thread's current scope (cf__scope_tl) while the task runs, so a submit
 * from the task without CF_SUBMIT_SCOPE joins the same scope. The member's
 * reference on the scope keeps it alive while its task runs.
 *
 * Lifetime: `refs` counts the handle, each member, each child (a child holds
 * its parent, so that it can unlink itself from the parent's list) and
 * cancel's temporary holds. At 0 the scope unlinks from its parent and is
 * freed. A parent's list of children holds no reference: cancel takes one
 * only on a child whose count is not already 0.
 */
#ifndef CF_RUNTIME_SCOPE_H
#define CF_RUNTIME_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"

/* The scope of the task running on this thread (set by cf__future_run). */
extern _Thread_local cf_scope *cf__scope_tl __attribute__((tls_model("initial-exec")));

/* The scope a submit joins: so's (when CF_SUBMIT_SCOPE is set) or the
 * current task's. */
static inline cf_scope *cf__scope_of_submit(const cf_submit_opts *so) {
  if (so && (so->flags & CF_SUBMIT_SCOPE)) return so->scope;
  return cf__scope_tl;
}

/* Submit through ex->vt->submit into scope s (not NULL): CF_EINVAL for a bad
 * handle, CF_ECANCELLED if s is cancelled, CF_ENOMEM, or what the executor
 * returns. Arguments otherwise as checked by cf_submit_ex. */
int cf__scope_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline,
                     unsigned flags, cf_scope *s, cf_future **out);

/* A reference on s (not NULL) for one that outlives the caller's: a
 * continuation keeps the scope it was made in (compose.c). */
void cf__scope_retain(cf_scope *s);
void cf__scope_release(cf_scope *s);

#endif /* CF_RUNTIME_SCOPE_H */
