/*
 * help.c — help-while-waiting: what a worker of the pool does while one of
 * its tasks waits on a future or on a stolen frame.
 *
 * DESIGN
 * Joining inside a worker (cf__helper). A worker that waits on a future runs
 * other tasks until it is done: its own deque first; if the future is
 * RUNNING on worker k (owner bits of the state word) it steals only from k
 * (leapfrogging: what k queued is most likely what the awaited task needs,
 * and the stack stays bounded); if it is PENDING it steals anywhere. With
 * nothing to run it spins a little, then blocks on the future for a short
 * time and looks again, so a recursive fork-join never deadlocks. (What
 * help-first scheduling cannot fix: a task that waits on a future which is
 * RUNNING lower on the same worker's own stack, e.g. one passed to it by a
 * task it helped; that wait ends only at its deadline, as in any pool.)
 * The fast path: the awaited task is usually the last one we pushed, so the
 * join pops it back from the bottom of our deque and runs it inline.
 */
#include "scheduler.h"

/* Block on the frame's word until `until` (absolute) or FR_DONE. */
static void frame_block(frame *fr, int64_t until) {
  uint32_t s = atomic_load_explicit(&fr->word, memory_order_relaxed);
  for (;;) {
    if (s & FR_DONE) return;
    if (s & FR_WAITERS) break;
    /* relaxed: the bit only asks frame_publish() to wake us; the futex
     * call re-checks the word, and the caller re-reads it with acquire */
    if (atomic_compare_exchange_weak_explicit(&fr->word, &s, s | FR_WAITERS, memory_order_relaxed,
                                              memory_order_relaxed)) {
      s |= FR_WAITERS;
      break;
    }
  }
  (void)cf__futex_wait(&fr->word, s, until, false);
}

/* What a helping worker waits for: a future, or a frame it spawned that
 * another thread took. */
typedef struct target {
  cf_future *f; /* the future, or NULL */
  frame *fr;    /* the frame, or NULL */
  _Atomic uint32_t *word;
  int64_t task_dl; /* the future's own deadline (thread futures), or 0 */
  bool mine;       /* a thread future of this pool: its owner bits name a worker */
} target;

/* The worker (1-based) whose deque holds what the target's task spawned, or
 * 0 when nobody runs it yet. */
static inline unsigned runner_of(const target *t, uint32_t s) {
  if (t->fr) return s >> FR_THIEF_SHIFT;
  if (t->mine && cf__st_state(s) == CF_STATE_RUNNING) return cf__st_owner(s);
  return 0;
}

/* The one help-while-waiting loop. Until the target is done (0) or the wait's
 * deadline passes (CF_ETIMEDOUT): run our own frames and deque first, then
 * steal from the worker that runs the target (leapfrogging) or, while
 * nobody runs it, from anywhere; with nothing to run, spin HELP_SPIN_NS,
 * then block on the target's word for HELP_BLOCK_NS and look again.
 * `t0`: a task the caller already popped, or NULL. Worker w only. */
static int help_until(worker *w, const target *tg, cf_future *t0, int64_t deadline) {
  pool *p = w->pool;
  cf_future *t = t0;
  int64_t idle_since = 0;
  for (;;) {
    if (t) {
      if (tg->fr && t == frame_tag(tg->fr)) {
        frame_call(tg->fr); /* not stolen after all (joins out of order) */
        return 0;
      }
      run_task(w, t);
      idle_since = 0;
    }
    /* acquire: pairs with the completer's release (the future's result) or
     * with the release in frame_publish() (the frame's) */
    uint32_t s = atomic_load_explicit(tg->word, memory_order_acquire);
    if (tg->fr ? (s & FR_DONE) != 0 : cf__st_done(s)) return 0;
    if (deadline >= 0 || tg->task_dl > 0) {
      /* before running anything: a poll runs nothing, a timed wait does not
       * overrun while there is always work, and a task deadline is failed
       * first (cf_wait expires futures with a wait whose deadline is 0) */
      int64_t now = cf__now_ns();
      if (tg->task_dl > 0 && now >= tg->task_dl) {
        (void)cf__future_block_until(tg->f, now); /* fails it at its deadline */
        t = NULL;
        continue;
      }
      if (deadline >= 0 && now >= deadline) return CF_ETIMEDOUT;
    }
    if (w->pv_n) { /* private frames first: LIFO joins leave none here */
      t = frame_tag(w->pv[--w->pv_n]);
      continue;
    }
    t = cf__deque_pop(&w->dq);
    if (t) continue;
    unsigned k = runner_of(tg, s);
    if (k >= 1 && k <= p->n) {
      if (k - 1 != w->index) t = cf__sched_steal_from(w, &p->w[k - 1]);
    } else {
      t = cf__sched_take_injected(w);
      if (!t) t = cf__sched_steal_any(w);
    }
    if (t) continue;
    int64_t now = cf__now_ns();
    if (idle_since == 0) idle_since = now;
    if (now - idle_since < HELP_SPIN_NS) {
      cf__cpu_relax();
      continue;
    }
    int64_t until = now + HELP_BLOCK_NS;
    if (deadline >= 0 && deadline < until) until = deadline;
    if (tg->fr)
      frame_block(tg->fr, until);
    else
      (void)cf__future_block_until(tg->f, until);
    idle_since = 0;
  }
}

static __attribute__((noinline)) int help_future_slow(worker *w, cf_future *f, int64_t deadline) {
  if (w->pv_n) cf__sched_publish(w); /* a waiting worker holds no frame back from thieves */
  target tg = {
      .f = f,
      .word = f->word,
      .task_dl = f->vt == &cf__local_future_vtbl ? f->deadline : 0,
      .mine = f->executor == &w->pool->base && !f->shared,
  };
  return help_until(w, &tg, NULL, deadline);
}

/* The join fast path: the awaited task is usually the one at the bottom of
 * our own deque (we pushed it last): pop it and run it inline. */
int cf__help_future(cf__helper *h, cf_future *f, int64_t deadline) {
  worker *w = (worker *)((char *)h - offsetof(worker, helper));
  cf_future *t = deadline < 0 ? cf__deque_pop(&w->dq) : NULL;
  if (__builtin_expect(t == f, 1)) {
    /* the awaited future itself (an untagged entry: no frame check) */
    run_future_task(w, t); /* f stays alive: our caller holds a handle */
    /* acquire: pairs with the completer's release (result bytes) */
    if (cf__st_done(atomic_load_explicit(f->word, memory_order_acquire))) return 0;
  } else if (t) {
    run_task(w, t);
    /* acquire: pairs with the completer's release (result bytes) */
    if (cf__st_done(atomic_load_explicit(f->word, memory_order_acquire))) return 0;
  }
  return help_future_slow(w, f, deadline);
}

/* The spawner's join found something else than its frame at the bottom of
 * its deque (`t`: NULL when the frame was stolen): help until it is done. */
__attribute__((noinline)) void cf__help_frame(worker *w, frame *fr, cf_future *t) {
  target tg = {.fr = fr, .word = &fr->word};
  (void)help_until(w, &tg, t, -1);
}
