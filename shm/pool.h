/*
 * pool.h — the process pool's parent-side state and its lifetime
 * (internal). The design of the whole pool is here; each file adds its
 * own part.
 *
 * DESIGN
 *
 * Processes. The parent (any threads) submits; one supervisor thread in the
 * parent watches (supervisor.c). At creation the supervisor thread starts a
 * ZYGOTE (zygote.c): by default it execs the program file (exec.h), so the
 * zygote holds none of the multi-threaded parent's locks or descriptors;
 * with CF_START_FORK it forks the parent. The supervisor thread does it so
 * that the zygote's PR_SET_PDEATHSIG is tied to a thread that lives exactly
 * as long as the pool (the creating thread may exit earlier). The zygote
 * forks the WORKERS (worker.c) on request over the zygote protocol
 * (protocol.h), so respawning never forks the parent. Workers die with the
 * zygote (PDEATHSIG = SIGKILL) and the zygote with the supervisor thread
 * (PDEATHSIG = SIGTERM: it takes every worker and every process a task
 * started down first), getppid() re-checked for the race. The zygote reaps
 * the workers and reports each death; kills go through the zygote too. The
 * children read only the pool's configuration (config.h), never this
 * parent-side state; a call on the pool from any process but its creator
 * (owner_pid, executor.h) is refused with CF_EFORKED.
 *
 * Slots. A task lives in a slot of the segment (segment.h) whose word is the
 * future's state word (future.h); the parent-side future points at it
 * (shared = 1) and the slot table (slots.h) keeps the parent's record of it.
 * Who writes what:
 *   - the parent writes fn/arg and publishes the PENDING word (release),
 *     then pushes a hint; a worker claims the task by CAS (gen, PENDING) ->
 *     (gen, RUNNING, owner = index + 1) and writes its outcome before the
 *     CAS to done;
 *   - a done word whose owner field is 0 was completed by the PARENT
 *     (cancel, deadline, crash, broken pool): its error and crash info live
 *     in the slot table, written under `mu` before the CAS; a done word with
 *     an owner was completed by that worker: its outcome is in the slot and
 *     is untrusted (checked on every read; bad data gives CF_EPROTO);
 *   - the done word keeps WAITERS and NOTIFY: it is final for the
 *     generation, and the supervisor can tell from it, after a worker died,
 *     whether a wake-up or a completion notice may have died with it.
 * A slot is reused (gen + 1) only when (a) the parent future is destroyed,
 * (b) the word is done, and (c) no worker that the parent failed while it
 * ran the slot (cancel, deadline, kill) is still alive: such a worker may
 * still write into the slot until it is reaped (quarantine).
 *
 * Killing a running task: the parent first CASes its word RUNNING(owner i)
 * -> done(owner 0) under `mu`, then (still under `mu`) asks the zygote to
 * kill worker i. A worker whose completing CAS fails knows a kill is coming
 * and exits at once instead of taking another task, so the kill can only
 * hit the task the parent already failed.
 *
 * Words, one meaning each, in every file of shm/:
 *   hint      a ring value: slot index + low generation bits (segment.h)
 *   notice    a hint on the completion ring: "slot s is done, settle it"
 *   take      pop a hint off a ring (rec->taking: the hint being popped)
 *   drain     pop a ring until it is empty
 *   claim     a worker's CAS PENDING -> RUNNING(owner)
 *   owner     the worker index + 1 in a RUNNING or done word; 0: the parent
 *   complete  the CAS that makes a word done; the parent's is a "fail"
 *             (cf__pp_fail_locked: FAILED or CANCELLED with owner 0)
 *   settle    the parent's work once a word is done: run a watched future's
 *             callbacks, free an orphaned slot (settle.h)
 *   publish   a release store or CAS that makes the writes before it
 *             visible to whoever acquires the word
 *   kick      wake the supervisor (eventfd); "wake" is a futex wake
 *
 * Lock order: `mu` is a leaf except for the socket send to the zygote.
 * Callbacks and futex wakes always run with `mu` released.
 */
#ifndef CF_SHM_POOL_H
#define CF_SHM_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "mutex.h"
#include "executor.h"
#include "slots.h"

/* The supervisor's record of one worker (mu). */
typedef struct cf__pworker {
  pid_t pid;         /* 0 until the zygote reported it */
  bool alive;        /* spawned and not yet reported dead */
  bool spawning;     /* SPAWN sent, no answer yet */
  bool retry;        /* the zygote's fork failed: SPAWN again later */
  unsigned failures; /* fork failures in a row */
} cf__pworker;

typedef struct cf__pool {
  struct cf_executor base;
  _Atomic uint32_t refs; /* the executor handle + one per in-use slot */
  cf__pool_cfg cfg;      /* what the forked children may read */

  cf__mutex mu;
  pthread_cond_t cv; /* slot freed, worker reaped, zygote up */
  cf__slots slots;
  unsigned free_waiters; /* submitters waiting on cv for a free slot */
  cf__pworker *w;
  unsigned nalive, nspawning, nretry;
  int64_t retry_at; /* when to send the SPAWNs that failed again */
  uint32_t *repush; /* hints to put back that did not fit in the sq */
  size_t nrepush, repush_cap;
  bool shutdown, cancelling, broken, sv_stop, sv_started, zygote_dead, destroyed;
  /* Set (cf__pp_doom) once broken or cancelling is: lets pp_submit check
   * without the mutex whether a scan of the slots may have missed its slot. */
  _Atomic bool doomed;
  int sv_error;
  pthread_t sv;
  pid_t zygote_pid;

  _Atomic uint64_t submitted, cancelled, crashed, respawned; /* statistics */
} cf__pool;

static inline cf__slot *cf__pp_slot(cf__pool *p, uint32_t s) {
  return cf__seg_slot(&p->cfg.seg, s);
}
static inline void cf__pp_lock(cf__pool *p) {
  cf__mutex_lock(&p->mu);
}
static inline void cf__pp_unlock(cf__pool *p) {
  cf__mutex_unlock(&p->mu);
}
/* For the cf__assert of a "mu held" precondition. */
static inline bool cf__pp_locked(cf__pool *p) {
  return cf__mutex_held(&p->mu);
}

/* Add a pool reference (the caller holds one). */
static inline void cf__pp_ref(cf__pool *p) {
  /* relaxed: the caller's reference keeps the pool alive */
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}
/* Drop a pool reference; the last one frees the pool. Parent. */
void cf__pp_unref(cf__pool *p);

#endif /* CF_SHM_POOL_H */
