/*
 * zygote.h — the zygote process's entry point (internal).
 */
#ifndef CF_SHM_ZYGOTE_H
#define CF_SHM_ZYGOTE_H

#include <sys/types.h>

#include "config.h"

/* The zygote body, in the child the supervisor thread just forked: never
 * returns. parent: the pid of the pool's process. */
__attribute__((noreturn)) void cf__zygote_main(const cf__pool_cfg *c, pid_t parent);

#endif /* CF_SHM_ZYGOTE_H */
