/*
 * help.c — help-while-waiting: what a worker of the pool does while one of
 * its tasks waits on a future or on a stolen frame.
 *
 * DESIGN
 * A worker that waits does not just block: it runs the awaited task itself
 * if nobody has started it, and otherwise work spawned beneath it, so that
 * recursive fork-join never deadlocks and never idles a worker. What it may
 * run is the pool's help policy (cf_options.wait_help):
 *   - CF_HELP_ISOLATED (default; oneTBB's isolation, Lace's leapfrogging):
 *     only the awaited task and work spawned beneath it. A task that holds
 *     a lock and waits never finds an unrelated task (that may take the
 *     same lock) running on its own stack. Where that work lies: a runner
 *     notes the bottom of its deque when it starts a task (the future's tag
 *     in ext[0], a stolen frame's in its word); everything the task and
 *     its helpers push sits at or above that index on the runner's deque,
 *     since only the owner pushes there. So the waiter takes from the
 *     runner's deque (a steal, or a pop when the runner is itself lower on
 *     the stack) only entries at or above the note. A PENDING future of
 *     this pool is run by the waiter at once wherever it is queued (its
 *     queue entry is skipped later: the claim CAS decides who runs it). A
 *     frame of ours not yet stolen is found by popping our own deque, the
 *     entries above it held aside and pushed back.
 *   - CF_HELP_ANY: the first wave's policy: its own deque first, then the
 *     runner's deque, then anywhere while nobody runs it.
 *   - CF_HELP_NONE: block, run nothing.
 * A future of another executor (a process pool, another thread pool) has
 * nothing beneath it here: the wait blocks. With nothing to run the waiter
 * spins HELP_SPIN_NS, then blocks on the awaited word for HELP_BLOCK_NS and
 * looks again. (What no helping can fix: a task that waits on a future
 * which is RUNNING lower on its own worker's stack; that wait ends only at
 * its deadline, as in any pool.) The fast path: the awaited task is usually
 * the last one we pushed, so the join pops it back from the bottom of our
 * deque and runs it inline.
 */
#include <string.h>

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
 * is gone from the bottom of its deque. */
typedef struct target {
  cf_future *f; /* the future, or NULL */
  frame *fr;    /* the frame, or NULL */
  _Atomic uint32_t *word;
  int64_t task_dl;       /* the future's own deadline (thread futures), or 0 */
  bool mine;             /* a thread future of this pool */
  cf_future *const *set; /* a wait on several: f is the waiter's event, and */
  size_t n;              /* the work allowed is what set[0..n) needs */
} target;

#define HOLD_MAX 32 /* entries held aside while looking for our own frame */

/* The worker (1-based) that runs the target, and where the target's
 * spawned work starts on its deque (*base, *bits: see cf__deque_at_or_above;
 * 0 bits: not known yet). 0 while nobody runs it. */
static inline unsigned runner_of(const target *t, uint32_t s, uint64_t *base, unsigned *bits) {
  *bits = 0;
  if (t->fr) {
    unsigned k = (s >> FR_THIEF_SHIFT) & FR_THIEF_MASK;
    *base = s >> FR_BASE_SHIFT;
    *bits = 32 - FR_BASE_SHIFT;
    return k;
  }
  if (!t->mine || cf__st_state(s) != CF_STATE_RUNNING) return 0;
  /* acquire: pairs with the release store of the tag in
   * cf__future_run_tagged(), made once its runner owned the task */
  uint64_t tag = __atomic_load_n(&t->f->ext[0], __ATOMIC_ACQUIRE);
  if (tag) {
    *base = tag - 1;
    *bits = 64;
  }
  return cf__st_owner(s);
}

/* Run a PENDING future of this pool that we wait on, out of whatever queue
 * holds it. The queue keeps its entry and its reference: whoever takes the
 * entry later finds the future no longer PENDING and only drops that
 * reference. */
static void run_awaited(worker *w, cf_future *f) {
  cf__future_ref(f); /* the reference cf__future_run drops */
  int r = run_here(w, f);
  if (r == 1) stat_inc(&w->st.completed);
}

/* Our own frame, not stolen: take it from our private frames, or pop our
 * deque down to it, holding the entries above it aside, run it, and push the
 * held entries back. False when it is
 * not there (a thief took it; its word will say so) or too deep. */
static bool run_own_frame(worker *w, frame *fr) {
  for (unsigned i = w->pv_n; i-- > 0;) { /* still private (a join out of LIFO order) */
    if (w->pv[i] == fr) {
      memmove(w->pv + i, w->pv + i + 1, (w->pv_n - i - 1) * sizeof *w->pv);
      w->pv_n--;
      frame_call(fr);
      return true;
    }
  }
  cf_future *hold[HOLD_MAX];
  unsigned n = 0;
  bool found = false;
  while (n < HOLD_MAX) {
    cf_future *e = cf__deque_pop(&w->dq);
    if (!e) break;
    if (e == frame_tag(fr)) {
      found = true;
      break;
    }
    hold[n++] = e;
  }
  /* Deeper than HOLD_MAX entries (futures submitted between the spawn and
   * the join): the deepest one held runs here instead (the CF_HELP_ANY
   * fallback), so a one-worker pool still reaches the frame. */
  cf_future *run = !found && n == HOLD_MAX ? hold[--n] : NULL;
  while (n > 0) (void)cf__deque_push(&w->dq, hold[--n]); /* room: they came from there */
  if (found) frame_call(fr);
  if (run) run_task(w, run);
  return found;
}

static cf_future *next_work(worker *w, const target *tg, uint32_t s, bool *ran);

/* A wait on several futures: what any of them allows. */
static cf_future *next_work_set(worker *w, const target *tg, bool *ran) {
  *ran = false;
  for (size_t i = 0; i < tg->n; i++) {
    cf_future *f = tg->set[i];
    if (!f) continue;
    /* acquire: as in help_until() (and through cf__future_load: a process
     * future's word moves) */
    uint32_t s = cf__future_load(f);
    if (cf__st_done(s)) continue;
    target one = {.f = f, .word = f->word, .mine = f->executor == &w->pool->base && !f->shared};
    if (!one.mine) continue;
    cf_future *t = next_work(w, &one, s, ran);
    if (t || *ran) return t;
  }
  return NULL;
}

/* One piece of work the policy allows, or NULL. */
static cf_future *next_work(worker *w, const target *tg, uint32_t s, bool *ran) {
  pool *p = w->pool;
  if (tg->set && p->help != CF_HELP_ANY) return next_work_set(w, tg, ran);
  uint64_t base = 0;
  unsigned bits;
  unsigned k = runner_of(tg, s, &base, &bits);
  *ran = false;
  if (p->help == CF_HELP_ANY) {
    if (w->pv_n) return frame_tag(w->pv[--w->pv_n]); /* LIFO joins leave none here */
    cf_future *t = cf__deque_pop(&w->dq);
    if (t) return t;
    if (k >= 1 && k <= p->n)
      return k - 1 != w->index ? cf__sched_steal_from(w, &p->w[k - 1]) : NULL;
    t = cf__sched_take_injected(w);
    return t ? t : cf__sched_steal_any(w);
  }
  if (tg->fr) {
    if (k == 0) { /* not stolen (or being stolen right now) */
      *ran = run_own_frame(w, tg->fr);
      return NULL;
    }
  } else if (tg->mine && cf__st_state(s) == CF_STATE_PENDING) {
    run_awaited(w, tg->f);
    *ran = true;
    return NULL;
  }
  if (k < 1 || k > p->n || bits == 0) return NULL;
  if (k - 1 == w->index) return cf__deque_pop_above(&w->dq, base, bits);
  worker *v = &p->w[k - 1];
  for (int i = 0; i < STEAL_RETRIES; i++) {
    cf_future *t = cf__deque_steal_above(&v->dq, base, bits);
    if (t != CF__DEQUE_ABORT) {
      if (t) stat_inc(&w->st.stolen);
      return t;
    }
    cf__cpu_relax();
  }
  return NULL;
}

/* The one help-while-waiting loop: until the target is done (0) or the
 * wait's deadline passes (CF_ETIMEDOUT), run what the policy allows (see
 * DESIGN); with nothing to run, spin HELP_SPIN_NS, then block on the
 * target's word for HELP_BLOCK_NS and look again. `t0`: a task the caller
 * already popped, or NULL. Worker w only. */
static int help_until(worker *w, const target *tg, cf_future *t0, int64_t deadline) {
  cf_future *t = t0;
  int64_t idle_since = 0;
  bool no_help = w->pool->help == CF_HELP_NONE ||
                 (!tg->fr && !tg->set && !tg->mine && w->pool->help != CF_HELP_ANY);
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
     * with the release in frame_publish() (the frame's); a future's word
     * through cf__future_load, since a process future's word moves */
    uint32_t s =
        tg->fr ? atomic_load_explicit(tg->word, memory_order_acquire) : cf__future_load(tg->f);
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
    bool ran = false;
    t = no_help ? NULL : next_work(w, tg, s, &ran);
    if (t) continue;
    if (ran) {
      if (tg->fr) return 0; /* our frame ran here */
      idle_since = 0;
      continue;
    }
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
  if (w->pv_n) {
    /* a waiting worker holds no frame back from thieves (park.h, site 4) */
    cf__sched_publish(w);
    cf__park_notify_after_push(&w->pool->park);
  }
  target tg = {
      .f = f,
      .word = f->word,
      .task_dl = f->vt == &cf__local_future_vtbl ? f->deadline : 0,
      .mine = f->executor == &w->pool->base && !f->shared,
  };
  return help_until(w, &tg, NULL, deadline);
}

/* The join fast path: the awaited task is usually the one at the bottom of
 * our own deque (we pushed it last): pop it and run it inline. Anything
 * else popped goes back (isolated) or runs (CF_HELP_ANY). */
int cf__help_future(cf__helper *h, cf_future *f, int64_t deadline) {
  worker *w = (worker *)((char *)h - offsetof(worker, helper));
  cf_future *t = deadline < 0 && w->pool->help != CF_HELP_NONE ? cf__deque_pop(&w->dq) : NULL;
  if (__builtin_expect(t == f, 1)) {
    /* the awaited future itself (an untagged entry: no frame check) */
    run_future_task(w, t); /* f stays alive: our caller holds a handle */
    /* acquire: pairs with the completer's release (result bytes) */
    if (cf__st_done(atomic_load_explicit(f->word, memory_order_acquire))) return 0;
  } else if (t) {
    if (w->pool->help == CF_HELP_ANY) {
      run_task(w, t);
      /* acquire: pairs with the completer's release (result bytes); f may
       * be another pool's, a process future whose word moves */
      if (cf__st_done(cf__future_load(f))) return 0;
    } else {
      (void)cf__deque_push(&w->dq, t); /* room: it came from there */
    }
  }
  return help_future_slow(w, f, deadline);
}

/* cf__helper.wait_set of every worker: cf_wait / as_completed inside a task. */
int cf__help_set(cf__helper *h, cf_future *event, cf_future *const *fs, size_t n,
                 int64_t deadline) {
  worker *w = (worker *)((char *)h - offsetof(worker, helper));
  if (w->pv_n) {
    cf__sched_publish(w); /* as in help_future_slow() */
    cf__park_notify_after_push(&w->pool->park);
  }
  target tg = {.f = event, .word = event->word, .set = fs, .n = n};
  return help_until(w, &tg, NULL, deadline);
}

/* The spawner's join found something else than its frame at the bottom of
 * its deque (`t`: NULL when the frame was stolen): help until it is done. */
__attribute__((noinline)) void cf__help_frame(worker *w, frame *fr, cf_future *t) {
  if (t && w->pool->help != CF_HELP_ANY) {
    (void)cf__deque_push(&w->dq, t); /* not beneath the frame: back it goes */
    t = NULL;
  }
  target tg = {.fr = fr, .word = &fr->word};
  (void)help_until(w, &tg, t, -1);
}
