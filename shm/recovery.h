/*
 * recovery.h — what the pool does with the slots when its processes die,
 * when it breaks, and when it stops for good (internal).
 *
 * DESIGN
 * A worker's death (its zygote's DIED report) is handled by scanning every
 * slot in use, not by trusting the dead worker's record (a rogue task may
 * have written anything there):
 *   - a word RUNNING with the dead worker as owner fails CF_ECRASHED (pid,
 *     signal or exit status);
 *   - a done word is settled, whoever completed it: a wake-up or a notice
 *     may have died with the worker;
 *   - a scribbled word fails CF_EPROTO;
 *   - slots quarantined by that incarnation are released;
 *   - the hint it was taking, and the slot its record says it was about to
 *     claim if that is still PENDING, are pushed back (duplicates are
 *     dropped by whoever takes them).
 * Then the worker is respawned: at once if it had started (worker.c sets
 * rec->started past its initializer), with backoff if it was killed
 * (SIGKILL) before it started; any other death before start — the
 * initializer crashed or failed, the segment header did not match — breaks
 * the pool (CF_EBROKEN for every pending task and later submit), as
 * Python's BrokenProcessPool does for a failing initializer.
 *
 * The zygote's death: every worker it had is dead (forker.h): the same scan
 * for all of them, and every quarantine is released.
 *
 * Stopping for good: once the workers are gone, every task still not done
 * fails (CF_ECANCELLED when cancelling, CF_ECRASHED for one that was
 * RUNNING, CF_EBROKEN otherwise, CF_EPROTO for a scribbled word): nothing
 * waits on a slot no process will ever complete.
 */
#ifndef CF_SHM_RECOVERY_H
#define CF_SHM_RECOVERY_H

#include <stdbool.h>
#include <sys/types.h>

#include "pool.h"

/* Supervisor, mu not held: worker idx (pid) died with wait status st. */
void cf__pp_on_death(cf__pool *p, unsigned idx, pid_t pid, int st);
/* Supervisor, mu not held: the zygote is reaped; its workers are dead. */
void cf__pp_on_forker_death(cf__pool *p);
/* mu held: mark the pool broken; true if this call did (then call
 * cf__pp_fail_pending with mu released). */
bool cf__pp_break_locked(cf__pool *p);
/* mu not held: fail every PENDING task with err. */
void cf__pp_fail_pending(cf__pool *p, int err);
/* mu not held, the pool stopped for good: fail what is not done, settle
 * and free every slot. */
void cf__pp_fail_remaining(cf__pool *p);

#endif /* CF_SHM_RECOVERY_H */
