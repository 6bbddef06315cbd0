/*
 * promise.h — futures completed by code instead of a task (internal): the
 * public promises, and the futures that continuations and combinators
 * (compose.c) return.
 *
 * DESIGN
 * A promise is a local (thread-style) future with no executor: word =
 * &state, vt = &cf__local_future_vtbl, executor NULL. Its fn is a marker
 * that is never called: cf__promise_user for cf_promise_new (the only ones
 * cf_promise_set_* accept), cf__promise_internal for compose.c's.
 * Completing one is the thread pool's outcome claim (future.c DESIGN):
 * cf__future_claim, then the winner writes the outcome through a local
 * cf_call (cf__future_call_init: the runner's own cf_call_return /
 * cf_call_fail code) and calls cf__future_complete_claimed. A cancel
 * (PENDING -> CANCELLED, cf_future_cancel) needs no claim; a claimer that
 * loses to it finds a done word and its outcome is dropped (freed with the
 * future). No lock anywhere: the callbacks run in the completing thread.
 *
 * An outcome (cf__outcome) is a done future's state, error, code, message
 * and result bytes copied out of it, so that it can be carried to another
 * future (adopt) or into a continuation's argument (compose.c) whatever
 * executor the source belongs to.
 */
#ifndef CF_RUNTIME_PROMISE_H
#define CF_RUNTIME_PROMISE_H

#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"
#include "future.h"

/* The markers in a promise's fn (never called). */
void cf__promise_user(cf_call *c);
void cf__promise_internal(cf_call *c);

/* A PENDING internal promise with one handle and one internal reference
 * (the completer's, dropped with cf__future_unref). NULL on ENOMEM. */
cf_future *cf__promise_alloc(void);

/* Completion of a promise (p PENDING or RUNNING; the caller holds a
 * reference). 0, CF_EDONE (p was done: nothing changed), or CF_ENOMEM
 * (p then failed with CF_ENOMEM). Any thread. */
int cf__promise_finish(cf_future *p, const void *v, size_t len);
/* Fail with `err`: CF_ETASK with `code` and `msg` (may be NULL) as from
 * cf_call_fail; any other CF_E* code as is (code and msg ignored). */
int cf__promise_fail(cf_future *p, int err, int code, const char *msg);
/* PENDING -> CANCELLED: 0 or CF_EDONE. */
int cf__promise_cancel(cf_future *p);

#define CF__OUTCOME_SMALL 64

typedef struct cf__outcome {
  int state; /* CF_STATE_FINISHED, _FAILED or _CANCELLED */
  int err;   /* 0, or the CF_E* cf_future_result gives */
  int code;  /* CF_ETASK: the task's code; else err */
  char msg[CF_MESSAGE_MAX];
  const void *res; /* FINISHED: len result bytes (small or heap) */
  size_t len;
  void *heap;
  unsigned char small[CF__OUTCOME_SMALL];
} cf__outcome;

/* Copy the outcome of the done future src (any executor). 0, or CF_ENOMEM
 * (a result too large to copy: o then reads as FAILED/CF_ENOMEM). Free with
 * cf__outcome_free. */
int cf__outcome_capture(cf_future *src, cf__outcome *o);
void cf__outcome_free(cf__outcome *o);

/* Complete p with the outcome o (finish, fail or cancel): as above. */
int cf__promise_settle(cf_future *p, const cf__outcome *o);

#endif /* CF_RUNTIME_PROMISE_H */
