/*
 * cfutures — Python's concurrent.futures for C.
 *
 * One executor API, two implementations: a work-stealing thread pool and a
 * pool of forked worker processes over a shared-memory ring. Moving a program
 * from one to the other changes one line:
 *
 *     cf_thread_pool_new(&opts, &ex);     // or: cf_process_pool_new(&opts, &ex);
 *
 * Conventions
 *   - Fallible calls return 0 or a negative CF_E* code; results come back
 *     through out-parameters. cf_strerror() names every code.
 *   - Timeouts are nanoseconds, relative to the call: 0 polls, a negative
 *     value waits forever.
 *   - Task arguments and results are bytes, copied at submit and at
 *     completion, so the same task runs unchanged in a thread or a process.
 *   - The library never prints and never exits.
 *
 * This header includes only <stddef.h>, <stdint.h> and <stdbool.h> and is
 * safe to include from C and C++.
 */
#ifndef CFUTURES_H
#define CFUTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CF_VERSION_MAJOR 0
#define CF_VERSION_MINOR 1
#define CF_VERSION_PATCH 0

/* ---- Error codes ------------------------------------------------------ */

enum {
  CF_OK = 0,
  CF_EINVAL = -1,      /* invalid argument or handle (NULL, released twice) */
  CF_ENOMEM = -2,      /* out of memory */
  CF_ETIMEDOUT = -3,   /* a wait timed out (the future may still complete) */
  CF_ECANCELLED = -4,  /* the future was cancelled */
  CF_ESHUTDOWN = -5,   /* the executor is shut down */
  CF_EBROKEN = -6,     /* the executor is broken (its initializer failed) */
  CF_ECRASHED = -7,    /* the worker process running the task died */
  CF_E2BIG = -8,       /* argument or result larger than the executor allows */
  CF_ETASK = -9,       /* the task failed: see cf_future_error() */
  CF_EAGAIN = -10,     /* would block (queue full and CF_SUBMIT_NOWAIT): retry */
  CF_EBUSY = -11,      /* the task is running: it cannot be cancelled */
  CF_ERANGE = -12,     /* the output buffer is too small (*len says how big) */
  CF_EDONE = -13,      /* an iteration has no more items */
  CF_EPROTO = -14,     /* a worker wrote corrupt data into the shared segment */
  CF_ESYS = -15,       /* a system call failed: errno tells which */
  CF_EDEADLINE = -16,  /* the task's deadline passed (cf_submit_opts.timeout_ns) */
  CF_ENOTSUP = -17,    /* not supported by this build or this MPI (see cf_mpi_pool_new) */
  CF_ENOTLOADED = -18, /* the task function is in no module the executor's
                          workers have loaded (a library dlopen'ed after a
                          process pool was made; for MPI: not in every rank) */
  CF_EDEADLK = -19,    /* the call could never proceed from where it was made
                          (waiting would be for ever; retrying will not help):
                          a process task submitting to its own pool */
  CF_EFORKED = -20,    /* a process pool (or one of its futures) used from
                          another process than the one that made it: a fork */
};

/* Text for an error code; never NULL, for any int. */
const char *cf_strerror(int code);

/* ---- Handles ------------------------------------------------------------ */

typedef struct cf_executor cf_executor;
typedef struct cf_future cf_future;
typedef struct cf_call cf_call; /* the context of a running task */

/* A task. It reads its argument with cf_call_arg() and produces its result
 * with cf_call_return() or its failure with cf_call_fail(). Returning without
 * either finishes the future with an empty result. */
typedef void (*cf_fn)(cf_call *call);

/* ---- Inside a task ------------------------------------------------------ */

/* The argument bytes (valid until the task returns); *len gets their size. */
const void *cf_call_arg(cf_call *call, size_t *len);

/* Set the result: `len` bytes are copied. Once per call: a second call, or
 * one after cf_call_fail(), gives CF_EINVAL. Larger than the executor's
 * result limit: CF_E2BIG (and the future fails with CF_E2BIG). */
int cf_call_return(cf_call *call, const void *value, size_t len);

/* Fail the task, Python's "raise": the future reports CF_ETASK and
 * cf_future_error() gives `code` and a copy of `message` (may be NULL,
 * truncated to CF_MESSAGE_MAX - 1 bytes). */
#define CF_MESSAGE_MAX 128
int cf_call_fail(cf_call *call, int code, const char *message);

/* True once someone asked this task to stop: its deadline passed, or the
 * future was cancelled while running (cf_future_cancel, cf_scope_cancel,
 * cf_map_free), or the executor is shutting down with
 * CF_SHUTDOWN_CANCEL_FUTURES or CF_SHUTDOWN_KILL (every executor).
 * Cooperative: poll it in long loops. */
bool cf_call_stop_requested(cf_call *call);

/* ---- Options ------------------------------------------------------------ */

typedef int (*cf_init_fn)(void *arg); /* 0 = ok; anything else breaks the pool */

/* Pool options, the same for every executor. Start from zero or from
 * cf_options_init(), then set what you need:
 *
 *     cf_options o = {0};            // or: cf_options o; cf_options_init(&o);
 *     o.workers = 4;
 *     cf_thread_pool_new(&o, &ex);
 *
 * A field left 0 (NULL, false) takes its default; a NULL options pointer
 * means every default. `size` tells which version of this struct the caller
 * built against: fields past it take their defaults (a larger size is read
 * up to the fields this library knows). A zeroed struct (size 0) is read as
 * this first version, so a field added by a later header is read only when
 * size covers it: cf_options_init() sets size = sizeof(cf_options). Values
 * out of range give CF_EINVAL from every pool constructor. */
typedef struct cf_options {
  size_t size;            /* sizeof(cf_options) (cf_options_init), or 0 */
  unsigned workers;       /* 1..255; 0: the CPUs the creating thread may run on */
  const char *name;       /* worker name prefix (0: "cfpool"): workers are named
                             "<prefix>-<i>" in /proc, prefix cut to 10 chars */
  cf_init_fn initializer; /* run once in each worker before any task */
  void *initializer_arg;
  bool pin_cpus;     /* pin worker i to the (i mod n)-th of the n CPUs the
                        creating thread may run on (its affinity mask, read
                        when the pool is created) */
  size_t max_queued; /* bound on queued tasks; 0: unbounded */
  /* process pool only (checked by every pool) */
  unsigned max_tasks_per_worker; /* replace a worker after this many tasks; 0: never */
  size_t max_arg_size;           /* 0: 64 KiB; at most UINT32_MAX; larger
                                    arguments give CF_E2BIG at submit */
  size_t max_result_size;        /* 0: 64 KiB; at most UINT32_MAX */
  size_t ring_capacity;          /* queued tasks in the ring: a power of two in
                                    2..2^24; 0: 1024 */
  size_t max_futures;            /* process tasks in flight (segment slots:
                                    queued, running, or done and not yet
                                    copied into their futures), at most
                                    2^20 - 1; 0: 2 x ring_capacity + 2 x
                                    workers. A done task's outcome moves
                                    into its future and frees the slot, so a
                                    program may hold any number of futures;
                                    with no slot free, submit waits for one
                                    (CF_EAGAIN with CF_SUBMIT_NOWAIT) */
  /* thread pool only */
  unsigned wait_help; /* CF_HELP_*: what a task that waits on a future (or
                         joins a stolen frame) runs meanwhile on its worker */
  /* process pool only (checked by every pool) */
  unsigned start_mode; /* CF_START_*: how worker processes are made */
} cf_options;

/* cf_options.wait_help. A thread-pool task that waits does not block its
 * worker idly: it runs work so that recursive fork-join cannot deadlock. */
enum {
  /* Default. Only the awaited task itself (if nobody started it) and work
   * spawned beneath it (oneTBB's isolation): a task that holds a lock while
   * it waits never finds an unrelated task running on its own stack. */
  CF_HELP_ISOLATED = 0,
  /* Any queued task of the pool (the most parallelism; unrelated work may
   * run on the waiter's stack). */
  CF_HELP_ANY = 1,
  /* Nothing: the worker blocks until the future is done. A task that waits
   * on a child it submitted then needs another free worker to run it. */
  CF_HELP_NONE = 2,
};

/* cf_options.start_mode: what a process worker starts from (the README's
 * "What a worker inherits" lists it per mode). */
enum {
  /* Default: CF_START_EXEC. */
  CF_START_DEFAULT = 0,
  /* Safe in any host. The pool starts a zygote by executing the program's
   * own file (/proc/self/exe) with only the pool's descriptors open; the
   * library turns that process into the zygote before main() runs, and the
   * zygote forks the workers. A worker holds none of the host's locks,
   * descriptors, atexit handlers, stdio buffers or memory: it sees the
   * program as it is when main() starts. Task and initializer functions are
   * found by their module and offset (ASLR does not matter); a non-NULL
   * initializer_arg is refused (CF_EINVAL: a pointer into the parent means
   * nothing there). The program must load cfutures at start (linked in,
   * or libcfutures.so among the libraries it is linked with, directly or
   * not); where it was dlopen()ed later, CF_ENOTSUP: use CF_START_FORK. */
  CF_START_EXEC = 1,
  /* The zygote is fork()ed from the parent when the pool is made: workers
   * see a copy of the parent's memory, descriptors and handlers as they
   * were then — and any lock another thread held at that instant stays
   * held in every worker for ever. For programs that want the parent's
   * state and make their pools before they start threads. */
  CF_START_FORK = 2,
};

/* Fill `o` with the defaults (size = sizeof *o, and the default values
 * written out). */
void cf_options_init(cf_options *o);

/* ---- Executors ---------------------------------------------------------- */

int cf_thread_pool_new(const cf_options *o, cf_executor **out);
/* A process pool belongs to the process that made it: every call on it,
 * on its futures, and on waits, iterators and maps over them, made from
 * another process (a child the program forked later) returns CF_EFORKED
 * (the boolean queries return false) and changes nothing. A process task
 * may make a process pool of its own. */
int cf_process_pool_new(const cf_options *o, cf_executor **out);

/* ---- The MPI executor ---------------------------------------------------
 *
 * The same executor on the ranks of an MPI job: `mpirun -n N ./app`, where
 * rank 0 is the caller and ranks 1..N-1 serve as workers (like
 * `python -m mpi4py.futures`); or, started alone, the pool spawns its
 * workers with MPI_Comm_spawn (Open MPI; Debian's MPICH 4.0.2 cannot).
 *
 *     cf_mpi_pool_new(&opts, &ex);   // instead of cf_process_pool_new(&opts, &ex)
 *
 * Every rank runs the same program and calls cf_mpi_pool_new(). On rank 0 it
 * returns the executor. On a worker rank it NEVER RETURNS: the rank serves
 * tasks (of this pool and of any later pool rank 0 makes) until rank 0 calls
 * MPI_Finalize or exits, then it finalizes MPI and _exit(0)s, so no code of
 * the caller's runs on a worker past pool creation. MPI is initialized with
 * MPI_Init_thread(MPI_THREAD_MULTIPLE) unless the program did it (rank 0
 * needs at least MPI_THREAD_SERIALIZED: its progress thread makes the MPI
 * calls), and finalized at exit if cfutures initialized it.
 *
 * A task function travels as (module, offset) and is checked on arrival; a
 * function in no module loaded at pool creation is refused at submit with
 * CF_ENOTLOADED. cf_options: workers (0: every worker rank; at most the ranks
 * there are), max_arg_size / max_result_size (default 64 KiB), max_queued,
 * initializer (its argument must be NULL or point into the static data of
 * the program: it is translated like a function); the other fields are
 * ignored. Differences from the process pool: a task sent to a rank is
 * RUNNING; cancelling it (or its deadline) cannot kill the rank: the task
 * is asked to stop and cf_future_cancel returns CF_EBUSY; the future then
 * ends CANCELLED if the rank had not started it yet, else the task sees
 * cf_call_stop_requested(). A deadline fails the future with CF_EDEADLINE
 * at once, wherever the task is. A worker
 * rank that dies fails the tasks it held with CF_ECRASHED and breaks the
 * pool (CF_EBROKEN). Built without MPI, cf_mpi_pool_new returns CF_ENOTSUP. */
typedef struct cf_mpi_options {
  size_t size;           /* sizeof(cf_mpi_options); set by cf_mpi_options_init */
  unsigned max_inflight; /* tasks sent to one worker rank and not yet answered;
                            default 1 (no task waits behind a busy one); more
                            hides the network round trip of short tasks */
  bool oversubscribe;    /* spawn mode: allow more ranks than slots (Open MPI) */
} cf_mpi_options;

void cf_mpi_options_init(cf_mpi_options *o);
int cf_mpi_pool_new(const cf_options *o, cf_executor **out);
int cf_mpi_pool_new_ex(const cf_options *o, const cf_mpi_options *mo, cf_executor **out);

typedef struct cf_submit_opts {
  int64_t timeout_ns; /* > 0: deadline, counted from submit; past it the future
                         fails with CF_EDEADLINE (a thread task sees
                         cf_call_stop_requested(); a process task is killed) */
  unsigned flags;     /* CF_SUBMIT_* */
  /* Added in 0.2, read only when flags has CF_SUBMIT_SCOPE (so a caller
   * built against the older, smaller struct is never read past its end):
   * the cancellation scope the future joins (cf_scope_new), or NULL for
   * none. Without CF_SUBMIT_SCOPE the future joins the scope of the
   * thread-pool task that submits it, if any (cf_scope_current). */
  struct cf_scope *scope;
} cf_submit_opts;

#define CF_SUBMIT_NOWAIT 1u /* queue full: return CF_EAGAIN instead of waiting */
#define CF_SUBMIT_SCOPE 2u  /* cf_submit_opts.scope is set (even to NULL) */

/* cf_submit's own errors: CF_EINVAL, CF_ENOMEM, CF_ESHUTDOWN, CF_EBROKEN,
 * CF_E2BIG (argument over max_arg_size), CF_EAGAIN (CF_SUBMIT_NOWAIT and no
 * queue room: retry later), and for a process pool CF_ENOTLOADED (the
 * function is not in the code its workers have) and CF_EDEADLK (called
 * from one of the pool's own tasks, in a worker process: cf_spawn runs
 * inline there). */

/* Submit fn(arg). `arg` is copied (len may be 0, arg may then be NULL).
 * On success *out holds a new future, released with cf_future_release(). */
int cf_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, cf_future **out);
int cf_submit_ex(cf_executor *ex, cf_fn fn, const void *arg, size_t len, const cf_submit_opts *so,
                 cf_future **out);

#define CF_SHUTDOWN_WAIT 1u /* return once every task has finished */
/* Cancel every pending future, and ask the running tasks to stop: their
 * cf_call_stop_requested() turns true (they still run to completion). */
#define CF_SHUTDOWN_CANCEL_FUTURES 2u
/* CF_SHUTDOWN_CANCEL_FUTURES, and a process pool also kills its running
 * tasks (CF_ECANCELLED); a thread pool can only ask them to stop. */
#define CF_SHUTDOWN_KILL 4u
/* Like CF_SHUTDOWN_KILL, but a process pool's workers get SIGTERM first (a
 * task may clean up) and SIGKILL only if still alive after
 * CF_TERMINATE_GRACE_MS; a thread pool: the same as CF_SHUTDOWN_KILL. */
#define CF_SHUTDOWN_TERMINATE 8u
#define CF_TERMINATE_GRACE_MS 1000

/* Stop accepting work: every later cf_submit (from any thread, the
 * executor's own tasks included) returns CF_ESHUTDOWN. Idempotent: later
 * calls may add flags. Called from one of the executor's own tasks, or from
 * a done-callback the executor runs on one of its threads, CF_SHUTDOWN_WAIT
 * is ignored (a worker cannot join itself). Safe from any done-callback: no
 * callback runs under an internal lock. */
int cf_executor_shutdown(cf_executor *ex, unsigned flags);

/* Shut down with CF_SHUTDOWN_WAIT, join the workers and free the executor.
 * Defined while tasks run: they run to completion first, and their futures
 * stay valid until released. NULL is a no-op. Must not be called from one of
 * the executor's own tasks, nor from a done-callback the executor itself
 * runs (CF_EINVAL: the executor is still using itself there). Nor while
 * another thread is still inside a call on `ex` (a submit, a wait on one of
 * its futures does not count: futures outlive their executor): shut down
 * first, let those calls return, then destroy, as with any object freed
 * while in use. */
int cf_executor_destroy(cf_executor *ex);

/* Python's `with ThreadPoolExecutor() as ex:` — leaving the scope shuts the
 * executor down, waits for its work and frees it:
 *
 *     CF_SCOPED_EXECUTOR cf_executor *ex = NULL;
 *     if (cf_thread_pool_new(NULL, &ex) != 0) return 1;
 */
void cf__executor_scope_exit(cf_executor **ex);
#define CF_SCOPED_EXECUTOR __attribute__((cleanup(cf__executor_scope_exit)))

typedef struct cf_stats {
  uint64_t submitted;
  uint64_t completed; /* finished or failed after running */
  uint64_t cancelled;
  uint64_t stolen;    /* tasks taken from another worker's deque */
  uint64_t parks;     /* times a worker went to sleep */
  uint64_t crashed;   /* worker processes that died under a task */
  uint64_t respawned; /* worker processes started after the first ones */
  uint64_t queued;    /* tasks waiting now (all queues) */
  unsigned workers;
  /* Added in 0.2 (cf_stats has no size field: callers rebuild against the
   * header of the library they link, as a static library implies). */
  uint64_t deadline_expired; /* futures failed with CF_EDEADLINE (process
                                pool: by its supervisor, queued or killed) */
  /* Task timing, while cf_executor_time_tasks() has it on (thread and
   * process pools; an MPI pool leaves these 0): */
  uint64_t timed;         /* tasks measured */
  uint64_t queue_wait_ns; /* their total time from submit to start */
  uint64_t run_ns;        /* their total time from start to finish */
} cf_stats;

/* Counters kept per worker and summed now: cheap, not a snapshot. */
int cf_executor_stats(cf_executor *ex, cf_stats *out);

/* ---- Futures ------------------------------------------------------------ */

enum {
  CF_STATE_PENDING = 0,
  CF_STATE_RUNNING = 1,
  CF_STATE_FINISHED = 2, /* the task returned */
  CF_STATE_FAILED = 3,   /* CF_ETASK, CF_ECRASHED, CF_EDEADLINE, CF_EBROKEN ... */
  CF_STATE_CANCELLED = 4,
};

/* Wait up to timeout_ns for the future, then copy its result into out[0..cap)
 * and its size into *len (len may be NULL). With no buffer (out NULL, cap
 * 0) it is a success check: 0 for a future that finished, whatever the
 * size of its result (*len gets it).
 * Returns 0, or: CF_ETIMEDOUT (this wait timed out: the future is not done),
 * CF_EDEADLINE (the task's own deadline passed), CF_ECANCELLED, CF_ETASK,
 * CF_ECRASHED, CF_EBROKEN, CF_E2BIG, CF_EPROTO, CF_ERANGE (cap too small;
 * *len set).
 * Called from inside a thread-pool task, the wait runs other tasks. */
int cf_future_result(cf_future *f, void *out, size_t cap, size_t *len, int64_t timeout_ns);

/* Wait without reading: 0 once done, CF_ETIMEDOUT otherwise. */
int cf_future_wait(cf_future *f, int64_t timeout_ns);

/* Cancel: a pending future becomes cancelled (returns 0) and is done at once
 * for every waiter, as_completed and callback; cancelling it again returns 0.
 * A running thread task cannot be cancelled: its stop flag is set and
 * CF_EBUSY is returned. A running process task has its worker killed (and
 * replaced); the future fails with CF_ECANCELLED and 0 is returned. A future
 * that already finished or failed: CF_EDONE. */
int cf_future_cancel(cf_future *f);

/* One of CF_STATE_*, or CF_EINVAL. */
int cf_future_state(cf_future *f);
bool cf_future_done(cf_future *f);
bool cf_future_running(cf_future *f);
bool cf_future_cancelled(cf_future *f);

/* Why a done future did not succeed: for a failed one, its code (CF_ETASK:
 * the code given to cf_call_fail) and message; for a cancelled one
 * CF_ECANCELLED; for one that finished, "no error" (Python's exception()
 * is None): code 0 and an empty message. 0, or CF_EINVAL if the future is
 * not done. */
int cf_future_error(cf_future *f, int *code, char *message, size_t cap);

typedef struct cf_crash_info {
  int pid;         /* the worker that died */
  int signal;      /* the signal that killed it, or 0 */
  int exit_status; /* its exit status when it exited, or -1 */
} cf_crash_info;

/* For a future that failed with CF_ECRASHED (or a killed process task). */
int cf_future_crash_info(cf_future *f, cf_crash_info *out);

/* fn(f, arg) runs once when f is done, in the thread that completed it (for
 * a process pool: the pool's callback thread, or the thread that cancelled
 * it; for a thread-pool future that its deadline failed: usually the pool's
 * timer thread, so keep it short), or at once in the caller if f is already
 * done. The callback must not release f's last reference. A slow callback
 * on a process pool delays only the callbacks after it: never a deadline, a
 * crash report or a waiter. */
typedef void (*cf_done_fn)(cf_future *f, void *arg);
int cf_future_add_done_callback(cf_future *f, cf_done_fn fn, void *arg);

/* Reference counting. A future may be released before it completes: its task
 * still runs (or stays cancelled) and nothing leaks. Releasing more often
 * than retained gives CF_EINVAL where it can be seen (always in debug
 * builds). */
int cf_future_retain(cf_future *f);
int cf_future_release(cf_future *f);

/* ---- Fork-join frames --------------------------------------------------- */

/* A spawned task that lives in the spawner's own storage instead of a heap
 * future: the cheapest fork-join (like Lace's SPAWN/SYNC or TBB's
 * task_group), for recursive divide and conquer inside a thread pool.
 *
 *     static cf_executor *ex;                // a thread pool
 *     static int64_t fib(int n);
 *     static void fib_task(cf_call *c) {
 *       int64_t r = fib(*(const int *)cf_call_arg(c, NULL));
 *       cf_call_return(c, &r, sizeof r);
 *     }
 *     static int64_t fib(int n) {            // called inside a task of ex
 *       if (n < 2) return n;
 *       cf_frame fr;
 *       int m = n - 1;
 *       int64_t a = 0;
 *       cf_spawn(ex, &fr, fib_task, &m, sizeof m);   // fib(n-1), here or stolen
 *       int64_t b = fib(n - 2);                       // meanwhile
 *       cf_join(&fr, &a, sizeof a, NULL);             // a = fib(n-1)
 *       return a + b;
 *     }
 *
 * Rules
 *   - The frame must outlive its join (a local of the function that joins
 *     it is the intended use). Every successful cf_spawn() is followed by
 *     exactly one cf_join() of that frame, by the thread that spawned it,
 *     and a thread joins its frames in the reverse order of their spawns
 *     (last spawned, first joined). A failed cf_spawn() spawned nothing: do
 *     not join it. Debug builds (CF_DEBUG) check the frame's state and the
 *     joining thread (CF_EINVAL); release builds check the state only.
 *   - Argument bytes are copied into the frame (up to CF_FRAME_INLINE_ARG
 *     bytes). The result (cf_call_return) is copied into the frame when it
 *     fits CF_FRAME_INLINE_RESULT bytes, else into a heap buffer the frame
 *     owns and cf_join() frees: any size works.
 *   - Where it is fast: spawned by a worker of `ex` (a thread pool) with an
 *     argument that fits, the frame is kept by that worker with no
 *     allocation and no atomic operation, and moved to its work-stealing
 *     deque when idle workers ask for work (at the worker's next spawn,
 *     join or wait: like Lace, a task that spawns and then computes for long
 *     without any of those can hold its frames back from idle workers
 *     meanwhile: spawn that computation too). cf_join() takes the task
 *     back and calls it inline unless another worker stole it, in which
 *     case the joiner runs other work (from the thief first) until it is
 *     done. Nothing is ever lost or run twice: a frame not stolen runs in
 *     its join. Inside a process task (in its worker), cf_spawn runs the
 *     task inline into the frame and cf_join hands its outcome over. Anywhere
 *     else (a thread outside the pool, a larger argument) the frame holds an
 *     ordinary future (cf_submit + cf_future_result), with the same
 *     semantics, so the one-line switch between executors still holds.
 *   - No cancel, no deadline, no callbacks: use futures for those. A frame
 *     task sees cf_call_stop_requested() only for a shutdown of a thread
 *     pool with CF_SHUTDOWN_CANCEL_FUTURES (or KILL). A frame is never
 *     cancelled: it belongs to its spawner's running task, so a shutdown
 *     (with or without CF_SHUTDOWN_CANCEL_FUTURES) or a broken pool lets
 *     every spawned frame run (a frame that a cancelling shutdown takes out of a queue runs on
 *     the thread that shuts down). A spawn from a worker of a thread pool
 *     shut down with CF_SHUTDOWN_CANCEL_FUTURES, or broken, fails with
 *     CF_ESHUTDOWN (CF_EBROKEN); after a plain shutdown it still works
 *     (its join runs it).
 *   - cf_stats counts futures: frames that ran on their spawner's thread
 *     are not counted; stolen frames count in `stolen` only. */
#define CF_FRAME_INLINE_ARG 48
#define CF_FRAME_INLINE_RESULT 32

/* 128 bytes, aligned to a cache line (a thief writes into a stolen frame:
 * nothing else shares its lines). On the heap: aligned_alloc(64, ...). */
typedef struct cf_frame {
  uint64_t _opaque[16] __attribute__((aligned(64)));
} cf_frame;

/* Spawn fn(arg) into `fr` (len bytes copied; arg may be NULL when len is 0).
 * 0, or: CF_EINVAL (NULL ex, fr or fn), CF_ENOMEM, CF_ESHUTDOWN, CF_EBROKEN,
 * CF_E2BIG (a process pool's argument limit). */
int cf_spawn(cf_executor *ex, cf_frame *fr, cf_fn fn, const void *arg, size_t len);

/* Wait for the task spawned into `fr` (running other work meanwhile inside a
 * thread pool) and copy its result into out[0..cap), its size into *len
 * (out may be NULL when cap is 0; len may be NULL). The frame is joined
 * whatever the outcome. 0, or: CF_ERANGE (cap too small: *len says how big;
 * the result is dropped), CF_ETASK (the task called cf_call_fail: see
 * cf_frame_error), CF_E2BIG / CF_ENOMEM (its cf_call_return failed),
 * CF_ECANCELLED / CF_EBROKEN (see above), a process pool's errors
 * (CF_ECRASHED ...), CF_EINVAL (not a spawned frame, joined twice, or, in
 * debug builds, joined by another thread than its spawner). */
int cf_join(cf_frame *fr, void *out, size_t cap, size_t *len);

/* After a cf_join() that returned CF_ETASK: *code gets the code the task
 * gave cf_call_fail() (frames keep only the code, not the message). 0, or
 * CF_EINVAL if the frame's join did not fail with CF_ETASK. */
int cf_frame_error(const cf_frame *fr, int *code);

/* ---- Waiting on many ---------------------------------------------------- */

enum {
  CF_FIRST_COMPLETED = 1,
  CF_FIRST_EXCEPTION = 2, /* a future failed or was cancelled, or all done */
  CF_ALL_COMPLETED = 3,
};

/* Wait until `return_when` holds for fs[0..n). done[i] (if done is not NULL)
 * tells whether fs[i] is done. 0 when the condition holds, CF_ETIMEDOUT if
 * not within timeout_ns. NULL entries are CF_EINVAL. */
int cf_wait(cf_future *const *fs, size_t n, int return_when, int64_t timeout_ns, bool *done);

/* Yields each future of fs[0..n) once, as it finishes; a future listed
 * twice is yielded once, under its first index (Python's as_completed works
 * on set(fs)). The total timeout runs from cf_as_completed_new(). The
 * iterator borrows the futures (retains them). */
typedef struct cf_as_completed cf_as_completed;
int cf_as_completed_new(cf_future *const *fs, size_t n, int64_t timeout_ns, cf_as_completed **out);
/* 0 with *f (borrowed, valid while the iterator lives) and *index set;
 * CF_EDONE when every future was yielded; CF_ETIMEDOUT. */
int cf_as_completed_next(cf_as_completed *it, cf_future **f, size_t *index);
void cf_as_completed_free(cf_as_completed *it);

/* ---- map ---------------------------------------------------------------- */

/* A lazy input: set *item and *len to the next item and return 1, or return
 * 0 at the end (or a negative CF_E* code to stop with that error). The item
 * bytes need only stay valid until the next call. */
typedef int (*cf_map_source)(void *arg, const void **item, size_t *len);

typedef struct cf_map_opts {
  size_t window;      /* tasks in flight at most; 0: 2 x workers */
  size_t chunk;       /* items per task; 0 or 1: one item per task */
  int64_t timeout_ns; /* total, from cf_map_new(); negative: none; 0 polls */
} cf_map_opts;

typedef struct cf_map cf_map;

/* Apply fn to each item of `src`, running up to `window` chunks at once and
 * reading the source only as the window allows. */
int cf_map_new(cf_executor *ex, cf_fn fn, cf_map_source src, void *src_arg, const cf_map_opts *o,
               cf_map **out);
/* Same, over `count` items of `item_size` bytes at `base`. */
int cf_map_array(cf_executor *ex, cf_fn fn, const void *base, size_t count, size_t item_size,
                 const cf_map_opts *o, cf_map **out);
/* The next result, in input order: 0 (result copied as for
 * cf_future_result; CF_ERANGE with *len leaves the item to be read again),
 * the item's failure code (CF_ETASK ...: see cf_map_error), CF_ETIMEDOUT
 * (nothing is lost: a later call goes on), the source's negative code once
 * after the items before it, or CF_EDONE. timeout_ns 0 polls. */
int cf_map_next(cf_map *m, void *out, size_t cap, size_t *len);
/* The most recent item that cf_map_next reported as failed: *code is the
 * code given to cf_call_fail (CF_ETASK) or the item's CF_E* error, and a
 * copy of its message. 0, or CF_EINVAL if no item failed yet. */
int cf_map_error(cf_map *m, int *code, char *message, size_t cap);
/* Abandon the map: cancels the tasks still queued, asks the running ones to
 * stop (cf_call_stop_requested; a chunk stops between items), releases
 * them and returns at once, without waiting. A task that ignores the stop
 * request finishes in the background (its result is dropped); nothing
 * leaks. */
void cf_map_free(cf_map *m);

/* ---- Promises ----------------------------------------------------------- */

/* A promise is a future that user code completes (Python's `Future()` and
 * `set_result`, folly's Promise): adapt an I/O completion or another
 * library's callback into a cf_future usable everywhere a pool's future is
 * (cf_future_result, cf_wait, as_completed, callbacks, completion queues,
 * then, when_all). It has no executor and no task: it stays PENDING until
 * one of the calls below (or cf_future_cancel) completes it, once; a later
 * completion returns CF_EDONE and changes nothing. They may race from any
 * threads (exactly one wins) and run the future's callbacks in the calling
 * thread. Waiting on a promise inside a thread-pool task blocks that worker
 * (there is nothing of the pool's beneath it to run).
 *
 * *out gets one handle, released with cf_future_release(); the caller of a
 * set call must hold a handle. The set calls take only futures made by
 * cf_promise_new (CF_EINVAL for any other future). */
int cf_promise_new(cf_future **out);

/* Finish with a copy of value[0..len): 0, CF_EDONE (already done or
 * cancelled), CF_ENOMEM (the future then fails with CF_ENOMEM), CF_EINVAL. */
int cf_promise_set_result(cf_future *p, const void *value, size_t len);

/* Fail as a task's cf_call_fail would: the future reports CF_ETASK and
 * cf_future_error() gives `code` and a copy of `message` (may be NULL). 0,
 * CF_EDONE, CF_EINVAL. Cancel a promise with cf_future_cancel(). */
int cf_promise_set_error(cf_future *p, int code, const char *message);

/* ---- Continuations and combinators -------------------------------------- */

/* How a continuation's fn sees its predecessor (flags of cf_future_then*).
 *   0 (default, CompletableFuture.thenApply): fn runs only if the
 *     predecessor FINISHED, and cf_call_arg() gives its result bytes. A
 *     failed predecessor fails the continuation with the same error (its
 *     CF_E* code; for CF_ETASK also its code and message) and a cancelled
 *     one cancels it, without running fn.
 *   CF_THEN_OUTCOME (CompletableFuture.handle): fn runs whatever the
 *     outcome, and reads it with cf_call_outcome(). The argument is bytes
 *     (an outcome header, then the result bytes), so this works on a
 *     process pool too; it must fit the executor's max_arg_size. */
#define CF_THEN_OUTCOME 1u

/* The continuation's `out` is a new future (one handle) that completes with
 * what fn does (cf_call_return / cf_call_fail), or with the predecessor's
 * failure as above. Cancelling `out` before fn starts means fn never runs
 * (a submitted task is cancelled too); it does not cancel the predecessor.
 *
 * cf_future_then: once f is done, fn is submitted to `ex` (any executor)
 * from the thread that completed f (a worker, a process pool's supervisor,
 * the thread that set a promise) or from the caller if f is done already.
 * A submit from a completing thread never waits: if ex refuses it
 * (CF_ESHUTDOWN, CF_EBROKEN, or CF_EAGAIN from a bounded queue or a
 * process pool out of slots), `out` fails with that code. ex must outlive
 * f's completion. 0, CF_EINVAL (NULL f, ex, fn or out; unknown flags),
 * CF_ENOMEM. */
int cf_future_then(cf_future *f, cf_executor *ex, cf_fn fn, unsigned flags, cf_future **out);

/* The inline flavour, for trivial work: fn runs in the thread that
 * completes f (or in the caller if f is done already), like a done-callback
 * but with a cf_call and a future of its own. It must not block. */
int cf_future_then_inline(cf_future *f, cf_fn fn, unsigned flags, cf_future **out);

/* The predecessor's outcome, inside fn of a CF_THEN_OUTCOME continuation. */
typedef struct cf_outcome {
  int state;                    /* CF_STATE_FINISHED, CF_STATE_FAILED or CF_STATE_CANCELLED */
  int error;                    /* 0 if finished, else what cf_future_result() gave for it */
  int code;                     /* a failure's code (cf_future_error()); 0 if finished */
  char message[CF_MESSAGE_MAX]; /* a failure's message; "" if finished */
} cf_outcome;

/* Decode the argument of a CF_THEN_OUTCOME continuation: *out gets the
 * outcome, *result and *len (each may be NULL) the predecessor's result
 * bytes (valid until the task returns; NULL and 0 unless it finished). 0,
 * or CF_EINVAL if the call's argument is not an outcome. */
int cf_call_outcome(cf_call *call, cf_outcome *out, const void **result, size_t *len);

/* A future that completes once every one of fs[0..n) is done (n == 0: at
 * once). FINISHED (empty result) if every one finished; else it takes the
 * outcome of the lowest-index one that did not (failed: the same error;
 * cancelled: cancelled). The results stay in fs[i]. It holds references on
 * fs until then; cancelling it cancels none of them. 0, CF_EINVAL (NULL
 * fs with n > 0, a NULL entry, NULL out), CF_ENOMEM. */
int cf_when_all(cf_future *const *fs, size_t n, cf_future **out);

/* A future that finishes as soon as one of fs[0..n) is done (n >= 1),
 * whatever that one's outcome: its result is that future's index as a
 * uint64_t. Errors as cf_when_all (n == 0: CF_EINVAL). */
int cf_when_any(cf_future *const *fs, size_t n, cf_future **out);

/* Like cf_future_add_done_callback, but fn(f, arg) runs as a task of `ex`
 * instead of in the completing thread, so a callback that blocks or takes
 * long delays neither a pool's worker nor a process pool's supervisor.
 * `ex` must be a thread pool (its tasks run in this process; CF_EINVAL
 * otherwise); f may be any future. f is kept alive until fn returns, so fn
 * may release the caller's handle. If ex refuses the task (shut down, or a
 * bounded queue full), fn runs in the completing thread instead: it runs
 * exactly once either way. 0, CF_EINVAL, CF_ENOMEM. */
int cf_future_add_done_callback_on(cf_future *f, cf_executor *ex, cf_done_fn fn, void *arg);

/* ---- Completion queues (event loops) ------------------------------------ */

/* A completion source an event loop polls: an eventfd that becomes
 * readable when a future added to the queue completes, and a non-blocking
 * drain that hands out the completed futures, each once, with the tag given
 * when it was added. Futures of any executor and promises mix freely, and
 * completions may come from any thread. Works with epoll, poll/select,
 * libuv (uv_poll_t on the fd) and io_uring (a poll, or a read of the fd:
 * reading the fd yourself is allowed, the drain then finds nothing to
 * read).
 *
 *     cf_completion_queue *q;
 *     cf_completion_queue_new(&q);
 *     // add cf_completion_queue_fd(q) to epoll with EPOLLIN
 *     cf_completion_queue_add(q, f, tag);      // for each future
 *     // when the fd is readable:
 *     cf_completion c[64];
 *     int n = cf_completion_queue_drain(q, c, 64);
 *     for (int i = 0; i < n; i++) { ... c[i].tag ...; cf_future_release(c[i].future); }
 *
 * Cost: a completion writes the eventfd only when the queue goes from
 * empty to not empty (one syscall per batch); a drain reads it once. The
 * fd stays readable while completions are waiting (level-triggered; with
 * EPOLLET drain until it returns fewer than max). Roles: add from any
 * thread; one drain at a time (the loop's thread); free once, when no add
 * or drain runs. */
typedef struct cf_completion_queue cf_completion_queue;

typedef struct cf_completion {
  cf_future *future; /* a handle: release it with cf_future_release() */
  void *tag;
} cf_completion;

/* 0, CF_ENOMEM, CF_ESYS (eventfd failed: errno), CF_EINVAL. */
int cf_completion_queue_new(cf_completion_queue **out);

/* The eventfd (non-blocking, close-on-exec), owned by the queue: poll it,
 * never close it. CF_EINVAL for a NULL queue. */
int cf_completion_queue_fd(cf_completion_queue *q);

/* Deliver f (with `tag`) once it is done (at the next drain if it is done
 * already). The queue takes its own handle on f and hands it to the drain's
 * caller. Adding a future twice delivers it twice. 0, CF_EINVAL, CF_ENOMEM. */
int cf_completion_queue_add(cf_completion_queue *q, cf_future *f, void *tag);

/* Non-blocking: move up to `max` completed entries into items[] and return
 * how many (0: none yet), or CF_EINVAL. Entries come out in completion order
 * as far as one drain can tell. If more than `max` are waiting, the fd stays
 * readable. */
int cf_completion_queue_drain(cf_completion_queue *q, cf_completion *items, size_t max);

/* How many added futures were not yet handed out by a drain. */
size_t cf_completion_queue_pending(cf_completion_queue *q);

/* Free the queue and close its fd. Entries not drained are dropped (their
 * handles released); futures still running are not affected and their
 * registrations are cleaned up when they complete (the fd stays open until
 * then, never written by anyone else). NULL is a no-op. */
void cf_completion_queue_free(cf_completion_queue *q);

/* ---- Task timing -------------------------------------------------------- */

/* Measure each task from now on (on = true) or stop (false): its queue wait
 * (submit to start) and run time (start to finish) add up in cf_stats'
 * timed, queue_wait_ns and run_ns. Off by default: it reads the clock at
 * submit, start and finish of every task (a clock read costs 20-100 ns by
 * machine), and takes a thread pool's submits off their fastest path. A
 * process pool measures in the worker (CLOCK_MONOTONIC is one clock for
 * every process) and counts a task when its outcome reaches its future;
 * a task whose worker died is not counted. An MPI pool does not measure
 * (the sums stay 0: ranks need not share a clock). 0 or CF_EINVAL. */
int cf_executor_time_tasks(cf_executor *ex, bool on);

/* ---- Waiting without helping ------------------------------------------- */

/* cf_future_wait with flags: 0 once done, CF_ETIMEDOUT, CF_EINVAL (a bad
 * future, or a flag that is not CF_WAIT_*). */
int cf_future_wait_ex(cf_future *f, int64_t timeout_ns, unsigned flags);

/* Inside a thread-pool task, block without running any other task on this
 * stack meanwhile, whatever cf_options.wait_help says (for a caller that
 * holds a lock, or must not nest work): CF_HELP_NONE for this one wait. A
 * task that waits so on a child it submitted needs another free worker to
 * run the child. Outside a thread-pool task it changes nothing. */
#define CF_WAIT_NO_HELP 1u

/* ---- Cancellation scopes ------------------------------------------------ */

/* A scope groups futures so that one call cancels them all and everything
 * they spawned, like oneTBB's task_group_context or a structured-concurrency
 * nursery: a service makes one per request, and abandons the request with
 * cf_scope_cancel.
 *
 *     cf_scope *req;
 *     cf_scope_new(NULL, &req);
 *     cf_submit_opts so = {.flags = CF_SUBMIT_SCOPE, .scope = req};
 *     cf_submit_ex(ex, handle_request, &r, sizeof r, &so, &f);
 *     ...                                  // the client went away:
 *     cf_scope_cancel(req);                // f, its children, their children
 *     cf_scope_free(req);
 *
 * Rules
 *   - A future joins a scope at submit (cf_submit_opts.scope with
 *     CF_SUBMIT_SCOPE) and leaves it when it is done: a scope holds only
 *     futures not yet done, whatever it has seen.
 *   - A thread-pool task runs in its future's scope: every cf_submit,
 *     cf_submit_ex without CF_SUBMIT_SCOPE, cf_map and cf_spawn fallback it
 *     makes joins that scope, on any executor (a thread task of a scoped
 *     request that submits to a process pool puts the process task in the
 *     scope too). CF_SUBMIT_SCOPE with a NULL scope submits outside any.
 *     A process task's own submits run in its worker and inherit nothing.
 *     A fork-join frame's task runs in its spawner's scope when its join
 *     runs it, in none when another worker stole it.
 *   - A scope made with a parent is cancelled with it (and born cancelled if
 *     the parent is).
 *   - Cancel asks every member to stop as cf_future_cancel does: a pending
 *     future is cancelled (done at once for everyone), a running thread
 *     task gets its stop flag (cf_call_stop_requested) and stays a member
 *     until it returns, a running process task is killed (CF_ECANCELLED).
 *     Then every child scope, likewise. A later submit into a cancelled
 *     scope (or into a descendant) fails with CF_ECANCELLED; one that races
 *     with the cancel may instead return a future that is cancelled.
 *   - Cancel, free and submit are safe from any thread, from tasks and from
 *     done-callbacks (no callback runs under a scope's lock).
 *   - Cost: a scoped submit takes the scope's mutex and allocates a member
 *     and a callback; submits outside any scope pay nothing for scopes. */
typedef struct cf_scope cf_scope;

/* A new scope, a child of `parent` (NULL: a root). 0, CF_EINVAL (bad
 * parent), CF_ENOMEM. */
int cf_scope_new(cf_scope *parent, cf_scope **out);

/* Cancel the scope, its members and its child scopes (see above). 0 (also
 * when already cancelled) or CF_EINVAL. */
int cf_scope_cancel(cf_scope *s);

/* Was the scope cancelled (itself, or through an ancestor)? */
bool cf_scope_cancelled(const cf_scope *s);

/* Release the handle. The members keep running and stay cancellable
 * through a parent; the scope is freed once its members are done and its
 * children freed. NULL: no-op. */
void cf_scope_free(cf_scope *s);

/* The scope of the thread-pool task running on the calling thread, or NULL
 * (no scope, or not in a task): borrowed, valid while that task runs. A
 * task may poll cf_scope_cancelled(cf_scope_current()) besides its own
 * stop flag. */
cf_scope *cf_scope_current(void);

#ifdef __cplusplus
}
#endif

#endif /* CFUTURES_H */
