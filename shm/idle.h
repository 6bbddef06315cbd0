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
 * worker.c, after its bounded spin). wake_seq's low bit says that a sleeper
 * waits on its current value (an event count with a waiter flag, as
 * ck_ec's):
 *   sleeper   1. nsleep += 1   2. seq = wake_seq   3. pop the sq once more
 *             4. set the low bit: CAS seq -> seq | 1 (the value it now
 *             holds, if another sleeper set it; anything else: a producer
 *             woke since step 2: nsleep -= 1, look again)   5. pop once
 *             more   (a hint at 3 or 5: nsleep -= 1, run it)
 *             6. FUTEX_WAIT(wake_seq, seq | 1)   7. nsleep -= 1
 *   producer  1. push a hint onto the sq   2. cf__wake_worker(): if nsleep
 *             != 0 and wake_seq has the low bit, CAS it to the next even
 *             value and, if that CAS won, FUTEX_WAKE one
 *   A producer wakes only a sleeper that announced itself since the last
 *   wake-up: without the bit, every submit made in the time a woken worker
 *   takes to run (tens of us) paid a FUTEX_WAKE syscall (measured: 40 % of
 *   the submits of a stream whose workers park), and the woken worker often
 *   preempted the submitter that woke it.
 *   No lost wake-up: say producer Q pushed and saw nsleep != 0. If Q read
 *   the bit, Q's CAS won (then Q wakes a sleeper, which runs after Q's
 *   push) or another producer's won after Q's read (it wakes one after
 *   that, after Q's push too). If Q read no bit, a sleeper W that sleeps
 *   without Q's hint set its bit (step 4) after Q's read (else Q would have
 *   read it, or W's CAS would have failed on a newer value), so W's step 5
 *   comes after Q's push and finds the hint (or another worker took it).
 *   A sleeper that found the bit set at step 2 waits on a value that a
 *   producer changed before Q's read: its FUTEX_WAIT returns at once, or
 *   that producer woke another sleeper, which looks again and is in the
 *   same place. If Q read nsleep == 0, every sleeper's step 3 comes after
 *   Q's push (Dekker on nsleep).
 *   A wake-up clears the bit, and a sleeper already in FUTEX_WAIT cannot
 *   set it again: with two workers asleep, once the first is woken the
 *   second is out of the producers' reach until it looks again. A task
 *   queued while the first runs a long one would wait for it (or for the
 *   sleeper's periodic look, a second). The supervisor's sweep (every
 *   100 ms while a slot is in use) therefore wakes one sleeper when it
 *   finds a PENDING slot (supervisor.c): the wait is bounded by that, at no
 *   cost per task. (A woken worker setting the bit again for the others
 *   made every round trip wake the second worker: 3.1 -> 5.8 us.)
 *   A worker woken but dead or stopped before it runs leaves the others
 *   asleep until a sleeper sets the bit again: a death bumps the word and
 *   wakes one (cf__wake_worker_anew, recovery.c); a stopped worker leaves
 *   it to the others' periodic look (IDLE_CHECK_NS, worker.c) or until it
 *   runs again.
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

/* Wake one sleeping worker, if one announced itself since the last wake-up
 * (the low bit of wake_seq): after a push onto the sq. Any thread of the
 * parent. (nsleep and wake_seq are shared memory: a sleeper also looks
 * again on its own after a while, worker.c.) Every access seq_cst: the
 * Dekker pairs above. Without the bit, only loads: a stream of submits
 * writes no shared line here. */
static inline void cf__wake_worker(cf__seg_ctl *ctl) {
  if (!atomic_load(&ctl->nsleep)) return;
  uint32_t w = atomic_load(&ctl->wake_seq);
  if ((w & 1u) && atomic_compare_exchange_strong(&ctl->wake_seq, &w, w + 1))
    cf__futex_wake(&ctl->wake_seq, 1, true);
}

/* A worker died: it may have been the one a producer woke, before it ran
 * (idle.h DESIGN). Change the word (keeping its bit: a sleeper that set it
 * still waits) and wake one. The supervisor, mu held. */
static inline void cf__wake_worker_anew(cf__seg_ctl *ctl) {
  atomic_fetch_add(&ctl->wake_seq, 2);
  cf__futex_wake(&ctl->wake_seq, 1, true);
}

/* Kick the supervisor out of poll() (its eventfd). Any thread of any
 * process of the pool. */
static inline void cf__sv_kick(int evfd) {
  uint64_t one = 1;
  ssize_t r = write(evfd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is full, the supervisor is awake anyway */
}

#endif /* CF_SHM_IDLE_H */
