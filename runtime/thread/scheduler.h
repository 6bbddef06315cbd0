/*
 * scheduler.h — the thread pool's scheduler state, shared by its files
 * (internal to runtime/thread/).
 *
 * pool.c     the pool's lifecycle: create, submit, shutdown, drain, stats
 * scheduler.c workers: finding work (own deque, injector, steals), idle search
 *            and parking
 * help.c     help-while-waiting: the one loop a worker runs while it waits on
 *            a future or a stolen frame
 * frames.c   fork-join frames (cf_spawn / cf_join)
 *
 * What every file needs inline (the hot paths: running a task, a frame's
 * call) lives here; everything else is a function of one of those files.
 */
#ifndef CF_THREAD_SCHEDULER_H
#define CF_THREAD_SCHEDULER_H

#include <ck_ec.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "deque.h"
#include "executor.h"
#include "fcache.h"
#include "future.h"
#include "injector.h"
#include "options.h"
#include "park.h"
#include "sys.h"

#define TLS_IE __attribute__((tls_model("initial-exec")))

#define SEARCH_MAX_NS 100000     /* the longest idle search (after a short park, always) */
#define SEARCH_MIN_NS 20000      /* the shortest, when one is worth it (scheduler.c) */
#define SEARCH_GAP_NS 50000      /* predicted gap beyond which a worker parks at once */
#define SEARCH_BUSY_NS 50000     /* predicted gap below which one more worker searches */
#define GAP_CLAMP_NS 200000      /* one idle gap counts at most this much */
#define SEARCH_YIELD_NS 3000     /* a search yields the CPU once this often */
#define SEARCH_YIELDED_NS 200000 /* a yield that took longer: the CPU is contended */
#define HELP_SPIN_NS 20000       /* helper: look for work this long before blocking */
#define HELP_BLOCK_NS 200000     /* helper: then block on the future this long */
#define BACKLOG_EVERY 16         /* outside submits per backlog check (pool.c; a power of 2) */
#define BACKLOG_WAKE 32          /* injector backlog that wakes a parked worker anyway */
#define BATCH 32                 /* injector -> own deque per take, at most (a fair share) */
#define STEAL_RETRIES 8
#define PV_CAP 128 /* private frames per worker; more go to the deque at once */

#define GATE_SHUT 1u
#define GATE_BROKEN 2u
#define GATE_CANCEL 4u
#define GATE_FLAGS 7u
#define GATE_ONE 8u /* one outside submitter in flight */

typedef struct pool pool;

typedef struct wstats {
  _Atomic uint64_t submitted, completed, cancelled, stolen, parks;
  _Atomic uint64_t timed, queue_wait_ns, run_ns; /* cf_executor_time_tasks */
} wstats;

typedef struct worker {
  cf__deque dq;
  alignas(CF__CACHE_LINE) pool *pool;
  unsigned index;
  bool searching;
  bool long_search; /* its last park ended within SEARCH_MAX_NS (scheduler.c, step 2) */
  bool started;
  uint64_t rng;
  pthread_t thread;
  cf__helper helper;
  /* a thief found our deque empty: publish private frames at the next
   * spawn (set by thieves, cleared by the owner; relaxed: a hint) */
  alignas(CF__CACHE_LINE) _Atomic bool want;
  /* private frames (owner only): spawned, not yet in the deque, newest last */
  alignas(CF__CACHE_LINE) unsigned pv_n;
  struct frame *pv[PV_CAP];
  alignas(CF__CACHE_LINE) wstats st;
} worker;

struct pool {
  struct cf_executor base;
  /* A read-mostly copy of the gate's flags, for the workers' hot paths:
   * they never touch the submitters' gate line. */
  _Atomic uint32_t flags;
  unsigned n;
  worker *w;
  cf__injector inj;
  cf__park park;
  alignas(CF__CACHE_LINE) _Atomic uint64_t gate;
  alignas(CF__CACHE_LINE) _Atomic uint64_t queued;
  struct ck_ec32 ec; /* bumped when a queued task is taken (bounded pools) */
  size_t max_queued;
  /* The idle policy's shared state (scheduler.c), its own line, written
   * only when a worker goes from idle to work or in and out of a search:
   * workers inside a search window (at most half), when work last
   * arrived for an idle worker and the injector's push count then, and the
   * average gap between submits (the prediction; relaxed loads and
   * stores: a heuristic) */
  alignas(CF__CACHE_LINE) _Atomic uint32_t spinners;
  _Atomic int64_t last_arrival;
  _Atomic uint64_t last_pushed;
  _Atomic int64_t gap_ns;
  alignas(CF__CACHE_LINE) _Atomic uint64_t drained_cancelled;
  _Atomic uint64_t requeued; /* injector entries pushed back (stats: not submits) */
  char name[CF__NAME_PREFIX_MAX + 1];
  cf_init_fn init;
  void *init_arg;
  bool pin;
  cf__cpumask cpus; /* pin: the creating thread's CPUs */
  unsigned help;    /* CF_HELP_*: what a waiting task runs (help.c) */
  pthread_mutex_t join_lock;
  bool joined;
};

/* Bounded pools: submitters wait for room on this event count (pool.c). */
extern const struct ck_ec_mode cf__tp_ec_mode;

/* Test hook (a library built with CF_TEST_HOOKS only): called by a worker
 * each time it goes round its idle loop counted as searching, with its
 * index; a test blocks a worker there to stand for a searcher that lost its
 * CPU (tests/thread/test_backlog_wake.c). NULL: none. */
extern void (*cf__test_search_hook)(unsigned index);

/* The worker running on this thread, or NULL. */
extern _Thread_local worker *cf__tl_worker TLS_IE;

static inline void stat_add(_Atomic uint64_t *c, uint64_t n) {
  /* relaxed load + store: only this worker writes it; readers sum relaxed */
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}
static inline void stat_inc(_Atomic uint64_t *c) {
  stat_add(c, 1);
}

static inline uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* A task left the queues (taken to run or drained). */
static inline void task_taken(pool *p) {
  if (p->max_queued) {
    atomic_fetch_sub(&p->queued, 1);
    ck_ec32_inc(&p->ec, &cf__tp_ec_mode);
  }
}

static inline bool all_queues_empty(pool *p) {
  if (cf__injector_nonempty(&p->inj)) return false;
  for (unsigned i = 0; i < p->n; i++)
    if (cf__deque_nonempty(&p->w[i].dq)) return false;
  return true;
}

/* ---- fork-join frames: the task's state (frames.c) ----------------------- */

/* The inside of a cf_frame (see DESIGN: frames). may_alias: the user's
 * object has the declared type cf_frame. */
typedef struct __attribute__((may_alias)) frame {
  /* FR_DONE | FR_WAITERS | thief index + 1 << FR_THIEF_SHIFT | the thief's
   * deque bottom << FR_BASE_SHIFT; 0 while queued.
   * Touched only when the frame leaves its spawner's deque by a steal. */
  _Atomic uint32_t word;
  uint32_t magic; /* FR_QUEUED / FR_RAN / FR_FUTURE / FR_JOINED: spawner only */
  cf_fn fn;
  uint32_t arg_len;
  uint32_t res_len;
  int32_t err;  /* 0, or the CF_E* cf_join reports */
  int32_t code; /* err == CF_ETASK: the code given to cf_call_fail */
  union {
    cf_future *fut; /* FR_FUTURE: the fallback future */
    void *res_heap; /* a result over CF_FRAME_INLINE_RESULT bytes */
  } u;
  void *owner; /* CF_DEBUG: the spawning thread (&cf__tl_worker of that thread) */
  unsigned char arg[CF_FRAME_INLINE_ARG];
  unsigned char res[CF_FRAME_INLINE_RESULT];
} frame;

_Static_assert(sizeof(frame) <= sizeof(cf_frame), "frame fits cf_frame");
_Static_assert(_Alignof(cf_frame) >= 2, "frames are tagged in bit 0");

/* memcpy of n <= 48 bytes without a call (cf__copy calls memcpy above 16
 * bytes, which makes the fast paths save registers). */
static inline __attribute__((always_inline)) void copy48(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  if (__builtin_expect(n > 16, 0)) {
    unsigned char a[16], b[16], c[16];
    __builtin_memcpy(a, s, 16);
    __builtin_memcpy(b, s + n - 16, 16);
    if (n > 32) __builtin_memcpy(c, s + 16, 16);
    __builtin_memcpy(d, a, 16);
    if (n > 32) __builtin_memcpy(d + 16, c, 16);
    __builtin_memcpy(d + n - 16, b, 16);
  } else {
    cf__copy(d, s, n);
  }
}

#define FR_DONE 1u
#define FR_WAITERS 2u
#define FR_THIEF_SHIFT 8 /* bits 8-15: the thief's index + 1 */
#define FR_THIEF_MASK 0xffu
#define FR_BASE_SHIFT 16 /* bits 16-31: the thief's deque bottom when it took it (help.c) */

#define FR_QUEUED 0xcf5f0001u /* on the spawner's deque (or taken by a thief) */
#define FR_RAN 0xcf5f0002u    /* the deque was full: ran inside cf_spawn */
#define FR_FUTURE 0xcf5f0003u /* fallback: u.fut holds a future */
#define FR_JOINED 0xcf5f00ddu /* joined: err/code readable */

/* Deque entries are futures, or frames tagged with bit 0. */
static inline bool is_frame(const cf_future *e) {
  return ((uintptr_t)e & 1u) != 0;
}
static inline cf_future *frame_tag(frame *fr) {
  return (cf_future *)((uintptr_t)fr | 1u);
}
static inline frame *frame_untag(cf_future *e) {
  return (frame *)((uintptr_t)e & ~(uintptr_t)1u);
}

extern const cf__call_ops cf__frame_call_ops;

/* Call the frame's task on this thread and record its outcome in the frame
 * (plain stores: whoever runs it owns the frame until it is done). */
static inline __attribute__((always_inline)) void frame_call(frame *fr) {
  cf_call c = {
      .ops = &cf__frame_call_ops,
      .arg = fr->arg,
      .arg_len = fr->arg_len,
      .ctx = fr,
      .max_result = UINT32_MAX,
      .outcome = CF__OUTCOME_NONE,
      .err = 0,
  };
  fr->res_len = 0;
  fr->fn(&c);
  fr->err = c.outcome == CF__OUTCOME_FAILED ? c.err : 0;
}

/* A frame taken out of its spawner's deque by another thread (a thief, a
 * drain) is done: publish. The frame may vanish (the joiner returns) as soon
 * as FR_DONE is visible, so nothing touches it after the RMW but the futex
 * wake, which only uses its address. */
static inline void frame_publish(frame *fr) {
  /* release: the outcome and result written before pair with the joiner's
   * acquire load of the word in help_until() */
  uint32_t old = atomic_fetch_or_explicit(&fr->word, FR_DONE, memory_order_release);
  if (old & FR_WAITERS) cf__futex_wake(&fr->word, INT32_MAX, false);
}

/* ---- running (scheduler.c) ----------------------------------------------------- */

/* A frame taken by another thread than its spawner (a thief w, or a drain:
 * w NULL): run it and publish. */
void cf__sched_run_frame(worker *w, frame *fr);
/* Owner: move the private frames to the deque, where thieves see them. */
void cf__sched_publish(worker *w);

/* The note a runner makes when it starts a future: where what the task
 * spawns will lie on its deque (help.c), + 1 so that 0 means "none yet". */
static inline uint64_t run_tag(worker *w) {
  return (uint64_t)cf__deque_bottom(&w->dq) + 1;
}

/* cf__future_run_tagged for a future stamped at submit (f->t_submit):
 * counts its queue wait and run time if it ran here (scheduler.c). */
int cf__sched_run_timed(worker *w, cf_future *f, int64_t t_submit);

/* Run future f here (the queue's or the caller's reference is dropped):
 * cf__future_run_tagged with this worker's owner and tag, timed if f was
 * stamped. 1 ran, 0 cancelled, -1 not run here. */
static inline int run_here(worker *w, cf_future *f) {
  int64_t t = f->t_submit; /* before: f may be gone once it ran */
  if (__builtin_expect(t != 0, 0)) return cf__sched_run_timed(w, f, t);
  return cf__future_run_tagged(f, w->index + 1, run_tag(w));
}

/* Run a deque or injector entry known to be a future. */
static inline void run_future_task(worker *w, cf_future *f) {
  pool *p = w->pool;
  task_taken(p);
  /* relaxed: the flags are hints here; drains synchronise through the gate */
  uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
  if (__builtin_expect(g & (GATE_CANCEL | GATE_BROKEN), 0)) {
    if (g & GATE_BROKEN) {
      cf__future_fail(f, CF_EBROKEN);
    } else if (cf__future_transition(f, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED)) {
      stat_inc(&w->st.cancelled);
    }
    cf__future_unref(f);
    return;
  }
  int r = run_here(w, f);
  if (r == 1)
    stat_inc(&w->st.completed);
  else if (r == 0)
    stat_inc(&w->st.cancelled);
  /* r == -1: not run here (deadline passed, or a waiter ran it: help.c) */
}

/* Run any entry taken from a queue: a future or a tagged frame. */
static inline void run_task(worker *w, cf_future *f) {
  if (__builtin_expect(is_frame(f), 0)) {
    cf__sched_run_frame(w, frame_untag(f)); /* frames are not counted in `queued` */
    return;
  }
  run_future_task(w, f);
}

/* Steal one task from worker v (thief: any worker but v). */
cf_future *cf__sched_steal_from(worker *w, worker *v);
/* Take a batch from the injector (the consumer try-lock): one to run, the
 * rest onto our own deque. Worker w only. */
cf_future *cf__sched_take_injected(worker *w);
/* One round of steals from every other worker, from a random start. */
cf_future *cf__sched_steal_any(worker *w);

/* The worker thread's body (scheduler.c). */
void *cf__sched_worker_main(void *arg);

/* ---- pool.c ------------------------------------------------------------------ */

/* The initializer failed: break the pool (any thread, once). */
void cf__tp_break(pool *p);

/* ---- help.c ------------------------------------------------------------------ */

/* cf__helper.wait of every worker: help until f is done or deadline. */
int cf__help_future(cf__helper *h, cf_future *f, int64_t deadline);
/* cf__helper.wait_set of every worker. */
int cf__help_set(cf__helper *h, cf_future *event, cf_future *const *fs, size_t n, int64_t deadline);
/* The spawner's join of a frame it found gone from the bottom of its deque
 * (t: what it popped instead, or NULL). Returns when the frame is done. */
void cf__help_frame(worker *w, frame *fr, cf_future *t);

#endif /* CF_THREAD_SCHEDULER_H */
