/*
 * zygote.h — starting the zygote process, and its body (internal).
 */
#ifndef CF_SHM_ZYGOTE_H
#define CF_SHM_ZYGOTE_H

#include <sys/types.h>

#include "config.h"

/* On the pool's supervisor thread (its PR_SET_PDEATHSIG parent): start the
 * zygote of c the way c->start says, CF_START_FORK (fork, then
 * cf__zygote_main in the child) or CF_START_EXEC (exec.c). 0 and *pid, or
 * CF_ESYS. The zygote's end of the socket (c->zsock) is then the caller's
 * to close. */
int cf__zygote_start(cf__pool_cfg *c, pid_t *pid);

/* The zygote body, in the process cf__zygote_start made (a fork of the
 * parent, or an exec'ed program once it received c): never returns.
 * parent: the pid of the pool's process. */
__attribute__((noreturn)) void cf__zygote_main(const cf__pool_cfg *c, pid_t parent);

#endif /* CF_SHM_ZYGOTE_H */
