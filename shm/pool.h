/*
 * pool.h — the process pool's parent-side state, shared by process_pool.c
 * (API, futures), supervisor.c, zygote.c and worker.c (internal).
 *
 * DESIGN (the whole process pool; each file adds its own part)
 *
 * Processes. The parent (any threads) submits; one supervisor thread in the
 * parent watches. At creation the supervisor thread forks a ZYGOTE (so the
 * zygote's PR_SET_PDEATHSIG is tied to a thread that lives exactly as long
 * as the pool; the creating thread may exit earlier), and the zygote forks
 * the WORKERS on request over a SOCK_SEQPACKET socketpair, so respawning
 * never forks the multi-threaded parent. Workers die with the zygote and the
 * zygote with the supervisor thread (PDEATHSIG = SIGKILL, then getppid()
 * re-checked for the race). The zygote reaps the workers and reports each
 * death (index, pid, wait status) to the supervisor; kills go through the
 * zygote too, which only signals a child it has not reaped (no pid reuse).
 *
 * Slots. A task lives in a slot of the segment (segment.h) whose word is the
 * future's state word (future.h). The parent-side future points at it
 * (shared = 1). Who writes what:
 *   - the parent writes fn/arg and the PENDING word (release), then pushes a
 *     hint; a worker claims the task by CAS (gen, PENDING) -> (gen, RUNNING,
 *     owner = index + 1) and writes its outcome before the CAS to done;
 *   - a done word whose owner field is 0 was completed by the PARENT (cancel,
 *     deadline, crash, broken pool): its error and crash info live in the
 *     parent-private cf__pslot, written under `mu` before the CAS; a done word
 *     with an owner was completed by that worker: its outcome is in the slot
 *     and is untrusted (checked on every read; bad data gives CF_EPROTO).
 *   - The done word keeps WAITERS and NOTIFY: it is final for the
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

#include "executor.h"
#include "future.h"
#include "options.h"
#include "segment.h"

/* Parent-private per-slot state, guarded by pool->mu. */
typedef struct cf__pslot {
  cf_future *f;       /* the parent future; NULL once destroyed */
  uint32_t gen;       /* generation of the current use */
  uint32_t next_free; /* free list link */
  uint8_t in_use;     /* allocated, not yet freed */
  uint8_t watched;    /* run f's callbacks when it completes */
  uint8_t orphan;     /* f destroyed before done: free when done */
  uint8_t quarantine; /* worker index + 1 that may still write here */
  int32_t err;        /* outcome of a parent-completed word (owner 0) */
  cf_crash_info crash;
  uint64_t use; /* uses of this slot so far: never wraps, unlike gen */
} cf__pslot;

typedef struct cf__pworker {
  pid_t pid;         /* 0 until the zygote reported it */
  bool alive;        /* spawned and not yet reported dead */
  bool spawning;     /* SPAWN sent, no answer yet */
  bool retry;        /* the zygote's fork failed: SPAWN again later */
  unsigned failures; /* fork failures in a row */
} cf__pworker;

typedef struct cf__deadline {
  int64_t when;
  uint64_t use; /* the slot's use it was set for (gen wraps) */
  uint32_t slot, gen;
} cf__deadline;

typedef struct cf__text_range {
  uintptr_t lo, hi;
} cf__text_range;

#define CF__MAX_TEXT_RANGES 128

/* Zygote protocol (fixed-size SOCK_SEQPACKET messages). */
enum {
  CF__Z_SPAWN = 1,   /* parent -> zygote: fork worker idx */
  CF__Z_KILL = 2,    /* parent -> zygote: signal worker idx (pid if != 0) */
  CF__Z_EXIT = 3,    /* parent -> zygote: kill all workers, reap, exit */
  CF__Z_SPAWNED = 4, /* zygote -> parent: worker idx is pid */
  CF__Z_SPAWN_FAILED = 5,
  CF__Z_DIED = 6, /* zygote -> parent: worker idx (pid) died, wait status */
};
typedef struct cf__zmsg {
  int32_t type, idx, pid, arg; /* arg: signal, wait status or errno */
} cf__zmsg;

typedef struct cf__pool {
  struct cf_executor base;
  _Atomic uint32_t refs; /* the executor handle + one per in-use slot */

  /* configuration (immutable after creation; inherited by the children) */
  unsigned nworkers;
  unsigned max_tasks;
  size_t max_arg, max_result, max_queued;
  uint32_t nslots;
  char name[CF__NAME_PREFIX_MAX + 1];
  cf_init_fn init;
  void *init_arg;
  bool pin;
  cf__cpumask cpus; /* pin: the creating thread's CPUs */
  cf__text_range text[CF__MAX_TEXT_RANGES];
  unsigned ntext;

  cf__seg seg;
  int evfd;         /* wakes the supervisor (parent threads, workers) */
  int sock;         /* the parent's end of the zygote socket */
  int zsock;        /* the zygote's end (closed in the parent) */
  pid_t parent_pid; /* the pool's process */
  pid_t zygote_pid;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* slot freed, worker reaped, zygote up */
  cf__pslot *ps;
  uint32_t free_head;
  unsigned free_waiters;
  cf__pworker *w;
  unsigned nalive, nspawning, nretry;
  int64_t retry_at; /* when to send the SPAWNs that failed again */
  cf__deadline *heap;
  size_t nheap, heap_cap;
  uint32_t *repush;
  size_t nrepush, repush_cap;
  bool shutdown, cancelling, broken, sv_stop, sv_started, zygote_dead, destroyed;
  /* Set (cf__pp_doom) once broken or cancelling is: lets pp_submit check
   * without the mutex whether a scan of the slots may have missed its slot. */
  _Atomic bool doomed;
  int sv_error;
  pthread_t sv;

  _Atomic uint64_t submitted, cancelled, crashed, respawned;
} cf__pool;

#define CF__NO_FREE 0xffffffffu

/* ---- fault injection (tests only) ----
 * If set (before the pool is created: the children inherit it), workers
 * call it at each named point of the protocol; a test kills the worker
 * there (e.g. raise(SIGKILL)). */
enum {
  CF__PP_AFTER_POP = 1,      /* hint popped, slot not claimed yet */
  CF__PP_AFTER_CLAIM = 2,    /* RUNNING, task not called yet */
  CF__PP_MID_RESULT = 3,     /* result bytes half written */
  CF__PP_AFTER_COMPLETE = 4, /* done CAS made, waiters not woken yet */
};
extern void (*cf__pp_fault_hook)(int point, uint32_t slot);

/* True in a worker process (and in the zygote). */
extern bool cf__pp_in_child;

/* ---- the pools of this process (process_pool.c) ----
 * A zygote is forked from its pool's supervisor thread and so inherits
 * every other pool's segment mapping and fds; it drops them (so that no
 * segment outlives its pool through another pool's processes). Entries are
 * atomic pointers, read in the child without a lock. */
#define CF__MAX_POOLS 64
extern _Atomic(cf__pool *) cf__pools[CF__MAX_POOLS];
/* In a freshly forked zygote: unmap and close what belongs to other pools. */
void cf__pp_forget_others(cf__pool *self);

/* ---- worker.c ---- */
/* The worker process body: never returns. zygote: the pid of its parent. */
__attribute__((noreturn)) void cf__worker_main(cf__pool *p, unsigned idx, pid_t zygote);
/* Is fn inside an executable segment of the program (or a library)? */
bool cf__pp_fn_ok(const cf__pool *p, uintptr_t fn);
/* Collect the executable ranges (parent, at creation). */
void cf__pp_collect_text(cf__pool *p);

/* ---- zygote.c ---- */
/* The zygote body, in the child of the supervisor thread: never returns. */
__attribute__((noreturn)) void cf__zygote_main(cf__pool *p, pid_t parent);
/* Send one message on the zygote socket: 0 or CF_ESYS. Any parent thread. */
int cf__zsend(int sock, int type, int idx, int pid, int arg);

/* ---- supervisor.c ---- */
void *cf__supervisor_main(void *arg);
/* Wake the supervisor (eventfd). Any parent thread. */
void cf__sv_kick(cf__pool *p);

/* ---- process_pool.c: slot completion by the parent ---- */

/* What to do once `mu` is released after a slot was settled. */
typedef struct cf__settle {
  _Atomic uint32_t *word;
  uint32_t old; /* the word the completing CAS replaced (wake if WAITERS) */
  bool wake;    /* the parent made the transition: wake waiters */
  cf_future *f; /* run its callbacks, then unref (NULL: none) */
  bool freed;   /* a slot was freed: drop a pool reference */
} cf__settle;

/* mu held. Complete slot s (generation gen) from the parent if it is
 * PENDING (any_running: or RUNNING) with state `to` and error `err`, crash
 * info `ci` (may be NULL). A RUNNING slot's worker is killed and the slot
 * quarantined unless `dead` (the worker is already dead). Returns true if
 * this call made the transition; *st says what to do after unlocking. */
/* Called under mu right after setting broken or cancelling, before the
 * scan of the slots that fails or cancels them. The seq_cst fence pairs with
 * the one in pp_submit between publishing a PENDING word and reading
 * `doomed` (Dekker): either that scan sees the PENDING word, or the
 * submitter sees `doomed` and settles its slot itself. */
static inline void cf__pp_doom(cf__pool *p) {
  atomic_store_explicit(&p->doomed, true, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
}

bool cf__pp_fail_locked(cf__pool *p, uint32_t s, uint32_t gen, bool running_too, uint32_t to,
                        int err, const cf_crash_info *ci, bool dead, cf__settle *st);
/* mu held. The slot's word is done (by anyone): collect callbacks to run
 * and free it if orphaned. */
void cf__pp_settle_locked(cf__pool *p, uint32_t s, cf__settle *st);
/* mu held: free slot s if nothing holds it any more; true if freed. */
bool cf__pp_maybe_free_locked(cf__pool *p, uint32_t s);
/* mu released: wake, run callbacks, drop references. */
void cf__pp_settle_finish(cf__pool *p, cf__settle *st);
/* Drop a pool reference; the last one frees the pool. */
void cf__pp_unref(cf__pool *p);

static inline cf__slot *cf__pp_slot(cf__pool *p, uint32_t s) {
  return &p->seg.slots[s];
}

#endif /* CF_SHM_POOL_H */
