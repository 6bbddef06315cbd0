/*
 * forker.h — the parent's side of the zygote: starting one, talking to it
 * without ever blocking, noticing that it died or stays stopped, replacing
 * it, asking it for workers (with backoff) and, at the end, stopping it
 * with every worker (internal).
 *
 * DESIGN
 * Start (cf__forker_start, supervisor thread): a new socketpair, fork the
 * zygote from the supervisor thread (its PDEATHSIG follows that thread), a
 * pidfd for it, then a SPAWN per worker. This is the one place a zygote is
 * made: a start mode that makes it otherwise (exec, a fork server started
 * early) replaces the fork here.
 *
 * Messages (cf__forker_send, any parent thread, mu held) never block: a
 * send the socket does not take goes into an outbox, kept in order and
 * flushed when the socket is writable again (POLLOUT in the supervisor's
 * poll). So a stopped or slow zygote never holds up the pool's lock.
 *
 * Death: the zygote's pidfd becomes readable (or, without pidfd, its
 * socket reaches end of file). The supervisor kills it to be sure, reaps it
 * (waitpid returns only after the kernel sent its children their
 * PDEATHSIG: every worker it had is dead or dying, none runs user code
 * again), closes the socket — nothing is read from a dead zygote — and
 * hands the workers to recovery.c, which fails the tasks they ran. Then,
 * in exec mode, a new zygote starts from the environment, working
 * directory and umask recorded at pool creation (exec.c), as the first one
 * did; in fork mode the pool breaks: the first zygote was the host's copy
 * at creation and no such copy is left, while a new fork would copy the
 * host as it is now (locks its other threads hold, memory written since,
 * libraries unloaded since). A new zygote starts at once, or after a
 * backoff (1 ms doubling to 1 s)
 * when zygotes keep dying before they made a worker; after ZYGOTE_TRIES
 * such in a row the pool is broken. A zygote seen stopped (SIGSTOP) for FORKER_PATIENCE while tasks
 * are in flight is killed and replaced the same way: a stopped zygote
 * would never report the deaths of its workers.
 *
 * Workers: SPAWN(i) hands worker index i a new incarnation; a worker that
 * died before it started (worker.c: rec->started) is respawned with the
 * same backoff, and a failed fork likewise (SPAWN_TRIES in a row with no
 * worker left: broken).
 *
 * Stop (stopping set by a shutdown, supervisor thread): with SIGTERM, every
 * worker is sent SIGTERM and given CF_TERMINATE_GRACE_MS to die; then EXIT
 * (the zygote SIGKILLs and reaps every worker and exits); a zygote that has
 * not exited FORKER_PATIENCE later is SIGKILLed. Once it is reaped the pool
 * is `stopped` for good.
 */
#ifndef CF_SHM_FORKER_H
#define CF_SHM_FORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

/* Supervisor thread, mu not held: start a zygote and ask it for every
 * worker that is not alive: 0 or CF_ESYS. */
int cf__forker_start(cf__pool *p);

/* mu held, any parent thread: send a message to the zygote, or queue it. */
void cf__forker_send(cf__pool *p, int type, int idx, int pid, int arg);
/* mu held: worker idx gets a new incarnation: SPAWN now (at <= now) or at
 * `at` (backoff). */
void cf__forker_spawn_locked(cf__pool *p, unsigned idx, int64_t at);

/* Supervisor thread, mu not held: handle what poll() reported for the
 * zygote's socket and pidfd (messages, writability, death). */
void cf__forker_events(cf__pool *p, short sock_revents, short pidfd_revents);
/* Supervisor thread, mu not held: timers: due spawns, a zygote restart, a
 * stopped zygote, the stop sequence. */
void cf__forker_tick(cf__pool *p, int64_t now);
/* Supervisor thread, mu not held, at each sweep: kill a zygote seen stopped
 * for FORKER_PATIENCE while tasks are in flight (it is then replaced). */
void cf__forker_watch(cf__pool *p, int64_t now);
/* mu held: the earliest of the forker's timers (-1: none). */
int64_t cf__forker_next_timer(cf__pool *p);

#endif /* CF_SHM_FORKER_H */
