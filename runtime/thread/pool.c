/*
 * thread_pool.c — the work-stealing thread pool.
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
 *
 * Frames (cf_spawn / cf_join, Lace's SPAWN/SYNC). A cf_frame lives in the
 * spawner's stack; a spawn from a worker of the pool copies the argument
 * into it. Like Lace's split deque, a worker keeps its newest frames
 * private: a spawn pushes the frame on the worker's own array (pv, PV_CAP
 * entries, owner only, no atomics), and the join takes it back from there
 * and calls the task inline with a stack cf_call whose ops write the
 * result into the frame: neither the spawn nor the join of a private frame
 * touches a shared word (the deque pop's seq_cst store, ~a third of a
 * future join, is gone). Private frames become stealable when thieves want
 * them: a thief that finds a worker's deque empty sets its `want` flag, and
 * the owner's next spawn moves every private frame (oldest first) to the
 * bottom of its deque, tagged with bit 0; so does a spawn that sees a
 * parked worker and no searcher (then it wakes one), a full private array
 * (the new frame goes straight to the deque), and a worker that starts to
 * wait on a future or on a stolen frame (it holds nothing back while it
 * helps). Every place that takes a deque entry (run_task, drain) checks the
 * tag. A published frame is joined by popping the bottom of the deque: if
 * it is there it runs inline; if not, it was stolen: the thief ORs its index
 * into the frame's word before running it (so the joiner leapfrogs: it
 * steals only from that thief, as the future join does), writes the
 * outcome, then ORs FR_DONE with release and calls FUTEX_WAKE only if the
 * joiner had set FR_WAITERS (a CAS, just before a bounded futex wait).
 * After that RMW the frame may be gone (the joiner returned): the thief
 * touches nothing but the wake's address (a late wake on a reused address
 * is a spurious wake-up, which every futex waiter here tolerates). A drain
 * (shutdown with cancel, broken pool) that takes a frame fails it the same
 * way instead of running it. Private frames are never drained: their joins
 * run them. A full deque runs the task inside cf_spawn. Anything else (not
 * a worker of this pool, a large argument, a process pool) keeps an
 * ordinary future in the frame.
 * The price of the split (Lace's too): a frame spawned by a task that then
 * computes for a long time without spawning, joining or waiting stays
 * private until then, unless a thief asked before that spawn.
 *
 * Idle workers. A worker that finds nothing becomes "searching" and keeps
 * looking for a bounded *time* (SEARCH_NS, by the clock), then parks on a
 * per-worker futex word (park.h has the wake-up protocol: a submit wakes one
 * parked worker only when no worker is searching; no lost wake-ups; no
 * timeouts, so an idle pool uses no CPU).
 *
 * Shutdown and submitters. `gate` holds the SHUT/BROKEN/CANCEL flags and a
 * count of outside submitters between their check and their push. Outside
 * submit: fetch_add the count, check the flags, push, fetch_sub. Shutdown
 * sets the flags and, when it must drain, waits for the count to reach zero
 * first, so no submit slips in behind the drain. A worker exits when the
 * pool is shut down, no submitter is in flight and every queue is empty.
 * A submit from inside a worker after shutdown is accepted (fork-join work
 * of a task that is still running) unless futures are being cancelled.
 *
 * Bound (max_queued). `queued` counts tasks between submit and the moment a
 * worker takes them out of a queue. Outside submitters wait for room on a
 * Concurrency Kit event count (ck_ec32, with our futex ops), or get
 * CF_EAGAIN with CF_SUBMIT_NOWAIT. A worker's own submit never waits (it
 * would wait for itself): it gets CF_EAGAIN with NOWAIT, else goes over.
 *
 * Stats are per-worker counters written only by their worker (relaxed
 * load + store, no RMW) and summed by cf_executor_stats.
 *
 * Memory per in-flight task: one cf_future (future.h; sizeof is reported by
 * the tests), plus a heap copy of arguments over CF__INLINE_ARG bytes and of
 * results over CF__INLINE_RES bytes. Futures come from a per-thread cache.
 */
#include "thread_pool.h"

#include <ck_ec.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deque.h"
#include "future.h"
#include "injector.h"
#include "park.h"
#include "sys.h"

#define TLS_IE __attribute__((tls_model("initial-exec")))

#define SEARCH_NS 50000      /* idle search before parking */
#define SEARCH_YIELD_NS 3000 /* then search yielding the CPU between looks */
#define HELP_SPIN_NS 20000   /* helper: look for work this long before blocking */
#define HELP_BLOCK_NS 200000 /* helper: then block on the future this long */
#define BATCH 32             /* injector -> own deque per take */
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
} wstats;

typedef struct worker {
  cf__deque dq;
  alignas(CF__CACHE_LINE) pool *pool;
  unsigned index;
  bool searching;
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
  alignas(CF__CACHE_LINE) _Atomic uint64_t drained_cancelled;
  char name[11];
  cf_init_fn init;
  void *init_arg;
  bool pin;
  pthread_mutex_t join_lock;
  bool joined;
};

static _Thread_local worker *tl_worker TLS_IE;

/* ---- helpers --------------------------------------------------------- */

static inline void stat_inc(_Atomic uint64_t *c) {
  /* relaxed load + store: only this worker writes it; readers sum relaxed */
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static inline uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* ck_ec's platform hooks over our futex layer. */
static int ec_gettime(const struct ck_ec_ops *ops, struct timespec *out) {
  (void)ops;
  return clock_gettime(CLOCK_MONOTONIC, out);
}
static void ec_wait32(const struct ck_ec_wait_state *st, const uint32_t *addr, uint32_t expected,
                      const struct timespec *deadline) {
  (void)st;
  int64_t dl = deadline ? (int64_t)deadline->tv_sec * 1000000000 + deadline->tv_nsec : -1;
  cf__futex_wait((_Atomic uint32_t *)addr, expected, dl, false);
}
static void ec_wake32(const struct ck_ec_ops *ops, const uint32_t *addr) {
  (void)ops;
  cf__futex_wake((_Atomic uint32_t *)addr, INT32_MAX, false);
}
static const struct ck_ec_ops ec_ops = {
    .gettime = ec_gettime,
    .wait32 = ec_wait32,
    .wake32 = ec_wake32,
};
static const struct ck_ec_mode ec_mode = {.ops = &ec_ops, .single_producer = false};

/* A task left the queues (taken to run or drained). */
static inline void task_taken(pool *p) {
  if (p->max_queued) {
    atomic_fetch_sub(&p->queued, 1);
    ck_ec32_inc(&p->ec, &ec_mode);
  }
}

static bool all_queues_empty(pool *p) {
  if (cf__injector_nonempty(&p->inj)) return false;
  for (unsigned i = 0; i < p->n; i++)
    if (cf__deque_nonempty(&p->w[i].dq)) return false;
  return true;
}

/* ---- fork-join frames (cf_spawn / cf_join): the task's state ------------ */

/* The inside of a cf_frame (see DESIGN: frames). may_alias: the user's
 * object has the declared type cf_frame. */
typedef struct __attribute__((may_alias)) frame {
  /* FR_DONE | FR_WAITERS | thief index + 1 << FR_THIEF_SHIFT; 0 while queued.
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
  void *owner; /* CF_DEBUG: the spawning thread (&tl_worker of that thread) */
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
#define FR_THIEF_SHIFT 8

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

static __attribute__((noinline)) int frame_ret_slow(cf_call *c, const void *v, size_t len) {
  frame *fr = c->ctx;
  if (c->outcome || (len && !v)) return CF_EINVAL;
  if (len > UINT32_MAX) {
    c->outcome = 2;
    c->err = CF_E2BIG;
    return CF_E2BIG;
  }
  void *p = cf__alloc(len);
  if (!p) {
    c->outcome = 2;
    c->err = CF_ENOMEM;
    return CF_ENOMEM;
  }
  memcpy(p, v, len);
  fr->u.res_heap = p; /* freed by cf_join */
  fr->res_len = (uint32_t)len;
  c->outcome = 1;
  return 0;
}

static int frame_ret(cf_call *c, const void *v, size_t len) {
  if (__builtin_expect(c->outcome || len > CF_FRAME_INLINE_RESULT || (len && !v), 0))
    return frame_ret_slow(c, v, len);
  frame *fr = c->ctx;
  copy48(fr->res, v, len);
  fr->res_len = (uint32_t)len;
  c->outcome = 1;
  return 0;
}

static int frame_fail(cf_call *c, int code, const char *msg) {
  (void)msg; /* frames keep only the code (cfutures.h) */
  frame *fr = c->ctx;
  if (c->outcome) return CF_EINVAL;
  fr->code = code;
  c->outcome = 2;
  c->err = CF_ETASK;
  return 0;
}

static bool frame_stop(cf_call *c) {
  (void)c;
  worker *w = tl_worker; /* frames run only on their pool's workers */
  /* relaxed: a polled hint (shutdown with CF_SHUTDOWN_KILL) */
  return w && atomic_load_explicit(&w->pool->base.stop_all, memory_order_relaxed);
}

static const cf__call_ops frame_call_ops = {frame_ret, frame_fail, frame_stop};

/* Call the frame's task on this thread and record its outcome in the frame
 * (plain stores: whoever runs it owns the frame until it is done). */
static inline __attribute__((always_inline)) void frame_call(frame *fr) {
  cf_call c = {
      .ops = &frame_call_ops,
      .arg = fr->arg,
      .arg_len = fr->arg_len,
      .ctx = fr,
      .max_result = UINT32_MAX,
      .outcome = 0,
      .err = 0,
  };
  fr->res_len = 0;
  fr->fn(&c);
  fr->err = c.outcome == 2 ? c.err : 0;
}

/* A frame taken out of its spawner's deque by another thread (a thief, a
 * drain) is done: publish. The frame may vanish (the joiner returns) as soon
 * as FR_DONE is visible, so nothing touches it after the RMW but the futex
 * wake, which only uses its address. */
static inline void frame_publish(frame *fr) {
  /* release: the outcome and result written before pair with the joiner's
   * acquire load of the word in join_wait() */
  uint32_t old = atomic_fetch_or_explicit(&fr->word, FR_DONE, memory_order_release);
  if (old & FR_WAITERS) cf__futex_wake(&fr->word, INT32_MAX, false);
}

/* Any worker but the spawner's fast path: run a frame that was stolen (or
 * popped by a helper). */
static __attribute__((noinline)) void run_frame(worker *w, frame *fr) {
  /* relaxed: the flags are hints here, as in run_task() */
  uint32_t g = atomic_load_explicit(&w->pool->flags, memory_order_relaxed);
  if (__builtin_expect(g & (GATE_CANCEL | GATE_BROKEN), 0)) {
    fr->res_len = 0;
    fr->err = (g & GATE_BROKEN) ? CF_EBROKEN : CF_ECANCELLED;
  } else {
    /* the runner's index, for the joiner's leapfrogging. relaxed: a hint;
     * an RMW so that it never overwrites the joiner's FR_WAITERS */
    atomic_fetch_or_explicit(&fr->word, (w->index + 1) << FR_THIEF_SHIFT, memory_order_relaxed);
    frame_call(fr);
  }
  frame_publish(fr);
}

/* Owner: move the private frames, oldest first, to the bottom of the deque,
 * where thieves (and the helping loops) see them. A full deque keeps the
 * newest ones private. */
static __attribute__((noinline)) void publish(worker *w) {
  unsigned n = w->pv_n, i = 0;
  for (; i < n; i++) {
    if (!cf__deque_push(&w->dq, frame_tag(w->pv[i]))) break;
  }
  if (i < n) memmove(w->pv, w->pv + i, (n - i) * sizeof *w->pv);
  w->pv_n = n - i;
}

/* ---- running ----------------------------------------------------------- */

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
  int r = cf__future_run(f, w->index + 1);
  stat_inc(r == 0 ? &w->st.cancelled : &w->st.completed);
}

/* Run any entry taken from a queue: a future or a tagged frame. */
static inline void run_task(worker *w, cf_future *f) {
  if (__builtin_expect(is_frame(f), 0)) {
    run_frame(w, frame_untag(f)); /* frames are not counted in `queued` */
    return;
  }
  run_future_task(w, f);
}

/* Steal one task from worker v (retrying lost races a few times). */
static cf_future *steal_from(worker *w, worker *v) {
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
static cf_future *take_injected(worker *w) {
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
        /* cannot happen with room > moved; keep it safe anyway */
        cf__injector_unlock(&p->inj);
        cf__injector_push(&p->inj, f);
        return first;
      }
      moved++;
    }
  }
  cf__injector_unlock(&p->inj);
  if (moved && cf__park_should_notify(&p->park)) cf__park_notify_one(&p->park);
  return first;
}

static cf_future *steal_any(worker *w) {
  pool *p = w->pool;
  unsigned n = p->n;
  if (n < 2) return NULL;
  unsigned start = (unsigned)(xorshift(&w->rng) % n);
  for (unsigned i = 0; i < n; i++) {
    unsigned v = (start + i) % n;
    if (v == w->index) continue;
    cf_future *f = steal_from(w, &p->w[v]);
    if (f) return f;
  }
  return NULL;
}

static cf_future *find_work(worker *w) {
  cf_future *f = cf__deque_pop(&w->dq);
  if (f) return f;
  f = take_injected(w);
  if (f) return f;
  return steal_any(w);
}

/* ---- joining inside a worker ------------------------------------------- */

__attribute__((noinline)) static int helper_wait_slow(worker *w, cf_future *f, int64_t deadline) {
  pool *p = w->pool;
  if (w->pv_n) publish(w); /* a waiting worker holds no frame back from thieves */
  _Atomic uint32_t *word = f->word;
  bool mine = f->owner == (void *)p && !f->shared;
  int64_t task_dl = f->vt == &cf__local_future_vtbl ? f->deadline : 0;
  int64_t idle_since = 0;
  for (;;) {
    /* acquire: pairs with the completer's release (result bytes) */
    uint32_t s = atomic_load_explicit(word, memory_order_acquire);
    if (cf__st_done(s)) return 0;
    if (deadline >= 0 || task_dl > 0) {
      /* before running anything: a poll runs nothing, a timed wait does not
       * overrun while there is always work, and a task deadline is failed
       * first (cf_wait expires futures with a wait whose deadline is 0) */
      int64_t now = cf__now_ns();
      if (task_dl > 0 && now >= task_dl) {
        (void)cf__future_block_until(f, now); /* fails it at its deadline */
        continue;
      }
      if (deadline >= 0 && now >= deadline) return CF_ETIMEDOUT;
    }
    cf_future *t = cf__deque_pop(&w->dq);
    if (!t) {
      unsigned k = cf__st_owner(s);
      if (mine && cf__st_state(s) == CF_STATE_RUNNING && k >= 1 && k <= p->n) {
        if (k - 1 != w->index) t = steal_from(w, &p->w[k - 1]);
      } else {
        t = take_injected(w);
        if (!t) t = steal_any(w);
      }
    }
    if (t) {
      run_task(w, t);
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
    (void)cf__future_block_until(f, until);
    idle_since = 0;
  }
}

/* The join fast path: the awaited task is usually the one at the bottom of
 * our own deque (we pushed it last): pop it and run it inline. */
static int helper_wait(cf__helper *h, cf_future *f, int64_t deadline) {
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
  return helper_wait_slow(w, f, deadline);
}

/* ---- breaking and draining --------------------------------------------- */

static void wait_no_inflight(pool *p) {
  while (atomic_load(&p->gate) >= GATE_ONE) sched_yield();
}

/* Take every queued future out (any thread; the gate must be closed) and
 * cancel it, or fail it with CF_EBROKEN. */
static void drain(pool *p, bool broken) {
  for (;;) {
    bool any = false;
    while (!cf__injector_trylock(&p->inj)) sched_yield();
    cf_future *f;
    while ((f = cf__injector_pop(&p->inj)) != NULL) {
      any = true;
      task_taken(p);
      if (broken) {
        cf__future_fail(f, CF_EBROKEN);
      } else if (cf__future_transition(f, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED)) {
        atomic_fetch_add(&p->drained_cancelled, 1);
      }
      cf__future_unref(f);
    }
    cf__injector_unlock(&p->inj);
    for (unsigned i = 0; i < p->n; i++) {
      while ((f = cf__deque_steal(&p->w[i].dq)) != NULL) {
        if (f == CF__DEQUE_ABORT) continue;
        any = true;
        if (is_frame(f)) {
          /* its spawner joins it: fail it instead of running user code in
           * the drainer (cfutures.h: frames) */
          frame *fr = frame_untag(f);
          fr->res_len = 0;
          fr->err = broken ? CF_EBROKEN : CF_ECANCELLED;
          frame_publish(fr);
          continue;
        }
        task_taken(p);
        if (broken) {
          cf__future_fail(f, CF_EBROKEN);
        } else if (cf__future_transition(f, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED)) {
          atomic_fetch_add(&p->drained_cancelled, 1);
        }
        cf__future_unref(f);
      }
    }
    if (!any && !cf__injector_nonempty(&p->inj)) return;
    if (!any) sched_yield(); /* a push is between its exchange and its link */
  }
}

static void break_pool(pool *p) {
  atomic_fetch_or(&p->flags, GATE_BROKEN);
  uint64_t old = atomic_fetch_or(&p->gate, GATE_BROKEN);
  if (old & GATE_BROKEN) return;
  wait_no_inflight(p);
  drain(p, true);
  if (p->max_queued) ck_ec32_inc(&p->ec, &ec_mode);
  cf__park_notify_all(&p->park);
}

static bool should_exit(pool *p) {
  /* the flags copy first: the gate line belongs to the submitters */
  if (!(atomic_load(&p->flags) & (GATE_SHUT | GATE_BROKEN))) return false;
  uint64_t g = atomic_load(&p->gate);
  if (!(g & (GATE_SHUT | GATE_BROKEN)) || g >= GATE_ONE) return false;
  return all_queues_empty(p);
}

/* ---- workers ------------------------------------------------------------ */

static void pin_to_cpu(unsigned i) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  int count = CPU_COUNT(&set);
  if (count <= 0) return;
  int want = (int)(i % (unsigned)count), seen = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &set)) continue;
    if (seen++ == want) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      return;
    }
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  pool *p = w->pool;
  tl_worker = w;
  cf__current_helper = &w->helper;
  char nm[16];
  snprintf(nm, sizeof nm, "%s-%u", p->name, w->index);
  (void)pthread_setname_np(pthread_self(), nm);
  if (p->pin) pin_to_cpu(w->index);
  if (p->init && p->init(p->init_arg) != 0) {
    break_pool(p);
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
    do {
      cf__cpu_relax();
      f = find_work(w);
      if (f) goto found;
      now = cf__now_ns();
      /* Past the first microseconds, let any thread that shares this CPU
       * run: the kernel tends to wake a task's waiter on the CPU of the
       * worker that woke it, and without the yield the waiter sat behind
       * our whole search (bench: thread round trip after idle, p50 66 us,
       * 54 us of it waiting for the caller to get the CPU back). On a CPU
       * of our own sched_yield returns at once. */
      if (now - start > SEARCH_YIELD_NS) sched_yield();
    } while (now - start < SEARCH_NS);
    if (should_exit(p)) break;
    cf__park_prepare(&p->park, w->index, true);
    w->searching = false;
    /* re-check after the announce (Dekker half, park.h) */
    uint64_t g = atomic_load(&p->gate);
    if (!all_queues_empty(p) || (g & (GATE_SHUT | GATE_BROKEN))) {
      cf__park_cancel(&p->park, w->index);
    } else {
      stat_inc(&w->st.parks);
      cf__park_wait(&p->park, w->index);
    }
    w->searching = true; /* both paths leave us counted as searching */
  }
out:
  if (w->searching) {
    w->searching = false;
    (void)cf__park_end_search(&p->park);
  }
  cf__current_helper = NULL;
  tl_worker = NULL;
  return NULL;
}

/* ---- the executor interface -------------------------------------------- */

static int queue_room(pool *p, unsigned flags, bool inside) {
  for (;;) {
    uint64_t q = atomic_load(&p->queued);
    if (q < p->max_queued) {
      if (atomic_compare_exchange_weak(&p->queued, &q, q + 1)) return 0;
      continue;
    }
    if (flags & CF_SUBMIT_NOWAIT) return CF_EAGAIN;
    if (inside) {
      atomic_fetch_add(&p->queued, 1); /* a worker cannot wait for itself */
      return 0;
    }
    uint64_t g = atomic_load(&p->gate);
    if (g & GATE_BROKEN) return CF_EBROKEN;
    if (g & GATE_SHUT) return CF_ESHUTDOWN;
    uint32_t v = ck_ec32_value(&p->ec);
    if (atomic_load(&p->queued) < p->max_queued) continue;
    g = atomic_load(&p->gate);
    if (g & (GATE_SHUT | GATE_BROKEN)) continue;
    ck_ec32_wait(&p->ec, &ec_mode, v, NULL);
  }
}

static void queue_unroom(pool *p) {
  if (p->max_queued) task_taken(p);
}

__attribute__((noinline)) static int submit_slow(pool *p, worker *w, cf_fn fn, const void *arg,
                                                 size_t len, int64_t deadline, unsigned flags,
                                                 cf_future **out) {
  bool inside = w && w->pool == p;
  int rc;
  if (inside) {
    /* relaxed: a flag check; the worker drains its own deque anyway */
    uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
    if (__builtin_expect(g & (GATE_BROKEN | GATE_CANCEL), 0))
      return g & GATE_BROKEN ? CF_EBROKEN : CF_ESHUTDOWN;
  }
  if (p->max_queued && (rc = queue_room(p, flags, inside)) != 0) return rc;
  cf_future *f = cf__future_alloc_fast();
  if (!f) {
    queue_unroom(p);
    return CF_ENOMEM;
  }
  if (len <= CF__INLINE_ARG) {
    cf__copy(f->arg_inline, arg, len);
    f->arg_len = (uint32_t)len;
  } else if ((rc = cf__future_set_arg(f, arg, len)) != 0) {
    cf__future_unref(f);
    cf__future_unref(f);
    queue_unroom(p);
    return rc;
  }
  f->fn = fn;
  f->deadline = deadline;
  f->owner = p;
  if (inside) {
    if (cf__deque_push(&w->dq, f))
      stat_inc(&w->st.submitted);
    else
      cf__injector_push(&p->inj, f); /* counted by the injector */
    /* no Dekker fence here: this worker runs its own deque before it can
     * park, so a missed wake-up costs parallelism, never progress */
    if (cf__park_should_notify(&p->park)) cf__park_notify_one(&p->park);
    *out = f;
    return 0;
  }
  uint64_t g = atomic_fetch_add(&p->gate, GATE_ONE);
  if (g & (GATE_SHUT | GATE_BROKEN)) {
    atomic_fetch_sub(&p->gate, GATE_ONE);
    cf__future_unref(f);
    cf__future_unref(f);
    queue_unroom(p);
    return g & GATE_BROKEN ? CF_EBROKEN : CF_ESHUTDOWN;
  }
  cf__injector_push(&p->inj, f); /* seq_cst exchange: the Dekker "push" */
  atomic_fetch_sub(&p->gate, GATE_ONE);
  cf__park_notify_one(&p->park); /* seq_cst load of idle inside */
  *out = f;
  return 0;
}

/* The fork-join fast path: a worker of this pool, a small argument, no
 * bound: a future from the thread's cache onto the bottom of our deque. */
static int tp_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline,
                     unsigned flags, cf_future **out) {
  pool *p = (pool *)ex;
  worker *w = tl_worker;
  if (__builtin_expect(w != NULL && w->pool == p && len <= CF__INLINE_ARG && !p->max_queued, 1)) {
    /* relaxed: a flag check; the worker drains its own deque anyway */
    uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
    if (__builtin_expect(!(g & (GATE_BROKEN | GATE_CANCEL)), 1)) {
      cf_future *f = cf__future_alloc_fast();
      if (f) {
        cf__copy(f->arg_inline, arg, len);
        f->arg_len = (uint32_t)len;
        f->fn = fn;
        f->deadline = deadline;
        f->owner = p;
        if (__builtin_expect(cf__deque_push(&w->dq, f), 1))
          stat_inc(&w->st.submitted);
        else
          cf__injector_push(&p->inj, f); /* counted by the injector */
        /* no Dekker fence: see submit_slow() */
        if (cf__park_should_notify(&p->park)) cf__park_notify_one(&p->park);
        *out = f;
        return 0;
      }
    }
  }
  return submit_slow(p, w, fn, arg, len, deadline, flags, out);
}

static void join_workers(pool *p) {
  pthread_mutex_lock(&p->join_lock);
  if (!p->joined) {
    for (unsigned i = 0; i < p->n; i++)
      if (p->w[i].started) pthread_join(p->w[i].thread, NULL);
    p->joined = true;
  }
  pthread_mutex_unlock(&p->join_lock);
}

static int tp_shutdown(cf_executor *ex, unsigned flags) {
  pool *p = (pool *)ex;
  worker *w = tl_worker;
  bool inside = w && w->pool == p;
  if (inside) flags &= ~CF_SHUTDOWN_WAIT;
  if (flags & CF_SHUTDOWN_KILL) {
    atomic_store(&p->base.stop_all, true);
    flags |= CF_SHUTDOWN_CANCEL_FUTURES;
  }
  uint64_t add = GATE_SHUT | ((flags & CF_SHUTDOWN_CANCEL_FUTURES) ? GATE_CANCEL : 0);
  atomic_fetch_or(&p->flags, (uint32_t)add);
  atomic_fetch_or(&p->gate, add);
  if (flags & CF_SHUTDOWN_CANCEL_FUTURES) {
    wait_no_inflight(p);
    drain(p, false);
  }
  if (p->max_queued) ck_ec32_inc(&p->ec, &ec_mode);
  cf__park_notify_all(&p->park);
  if (flags & CF_SHUTDOWN_WAIT) join_workers(p);
  return 0;
}

static int tp_destroy(cf_executor *ex) {
  pool *p = (pool *)ex;
  tp_shutdown(ex, CF_SHUTDOWN_WAIT);
  drain(p, false); /* nothing should be left; stragglers are cancelled */
  for (unsigned i = 0; i < p->n; i++) cf__deque_free(&p->w[i].dq);
  cf__park_destroy(&p->park);
  pthread_mutex_destroy(&p->join_lock);
  p->base.magic = 0;
  free(p->w);
  free(p);
  return 0;
}

static int tp_stats(cf_executor *ex, cf_stats *out) {
  pool *p = (pool *)ex;
  uint64_t queued = cf__injector_len(&p->inj);
  /* relaxed: counters summed now, not a snapshot */
  out->submitted = atomic_load_explicit(&p->inj.pushed, memory_order_relaxed);
  out->cancelled = atomic_load_explicit(&p->drained_cancelled, memory_order_relaxed);
  for (unsigned i = 0; i < p->n; i++) {
    wstats *s = &p->w[i].st;
    out->submitted += atomic_load_explicit(&s->submitted, memory_order_relaxed);
    out->completed += atomic_load_explicit(&s->completed, memory_order_relaxed);
    out->cancelled += atomic_load_explicit(&s->cancelled, memory_order_relaxed);
    out->stolen += atomic_load_explicit(&s->stolen, memory_order_relaxed);
    out->parks += atomic_load_explicit(&s->parks, memory_order_relaxed);
    queued += (uint64_t)cf__deque_size(&p->w[i].dq);
  }
  out->queued = queued;
  out->workers = p->n;
  return 0;
}

static bool tp_is_worker(cf_executor *ex) {
  worker *w = tl_worker;
  return w && w->pool == (pool *)ex;
}

static unsigned tp_workers(cf_executor *ex) {
  return ((pool *)ex)->n;
}
static size_t tp_max_result(cf_executor *ex) {
  return UINT32_MAX;
}

static const cf__executor_vtbl tp_vtbl = {
    .submit = tp_submit,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .stats = tp_stats,
    .is_worker = tp_is_worker,
    .workers = tp_workers,
    .max_result = tp_max_result,
};

int cf__thread_pool_worker_index(const cf_executor *ex) {
  worker *w = tl_worker;
  if (!w || (ex && (const cf_executor *)w->pool != ex)) return -1;
  return (int)w->index;
}

int cf_thread_pool_new(const cf_options *o, cf_executor **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf_options opt;
  cf_options_init(&opt);
  if (o) {
    if (o->size < offsetof(cf_options, max_queued) + sizeof o->max_queued) return CF_EINVAL;
    memcpy(&opt, o, o->size < sizeof opt ? o->size : sizeof opt);
  }
  unsigned n = opt.workers ? opt.workers : cf__online_cpus();
  if (n > CF__MAX_WORKERS) return CF_EINVAL;
  pool *p = aligned_alloc(CF__CACHE_LINE, (sizeof *p + CF__CACHE_LINE - 1) & ~(size_t)63);
  if (!p) return CF_ENOMEM;
  memset(p, 0, sizeof *p);
  p->base.vt = &tp_vtbl;
  p->base.magic = CF__EXECUTOR_MAGIC;
  atomic_init(&p->base.stop_all, false);
  p->n = n;
  snprintf(p->name, sizeof p->name, "%s", opt.name && opt.name[0] ? opt.name : "cfpool");
  p->init = opt.initializer;
  p->init_arg = opt.initializer_arg;
  p->pin = opt.pin_cpus;
  p->max_queued = opt.max_queued;
  atomic_init(&p->gate, 0);
  atomic_init(&p->flags, 0);
  atomic_init(&p->queued, 0);
  atomic_init(&p->drained_cancelled, 0);
  ck_ec32_init(&p->ec, 0);
  pthread_mutex_init(&p->join_lock, NULL);
  cf__injector_init(&p->inj);
  p->w = aligned_alloc(CF__CACHE_LINE, sizeof(worker) * n);
  if (!p->w || cf__park_init(&p->park, n) != 0) {
    free(p->w);
    free(p);
    return CF_ENOMEM;
  }
  memset(p->w, 0, sizeof(worker) * n);
  int rc = 0;
  unsigned ready = 0;
  for (unsigned i = 0; i < n; i++, ready++) {
    worker *w = &p->w[i];
    w->pool = p;
    w->index = i;
    w->rng = 0x9e3779b97f4a7c15ull * (i + 1);
    w->helper.wait = helper_wait;
    if (cf__deque_init(&w->dq, CF__DEQUE_CAP) != 0) {
      rc = CF_ENOMEM;
      break;
    }
  }
  for (unsigned i = 0; rc == 0 && i < n; i++) {
    worker *w = &p->w[i];
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
      rc = CF_ESYS;
      break;
    }
    w->started = true;
  }
  if (rc != 0) {
    /* both: should_exit() reads the flags copy first */
    atomic_fetch_or(&p->flags, GATE_SHUT);
    atomic_fetch_or(&p->gate, GATE_SHUT);
    cf__park_notify_all(&p->park);
    for (unsigned i = 0; i < n; i++)
      if (p->w[i].started) pthread_join(p->w[i].thread, NULL);
    for (unsigned i = 0; i < ready; i++) cf__deque_free(&p->w[i].dq);
    cf__park_destroy(&p->park);
    pthread_mutex_destroy(&p->join_lock);
    free(p->w);
    free(p);
    return rc;
  }
  *out = &p->base;
  return 0;
}

/* ---- fork-join frames: cf_spawn / cf_join -------------------------------- */

static const bool debug_build =
#ifdef CF_DEBUG
    true;
#else
    false;
#endif

/* The calling thread, for the debug owner check (any thread has one). */
static inline void *thread_token(void) {
  return (void *)&tl_worker;
}

/* Not a worker of `ex`, an argument over the inline size, a pool shut down
 * with cancel or broken, or a process pool: an ordinary future. */
static __attribute__((noinline)) int spawn_slow(cf_executor *ex, frame *fr, cf_fn fn,
                                                const void *arg, size_t len) {
  fr->magic = 0; /* a failed spawn cannot be joined */
  cf_future *f = NULL;
  int rc = cf_submit(ex, fn, arg, len, &f); /* checks ex, fn and arg */
  if (rc != 0) return rc;
  fr->u.fut = f;
  fr->err = 0;
  fr->code = 0;
  fr->owner = debug_build ? thread_token() : NULL;
  fr->magic = FR_FUTURE;
  return 0;
}

/* The private stack is full: straight into the deque. */
static __attribute__((noinline)) void spawn_public(worker *w, pool *p, frame *fr) {
  if (__builtin_expect(cf__deque_push(&w->dq, frame_tag(fr)), 1)) {
    /* no Dekker fence: see submit_slow() */
    if (cf__park_should_notify(&p->park)) cf__park_notify_one(&p->park);
    return;
  }
  /* the deque is full too: run it now (a sequential execution of the same
   * program); cf_join only hands the outcome over */
  frame_call(fr);
  fr->magic = FR_RAN;
}

static __attribute__((noinline)) void spawn_publish(worker *w, pool *p) {
  /* relaxed: a hint; a request that comes after this store is served by
   * the next spawn */
  atomic_store_explicit(&w->want, false, memory_order_relaxed);
  publish(w);
  /* no Dekker fence: see submit_slow() */
  if (cf__park_should_notify(&p->park)) cf__park_notify_one(&p->park);
}

int cf_spawn(cf_executor *ex, cf_frame *cfr, cf_fn fn, const void *arg, size_t len) {
  frame *fr = (frame *)cfr;
  worker *w = tl_worker;
  if (__builtin_expect(w != NULL && (cf_executor *)w->pool == ex && fr && fn &&
                           len <= CF_FRAME_INLINE_ARG && (arg || !len),
                       1)) {
    pool *p = w->pool;
    /* relaxed: a flag check, as in tp_submit() */
    uint32_t g = atomic_load_explicit(&p->flags, memory_order_relaxed);
    if (__builtin_expect(!(g & (GATE_BROKEN | GATE_CANCEL)), 1)) {
      fr->fn = fn;
      fr->arg_len = (uint32_t)len;
      copy48(fr->arg, arg, len);
      /* relaxed: read by others only once published, and the push's
       * release store publishes it; a join that finds the frame elsewhere
       * than on top of pv (out of LIFO order) reads it too */
      atomic_store_explicit(&fr->word, 0, memory_order_relaxed);
      if (debug_build) fr->owner = thread_token();
      fr->magic = FR_QUEUED; /* spawner-only field: thieves never read it */
      unsigned n = w->pv_n;
      if (__builtin_expect(n < PV_CAP, 1)) {
        w->pv[n] = fr;
        w->pv_n = n + 1;
        /* relaxed: hints. A thief found our deque empty, or a worker
         * sleeps while none searches: make our frames stealable. */
        if (__builtin_expect(atomic_load_explicit(&w->want, memory_order_relaxed) ||
                                 cf__park_should_notify(&p->park),
                             0))
          spawn_publish(w, p);
        return 0;
      }
      spawn_public(w, p, fr);
      return 0;
    }
  }
  if (!fr) return CF_EINVAL;
  return spawn_slow(ex, fr, fn, arg, len);
}

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

/* The spawner's join found something else than its frame at the bottom of
 * its deque (`t`: NULL when the frame was stolen). Help until the frame is
 * done: our own deque first, then the thief's deque (leapfrogging, as the
 * future join in helper_wait_slow()), then block briefly and look again. */
static __attribute__((noinline)) void join_wait(worker *w, frame *fr, cf_future *t) {
  pool *p = w->pool;
  cf_future *mine = frame_tag(fr);
  int64_t idle_since = 0;
  for (;;) {
    if (t) {
      if (t == mine) {
        frame_call(fr); /* not stolen after all (joins out of order) */
        return;
      }
      run_task(w, t);
      idle_since = 0;
    }
    /* acquire: pairs with the release in frame_publish() (the result) */
    uint32_t s = atomic_load_explicit(&fr->word, memory_order_acquire);
    if (s & FR_DONE) return;
    if (w->pv_n) { /* private frames first: LIFO joins leave none here */
      t = frame_tag(w->pv[--w->pv_n]);
      continue;
    }
    t = cf__deque_pop(&w->dq);
    if (t) continue;
    unsigned k = s >> FR_THIEF_SHIFT;
    if (k >= 1 && k <= p->n && k - 1 != w->index) {
      t = steal_from(w, &p->w[k - 1]);
    } else {
      t = take_injected(w);
      if (!t) t = steal_any(w);
    }
    if (t) continue;
    int64_t now = cf__now_ns();
    if (idle_since == 0) idle_since = now;
    if (now - idle_since < HELP_SPIN_NS) {
      cf__cpu_relax();
      continue;
    }
    frame_block(fr, now + HELP_BLOCK_NS);
    idle_since = 0;
  }
}

/* The outcome of a done frame (magic already FR_JOINED). */
static inline int frame_result(frame *fr, void *out, size_t cap, size_t *len) {
  if (__builtin_expect(fr->err != 0, 0)) return fr->err; /* no heap result then */
  size_t n = fr->res_len;
  if (len) *len = n;
  int rc = 0;
  if (__builtin_expect(n <= CF_FRAME_INLINE_RESULT, 1)) {
    if (n > cap) return CF_ERANGE;
    copy48(out, fr->res, n);
    return 0;
  }
  if (n > cap) {
    rc = CF_ERANGE;
  } else {
    memcpy(out, fr->u.res_heap, n);
  }
  cf__free(fr->u.res_heap, n);
  return rc;
}

static __attribute__((noinline)) int join_future(frame *fr, void *out, size_t cap, size_t *len) {
  cf_future *f = fr->u.fut;
  int rc = cf_future_result(f, out, cap, len, -1);
  fr->err = rc;
  fr->code = 0;
  if (rc == CF_ETASK) {
    int code = 0;
    if (cf_future_error(f, &code, NULL, 0) == 0) fr->code = code;
  }
  (void)cf_future_release(f);
  fr->magic = FR_JOINED;
  return rc;
}

int cf_join(cf_frame *cfr, void *out, size_t cap, size_t *len) {
  frame *fr = (frame *)cfr;
  if (!fr || (!out && cap)) return CF_EINVAL;
  uint32_t m = fr->magic;
  if (debug_build && (m == FR_QUEUED || m == FR_RAN || m == FR_FUTURE) &&
      fr->owner != thread_token())
    return CF_EINVAL; /* joined by another thread than its spawner */
  if (__builtin_expect(m == FR_QUEUED, 1)) {
    worker *w = tl_worker;
    if (!w) return CF_EINVAL; /* not the spawning worker */
    unsigned n = w->pv_n;
    if (__builtin_expect(n != 0 && w->pv[n - 1] == fr, 1)) {
      /* still private (the usual case): run it here, no atomic at all */
      w->pv_n = n - 1;
      frame_call(fr);
    } else {
      cf_future *t = cf__deque_pop(&w->dq);
      if (__builtin_expect(t == frame_tag(fr), 1))
        frame_call(fr); /* published, not stolen: no atomic on the frame */
      else
        join_wait(w, fr, t);
    }
  } else if (m == FR_FUTURE) {
    return join_future(fr, out, cap, len);
  } else if (m != FR_RAN) {
    return CF_EINVAL; /* never spawned, a failed spawn, or joined already */
  }
  fr->magic = FR_JOINED;
  return frame_result(fr, out, cap, len);
}

int cf_frame_error(const cf_frame *cfr, int *code) {
  const frame *fr = (const frame *)cfr;
  if (!fr || fr->magic != FR_JOINED || fr->err != CF_ETASK) return CF_EINVAL;
  if (code) *code = fr->code;
  return 0;
}
