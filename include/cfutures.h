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
  CF_EINVAL = -1,     /* invalid argument or handle (NULL, released twice) */
  CF_ENOMEM = -2,     /* out of memory */
  CF_ETIMEDOUT = -3,  /* a wait timed out, or the task's deadline passed */
  CF_ECANCELLED = -4, /* the future was cancelled */
  CF_ESHUTDOWN = -5,  /* the executor is shut down */
  CF_EBROKEN = -6,    /* the executor is broken (its initializer failed) */
  CF_ECRASHED = -7,   /* the worker process running the task died */
  CF_E2BIG = -8,      /* argument or result larger than the executor allows */
  CF_ETASK = -9,      /* the task failed: see cf_future_error() */
  CF_EAGAIN = -10,    /* would block (queue full and CF_SUBMIT_NOWAIT) */
  CF_EBUSY = -11,     /* the task is running: it cannot be cancelled */
  CF_ERANGE = -12,    /* the output buffer is too small (*len says how big) */
  CF_EDONE = -13,     /* an iteration has no more items */
  CF_EPROTO = -14,    /* a worker wrote corrupt data into the shared segment */
  CF_ESYS = -15,      /* a system call failed: errno tells which */
  CF_EFORKED = -16,   /* a process pool (or one of its futures) used from
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
 * future was cancelled while running, or the executor is shutting down with
 * cancel_futures. Cooperative: poll it in long loops. */
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
  size_t max_futures;            /* live process futures (slots), at most
                                    2^20 - 1; 0: 16384. A future holds its slot
                                    until it is done AND released; with none
                                    free, submit waits (CF_EAGAIN with
                                    CF_SUBMIT_NOWAIT) */
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
   * nothing there). The program must link cfutures itself (not only
   * through a shared library), else CF_EINVAL. */
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

typedef struct cf_submit_opts {
  int64_t timeout_ns; /* > 0: deadline, counted from submit; past it the future
                         fails with CF_ETIMEDOUT (a thread task sees
                         cf_call_stop_requested(); a process task is killed) */
  unsigned flags;     /* CF_SUBMIT_* */
} cf_submit_opts;

#define CF_SUBMIT_NOWAIT 1u /* queue full: return CF_EAGAIN instead of waiting */

/* Submit fn(arg). `arg` is copied (len may be 0, arg may then be NULL).
 * On success *out holds a new future, released with cf_future_release(). */
int cf_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, cf_future **out);
int cf_submit_ex(cf_executor *ex, cf_fn fn, const void *arg, size_t len, const cf_submit_opts *so,
                 cf_future **out);

#define CF_SHUTDOWN_WAIT 1u           /* return once every task has finished */
#define CF_SHUTDOWN_CANCEL_FUTURES 2u /* cancel every pending future */
#define CF_SHUTDOWN_KILL                                       \
  4u /* process pool: also kill running tasks (CF_ECANCELLED); \
        thread pool: request stop of running tasks */

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
 * runs (CF_EINVAL: the executor is still using itself there). */
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
} cf_stats;

/* Counters kept per worker and summed now: cheap, not a snapshot. */
int cf_executor_stats(cf_executor *ex, cf_stats *out);

/* ---- Futures ------------------------------------------------------------ */

enum {
  CF_STATE_PENDING = 0,
  CF_STATE_RUNNING = 1,
  CF_STATE_FINISHED = 2, /* the task returned */
  CF_STATE_FAILED = 3,   /* CF_ETASK, CF_ECRASHED, CF_ETIMEDOUT, CF_EBROKEN ... */
  CF_STATE_CANCELLED = 4,
};

/* Wait up to timeout_ns for the future, then copy its result into out[0..cap)
 * and its size into *len (out may be NULL when cap is 0; len may be NULL).
 * Returns 0, or: CF_ETIMEDOUT (the wait timed out — or, if cf_future_done(),
 * the task's deadline passed), CF_ECANCELLED, CF_ETASK, CF_ECRASHED,
 * CF_EBROKEN, CF_E2BIG, CF_EPROTO, CF_ERANGE (cap too small; *len set).
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

/* For a failed future: its code (CF_ETASK: the code given to cf_call_fail)
 * and message. 0, or CF_EINVAL if the future has not failed. */
int cf_future_error(cf_future *f, int *code, char *message, size_t cap);

typedef struct cf_crash_info {
  int pid;         /* the worker that died */
  int signal;      /* the signal that killed it, or 0 */
  int exit_status; /* its exit status when it exited, or -1 */
} cf_crash_info;

/* For a future that failed with CF_ECRASHED (or a killed process task). */
int cf_future_crash_info(cf_future *f, cf_crash_info *out);

/* fn(f, arg) runs once when f is done, in the thread that completed it (for
 * a process pool: the pool's supervisor thread), or at once in the caller if
 * f is already done. The callback must not release f's last reference. */
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
 *     its join. Anywhere else (a thread outside the
 *     pool, a process pool, a larger argument) the frame holds an ordinary
 *     future (cf_submit + cf_future_result), with the same semantics, so the
 *     one-line switch between executors still holds.
 *   - No cancel, no deadline, no callbacks: use futures for those. A frame
 *     task sees cf_call_stop_requested() only for a CF_SHUTDOWN_KILL
 *     shutdown of a thread pool. A frame is never cancelled: it belongs to
 *     its spawner's running task, so a shutdown (with or without
 *     CF_SHUTDOWN_CANCEL_FUTURES) or a broken pool lets every spawned frame
 *     run (a frame that a cancelling shutdown takes out of a queue runs on
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

/* Yields each of fs[0..n) once, as it finishes. The total timeout runs from
 * cf_as_completed_new(). The iterator borrows the futures (retains them). */
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
/* Cancels what is still pending and waits for what runs. */
void cf_map_free(cf_map *m);

#ifdef __cplusplus
}
#endif

#endif /* CFUTURES_H */
