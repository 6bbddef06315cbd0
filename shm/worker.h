/*
 * worker.h — the worker process's entry point (internal).
 */
#ifndef CF_SHM_WORKER_H
#define CF_SHM_WORKER_H

#include <sys/types.h>

#include "config.h"

/* The worker process body, in a child the zygote just forked: never
 * returns. idx: the worker's index; zygote: the pid of its parent. */
__attribute__((noreturn)) void cf__worker_main(const cf__pool_cfg *c, unsigned idx, pid_t zygote);

#endif /* CF_SHM_WORKER_H */
