/*
 * config.h — what a process pool's children may read: the pool's
 * configuration, its segment and its file descriptors (internal).
 *
 * The zygote and the workers get a `const cf__pool_cfg *` and nothing else
 * of the pool: the parent's mutable state (cf__pool, pool.h: slot table,
 * worker table, flags, lock) is a separate type they cannot reach. In fork
 * mode they read the copy of the parent's cfg taken at fork (a snapshot
 * nobody keeps up to date); in exec mode (exec.c) the zygote receives
 * these bytes over the zygote socket and rebuilds what is per process (the
 * mapping, the fds, the initializer's address). Everything here is set
 * before the supervisor thread (and so the zygote) is started, and does not
 * change afterwards, except the zygote socket (sock, zsock): a replacement
 * zygote (supervisor.c) gets a new pair, set before it is forked.
 */
#ifndef CF_SHM_CONFIG_H
#define CF_SHM_CONFIG_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"
#include "image.h"
#include "options.h"
#include "segment.h"
#include "text.h"

typedef struct cf__pool_cfg {
  unsigned start; /* CF_START_EXEC or CF_START_FORK (zygote.h) */
  /* the pool's executor in the parent: in a fork-mode child, the address
   * of its copy (only compared, never read: sys.h cf__worker_ex) */
  const void *owner_ex;
  int parent_pid; /* the pool's own process */
  /* Exec mode, the parent's only (meaningless in a child): what the host
   * was at pool creation, so that a replacement zygote starts as the first
   * one did, not from the host as it is later (exec.c). */
  char **exec_env; /* a copy of environ (without CF__EXEC_ENV), NULL-terminated */
  int exec_cwd;    /* O_PATH fd of the working directory, or -1 */
  int exec_umask;  /* the umask (from /proc/self/status), or -1 */
  unsigned nworkers;
  unsigned max_tasks; /* tasks per worker before it is replaced, 0: no limit */
  size_t max_arg, max_result, max_queued;
  uint32_t nslots;
  char name[CF__NAME_PREFIX_MAX + 1]; /* worker names: name-idx */
  cf_init_fn init;
  void *init_arg;
  bool pin;
  cf__cpumask cpus;   /* pin: the creating thread's CPUs */
  cf__text text;      /* where a task's function may be (fork: the worker's
                         check; both modes: submit's CF_ENOTLOADED) */
  cf__image image;    /* exec: the parent's modules, resolved by the zygote */
  sigset_t host_mask; /* the creating thread's signal mask: the workers' */
  cf__seg seg;        /* the mapping and trusted copies of its layout */
  int evfd;           /* eventfd that kicks the supervisor (idle.h) */
  int sock;           /* the parent's end of the zygote socket, -1: no zygote (the
                         supervisor writes it under mu, the new value before the
                         old fd is closed, for registry.c's children) */
  /* The zygote's end. The zygote uses it; the parent closes its copy once
   * the zygote is forked, storing -1 first, so that a process forked later
   * for another pool (registry.h) never closes a reused fd number. A value
   * >= 0 here was open at the fork. */
  _Atomic int zsock;
} cf__pool_cfg;

#endif /* CF_SHM_CONFIG_H */
