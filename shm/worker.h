/*
 * worker.h — the worker process's entry point (internal).
 */
#ifndef CF_SHM_WORKER_H
#define CF_SHM_WORKER_H

#include <signal.h>
#include <sys/types.h>

#include "config.h"

/* Exit statuses of a worker that ends itself before its first task or
 * when it cannot go on (any status is a death the supervisor handles). */
#define CF__WORKER_EXIT_SEGMENT 2 /* the segment header does not match */
#define CF__WORKER_EXIT_INIT 3    /* the initializer failed */
#define CF__WORKER_EXIT_MUTE 4    /* its eventfd was closed or replaced by a task */

/* The worker process body, in a child the zygote just forked: never
 * returns. idx: the worker's index; zygote: the pid of its parent;
 * host_chld: SIGCHLD's disposition as the zygote found it. */
__attribute__((noreturn)) void cf__worker_main(const cf__pool_cfg *c, unsigned idx, pid_t zygote,
                                               const struct sigaction *host_chld);

#endif /* CF_SHM_WORKER_H */
