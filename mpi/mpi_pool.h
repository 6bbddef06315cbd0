/*
 * mpi_pool.h — the MPI executor's state, shared by launch.c (MPI and the
 * job), pool.c (API, futures), progress.c (rank 0's progress and callback
 * threads) and worker.c (the worker ranks) (internal).
 *
 * DESIGN (the whole wing; each file adds its own part)
 *
 * Ranks. Static mode (`mpirun -n N ./app`): every rank calls
 * cf_mpi_pool_new; rank 0 gets the executor, ranks 1..N-1 enter
 * cf__mpi_serve() and never return. All static pools of a job share the
 * worker ranks, one communicator (a dup of MPI_COMM_WORLD) and the job's
 * table of peers; each pool has its own tags (wire.h). Spawn mode (a program
 * started alone): each pool spawns its workers (MPI_Comm_spawn of the
 * program itself, with its arguments) and talks to them over the
 * intercommunicator; a spawned child serves that one pool and exits.
 *
 * Rank 0. User threads never call MPI after the job is set up: submit puts
 * the future on the pool's inbox (a Treiber stack, reversed by the
 * consumer) and wakes the progress thread through an eventfd only if it
 * sleeps. The progress thread makes every MPI call of its pool: OPEN and
 * CLOSE, batches of tasks to workers that have room (max_inflight per
 * worker, least loaded first), results as they arrive (MPI_Improbe), STOP
 * requests, deadlines; it watches the workers' pidfds for deaths. It never
 * runs user code: a completed future with callbacks goes to the pool's
 * callback thread, so a slow callback delays only later callbacks.
 *
 * Futures. A pool future is an ordinary heap future (future.h) with its own
 * vtable, its private state word, and its outcome in the object (res_*,
 * err, task_code, msg), written by the progress thread before the CAS that
 * makes the word done. f->shared = 1 although the word is private memory:
 * it selects the shared futex flavour (which works on private memory) and
 * tells the core that the executor, not the completing CAS, runs the
 * callbacks. Transitions: PENDING -> RUNNING (sent to worker i: owner =
 * i + 1) by the progress thread; PENDING -> CANCELLED by cf_future_cancel
 * (core) or a cancelling shutdown; PENDING -> FAILED (deadline, broken);
 * RUNNING -> FINISHED | FAILED | CANCELLED (the worker dropped it before it
 * started) by the progress thread only, so outcomes never race. The pool
 * holds one internal reference per future until the progress thread is done
 * with it (`live` counts them), and one pool reference per future (refs),
 * so futures outlive cf_executor_destroy.
 *
 * Lock order: pool->mu, then job mu. No callback, wake or MPI call runs
 * under either.
 */
#ifndef CF_MPI_POOL_H
#define CF_MPI_POOL_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "executor.h"
#include "fnref.h"
#include "future.h"
#include "wire.h"

typedef struct cf__mpi_peer {
  int rank;          /* in the pool's communicator */
  int pid;           /* reported by the worker */
  int pidfd;         /* -1 when the worker is on another host */
  _Atomic bool dead; /* its pidfd fired */
} cf__mpi_peer;

enum { CF__MPI_STATIC = 1, CF__MPI_SPAWN = 2 };

typedef struct cf__mpi_pool cf__mpi_pool;

/* The job, one per process (launch.c). */
typedef struct cf__mpi_job {
  pthread_mutex_t mu;
  int mode;      /* 0 until set up */
  bool we_init;  /* cfutures called MPI_Init_thread */
  int level;     /* the thread level MPI granted */
  MPI_Comm comm; /* static: the dup of MPI_COMM_WORLD */
  unsigned nworkers;
  cf__mpi_peer *peers; /* static: worker i is rank i + 1 */
  cf__modtab mods;     /* rank 0's modules (at setup) */
  uint64_t host;
  unsigned next_pool;
  cf__mpi_pool *live[64]; /* pools alive (finalize stops them) */
  unsigned nlive;
  bool finalized;
} cf__mpi_job;

extern cf__mpi_job cf__mpi_the_job;

typedef struct cf__mpi_slot {
  cf_future *f; /* NULL: free */
  uint64_t seq;
} cf__mpi_slot;

typedef struct cf__mpi_send {
  MPI_Request req;
  void *buf; /* freed when done (NULL: none) */
  size_t buf_len;
  cf_future *f; /* a K_ARG sent from f's copy: unref when done */
  int worker;
} cf__mpi_send;

typedef struct cf__mpi_dl {
  int64_t when;
  cf_future *f; /* a reference */
} cf__mpi_dl;

struct cf__mpi_pool {
  struct cf_executor base;
  _Atomic uint32_t refs; /* the handle + one per future */

  /* configuration (immutable once started) */
  unsigned id;
  MPI_Comm comm;
  bool spawned; /* its own workers (spawn mode) */
  unsigned nworkers;
  cf__mpi_peer *peers; /* the job's (static) or its own (spawned) */
  unsigned max_inflight;
  size_t max_arg, max_result, max_queued;
  cf__mpi_ctl open; /* the OPEN message */
  bool oversubscribe;
  const cf__modtab *mods;

  /* submit side */
  _Atomic(cf_future *) inbox;
  _Atomic size_t queued; /* in the inbox or the ready list */
  _Atomic bool sleeping; /* the progress thread is about to sleep */
  int evfd;
  _Atomic bool doomed; /* shutdown or broken: checked without mu */

  pthread_mutex_t mu;
  pthread_cond_t cv; /* live, queued, started, stopped changed */
  bool shutdown, broken, kill_req, closing, started, stopped;
  int start_err;
  unsigned cancel_gen, cancel_done; /* cancelling shutdowns asked / done */
  cf_future **stops;                /* STOP requests (references) */
  size_t nstops, stops_cap;
  _Atomic size_t live; /* futures the progress thread still holds */
  _Atomic unsigned live_waiters, queue_waiters;
  _Atomic bool req;   /* stops, a cancel or closing asked: look under mu */
  bool cancel_sticky; /* progress thread: cancel whatever comes in */
  bool stop_once;     /* pool.c: the threads are (being) stopped */
  pthread_t pt;

  /* progress thread only */
  cf_future *ready_head, *ready_tail;
  cf__mpi_slot *slots; /* nworkers x max_inflight */
  unsigned *busy;      /* per worker */
  bool *gone;          /* per worker: its death was handled */
  uint64_t seq;
  cf__mpi_send *sends;
  size_t nsends, sends_cap;
  cf__mpi_dl *heap;
  size_t nheap, heap_cap;
  unsigned char *rbuf;
  size_t rbuf_cap;
  unsigned char **bbuf; /* per worker batch being built */
  size_t *bbuf_len, *bbuf_cap;
  unsigned *bbuf_count;

  /* the callback thread */
  pthread_t ct;
  pthread_mutex_t cmu;
  pthread_cond_t ccv;
  cf_future *cb_head, *cb_tail;
  bool cb_stop, cb_sleeping;

  _Atomic uint64_t submitted, completed, cancelled, crashed;
};

/* ---- launch.c ---- */
/* Set up MPI and the job. Rank 0: 0 (mode set) or an error. A worker rank
 * never returns. */
int cf__mpi_job_setup(void);
/* The job's host key: boot id ^ pid namespace. */
uint64_t cf__mpi_host_key(void);
/* MPI_Finalize, bounded when `bounded`: if it has not returned within
 * CF__MPI_FINALIZE_BOUND_S, a thread ends the process with `status`
 * (launch.c: why). For the finalizes cfutures itself makes only. */
#define CF__MPI_FINALIZE_BOUND_S 10
void cf__mpi_finalize(int status, bool bounded);
/* Spawn mode: start n workers of this program; fills pool->comm/peers. */
int cf__mpi_spawn(cf__mpi_pool *p);
/* Say HELLO to workers [0, n) of peers over comm and read their WELCOME:
 * pids, pidfds. 0 or CF_EBROKEN. */
int cf__mpi_hello(MPI_Comm comm, cf__mpi_peer *peers, unsigned n, const cf__modtab *mods);
/* Register / unregister a live pool (finalize stops them). */
int cf__mpi_job_add(cf__mpi_pool *p);
void cf__mpi_job_remove(cf__mpi_pool *p);
/* Wait for a request, giving up when the peer dies: 0 or CF_ECRASHED. */
int cf__mpi_wait(MPI_Request *req, const cf__mpi_peer *peer, MPI_Status *st);
bool cf__mpi_peer_dead(cf__mpi_peer *peer);
/* A pidfd for a process of this host, or -1. */
int cf__mpi_pidfd(int pid);

/* ---- worker.c ---- */
/* The worker rank's body: serves rank `parent` of comm; never returns. */
__attribute__((noreturn)) void cf__mpi_serve(MPI_Comm comm, int parent, bool spawned);

/* ---- progress.c ---- */
void *cf__mpi_progress_main(void *arg);
void *cf__mpi_callback_main(void *arg);
/* Wake the progress thread if it sleeps. Any thread. */
void cf__mpi_kick(cf__mpi_pool *p);
/* Complete f (progress thread): CAS from a state in `from_mask` (bit per
 * state) to `to`; wake waiters; callbacks to the callback thread. */
bool cf__mpi_settle(cf__mpi_pool *p, cf_future *f, unsigned from_mask, uint32_t to);

/* ---- pool.c ---- */
extern const cf__future_vtbl cf__mpi_future_vtbl;
void cf__mpi_pool_unref(cf__mpi_pool *p);

#endif /* CF_MPI_POOL_H */
