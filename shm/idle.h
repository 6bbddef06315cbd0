/*
 * idle.h — how the sleepers of a process pool are woken (internal): idle
 * workers sleep on a futex word of the segment, the supervisor in poll().
 *
 * DESIGN
 * Two store-buffering (Dekker) pairs. In each, a producer publishes work
 * and then looks for a sleeper, and a sleeper announces itself and then
 * looks for work once more before it sleeps. Every access in both is
 * seq_cst, so in the single total order either the producer's look comes
 * after the announcement (it wakes the sleeper) or the sleeper's look comes
 * after the work was published (it does not sleep).
 *
 * Workers (ctl->nsleep, ctl->wake_seq; the sleeper is next_hint() in
 * worker.c, after its bounded spin):
 *   sleeper   1. nsleep += 1   2. seq = wake_seq   3. pop the sq once more
 *             (a hint: nsleep -= 1, run it)   4. FUTEX_WAIT(wake_seq, seq)
 *             5. nsleep -= 1
 *   producer  1. push a hint onto the sq   2. cf__wake_worker(): if
 *             nsleep != 0, wake_seq += 1 and FUTEX_WAKE one
 *   A wake_seq bump between the sleeper's steps 2 and 4 makes its
 *   FUTEX_WAIT return at once: no wake-up is lost in that window.
 *
 * Supervisor (ctl->sv_sleeping, cfg.evfd; the sleeper is the loop of
 * supervisor.c):
 *   sleeper   1. sv_sleeping = 1   2. drain the cq (found notices or an
 *             overflow: poll with timeout 0)   3. poll(zygote socket,
 *             evfd)   4. sv_sleeping = 0
 *   producer  1. push a notice onto the cq (or set cq_overflow)
 *             2. if exchange(sv_sleeping, 0) was 1: cf__sv_kick()
 *   Parent threads that need the supervisor (a new earliest deadline,
 *   destroy) kick it without looking: they are rare.
 */
#ifndef CF_SHM_IDLE_H
#define CF_SHM_IDLE_H

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "segment.h"
#include "sys.h"

/* Wake one sleeping worker, if one sleeps: after a push onto the sq. Any
 * thread of the parent. (nsleep is shared memory: a sleeper also looks
 * again on its own after a while, worker.c.) */
static inline void cf__wake_worker(cf__seg_ctl *ctl) {
  if (atomic_load(&ctl->nsleep)) { /* seq_cst: Dekker with the sleeper (above) */
    atomic_fetch_add(&ctl->wake_seq, 1);
    cf__futex_wake(&ctl->wake_seq, 1, true);
  }
}

/* Kick the supervisor out of poll() (its eventfd). Any thread of any
 * process of the pool. */
static inline void cf__sv_kick(int evfd) {
  uint64_t one = 1;
  ssize_t r = write(evfd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is full, the supervisor is awake anyway */
}

#endif /* CF_SHM_IDLE_H */
