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
 * Workers (ctl->nsleep, ctl->wake_seq, ctl->waking; the sleeper is
 * next_hint() in worker.c, after its bounded spin):
 *   sleeper   1. nsleep += 1   2. seq = wake_seq   3. pop the sq once more
 *             (a hint: nsleep -= 1, run it)   4. if waking != 0: waking =
 *             0, nsleep -= 1, back to 1   5. FUTEX_WAIT(wake_seq, seq)
 *             6. waking = 0   7. nsleep -= 1, pop again
 *   producer  1. push a hint onto the sq   2. cf__wake_worker(): if
 *             nsleep != 0 and exchange(waking, 1) was 0, wake_seq += 1 and
 *             FUTEX_WAKE one
 *   A wake_seq bump between the sleeper's steps 2 and 5 makes its
 *   FUTEX_WAIT return at once: no wake-up is lost in that window.
 *   `waking` is the one wake-up in flight: while it is set, producers do
 *   not wake again. Without it every submit made in the time a woken worker
 *   takes to run (tens of us) paid a FUTEX_WAKE syscall (measured: 40 % of
 *   the submits of a stream whose workers park), and the woken worker often
 *   preempted the submitter that woke it.
 *   No lost wake-up: say producer Q skips (it read waking == 1) and let P be
 *   the producer whose exchange wrote that 1; no step 4 or 6 clears it
 *   between P's exchange and Q's read. Each step 4 or 6 is followed by a
 *   pop, so a clear after Q's read is followed by a pop after Q's push,
 *   which finds Q's hint (or another worker took it). Else every clear is
 *   before P's exchange. Take a sleeper W that would sleep for good without
 *   Q's hint: it popped (step 3) before Q's push. Its step 4 came before
 *   P's exchange: from P's exchange on, waking reads 1 until a clear, so a
 *   later step 4 would be a clear after P's exchange. So W read seq (step
 *   2) before P bumped it, and its FUTEX_WAIT returns at once, or is woken
 *   by P's FUTEX_WAKE — or that wakes another sleeper first; whichever
 *   returns clears at step 6 after P's exchange, hence after Q's read, and
 *   pops after.
 *   A worker that dies or is stopped holding the wake-up would keep it: a
 *   death clears waking and wakes again (recovery.c); a stopped worker
 *   holds it until it runs (then a sleeper also looks again on its own
 *   after IDLE_CHECK_NS, worker.c).
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

/* Wake one sleeping worker, if one sleeps and no wake-up is in flight:
 * after a push onto the sq. Any thread of the parent. (nsleep and waking
 * are shared memory: a sleeper also looks again on its own after a while,
 * worker.c.) Every access seq_cst: the Dekker pairs above. The plain load
 * of waking first keeps a stream of submits from writing its line. */
static inline void cf__wake_worker(cf__seg_ctl *ctl) {
  if (atomic_load(&ctl->nsleep) && !atomic_load(&ctl->waking) &&
      !atomic_exchange(&ctl->waking, 1)) {
    atomic_fetch_add(&ctl->wake_seq, 1);
    cf__futex_wake(&ctl->wake_seq, 1, true);
  }
}

/* A worker died: it may have held the wake-up in flight (idle.h DESIGN).
 * Give it up and wake again, as a producer would. The supervisor, mu held. */
static inline void cf__wake_worker_anew(cf__seg_ctl *ctl) {
  atomic_store(&ctl->waking, 0);
  cf__wake_worker(ctl);
}

/* Kick the supervisor out of poll() (its eventfd). Any thread of any
 * process of the pool. */
static inline void cf__sv_kick(int evfd) {
  uint64_t one = 1;
  ssize_t r = write(evfd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is full, the supervisor is awake anyway */
}

#endif /* CF_SHM_IDLE_H */
