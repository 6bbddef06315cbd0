/*
 * options.h — pool options (internal): read once when a pool is created, the
 * same way for every executor, and applied in each worker as it starts.
 *
 * DESIGN
 * Loading (cf__options_load, in the creating thread). NULL means every
 * default. Otherwise the caller's struct is read up to its `size` (a struct
 * from an older header is smaller: the fields past its size take their
 * defaults; a larger one is read up to ours); size 0 (a zeroed struct) is
 * read as the first version of the struct (CF__OPTIONS_SIZE_V0). A field
 * that is 0 takes its default, so `cf_options o = {0};` and
 * cf_options_init() mean the same. Values out of range give CF_EINVAL, with
 * the same rules for every pool (a thread pool also refuses a bad
 * ring_capacity, which only a process pool uses). The loaded options own
 * copies of what they keep (the name prefix), and the CPU mask of the
 * creating thread when pin_cpus is set: a worker may start long after the
 * call (a process worker respawned), and the caller's mask may change.
 *
 * Applying (cf__worker_pin_self, cf__worker_name_self, in the worker).
 * Worker i runs on the (i mod n)-th of the n CPUs of that mask, and is named
 * "<prefix>-<i>". Both act on the calling thread: a thread worker, or the
 * only thread of a process worker (sched_setaffinity(0) and PR_SET_NAME are
 * per thread, and what pthread_setaffinity_np / pthread_setname_np do for
 * the calling thread).
 */
#ifndef CF_RUNTIME_OPTIONS_H
#define CF_RUNTIME_OPTIONS_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfutures.h"
#include "future.h"

/* The defaults (cf_options_init writes them; a 0 field means them). */
#define CF__DEFAULT_NAME "cfpool"
#define CF__DEFAULT_MAX_ARG ((size_t)64 * 1024)
#define CF__DEFAULT_MAX_RESULT ((size_t)64 * 1024)
#define CF__DEFAULT_RING 1024
#define CF__DEFAULT_MAX_FUTURES 0 /* the process pool derives it (process_pool.c) */

/* The limits (CF_EINVAL past them). workers: CF__MAX_WORKERS (future.h). */
#define CF__MAX_RING ((size_t)1 << 24)
#define CF__MAX_FUTURES (((size_t)1 << 20) - 1)
#define CF__MAX_ARG_RESULT ((size_t)UINT32_MAX)

/* The bytes of cf_options as the first header defined it: what a zeroed
 * struct (size 0) is read as. Fields added later go after it. */
#define CF__OPTIONS_SIZE_V0 (offsetof(cf_options, max_futures) + sizeof(size_t))

/* A worker's name: the comm limit is 15 characters; "-<i>" takes at most
 * four (i < CF__MAX_WORKERS), so the prefix keeps at most 10. */
#define CF__NAME_PREFIX_MAX 10
#define CF__NAME_SIZE 16

typedef struct cf__cpumask {
  cpu_set_t set;
  unsigned count; /* CPUs in set; 0: not read (pin_cpus off) or unknown */
} cf__cpumask;

/* What a pool keeps of the options: every field resolved (no 0 left that
 * means "default"). */
typedef struct cf__options {
  unsigned workers;                   /* 1..CF__MAX_WORKERS */
  char name[CF__NAME_PREFIX_MAX + 1]; /* the worker name prefix */
  cf_init_fn initializer;             /* may be NULL */
  void *initializer_arg;
  bool pin_cpus;
  cf__cpumask cpus;                     /* pin_cpus: the creating thread's CPUs */
  size_t max_queued;                    /* 0: unbounded */
  unsigned max_tasks_per_worker;        /* 0: never recycle */
  size_t max_arg_size, max_result_size; /* <= CF__MAX_ARG_RESULT */
  size_t ring_capacity;                 /* a power of two in 2..CF__MAX_RING */
  size_t max_futures;                   /* 0..CF__MAX_FUTURES; 0: the pool's default */
  unsigned wait_help;                   /* CF_HELP_* */
  unsigned start_mode;                  /* CF_START_EXEC or CF_START_FORK */
} cf__options;

/* The creating thread, at pool creation: load `user` (may be NULL) into
 * *out. 0 or CF_EINVAL. */
int cf__options_load(const cf_options *user, cf__options *out);

/* The number of CPUs the calling thread may run on (at least 1, at most
 * CF__MAX_WORKERS): the default worker count. */
unsigned cf__online_cpus(void);

/* In worker i, on its own thread: pin it to the (i mod count)-th CPU of
 * `cpus` (nothing if count is 0). Best effort: a refused sched_setaffinity
 * leaves the worker unpinned. */
void cf__worker_pin_self(const cf__cpumask *cpus, unsigned i);

/* The name of worker i, "<prefix>-<i>", into out[CF__NAME_SIZE]; `prefix` is
 * a loaded one (cf__options.name). */
void cf__worker_name(const char *prefix, unsigned i, char *out);
/* In worker i, on its own thread: give the thread that name (best effort). */
void cf__worker_name_self(const char *prefix, unsigned i);

#endif /* CF_RUNTIME_OPTIONS_H */
