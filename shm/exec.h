/*
 * exec.h — the exec start mode: a zygote made by executing the program's
 * own file (internal).
 *
 * DESIGN
 * Why. A fork of a multi-threaded process keeps every lock another thread
 * held at that instant locked for ever (glibc's tzset and random() locks,
 * an application mutex) and every descriptor open. A process made by exec
 * has none of that: it starts from the program file with fresh libc state,
 * only the descriptors it was given, no atexit handler and no stdio buffer
 * of the host, handlers reset (ignored signals stay ignored).
 *
 * Start (the supervisor thread, cf__exec_zygote):
 *   1. posix_spawn("/proc/self/exe") — glibc spawns with CLONE_VFORK and
 *      runs no atfork handler and no user code in the child — with: the
 *      zygote's end of the socket as fd 3 (CF__EXEC_FD), every other fd
 *      from 3 up closed (0, 1, 2 stay), every signal blocked, a process
 *      group of its own, argv {"cfutures-zygote"}, and the host's
 *      environment plus CF__EXEC_ENV=<parent pid>;
 *   2. send one message on the parent's end: the pool's cf__pool_cfg as
 *      bytes (behind a magic and its size), with the segment's memfd and
 *      the supervisor's eventfd as SCM_RIGHTS.
 * In the new process (a constructor of this file: after the shared
 * libraries' constructors and those of the program's objects linked before
 * the library, before main()):
 *   3. no CF__EXEC_ENV: return (an ordinary start of the program);
 *   4. remove CF__EXEC_ENV from the environment (nothing a task runs sees
 *      it), read the message, map the segment (cf__seg_attach), resolve
 *      the parent's modules (image.h) and translate the initializer;
 *   5. become the zygote (cf__zygote_main): never returns to main().
 * A bad or missing message ends the process (_exit): the parent sees the
 * zygote die. The constructor lives in the object that holds
 * cf__exec_zygote, which cf_process_pool_new reaches, so a static link of
 * any program that makes process pools keeps it.
 *
 * It works only if the library is part of the program file itself: a
 * process pool made from a shared object (cfutures linked into a plugin)
 * would exec a program without the constructor; cf_process_pool_new
 * refuses exec mode there (CF_ENOTSUP; CF_START_FORK still works).
 */
#ifndef CF_SHM_EXEC_H
#define CF_SHM_EXEC_H

#include <sys/types.h>

#include "config.h"

#define CF__EXEC_FD 3 /* the zygote socket in the exec'ed process */
#define CF__EXEC_ENV "CFUTURES_ZYGOTE"

/* Steps 1-2 above, on the supervisor thread: 0 and *pid, or CF_ESYS. The
 * zygote gets the environment, working directory and umask recorded by
 * cf__exec_snapshot, whether it is the first or a replacement. */
int cf__exec_zygote(const cf__pool_cfg *c, pid_t *pid);
/* At pool creation (the creating thread): record into c what a zygote
 * starts from. 0 or CF_ENOMEM. cf__exec_snapshot_free undoes it. */
int cf__exec_snapshot(cf__pool_cfg *c);
void cf__exec_snapshot_free(cf__pool_cfg *c);

#endif /* CF_SHM_EXEC_H */
