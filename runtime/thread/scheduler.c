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
 * The batch is a fair share: ceil(queued / workers), first included, at
 * most BATCH (unlike Go's globrunqget, which takes queued / GOMAXPROCS + 1
 * with the first included: with 2 queued and 2 workers, both). Taking up
 * to BATCH whatever was queued put the second of two queued tasks behind
 * the first in the taker's deque, where the peer that was searching had to
 * steal it instead of taking it from the injector at once (open loop at
 * 1 M/s, 2 workers: submit to start p50 1.58 -> 1.29 us, p90 2.64 -> 1.90
 * us). A take still moves BATCH while at least BATCH x workers are queued.
 *
 * Idle workers. A worker that finds nothing either searches for a bounded
 * *time* (by the clock, never a count of pauses) or parks at once on a
 * per-worker futex word (park.h has the wake-up protocol: a submit wakes
 * one parked worker only when no worker is searching; no lost wake-ups; no
 * timeouts, so an idle pool uses no CPU). A search pays only when work
 * arrives within it: a search that finds nothing costs its whole window,
 * while parking costs two system calls (a sleep and the waker's wake-up,
 * a few microseconds) plus the wake-up latency. So the pool predicts the
 * next arrival from the recent ones and its workers search only when work
 * is likely to come soon:
 *   1. An arrival is work coming to an idle worker: the moment its search
 *      found it (counted at most as the end of the window: a look that
 *      came late because the searcher lost its CPU says nothing about
 *      arrivals), or the moment its waker woke it (park.h stamps it: a
 *      wake follows a push), not when the woken worker got the CPU back.
 *      From one arrival to the next the injector counted k submits (at
 *      least 1: a task pushed by a worker is not counted there), so the
 *      submits came (t - t_prev) / k apart; that gap, clamped to
 *      GAP_CLAMP_NS so that one long pause does not erase the history, goes
 *      into an average (EWMA, weight 1/8): pool.gap_ns, the prediction. It
 *      is the pool's, not each worker's, and counts every submit, not only
 *      those that found a worker idle: workers woken in turn each see only
 *      some of the arrivals, and tasks that come in bursts or while every
 *      worker is busy come more often than idle workers see them.
 *   2. Predicted gap above SEARCH_GAP_NS: park at once. Else search for
 *      4 x the prediction (Poisson arrivals come within 4 means 98% of the
 *      time), clamped to [SEARCH_MIN_NS, SEARCH_MAX_NS]. (With a 50 us
 *      ceiling, Poisson arrivals at 40 k/s, a mean gap of 25 us, missed
 *      the window 14% of the time, each a wake-up on the task's path.)
 *      A worker whose last park ended (its waker woke it) within
 *      SEARCH_MAX_NS searches SEARCH_MAX_NS: that park saved nothing. At
 *      200-500 k/s one worker keeps up with every task and its peer finds
 *      none; with 4 x the prediction (20 us there) the peer parked
 *      0.07-0.11 times per task, and the next submit that came while the
 *      first worker ran a task saw nobody searching and woke it again: a
 *      wake on the submitter's path, a context switch, and 22-44% of tasks
 *      waiting over 10 us (most 15-20 us) from submit to start instead of
 *      2-4%. Not for every worker at every rate: in back-to-back round
 *      trips the peer that parks stays parked (the submitter always sees a
 *      searcher), and a 100 us search there kept a third thread spinning
 *      on 2 CPUs (hot round trip p50 0.72 -> 1.0 us).
 *   3. At most half the workers (at least one) search at a time (Go,
 *      Tokio), one more when the predicted gap is under SEARCH_BUSY_NS
 *      (today: whenever a search is worth it at all). Random arrivals come
 *      in bursts: a task found by the only searcher, with the next one
 *      already visible, makes that searcher wake a parked worker before it
 *      runs its own (park.h, site 5), a futex wake of a halted vCPU on its
 *      path and a wake-up on the next task's; a second searcher takes it
 *      instead. (Poisson at 40 k/s: 36% of tasks waited over 5 us from
 *      submit to start with one searcher, 24% with two; p50 latency 10.5 ->
 *      9.0 us, oneTBB's 10.5 in the same runs, for 33 instead of 22 us of
 *      CPU per task, oneTBB's 37.) The others park at
 *      once. The count is of workers inside a
 *      search window (pool.spinners), not park.h's `searching`, which also
 *      counts a worker just woken: that one may find nothing and park at
 *      once, and must not stop the worker that predicts work from searching.
 *   4. A search that yields the CPU (after SEARCH_YIELD_NS, see below) and
 *      gets it back only after SEARCH_YIELDED_NS (a time slice of another
 *      thread) has seen other threads want this CPU: it parks at once.
 *      While a searcher is off its CPU it still counts as searching, so
 *      submitters wake nobody and a task waits for the searcher's next
 *      turn; a parked worker is woken instead, and the kernel favours a
 *      thread that slept. (Shorter delays are common on a shared machine
 *      and the search still pays there: it is not given up for those.)
 * So at a steady 10 k/s (gaps of 100 us) workers never search and cost what
 * a condvar pool's do (a wake, the task, a sleep); from ~20 k/s (gaps under
 * 50 us) one worker searches and finds tasks without a wake-up; a caller's
 * back-to-back round trips (gaps under a microsecond) keep finding a worker
 * that searches SEARCH_MIN_NS after each task. A pool starts with a
 * prediction of 0 (searching).
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "scheduler.h"
#include "scope.h"

_Thread_local worker *cf__tl_worker TLS_IE;

#ifdef CF_TEST_HOOKS
void (*cf__test_search_hook)(unsigned index);
#endif

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
  /* queued after `first` (relaxed: an estimate; `popped` is ours, and a
   * push counted but not yet linked only makes the share larger) */
  uint64_t left = first ? cf__injector_len(&p->inj) : 0;
  if (first) {
    /* a fair share of the left + 1 queued, first included (DESIGN) */
    uint64_t share = left / p->n + 1;
    int take = share < BATCH ? (int)share : BATCH;
    for (int i = 1; i < take && moved < room; i++) {
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
  /* park.h, site 3. Also when nothing moved but work is left in the
   * injector: the taker may not be a searcher (site 5 then does not run),
   * and a peer asleep should come for the rest, as when the rest was moved
   * to our deque. */
  if (moved || left > 0) cf__park_notify_after_push(&p->park);
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

/* Enter a search window: at most half the workers (at least one) are in
 * one at a time. Counted apart from the park protocol's `searching` (park.h),
 * which also counts a worker its waker just woke: that one may find nothing
 * and park at once, and must not keep a worker that predicts work from
 * searching meanwhile. relaxed: a heuristic count; the RMW makes it exact. */
static inline bool spin_enter(pool *p, int64_t gap) {
  unsigned limit = (p->n / 2 ? p->n / 2 : 1) + (gap < SEARCH_BUSY_NS && p->n > 1);
  if (atomic_fetch_add_explicit(&p->spinners, 1, memory_order_relaxed) < limit) return true;
  atomic_fetch_sub_explicit(&p->spinners, 1, memory_order_relaxed);
  return false;
}

static inline void spin_exit(pool *p) {
  atomic_fetch_sub_explicit(&p->spinners, 1, memory_order_relaxed);
}

/* Work arrived at `t` for a worker that was idle, when the injector had
 * counted `n` submits (DESIGN, step 1). Two workers may update at once and
 * one update be lost: a heuristic. Called after the task it found ran: it
 * touches lines every worker writes, and the task should not wait for
 * them. */
static inline void arrival(pool *p, int64_t t, uint64_t n) {
  int64_t prev = atomic_exchange_explicit(&p->last_arrival, t, memory_order_relaxed);
  uint64_t pn = atomic_exchange_explicit(&p->last_pushed, n, memory_order_relaxed);
  if (prev == 0 || t <= prev) return;
  int64_t gap = (t - prev) / (int64_t)(n > pn ? n - pn : 1);
  if (gap > GAP_CLAMP_NS) gap = GAP_CLAMP_NS;
  int64_t g = atomic_load_explicit(&p->gap_ns, memory_order_relaxed);
  atomic_store_explicit(&p->gap_ns, g + (gap - g) / 8, memory_order_relaxed);
}

/* How long to search before parking (DESIGN, step 2). */
static inline int64_t search_window(const worker *w, int64_t g) {
  if (g > SEARCH_GAP_NS) return 0;
  if (w->long_search) return SEARCH_MAX_NS;
  int64_t ns = 4 * g;
  return ns < SEARCH_MIN_NS ? SEARCH_MIN_NS : ns > SEARCH_MAX_NS ? SEARCH_MAX_NS : ns;
}

void *cf__sched_worker_main(void *arg) {
  worker *w = arg;
  pool *p = w->pool;
  cf__tl_worker = w;
  cf__current_helper = &w->helper;
  /* idle: since the last task (or the start); arrived: when work came, if
   * a waker said so or the search bounded it (0: when found) */
  bool idle = true;
  int64_t arrived = 0;
  cf__worker_name_self(p->name, w->index);
  if (p->pin) cf__worker_pin_self(&p->cpus, w->index);
  if (p->init && p->init(p->init_arg) != 0) {
    cf__tp_break(p);
    goto out;
  }
  for (;;) {
    cf_future *f = find_work(w);
    if (f) {
    found:;
      /* (the pool's prediction, step 1, is updated after the task ran) */
      bool was_idle = idle;
      int64_t t_arrived = 0;
      uint64_t n_pushed = 0;
      if (idle) {
        t_arrived = arrived ? arrived : cf__now_ns();
        /* relaxed: a count for the heuristic (its line is in our cache
         * after the look that found f) */
        n_pushed = atomic_load_explicit(&p->inj.pushed, memory_order_relaxed);
        idle = false;
        arrived = 0;
      }
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
      if (was_idle) arrival(p, t_arrived, n_pushed);
      continue;
    }
    if (should_exit(p)) break;
    if (!w->searching) {
      w->searching = true;
      cf__park_start_search(&p->park);
    }
#ifdef CF_TEST_HOOKS
    if (cf__test_search_hook) cf__test_search_hook(w->index);
#endif
    idle = true;
    int64_t start = cf__now_ns(), now = start;
    int64_t gap = atomic_load_explicit(&p->gap_ns, memory_order_relaxed);
    int64_t window = search_window(w, gap);
    if (window && !spin_enter(p, gap)) window = 0; /* step 3 */
    int64_t next_yield = start + SEARCH_YIELD_NS;
    while (now - start < window) {
      cf__cpu_relax();
      f = find_work(w);
      if (f) {
        spin_exit(p);
        /* within the window as far as the prediction goes: a look that
         * came late (this thread lost its CPU) is our delay, not the
         * arrival's */
        now = cf__now_ns();
        arrived = now < start + window ? now : start + window;
        goto found;
      }
      now = cf__now_ns();
      /* Every SEARCH_YIELD_NS, let any thread that shares this CPU run:
       * the kernel tends to wake a task's waiter on the CPU of the worker
       * that woke it (and a timer's sleeper on its own), and without the
       * yield that thread sits behind our whole search. On a CPU of our
       * own sched_yield returns at once, but it is still a system call
       * (0.75 us here): yielding after every look would put a task that
       * arrives meanwhile behind it, so the looks in between are plain.
       * If the yield did not return at once (DESIGN, step 4), park. */
      if (now >= next_yield) {
        sched_yield();
        int64_t back = cf__now_ns();
        if (back - now > SEARCH_YIELDED_NS) break;
        now = back;
        next_yield = now + SEARCH_YIELD_NS;
      }
    }
    if (window) spin_exit(p);
    if (should_exit(p)) break;
    /* work in sight that find_work did not get (another worker held the
     * injector's consumer lock, or won a steal): look again, not park */
    if (!all_queues_empty(p)) {
      cf__cpu_relax();
      continue;
    }
    cf__park_prepare(&p->park, w->index, true);
    w->searching = false;
    /* re-check after the announce (Dekker half, park.h) */
    uint64_t g = atomic_load(&p->gate);
    if (!all_queues_empty(p) || (g & (GATE_SHUT | GATE_BROKEN))) {
      cf__park_cancel(&p->park, w->index);
    } else {
      stat_inc(&w->st.parks);
      int64_t parked = cf__now_ns();
      arrived = cf__park_wait(&p->park, w->index);
      w->long_search = arrived - parked < SEARCH_MAX_NS;
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
