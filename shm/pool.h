/*
 * pool.h — the process pool's parent-side state and its lifetime
 * (internal). The design of the whole pool is here; each file adds its
 * own part.
 *
 * DESIGN
 *
 * Processes and threads. The parent (any threads) submits. Two threads of
 * the pool run in the parent: the SUPERVISOR (supervisor.c) watches, and
 * the CALLBACK thread (callbacks.c) runs the users' done callbacks, so that
 * no user code ever delays what the supervisor does. The supervisor thread
 * starts a ZYGOTE (forker.c; the child side is zygote.c): by default it
 * execs the program file (exec.h), so the zygote holds none of the
 * multi-threaded parent's locks or descriptors; with CF_START_FORK it forks
 * the parent. The supervisor thread does it so that the zygote's
 * PR_SET_PDEATHSIG is tied to a thread that lives exactly as long as the
 * pool (the creating thread may exit earlier). The zygote forks the WORKERS
 * (worker.c) on request over the zygote protocol (protocol.h), so
 * respawning never forks the parent; it reaps them and reports each death;
 * kills go through the zygote too. Workers die with the zygote
 * (PDEATHSIG = SIGKILL) and the zygote with the supervisor thread
 * (PDEATHSIG = SIGTERM: it takes every worker and every process a task
 * started down first), getppid() re-checked for the race. A zygote that
 * dies (or stays stopped) is replaced: its workers die with it, only the
 * tasks they were running fail (recovery.c). The children read only the
 * pool's configuration (config.h), never this parent-side state; a call on
 * the pool from any process but its creator (owner_pid, executor.h) is
 * refused with CF_EFORKED (CF_EDEADLK in one of its own fork-mode workers).
 *
 * Slots. A task lives in a slot of the segment (segment.h) whose word is the
 * future's state word (future.h) while the task is queued or running; the
 * slot table (slots.h) keeps the parent's record of it. Who writes what:
 *   - the parent writes fn/arg and publishes the PENDING word (release),
 *     then pushes a hint; a worker claims the task by CAS (gen, PENDING) ->
 *     (gen, RUNNING, owner = index + 1) and writes its outcome before the
 *     CAS to done;
 *   - a done word whose owner field is 0 was completed by the PARENT
 *     (cancel, deadline, crash, broken pool): its error and crash info live
 *     in the slot table, written under `mu` before the CAS; a done word with
 *     an owner was completed by that worker: its outcome is in the slot (a
 *     larger result in the slot's result area or the worker's result
 *     region) and is untrusted (checked once, when it moves; bad data gives
 *     CF_EPROTO);
 *   - the done word keeps WAITERS and NOTIFY: it is final for the
 *     generation.
 * Once the word is done the outcome MOVES into the future (settle.h,
 * slot_future.c: whoever sees it first — a reader, the supervisor on a
 * notice, a sweep, a death), the future's word moves to its own f->state
 * (future.h: the move), and the slot is freed. So the segment bounds only
 * the tasks queued or running, never the futures a program holds. A slot is
 * reused (gen + 1) only when (a) its word is done, (b) its outcome moved or
 * its future is gone, (c) no worker that the parent failed while it ran the
 * slot (cancel, deadline, kill) is still alive: such a worker may still
 * write into the slot until it is reaped (quarantine).
 *
 * Killing a running task: the parent first CASes its word RUNNING(owner i)
 * -> done(owner 0) under `mu`, then (still under `mu`) queues a KILL of
 * worker i for the zygote (never blocking: forker.c). A worker whose
 * completing CAS fails knows a kill is coming and exits at once instead of
 * taking another task, so the kill can only hit the task the parent
 * already failed.
 *
 * Nothing a worker writes can make the parent wait for ever: the control
 * state (phases, who runs what, flags, counts) is in parent memory; the
 * parent scans the slots for a dead worker's tasks instead of trusting its
 * record; a word of the wrong generation is a scribble and fails that task
 * (CF_EPROTO); a supervisor sweep (every 100 ms while tasks are in flight)
 * finds whatever a lost or scribbled hint hid; shutdown fails what remains
 * once every worker is gone.
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
 *   settle    the parent's work once a word is done: move the outcome into
 *             the future, hand its callbacks over, free the slot (settle.h)
 *   publish   a release store or CAS that makes the writes before it
 *             visible to whoever acquires the word
 *   kick      wake the supervisor (eventfd); "wake" is a futex wake
 *   incarnation  one worker process (a number that is never reused): a
 *             worker index runs a new incarnation after each respawn
 *
 * Lock order: `mu` is a leaf. Under it the pool queues zygote messages (a
 * non-blocking send), wakes futex sleepers, copies an outcome into its
 * future (allocating for a large one) and gives payload pages back
 * (madvise); callbacks always run with `mu` released, and a user callback
 * never on the supervisor thread.
 */
#ifndef CF_SHM_POOL_H
#define CF_SHM_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "executor.h"
#include "mutex.h"
#include "protocol.h"
#include "slots.h"

/* The supervisor's record of one worker index (mu). */
typedef struct cf__pworker {
  pid_t pid;          /* 0 until the zygote reported it */
  uint32_t inc;       /* the incarnation it runs (or ran last) */
  bool alive;         /* spawned and not yet reported dead */
  bool spawning;      /* SPAWN sent, no answer yet */
  unsigned fails;     /* quick deaths or failed forks in a row */
  int64_t spawn_at;   /* > 0: send SPAWN at this time (backoff) */
  int64_t spawned_at; /* when the SPAWN was sent */
} cf__pworker;

/* The callback thread's queue entry: a future whose user callbacks run. */
typedef struct cf__cbjob {
  struct cf__cbjob *next;
  cf_future *f; /* holds a reference */
  cf__cb *list; /* its user callbacks, in order */
} cf__cbjob;

typedef struct cf__pool {
  struct cf_executor base;
  _Atomic uint32_t refs; /* the executor handle + one per future */
  cf__pool_cfg cfg;      /* what the forked children may read */

  cf__mutex mu;
  pthread_cond_t cv; /* slot freed, workers stopped, supervisor up */
  cf__slots slots;
  unsigned free_waiters; /* submitters waiting on cv for a slot or a big region */
  uint32_t reclaim_pos;  /* where cf__pp_reclaim_locked looks next (settle.h) */
  /* mu: the slots in the order they were submitted (a ring of nslots
   * entries: slot index and generation), so that each submit settles the
   * oldest tasks once they are done (settle.h, cf__pp_reclaim_oldest_locked)
   * and a done task's slot frees without a notice; an entry whose slot was
   * settled otherwise (read, cancelled, swept) is skipped. */
  uint64_t *order;
  uint32_t order_head, order_len;
  cf__pworker *w;
  unsigned nalive, nspawning;
  uint32_t inc_seq; /* the last incarnation handed out */
  uint32_t *repush; /* hints to put back that did not fit in the sq */
  size_t nrepush, repush_cap;

  /* the zygote (forker.c), supervisor thread only unless noted */
  pid_t zygote_pid;       /* mu: 0 when there is none */
  int zpidfd;             /* its pidfd, -1: none (then end of file tells) */
  bool forker_up;         /* mu */
  unsigned zfails;        /* zygotes in a row that made no worker or failed to start */
  bool zspawned;          /* mu: the current zygote made a worker */
  int64_t zstart_at;      /* > 0: start a zygote at this time (backoff) */
  int64_t zstopped_since; /* it was seen stopped (SIGSTOP) since then, 0: not */
  cf__zmsg *out;          /* mu: messages the socket did not take yet, in order */
  size_t nout, out_cap;

  /* lifecycle flags (mu) */
  bool shutdown, cancelling, broken;
  bool stopping;   /* stop every worker for good (no respawn, no new zygote) */
  int stop_signal; /* SIGKILL, or SIGTERM (then SIGKILL after the grace) */
  bool term_sent;
  int64_t term_until, exit_until;
  bool exit_sent;
  bool stopped; /* stopping done: no zygote, no worker, for good */
  bool sv_stop, sv_started, destroyed;
  /* Set (cf__pp_doom) once broken or cancelling is: lets pp_submit check
   * without the mutex whether a scan of the slots may have missed its slot. */
  _Atomic bool doomed;
  int sv_error;
  pthread_t sv;
  int64_t next_sweep;
  bool sv_armed; /* mu: the supervisor's poll has a sweep timeout */

  /* the callback thread (callbacks.c) */
  pthread_mutex_t cb_mu;
  pthread_cond_t cb_cv;
  cf__cbjob *cb_head, **cb_tail;
  bool cb_stop;
  bool cb_started;  /* cb_mu: the thread takes jobs */
  bool cb_joinable; /* the thread was created and not yet joined */
  pthread_t cbt;

  _Atomic uint64_t submitted, cancelled, crashed, respawned, expired; /* statistics */
  _Atomic uint64_t notices; /* drained by the supervisor (a statistic for the tests) */
  /* cf_executor_time_tasks: tasks measured, their queue wait and run time
   * (added when a worker's outcome moves into its future: slot_future.c) */
  _Atomic uint64_t timed, queue_wait_ns, run_ns;
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

/* Is the calling thread one of p's own threads (the supervisor or the
 * callback thread), where a waiting shutdown or destroy could never end? */
bool cf__pp_own_thread(const cf__pool *p);

#endif /* CF_SHM_POOL_H */
