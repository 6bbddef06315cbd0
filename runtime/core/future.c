/*
 * future.c — futures: allocation, completion, waiting, callbacks, and the
 * public cf_future_* / cf_call_* calls.
 *
 * DESIGN
 * The state word, its transitions and the reference count are in future.h.
 *
 * Outcome claim (thread futures). A RUNNING thread task can be failed from
 * outside only by its deadline (a waiter that reaches it fails the future
 * with CF_EDEADLINE), and a PENDING one by its deadline or a broken pool.
 * Two completers must not both write the outcome fields, so the outcome is
 * claimed first: a CAS of f->err from 0 to the error (CF__ERR_OK for
 * FINISHED). The winner alone writes the word to done, from whatever
 * not-done state it holds; losers wait for the word. The runner of a task
 * without a deadline cannot race (nobody else completes a running task
 * without a deadline: cancel of a running thread task only sets STOP, and
 * the pool fails only futures it took out of its queues), so it skips the
 * claim: the hot path has one CAS to start and one to finish. A cancel
 * (PENDING -> CANCELLED) needs no claim: readers derive CF_ECANCELLED from
 * the state, and a claimer that loses to it sees a done word.
 *
 * Deadlines of thread tasks. The executor's deadline timer (deadline.h)
 * fails the future (FAILED/CF_EDEADLINE + STOP) at its deadline if it is not
 * done, whether or not anyone waits; the task, if it runs, sees
 * cf_call_stop_requested() and its late result is dropped. Whoever else
 * reaches the deadline first makes the same claim: the runner (a task whose
 * deadline passed before it runs fails without running; one that finishes
 * after it completes as FAILED/CF_EDEADLINE) and a waiter whose wait reaches
 * it (cf__future_wait_until, cf_wait, as_completed). The thread whose CAS
 * makes a future with a deadline done takes it off the timer, after waking
 * its waiters and before its callbacks.
 *
 * Callbacks. A lock-free LIFO of cf__cb on f->callbacks. The completer,
 * after its done CAS (seq_cst), loads the list (seq_cst) and, if it is not
 * empty, exchanges in CF__CB_CLOSED and runs the nodes in registration
 * order. An adder pushes (seq_cst CAS) and then re-loads the word (seq_cst):
 * either the completer sees the node or the adder sees the done word and
 * runs the list itself (the exchange makes that idempotent). A push that
 * meets CF__CB_CLOSED runs its callback at once.
 *
 * Lifetime. Every completer holds a reference while it completes (the
 * runner its task reference, a canceller or expirer a user handle).
 *
 * Allocation: from the calling thread's cache (fcache.h).
 */
#include "future.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "deadline.h"
#include "executor.h"
#include "fcache.h"
#include "scope.h"
#include "sys.h"

#define TLS_IE __attribute__((tls_model("initial-exec")))

_Thread_local cf__helper *cf__current_helper TLS_IE;
_Thread_local cf_call *cf__inline_spawn;

static inline bool is_local(const cf_future *f) {
  return f->vt == &cf__local_future_vtbl;
}
static inline bool valid(const cf_future *f) {
  return f && f->magic == CF__FUTURE_MAGIC;
}

const cf_future cf__future_template = {
    .magic = CF__FUTURE_MAGIC,
    .rc = CF__RC_HANDLE + CF__RC_REF,
    .vt = &cf__local_future_vtbl,
};

cf_future *cf__future_alloc(void) {
  cf_future *f = cf__fcache_take();
  if (!f) f = cf__fcache_refill();
  if (!f) {
    f = cf__alloc(sizeof *f);
    if (!f) return NULL;
  }
  /* Publication to other threads goes through whatever hands the future
   * over (a queue's release/acquire). The template covers every field up
   * to ext; the inline buffers are left as they are. */
  memcpy(f, &cf__future_template, offsetof(cf_future, arg_inline));
  /* relaxed: published with f by whatever hands it over */
  atomic_store_explicit(&f->word, &f->state, memory_order_relaxed);
  return f;
}

int cf__future_set_arg(cf_future *f, const void *arg, size_t len) {
  if (len > UINT32_MAX) return CF_E2BIG;
  if (len <= CF__INLINE_ARG) {
    cf__copy(f->arg_inline, arg, len);
  } else {
    void *p = cf__alloc(len);
    if (!p) return CF_ENOMEM;
    memcpy(p, arg, len);
    f->arg_heap = p;
  }
  f->arg_len = (uint32_t)len;
  return 0;
}

static void free_cb_list(cf__cb *cb) {
  while (cb && cb != CF__CB_CLOSED) {
    cf__cb *next = cb->next;
    cf__free(cb, sizeof *cb);
    cb = next;
  }
}

void cf__future_destroy(cf_future *f) {
  /* the common case: a thread future with everything inline */
  cf__cb *cbs = atomic_load_explicit(&f->callbacks, memory_order_relaxed);
  if (f->vt == &cf__local_future_vtbl && !f->arg_heap && !f->res_heap && !f->msg &&
      (cbs == NULL || cbs == CF__CB_CLOSED)) {
    cf__fcache_put(f);
    return;
  }
  if (f->vt && f->vt->destroy) f->vt->destroy(f);
  if (f->arg_len > CF__INLINE_ARG) cf__free(f->arg_heap, f->arg_len);
  if (f->res_heap) cf__free(f->res_heap, f->res_len);
  if (f->msg) cf__free(f->msg, strlen(f->msg) + 1);
  free_cb_list(atomic_load_explicit(&f->callbacks, memory_order_relaxed));
  cf__fcache_put(f);
}

/* ---- completion ------------------------------------------------------- */

void cf__future_wake(_Atomic uint32_t *word, uint32_t old, bool shared) {
  if (old & CF__ST_WAITERS) cf__futex_wake(word, INT32_MAX, shared);
}

cf__cb *cf__future_take_callbacks(cf_future *f, bool run_internal) {
  cf__cb *list = atomic_exchange(&f->callbacks, CF__CB_CLOSED);
  if (list == CF__CB_CLOSED || list == NULL) return NULL;
  cf__cb *ordered = NULL; /* LIFO -> registration order */
  while (list) {
    cf__cb *next = list->next;
    list->next = ordered;
    ordered = list;
    list = next;
  }
  if (!run_internal) return ordered;
  cf__cb *user = NULL, **tail = &user;
  while (ordered) {
    cf__cb *next = ordered->next;
    if (ordered->internal) {
      ordered->fn(f, ordered->arg);
      cf__free(ordered, sizeof *ordered);
    } else {
      *tail = ordered;
      tail = &ordered->next;
    }
    ordered = next;
  }
  *tail = NULL;
  return user;
}

void cf__future_run_cb_list(cf_future *f, cf__cb *list) {
  while (list) {
    cf__cb *next = list->next;
    list->fn(f, list->arg);
    cf__free(list, sizeof *list);
    list = next;
  }
}

void cf__future_run_callbacks(cf_future *f) {
  cf__future_run_cb_list(f, cf__future_take_callbacks(f, false));
}

/* After this thread made the word done (old = the replaced word). */
static inline __attribute__((always_inline)) void after_done(cf_future *f, uint32_t old) {
  if (old & CF__ST_WAITERS) cf__futex_wake(&f->state, INT32_MAX, false); /* thread futures */
  if (f->deadline) cf__deadline_done(f); /* before user code (deadline.h, step 3) */
  /* seq_cst load after the seq_cst done CAS: pairs with the push + word
   * re-load in cf_future_add_done_callback (Dekker). */
  if (!f->shared && atomic_load(&f->callbacks) != NULL) cf__future_run_callbacks(f);
}

/* Claim the outcome of a thread future (see DESIGN). */
static inline bool claim(cf_future *f, int32_t err) {
  int32_t zero = 0;
  return atomic_compare_exchange_strong(&f->err, &zero, err);
}

/* The claim winner: not-done -> `to` (flags: STOP kept, `extra` added).
 * False if a cancel made the word done first. */
static bool complete_claimed(cf_future *f, uint32_t to, uint32_t extra) {
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  for (;;) {
    if (cf__st_done(w)) return false; /* a cancel got there first */
    /* seq_cst: its release half publishes the outcome written before (pairs
     * with readers' acquire); seq_cst as a whole because after_done's load
     * of the callback list is the second half of a Dekker with
     * cf_future_add_done_callback (push, then re-load the word). On x86 it
     * is the same lock cmpxchg. */
    if (atomic_compare_exchange_weak_explicit(word, &w, cf__st_with(w, to) | extra,
                                              memory_order_seq_cst, memory_order_relaxed))
      break;
  }
  after_done(f, w);
  return true;
}

bool cf__future_fail(cf_future *f, int err) {
  if (f->shared) return false; /* process futures record failures in their slot */
  if (cf__st_done(atomic_load_explicit(f->word, memory_order_acquire))) return false;
  if (!claim(f, err)) return false;
  return complete_claimed(f, CF_STATE_FAILED, err == CF_EDEADLINE ? CF__ST_STOP : 0);
}

bool cf__future_transition(cf_future *f, uint32_t from, uint32_t to, int err) {
  _Atomic uint32_t *word = f->word;
  bool done_to = to >= CF_STATE_FINISHED;
  if (is_local(f) && (to == CF_STATE_FINISHED || to == CF_STATE_FAILED)) {
    uint32_t w = atomic_load_explicit(word, memory_order_acquire);
    if (cf__st_state(w) != from) return false;
    if (!claim(f, to == CF_STATE_FAILED ? err : CF__ERR_OK)) return false;
    return complete_claimed(f, to, 0);
  }
  /* CANCELLED records nothing: readers derive CF_ECANCELLED from the state */
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  for (;;) {
    if (cf__st_state(w) != from) return false;
    uint32_t nw = cf__st_with(w, to);
    if (!done_to) nw |= w & (CF__ST_WAITERS | CF__ST_NOTIFY);
    /* seq_cst: release publishes what the caller recorded, acquire orders
     * what it reads next; seq_cst for the Dekker with
     * cf_future_add_done_callback (see complete_claimed) */
    if (atomic_compare_exchange_weak_explicit(word, &w, nw, memory_order_seq_cst,
                                              memory_order_relaxed))
      break;
  }
  if (done_to) {
    cf__future_wake(word, w, f->shared);
    if (f->deadline && is_local(f)) cf__deadline_done(f);
    /* Shared (process) futures too: this transition is always made in the
     * parent (a cancel of a PENDING task), which no worker will report. */
    if (atomic_load(&f->callbacks) != NULL) cf__future_run_callbacks(f);
  }
  return true;
}

void cf__future_request_stop(cf_future *f) {
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  while (!cf__st_done(w) && !(w & CF__ST_STOP)) {
    /* relaxed: STOP is a hint polled by the task; nothing is published */
    if (atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_STOP, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
}

/* ---- running a thread task ------------------------------------------- */

static inline __attribute__((always_inline)) int local_ret(cf_call *c, const void *v, size_t len) {
  cf_future *f = c->ctx;
  int rc = cf__call_record_return(c, v, len);
  if (rc != 0) return rc;
  if (len <= CF__INLINE_RES) {
    cf__copy(f->res_inline, v, len);
  } else {
    void *p = cf__alloc(len);
    if (!p) return cf__call_record_error(c, CF_ENOMEM);
    memcpy(p, v, len);
    f->res_heap = p;
  }
  f->res_len = (uint32_t)len;
  return 0;
}

static int local_fail(cf_call *c, int code, const char *msg) {
  cf_future *f = c->ctx;
  if (cf__call_record_fail(c) != 0) return CF_EINVAL;
  f->task_code = code;
  if (msg) {
    size_t n = strnlen(msg, CF_MESSAGE_MAX - 1);
    char *m = cf__alloc(n + 1);
    if (m) {
      memcpy(m, msg, n);
      m[n] = 0;
      f->msg = m;
    }
  }
  return 0;
}

/* stop_all: the executor's kill switch (shutdown with CF_SHUTDOWN_KILL). */
static bool local_stop(cf_call *c) {
  cf_future *f = c->ctx;
  if (atomic_load_explicit(f->word, memory_order_relaxed) & CF__ST_STOP) return true;
  if (f->deadline && cf__now_ns() >= f->deadline) return true;
  cf_executor *ex = f->executor;
  /* relaxed: a polled hint */
  return ex && atomic_load_explicit(&ex->stop_all, memory_order_relaxed);
}

static const cf__call_ops local_call_ops = {local_ret, local_fail, local_stop, NULL};

/* ---- the claim and the local call, for promises (promise.c) ---------- */

bool cf__future_claim(cf_future *f, int32_t err) {
  return claim(f, err);
}

bool cf__future_complete_claimed(cf_future *f, uint32_t to) {
  return complete_claimed(f, to, 0);
}

void cf__future_call_init(cf_future *f, cf_call *c) {
  *c = (cf_call){
      .ops = &local_call_ops,
      .arg = cf__future_arg(f),
      .arg_len = f->arg_len,
      .ctx = f,
      .max_result = UINT32_MAX,
      .outcome = CF__OUTCOME_NONE,
      .err = 0,
  };
}

/* Drop the executor's task reference (the runner always holds one): a
 * single fetch_sub instead of cf__future_unref's CAS loop. acq_rel: as in
 * cf__future_unref. */
static inline void unref_task(cf_future *f) {
  uint64_t old = atomic_fetch_sub_explicit(&f->rc, CF__RC_REF, memory_order_acq_rel);
  cf__assert((old >> 32) != 0); /* the runner holds the task reference */
  if (old == CF__RC_REF) cf__future_destroy(f);
}

int cf__future_run_tagged(cf_future *f, unsigned owner, uint64_t tag) {
  _Atomic uint32_t *word = &f->state;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  for (;;) {
    if (cf__st_state(w) != CF_STATE_PENDING) {
      int r = cf__st_state(w) == CF_STATE_CANCELLED ? 0 : -1; /* or failed: deadline */
      unref_task(f);
      return r;
    }
    if (f->deadline && cf__now_ns() >= f->deadline) {
      cf__future_fail(f, CF_EDEADLINE);
      unref_task(f);
      return -1;
    }
    uint32_t nw = (cf__st_with(w, CF_STATE_RUNNING) & ~CF__ST_OWNER_MASK) |
                  ((uint32_t)owner << CF__ST_OWNER_SHIFT) | (w & (CF__ST_WAITERS | CF__ST_NOTIFY));
    /* relaxed: the task's fields were published by the queue that handed f
     * over; the CAS only decides who runs it */
    if (atomic_compare_exchange_weak_explicit(word, &w, nw, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  /* release: pairs with the acquire load in the thread pool's helper
   * (help.c), which reads the tag only after it saw RUNNING */
  if (tag) __atomic_store_n(&f->ext[0], tag, __ATOMIC_RELEASE);
  cf_call c = {
      .ops = &local_call_ops,
      .arg = cf__future_arg(f),
      .arg_len = f->arg_len,
      .ctx = f,
      .max_result = UINT32_MAX,
      .outcome = CF__OUTCOME_NONE,
      .err = 0,
  };
  /* the task runs in its scope (scope.h: Inheritance); a task run while
   * another waits on this thread (help.c) gets its own */
  cf_scope *outer = cf__scope_tl;
  cf__scope_tl = f->scope;
  f->fn(&c);
  cf__scope_tl = outer;
  uint32_t to = CF_STATE_FINISHED;
  int32_t err = CF__ERR_OK;
  if (c.outcome == CF__OUTCOME_FAILED) {
    to = CF_STATE_FAILED;
    err = c.err;
  }
  if (f->deadline) {
    if (cf__now_ns() >= f->deadline) {
      to = CF_STATE_FAILED;
      err = CF_EDEADLINE;
    }
    if (claim(f, err)) complete_claimed(f, to, 0);
    /* else: a waiter failed it at its deadline; our outcome is dropped */
  } else {
    /* no deadline: nobody else completes a running task (see DESIGN) */
    if (to == CF_STATE_FAILED) atomic_store_explicit(&f->err, err, memory_order_relaxed);
    w = atomic_load_explicit(word, memory_order_relaxed);
    /* seq_cst: release for the result and err written above (pairs with
     * the acquire of readers that see the done word), seq_cst for the
     * Dekker with cf_future_add_done_callback (see complete_claimed) */
    while (!atomic_compare_exchange_weak_explicit(word, &w, cf__st_with(w, to),
                                                  memory_order_seq_cst, memory_order_relaxed)) {
    }
    after_done(f, w);
  }
  unref_task(f);
  return 1;
}

/* ---- waiting ---------------------------------------------------------- */

#define SPIN_NS 2000        /* spin this long before FUTEX_WAIT (DESIGN.md) */
#define YIELD_AFTER_NS 1000 /* shared words: spin this long before yielding */

/* The wait is over: the word is done, or its use is (another generation). */
static inline bool over(uint32_t w, uint32_t gen) {
  return cf__st_done(w) || (gen != CF__GEN_ANY && cf__st_gen(w) != gen);
}

int cf__word_wait_gen(_Atomic uint32_t *word, uint32_t gen, int64_t deadline_abs, bool shared) {
  /* acquire (every load of the word here): pairs with the completer's
   * release CAS, so the outcome it wrote is visible once the word is done */
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  if (over(w, gen)) return 0;
  int64_t now = cf__now_ns();
  if (deadline_abs < 0 || now < deadline_abs) {
    int64_t spin_start = now, spin_end = now + SPIN_NS;
    for (;;) {
      /* the word every pause (a PAUSE costs 10-140 cycles by CPU), the
       * clock every 32 (every 4 and a yield on a shared word) */
      for (int i = 0; i < (shared ? 4 : 32); i++) {
        if (over(atomic_load_explicit(word, memory_order_acquire), gen)) return 0;
        cf__cpu_relax();
      }
      /* A shared word is completed by a worker process, which may share
       * this CPU: let it run (on a CPU of our own this returns at once). */
      now = cf__now_ns();
      if (shared && now - spin_start > YIELD_AFTER_NS) sched_yield();
      if (now >= spin_end || (deadline_abs >= 0 && now >= deadline_abs)) break;
    }
  }
  for (;;) {
    w = atomic_load_explicit(word, memory_order_acquire);
    if (over(w, gen)) return 0;
    if (deadline_abs >= 0 && cf__now_ns() >= deadline_abs) return CF_ETIMEDOUT;
    if (!(w & CF__ST_WAITERS)) {
      /* relaxed: the bit only tells the completer to wake us; both are RMWs
       * of this word (the CAS fails on a word of another generation), and
       * the futex call re-checks it */
      if (!atomic_compare_exchange_weak_explicit(word, &w, w | CF__ST_WAITERS, memory_order_relaxed,
                                                 memory_order_relaxed))
        continue;
      w |= CF__ST_WAITERS;
    }
    /* returns on a wake-up (perhaps spurious or stale), a changed word, a
     * signal or the deadline: the loop re-reads the word in every case */
    cf__futex_wait(word, w, deadline_abs, shared);
  }
}

uint32_t cf__future_load_shared(cf_future *f, _Atomic uint32_t *word, uint32_t w) {
  /* relaxed: f->state's generation is set before f is handed out and never
   * changes (future.h DESIGN: the move) */
  uint32_t gen = cf__st_gen(atomic_load_explicit(&f->state, memory_order_relaxed));
  while (cf__st_gen(w) != gen) {
    _Atomic uint32_t *now = atomic_load_explicit(&f->word, memory_order_acquire);
    if (now == word) return cf__st_make(gen, 0, CF_STATE_RUNNING); /* scribbled */
    word = now;
    w = atomic_load_explicit(word, memory_order_acquire);
  }
  return w;
}

/* A process future: wait on its slot word for its generation, until the
 * word is done or has moved (future.h DESIGN: the move). */
static int block_shared(cf_future *f, int64_t deadline_abs) {
  uint32_t gen = cf__st_gen(atomic_load_explicit(&f->state, memory_order_relaxed));
  for (;;) {
    _Atomic uint32_t *word = atomic_load_explicit(&f->word, memory_order_acquire);
    /* moved (then done), or a word that never moves (MPI's futures: the
     * shared flavour on their own state word, mpi_pool.h) */
    if (word == &f->state) return cf__word_wait(word, deadline_abs, true);
    int r = cf__word_wait_gen(word, gen, deadline_abs, true);
    if (r) return r;
    if (cf__st_gen(atomic_load_explicit(word, memory_order_acquire)) == gen) return 0; /* done */
    if (atomic_load_explicit(&f->word, memory_order_acquire) != word) continue;        /* moved */
    /* Another generation in a slot f still points at: a rogue worker wrote
     * it. The pool repairs such a word when it sees it (its sweep, the
     * death of the worker that owned it): look again every millisecond. */
    if (deadline_abs >= 0 && cf__now_ns() >= deadline_abs) return CF_ETIMEDOUT;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

int cf__future_block_until(cf_future *f, int64_t deadline_abs) {
  if (f->shared) return block_shared(f, deadline_abs);
  int64_t task_dl = is_local(f) ? f->deadline : 0;
  if (task_dl <= 0) return cf__word_wait(f->word, deadline_abs, f->shared);
  int64_t limit = deadline_abs >= 0 && deadline_abs < task_dl ? deadline_abs : task_dl;
  if (cf__word_wait(f->word, limit, f->shared) == 0) return 0;
  if (cf__now_ns() < task_dl) return CF_ETIMEDOUT; /* the wait's own deadline */
  /* The task deadline passed: fail the future. Whether this call or a
   * concurrent completer claimed the outcome, the word is about to be done. */
  (void)cf__future_fail(f, CF_EDEADLINE);
  /* the claim's winner may be preempted between its claim and its CAS of
   * the word: block (it wakes waiters) instead of spinning on its CPU */
  return cf__word_wait(f->word, -1, f->shared);
}

static inline __attribute__((always_inline)) int wait_until(cf_future *f, int64_t deadline_abs) {
  cf__helper *h = cf__current_helper;
  if (h) return h->wait(h, f, deadline_abs);
  return cf__future_block_until(f, deadline_abs);
}

int cf__future_wait_until(cf_future *f, int64_t deadline_abs) {
  if (cf__st_done(cf__future_load(f))) return 0;
  return wait_until(f, deadline_abs);
}

/* ---- public: futures --------------------------------------------------- */

static inline __attribute__((always_inline)) int local_result(cf_future *f, void *out, size_t cap,
                                                              size_t *len) {
  return cf__future_copy_result(f, out, cap, len);
}

static int local_error(cf_future *f, int *err, int *code, char *msg, size_t cap) {
  int e = atomic_load_explicit(&f->err, memory_order_relaxed);
  if (err) *err = e;
  if (code) *code = e == CF_ETASK ? f->task_code : e;
  if (msg && cap) {
    const char *m = e == CF_ETASK ? (f->msg ? f->msg : "") : cf_strerror(e);
    size_t n = strnlen(m, cap - 1);
    memcpy(msg, m, n);
    msg[n] = 0;
  }
  return 0;
}

const cf__future_vtbl cf__local_future_vtbl = {
    .result = local_result,
    .error = local_error,
};

/* The error a done word reports (0 for FINISHED). */
static int done_error(cf_future *f, uint32_t w) {
  switch (cf__st_state(w)) {
    case CF_STATE_FINISHED:
      return 0;
    case CF_STATE_CANCELLED:
      return CF_ECANCELLED;
    default: {
      int e = CF_EPROTO;
      if (f->vt && f->vt->error) {
        if (f->vt->error(f, &e, NULL, NULL, 0) != 0) e = CF_EPROTO;
      }
      return e;
    }
  }
}

int cf_future_wait(cf_future *f, int64_t timeout_ns) {
  if (!valid(f)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  if (cf__st_done(cf__future_load(f))) return 0;
  return wait_until(f, timeout_ns < 0 ? -1 : cf__deadline_after(timeout_ns));
}

int cf_future_wait_ex(cf_future *f, int64_t timeout_ns, unsigned flags) {
  if (!valid(f) || (flags & ~CF_WAIT_NO_HELP)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  if (cf__st_done(cf__future_load(f))) return 0;
  int64_t deadline = timeout_ns < 0 ? -1 : cf__deadline_after(timeout_ns);
  if (flags & CF_WAIT_NO_HELP) return cf__future_block_until(f, deadline);
  return wait_until(f, deadline);
}

int cf_future_result(cf_future *f, void *out, size_t cap, size_t *len, int64_t timeout_ns) {
  if (!valid(f) || (!out && cap)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  /* acquire: pairs with the completer's release (result bytes) */
  uint32_t w = cf__future_load(f);
  if (!cf__st_done(w)) {
    int r = wait_until(f, timeout_ns < 0 ? -1 : cf__deadline_after(timeout_ns));
    if (r) return r;
    w = cf__future_load(f);
  }
  if (cf__st_state(w) == CF_STATE_FINISHED) {
    int r;
    if (is_local(f))
      r = local_result(f, out, cap, len);
    else
      r = f->vt && f->vt->result ? f->vt->result(f, out, cap, len) : CF_EPROTO;
    /* no buffer at all: a success check (the size still goes to *len) */
    return r == CF_ERANGE && !out && !cap ? 0 : r;
  }
  return done_error(f, w);
}

int cf_future_cancel(cf_future *f) {
  if (!valid(f)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  if (f->vt && f->vt->cancel) return f->vt->cancel(f);
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  for (;;) {
    switch (cf__st_state(w)) {
      case CF_STATE_PENDING:
        if (cf__future_transition(f, CF_STATE_PENDING, CF_STATE_CANCELLED, CF_ECANCELLED)) {
          return 0;
        }
        w = atomic_load_explicit(word, memory_order_acquire);
        continue;
      case CF_STATE_RUNNING:
        if (f->vt && f->vt->cancel_running) return f->vt->cancel_running(f);
        cf__future_request_stop(f);
        /* it may have finished meanwhile */
        w = atomic_load_explicit(word, memory_order_acquire);
        if (cf__st_state(w) == CF_STATE_RUNNING) return CF_EBUSY;
        continue;
      case CF_STATE_CANCELLED:
        return 0;
      default:
        return CF_EDONE;
    }
  }
}

int cf_future_state(cf_future *f) {
  if (!valid(f)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  return (int)cf__st_state(cf__future_load(f));
}

bool cf_future_done(cf_future *f) {
  return valid(f) && !cf__future_foreign(f) && cf__st_done(cf__future_load(f));
}

bool cf_future_running(cf_future *f) {
  return valid(f) && !cf__future_foreign(f) && cf__st_state(cf__future_load(f)) == CF_STATE_RUNNING;
}

bool cf_future_cancelled(cf_future *f) {
  return valid(f) && !cf__future_foreign(f) &&
         cf__st_state(cf__future_load(f)) == CF_STATE_CANCELLED;
}

int cf_future_error(cf_future *f, int *code, char *message, size_t cap) {
  if (!valid(f)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  uint32_t w = cf__future_load(f);
  uint32_t st = cf__st_state(w);
  if (st == CF_STATE_CANCELLED) {
    if (code) *code = CF_ECANCELLED;
    if (message && cap) {
      size_t n = strnlen(cf_strerror(CF_ECANCELLED), cap - 1);
      memcpy(message, cf_strerror(CF_ECANCELLED), n);
      message[n] = 0;
    }
    return 0;
  }
  if (st == CF_STATE_FINISHED) { /* no error (Python's exception() is None) */
    if (code) *code = 0;
    if (message && cap) message[0] = 0;
    return 0;
  }
  if (st != CF_STATE_FAILED) return CF_EINVAL;
  if (!f->vt || !f->vt->error) return CF_EINVAL;
  return f->vt->error(f, NULL, code, message, cap);
}

int cf_future_crash_info(cf_future *f, cf_crash_info *out) {
  if (!valid(f) || !out) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  if (!cf__st_done(cf__future_load(f))) return CF_EINVAL;
  if (!f->vt || !f->vt->crash_info) return CF_EINVAL;
  return f->vt->crash_info(f, out);
}

cf__cb *cf__cb_new(cf_done_fn fn, void *arg, bool internal) {
  cf__cb *cb = cf__alloc(sizeof *cb);
  if (!cb) return NULL;
  cb->next = NULL;
  cb->fn = fn;
  cb->arg = arg;
  cb->internal = internal;
  return cb;
}

void cf__future_add_cb(cf_future *f, cf__cb *cb) {
  if (cf__st_done(cf__future_load(f))) {
    cf_done_fn fn = cb->fn;
    void *arg = cb->arg;
    cf__free(cb, sizeof *cb);
    fn(f, arg);
    return;
  }
  cf__cb *head = atomic_load(&f->callbacks);
  for (;;) {
    if (head == CF__CB_CLOSED) {
      cf_done_fn fn = cb->fn;
      void *arg = cb->arg;
      cf__free(cb, sizeof *cb);
      fn(f, arg);
      return;
    }
    cb->next = head;
    if (atomic_compare_exchange_weak(&f->callbacks, &head, cb)) break;
  }
  if (f->vt && f->vt->watch) f->vt->watch(f);
  /* seq_cst: pairs with the completer's done CAS + list load (DESIGN); a
   * process future's watch took the pool's lock (slot_future.c) */
  uint32_t w = f->shared ? cf__future_load(f) : atomic_load(atomic_load(&f->word));
  if (cf__st_done(w)) cf__future_run_callbacks(f);
}

int cf__future_add_callback(cf_future *f, cf_done_fn fn, void *arg, bool internal) {
  if (!valid(f) || !fn) return CF_EINVAL;
  if (cf__st_done(cf__future_load(f))) {
    fn(f, arg);
    return 0;
  }
  cf__cb *cb = cf__cb_new(fn, arg, internal);
  if (!cb) return CF_ENOMEM;
  cf__future_add_cb(f, cb);
  return 0;
}

int cf_future_add_done_callback(cf_future *f, cf_done_fn fn, void *arg) {
  if (!valid(f)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  return cf__future_add_callback(f, fn, arg, false);
}

int cf_future_retain(cf_future *f) {
  if (!valid(f)) return CF_EINVAL;
  int e = cf__future_foreign(f);
  if (e) return e;
  uint64_t v = atomic_load_explicit(&f->rc, memory_order_relaxed);
  do {
    if ((uint32_t)v == 0 || (uint32_t)v == UINT32_MAX) return CF_EINVAL;
    /* relaxed: the caller holds a handle; nothing to order */
  } while (!atomic_compare_exchange_weak_explicit(&f->rc, &v, v + CF__RC_HANDLE,
                                                  memory_order_relaxed, memory_order_relaxed));
  return 0;
}

int cf_future_release(cf_future *f) {
  if (!valid(f)) return CF_EINVAL;
  /* a fork's copy is left alone: releasing it would mark the parent's slot */
  int e = cf__future_foreign(f);
  if (e) return e;
  uint64_t v = atomic_load_explicit(&f->rc, memory_order_relaxed);
  do {
    if ((uint32_t)v == 0) return CF_EINVAL; /* no handle left: a release too many */
    /* acq_rel: as cf__future_unref */
  } while (!atomic_compare_exchange_weak_explicit(&f->rc, &v, v - CF__RC_HANDLE,
                                                  memory_order_acq_rel, memory_order_relaxed));
  if (v == CF__RC_HANDLE) cf__future_destroy(f);
  return 0;
}

/* ---- public: inside a task --------------------------------------------- */

const void *cf_call_arg(cf_call *call, size_t *len) {
  if (!call) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = call->arg_len;
  return call->arg;
}

int cf_call_return(cf_call *call, const void *value, size_t len) {
  if (call && call->ops == &local_call_ops) return local_ret(call, value, len);
  if (!call || !call->ops) return CF_EINVAL;
  return call->ops->ret(call, value, len);
}

int cf_call_fail(cf_call *call, int code, const char *message) {
  if (!call || !call->ops) return CF_EINVAL;
  return call->ops->fail(call, code, message);
}

bool cf_call_stop_requested(cf_call *call) {
  if (!call || !call->ops || !call->ops->stop_requested) return false;
  return call->ops->stop_requested(call);
}
