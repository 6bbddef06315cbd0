/*
 * scheduler.c — the thread pool's workers: where a worker finds work, and what
 * it does when it finds none.
 *
 * DESIGN
 * Queues. Each worker owns a fixed-size Chase–Lev deque (deque.h) of
 * futures. A task submitted by one of the pool's own workers goes to the
 * bottom of that worker's deque (LIFO for the owner: fork-join runs depth
 * first, and a join usually pops back the very task it waits for and runs it
 * inline). A full deque overflows into the injection queue (injector.h), a
 * lock-free MPSC queue that also takes every submission from outside the
 * pool. A worker looks for work in this order: its own deque, the injector
 * (it takes the consumer try-lock and moves a batch into its deque), then a
 * round of steals from the other deques starting at a random victim.
 *
 *
 * Idle workers. A worker that finds nothing becomes "searching" and keeps
 * looking for a bounded *time* (by the clock, never a count of pauses), then
 * parks on a per-worker futex word (park.h has the wake-up protocol: a
 * submit wakes one parked worker only when no worker is searching; no lost
 * wake-ups; no timeouts, so an idle pool uses no CPU). The search window is
 * adaptive, per worker, between SEARCH_MIN_NS and SEARCH_MAX_NS: spinning
 * pays only when work arrives within the window, so the window follows the
 * pace of recent arrivals. A search that finds work after e ns widens it to
 * 2e; a window that passes with nothing halves it; a worker woken after
 * sleeping s < SEARCH_MAX_NS widens it to 1.5 s (a search that long would
 * have caught the work without a sleep and a wake). At a steady 10 k/s
 * (100 us apart) every search fails, the window sinks to the minimum, and a
 * worker costs what a condvar pool's does: a wake, the task, a sleep; at
 * 40 k/s and more the window opens and tasks are found without waking
 * anyone. At most half the workers (at least one) search at a time; the
 * others park at once.
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "scheduler.h"
#include "scope.h"

_Thread_local worker *cf__tl_worker TLS_IE;

/* A frame taken out of its spawner's deque by another thread: a thief (w),
 * or a drain (w NULL: shutdown with cancel, a broken pool). Either way it
 * runs: a frame belongs to its spawner's running task, which joins it, so
 * shutdown never cancels it (cfutures.h: frames). */
__attribute__((noinline)) void cf__sched_run_frame(worker *w, frame *fr) {
  if (w) {
    /* the runner's index and deque bottom, for the joiner's helping
     * (help.c). relaxed: the joiner reads only these bits from it; an RMW
     * so that it never overwrites the joiner's FR_WAITERS */
    uint32_t note =
        ((w->index + 1) << FR_THIEF_SHIFT) | ((uint32_t)cf__deque_bottom(&w->dq) << FR_BASE_SHIFT);
    atomic_fetch_or_explicit(&fr->word, note, memory_order_relaxed);
  }
  /* away from its spawner, a frame runs in no scope (cfutures.h: scopes) */
  cf_scope *outer = cf__scope_tl;
  cf__scope_tl = NULL;
  frame_call(fr);
  cf__scope_tl = outer;
  frame_publish(fr);
}

__attribute__((noinline)) int cf__sched_run_timed(worker *w, cf_future *f, int64_t t_submit) {
  int64_t start = cf__now_ns();
  int r = cf__future_run_tagged(f, w->index + 1, run_tag(w));
  if (r == 1) {
    int64_t end = cf__now_ns();
    stat_inc(&w->st.timed);
    stat_add(&w->st.queue_wait_ns, (uint64_t)(start > t_submit ? start - t_submit : 0));
    stat_add(&w->st.run_ns, (uint64_t)(end - start));
  }
  return r;
}

/* Owner: move the private frames, oldest first, to the bottom of the deque,
 * where thieves (and the helping loops) see them. A full deque keeps the
 * newest ones private. */
__attribute__((noinline)) void cf__sched_publish(worker *w) {
  unsigned n = w->pv_n, i = 0;
  for (; i < n; i++) {
    if (!cf__deque_push(&w->dq, frame_tag(w->pv[i]))) break;
  }
  if (i < n) memmove(w->pv, w->pv + i, (n - i) * sizeof *w->pv);
  w->pv_n = n - i;
}

/* Steal one task from worker v (retrying lost races a few times). */
cf_future *cf__sched_steal_from(worker *w, worker *v) {
  for (int i = 0; i < STEAL_RETRIES; i++) {
    cf_future *f = cf__deque_steal(&v->dq);
    if (f == NULL) {
      /* ask v to publish its private frames (relaxed: a hint, read at v's
       * next spawn; the load first keeps v's line clean while it is set) */
      if (!atomic_load_explicit(&v->want, memory_order_relaxed))
        atomic_store_explicit(&v->want, true, memory_order_relaxed);
      return NULL;
    }
    if (f != CF__DEQUE_ABORT) {
      stat_inc(&w->st.stolen);
      return f;
    }
    cf__cpu_relax();
  }
  return NULL;
}

/* Take a batch from the injector: return one, push the rest to our deque. */
cf_future *cf__sched_take_injected(worker *w) {
  pool *p = w->pool;
  if (!cf__injector_nonempty(&p->inj) || !cf__injector_trylock(&p->inj)) return NULL;
  cf_future *first = cf__injector_pop(&p->inj);
  int64_t room = CF__DEQUE_CAP - cf__deque_size(&w->dq) - 1;
  int moved = 0;
  if (first) {
    for (int i = 1; i < BATCH && moved < room; i++) {
      cf_future *f = cf__injector_pop(&p->inj);
      if (!f) break;
      if (!cf__deque_push(&w->dq, f)) {
        /* cannot happen: `room` under-estimates the free slots (a stale
         * top only makes the deque look fuller). Kept safe anyway: back to
         * the injector, not counted twice as submitted. */
        atomic_fetch_add_explicit(&p->requeued, 1, memory_order_relaxed);
        cf__injector_push(&p->inj, f);
        break;
      }
      moved++;
    }
  }
  cf__injector_unlock(&p->inj);
  if (moved) cf__park_notify_after_push(&p->park); /* park.h, site 3 */
  return first;
}

cf_future *cf__sched_steal_any(worker *w) {
  pool *p = w->pool;
  unsigned n = p->n;
  if (n < 2) return NULL;
  unsigned start = (unsigned)(xorshift(&w->rng) % n);
  for (unsigned i = 0; i < n; i++) {
    unsigned v = (start + i) % n;
    if (v == w->index) continue;
    cf_future *f = cf__sched_steal_from(w, &p->w[v]);
    if (f) return f;
  }
  return NULL;
}

static cf_future *find_work(worker *w) {
  cf_future *f = cf__deque_pop(&w->dq);
  if (f) return f;
  f = cf__sched_take_injected(w);
  if (f) return f;
  return cf__sched_steal_any(w);
}

static bool should_exit(pool *p) {
  /* the flags copy first: the gate line belongs to the submitters */
  if (!(atomic_load(&p->flags) & (GATE_SHUT | GATE_BROKEN))) return false;
  uint64_t g = atomic_load(&p->gate);
  if (!(g & (GATE_SHUT | GATE_BROKEN)) || g >= GATE_ONE) return false;
  return all_queues_empty(p);
}

/* ---- the adaptive idle search (DESIGN: idle workers) ---- */

/* Fewer than half the workers (at least one) search at once. */
static inline bool search_allowed(worker *w) {
  unsigned limit = w->pool->n / 2 ? w->pool->n / 2 : 1;
  /* relaxed: a heuristic; the count includes this worker */
  uint32_t v = atomic_load_explicit(&w->pool->park.idle, memory_order_relaxed);
  return cf__idle_searching(v) <= limit;
}

static inline int64_t clamp_window(int64_t ns) {
  return ns < SEARCH_MIN_NS ? SEARCH_MIN_NS : ns > SEARCH_MAX_NS ? SEARCH_MAX_NS : ns;
}

/* A search found work `after` ns in: work comes at about that pace, so a
 * window of twice that would have caught it too. */
static inline void search_found(worker *w, int64_t after) {
  if (2 * after > w->search_ns) w->search_ns = clamp_window(2 * after);
}

/* A whole window passed with nothing: work comes more slowly than that. */
static inline void search_failed(worker *w) {
  w->search_ns = clamp_window(w->search_ns / 2);
}

/* Parked, woken after `slept` ns: had the search lasted that long it would
 * have found the work without the two system calls of a sleep and a wake. */
static inline void woke_after(worker *w, int64_t slept) {
  if (slept < SEARCH_MAX_NS && slept + slept / 2 > w->search_ns)
    w->search_ns = clamp_window(slept + slept / 2);
}

void *cf__sched_worker_main(void *arg) {
  worker *w = arg;
  pool *p = w->pool;
  cf__tl_worker = w;
  cf__current_helper = &w->helper;
  w->search_ns = SEARCH_MAX_NS;
  cf__worker_name_self(p->name, w->index);
  if (p->pin) cf__worker_pin_self(&p->cpus, w->index);
  if (p->init && p->init(p->init_arg) != 0) {
    cf__tp_break(p);
    goto out;
  }
  for (;;) {
    cf_future *f = find_work(w);
    if (f) {
    found:
      if (w->searching) {
        w->searching = false;
        /* the last searcher found work: if more is visible, wake another
         * worker to look (seq_cst RMW, then seq_cst loads in the checks) */
        /* any queue, not just ours and the injector's: a thief that just
         * stole from a fan-out leaves its own deque empty, and the rest of
         * the fan-out sits in the spawner's (review: only 2 of 8 workers
         * ran a 7-task fan-out) */
        if (cf__park_end_search(&p->park) && !all_queues_empty(p)) cf__park_notify_one(&p->park);
      }
      run_task(w, f);
      continue;
    }
    if (should_exit(p)) break;
    if (!w->searching) {
      w->searching = true;
      cf__park_start_search(&p->park);
    }
    int64_t start = cf__now_ns(), now = start;
    /* searchers beyond half the pool park at once (Tokio, Go) */
    int64_t window = search_allowed(w) ? w->search_ns : 0;
    do {
      cf__cpu_relax();
      f = find_work(w);
      if (f) {
        search_found(w, cf__now_ns() - start);
        goto found;
      }
      now = cf__now_ns();
      /* Past the first microseconds, let any thread that shares this CPU
       * run: the kernel tends to wake a task's waiter on the CPU of the
       * worker that woke it, and without the yield the waiter sits behind
       * our whole search. On a CPU of our own sched_yield returns at once. */
      if (now - start > SEARCH_YIELD_NS) sched_yield();
    } while (now - start < window);
    if (window) search_failed(w);
    if (should_exit(p)) break;
    cf__park_prepare(&p->park, w->index, true);
    w->searching = false;
    /* re-check after the announce (Dekker half, park.h) */
    uint64_t g = atomic_load(&p->gate);
    if (!all_queues_empty(p) || (g & (GATE_SHUT | GATE_BROKEN))) {
      cf__park_cancel(&p->park, w->index);
    } else {
      stat_inc(&w->st.parks);
      int64_t slept = cf__now_ns();
      cf__park_wait(&p->park, w->index);
      woke_after(w, cf__now_ns() - slept);
    }
    w->searching = true; /* both paths leave us counted as searching */
  }
out:
  if (w->searching) {
    w->searching = false;
    (void)cf__park_end_search(&p->park);
  }
  cf__current_helper = NULL;
  cf__tl_worker = NULL;
  return NULL;
}
