/*
 * future.h — the future object and its state word (internal).
 *
 * DESIGN
 * Every future has one 32-bit atomic state word. For a thread-pool future it
 * is f->state, inside the object, and futex calls on it are PRIVATE. For a
 * process-pool future it is first the word of its task slot in the shared
 * segment (f->word points there, f->shared is 1, futex calls are shared);
 * once the task is done the pool copies the outcome into the future and
 * MOVES the word (below). A word is only ever used with one flavour of
 * futex: a process future's f->state is used with the shared flavour too.
 *
 *   bits  0..2   state: CF_STATE_PENDING/RUNNING/FINISHED/FAILED/CANCELLED
 *   bit   3      WAITERS: a thread is (or is about to be) in FUTEX_WAIT on it
 *   bit   4      NOTIFY: process pool: the parent wants a completion notice
 *   bit   5      STOP: the task was asked to stop (deadline, cancel, kill)
 *   bits  6..13  owner: worker index + 1 that runs / ran it, 0 = none
 *   bits 14..31  generation (process slots are reused; a stale CAS loses)
 *
 * Transitions: PENDING -> RUNNING -> FINISHED | FAILED, PENDING -> CANCELLED,
 * PENDING -> FAILED (deadline, broken pool), RUNNING -> CANCELLED (process
 * pool kill). A done state (>= FINISHED) is final for that generation. Every
 * transition is a CAS on the whole word, so it keeps the generation and
 * fails against a newer generation.
 *
 * The completer publishes the result bytes before the CAS that makes the
 * word done (release); readers load the word with acquire before reading
 * them. The transition to done consumes WAITERS and NOTIFY, and FUTEX_WAKE
 * is called only when WAITERS was set in the word it replaced; PENDING ->
 * RUNNING keeps them (the waiters still sleep), so a sleeping waiter is
 * always woken by the completion. Waiters wait with cf__word_wait.
 *
 * The move (process futures). A slot is reused once its task is done, so a
 * process future cannot keep pointing at it. The pool (1) writes the
 * outcome into the future, (2) stores the done word into f->state, with
 * the generation of the slot's use, (3) stores f->word = &f->state
 * (release), (4) wakes every waiter still asleep on the slot word, and
 * only then (5) reuses the slot. A reader that loaded the slot pointer
 * before (3) may find the slot's word of a later use: its generation
 * differs from f->state's, which never changes, so cf__future_load() and
 * the waits load f->word again, and see &f->state (the later use was
 * published after (3): release/acquire through the pool's lock and the
 * slot word). f->state is done before it is reachable: nobody sleeps on it.
 *
 * Lifetime: `rc` packs the user's handles (cf_future_retain/release, low
 * 32 bits) and internal references (the executor's task, each registered
 * waiter: high 32 bits), so that a release is one atomic and a release too
 * many is seen (CF_EINVAL: no handle left) instead of freeing a future a
 * worker still runs. The object is freed when the whole word reaches 0.
 */
#ifndef CF_RUNTIME_FUTURE_H
#define CF_RUNTIME_FUTURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"
#include "debug.h"
#include "executor.h"

#define CF__ST_MASK 0x7u
#define CF__ST_WAITERS 0x8u
#define CF__ST_NOTIFY 0x10u
#define CF__ST_STOP 0x20u
#define CF__ST_OWNER_SHIFT 6
#define CF__ST_OWNER_MASK (0xffu << CF__ST_OWNER_SHIFT)
#define CF__ST_GEN_SHIFT 14
#define CF__ST_GEN_MASK (0x3ffffu << CF__ST_GEN_SHIFT)

#define CF__MAX_WORKERS 255

static inline uint32_t cf__st_state(uint32_t w) {
  return w & CF__ST_MASK;
}
static inline bool cf__st_done(uint32_t w) {
  return (w & CF__ST_MASK) >= CF_STATE_FINISHED;
}
static inline unsigned cf__st_owner(uint32_t w) {
  return (w & CF__ST_OWNER_MASK) >> CF__ST_OWNER_SHIFT;
}
static inline uint32_t cf__st_gen(uint32_t w) {
  return w >> CF__ST_GEN_SHIFT;
}
static inline uint32_t cf__st_make(uint32_t gen, unsigned owner, uint32_t state) {
  return (gen << CF__ST_GEN_SHIFT) | ((uint32_t)owner << CF__ST_OWNER_SHIFT) | state;
}
/* Same generation, new state, owner kept unless given; flags dropped except
 * STOP (WAITERS/NOTIFY are consumed by the transition that sees them). */
static inline uint32_t cf__st_with(uint32_t w, uint32_t state) {
  return (w & (CF__ST_GEN_MASK | CF__ST_OWNER_MASK | CF__ST_STOP)) | state;
}

#define CF__INLINE_ARG 48 /* argument bytes kept inside the future */
#define CF__INLINE_RES 32 /* result bytes kept inside the future */
#define CF__FUTURE_MAGIC 0xcf5eed01u
#define CF__FUTURE_DEAD 0xdeadf00du

typedef struct cf__cb cf__cb;

/* Executor hooks for a future whose data does not live in the object
 * (process pool). Thread futures use cf__local_future_vtbl. */
typedef struct cf__future_vtbl {
  /* Copy the result of a FINISHED future: 0, CF_ERANGE (with *len), CF_EPROTO. */
  int (*result)(cf_future *f, void *out, size_t cap, size_t *len);
  /* Failure of a FAILED future: its CF_E* error, task code, message. */
  int (*error)(cf_future *f, int *err, int *code, char *msg, size_t cap);
  int (*crash_info)(cf_future *f, cf_crash_info *out);
  /* cf_future_cancel() in place of the generic one (process pool: a
   * pending or running task, under the pool's lock). Returns what
   * cf_future_cancel returns. */
  int (*cancel)(cf_future *f);
  /* Else: cf_future_cancel() after the generic PENDING -> CANCELLED CAS
   * failed because the task runs (MPI: ask the rank). Returns what
   * cf_future_cancel returns. */
  int (*cancel_running)(cf_future *f);
  /* A callback was added to a future that is not done: make sure the
   * callbacks will run when it completes (process pool: NOTIFY bit). */
  void (*watch)(cf_future *f);
  /* The last reference is gone: release executor-side resources. The
   * generic code then frees the object. */
  void (*destroy)(cf_future *f);
} cf__future_vtbl;

struct cf_future {
  /* First cache line: what a completion writes and a waiter reads — the
   * state word, the outcome, the references and a small result — so that a
   * round trip moves one line between the two cores, not four. (sizeof is
   * padded to 256 below: jemalloc's 256-byte size class is 256-aligned, so
   * this block is one line.) Fields up to arg_inline are set from a
   * template at allocation. */
  _Atomic uint32_t state; /* thread futures' state word */
  /* failure: err is the CF_E* the future reports; code/msg from cf_call_fail.
   * Thread futures: err doubles as the completion claim (see future.c): 0
   * until someone claims the outcome with a CAS, CF__ERR_OK for FINISHED. */
  _Atomic int32_t err;
  uint32_t res_len;
  uint32_t magic;      /* CF__FUTURE_MAGIC while live */
  _Atomic uint64_t rc; /* handles and internal references (DESIGN: Lifetime) */
  /* done callbacks: a LIFO of cf__cb, CF__CB_CLOSED once they have run */
  _Atomic(cf__cb *) callbacks;
  unsigned char res_inline[CF__INLINE_RES];

  /* the state word: &state, or a process future's slot word until it moves
   * (DESIGN); atomic because it moves while others read it */
  _Atomic(_Atomic uint32_t *) word;
  const cf__future_vtbl *vt;
  cf_executor *executor; /* the executor that runs it (NULL: none) */

  /* the task */
  cf_fn fn;
  int64_t deadline; /* absolute CLOCK_MONOTONIC ns; 0: none */
  /* queue link, owned by whoever queues it (atomic: the thread pool's
   * injection queue links through it from several producers) */
  _Atomic(struct cf_future *) next;

  /* bytes in: inline up to CF__INLINE_ARG, else arg_heap; bytes out:
   * inline up to CF__INLINE_RES, else res_heap */
  uint32_t arg_len;
  int32_t task_code;
  void *arg_heap;
  void *res_heap;
  char *msg;

  uint8_t shared;      /* futex flavour of *word: 0 private, 1 shared */
  cf_crash_info crash; /* process futures: the worker that died under the task */
  uint64_t ext[2];     /* executor-private (process pool: slot, gen; thread pool:
                          ext[0] the run tag (help.c), ext[1] the deadline timer's
                          note (deadline.h)) */
  /* the cancellation scope it was submitted into (scope.h), or NULL: the
   * scope its task runs in (set before the future is published) */
  struct cf_scope *scope;
  /* thread pool, cf_executor_time_tasks: CLOCK_MONOTONIC ns at submit, 0:
   * not measured */
  int64_t t_submit;

  unsigned char arg_inline[CF__INLINE_ARG];
  unsigned char pad_[256 - 240];
};

_Static_assert(sizeof(struct cf_future) == 256, "cf_future: one 256-byte size class");
_Static_assert(offsetof(struct cf_future, res_inline) + CF__INLINE_RES == 64,
               "cf_future: the completion fields fill the first cache line");

#define CF__RC_HANDLE 1ull
#define CF__RC_REF (1ull << 32)

#define CF__CB_CLOSED ((cf__cb *)(uintptr_t)1)
#define CF__ERR_OK 1 /* err claim value of a thread future that finished */

struct cf__cb {
  cf__cb *next;
  cf_done_fn fn;
  void *arg;
  /* the library's own (cf_wait, as_completed): quick, never blocks; a
   * process pool runs these where the future settles, and user callbacks
   * on its callback thread */
  bool internal;
};

extern const cf__future_vtbl cf__local_future_vtbl;

/* A process future used from another process than its pool's (a fork of
 * it): CF_EFORKED, else 0. Every public call on a future checks it before
 * it touches the word (which a fork shares with the parent). A shared
 * future's executor outlives it (the pool holds a reference per slot). */
static inline int cf__future_foreign(const cf_future *f) {
  return f->shared && f->executor ? cf__executor_foreign(f->executor) : 0;
}

/* What a running task did with its cf_call so far (cf_call.outcome). */
enum {
  CF__OUTCOME_NONE = 0,     /* neither returned nor failed yet */
  CF__OUTCOME_RETURNED = 1, /* cf_call_return stored its result */
  CF__OUTCOME_FAILED = 2,   /* cf_call_fail, or a result that could not be
                               stored: cf_call.err says which CF_E* */
};

/* The running task's context: built on the stack of whoever runs it. */
typedef struct cf__call_ops {
  int (*ret)(cf_call *c, const void *v, size_t len);
  int (*fail)(cf_call *c, int code, const char *msg);
  bool (*stop_requested)(cf_call *c);
  /* A task function the submitting process named by its address (inside
   * an argument: a map chunk's), as an address to call here, or 0 if it
   * names no code. NULL: addresses mean the same here (threads, forks). */
  uintptr_t (*fn_here)(cf_call *c, uint64_t submitter_addr);
} cf__call_ops;

struct cf_call {
  const cf__call_ops *ops;
  const void *arg;
  size_t arg_len;
  void *ctx;         /* the future (thread pool) or the slot (process pool) */
  size_t max_result; /* CF_E2BIG above it; at most UINT32_MAX */
  int outcome;       /* CF__OUTCOME_* */
  int err;           /* CF__OUTCOME_FAILED: the CF_E* the future fails with */
};

/* The function `addr` of the submitting process names, callable in the
 * calling one (see cf__call_ops.fn_here): NULL if it names none. */
static inline cf_fn cf__call_fn(cf_call *c, uint64_t addr) {
  uintptr_t f = c->ops->fn_here ? c->ops->fn_here(c, addr) : (uintptr_t)addr;
  return (cf_fn)f;
}

/* The outcome checks every cf__call_ops implementation makes, inline (a
 * frame's return stays call-free). */

/* A result that could not be stored (CF_E2BIG, CF_ENOMEM): the call fails
 * with `err`, which is returned. */
static inline int cf__call_record_error(cf_call *c, int err) {
  c->outcome = CF__OUTCOME_FAILED;
  c->err = err;
  return err;
}

/* Before ops->ret stores `len` bytes: CF_EINVAL for a second outcome or a
 * NULL value with len > 0 (nothing recorded); CF_E2BIG past max_result (the
 * call fails with it); else 0: recorded as returned, the caller stores the
 * bytes (or calls cf__call_record_error if it cannot). */
static inline int cf__call_record_return(cf_call *c, const void *v, size_t len) {
  if (__builtin_expect(c->outcome != CF__OUTCOME_NONE || (len && !v), 0)) return CF_EINVAL;
  cf__assert(c->max_result <= UINT32_MAX);
  if (__builtin_expect(len > c->max_result, 0)) return cf__call_record_error(c, CF_E2BIG);
  c->outcome = CF__OUTCOME_RETURNED;
  return 0;
}

/* Before ops->fail stores its code and message: CF_EINVAL for a second
 * outcome, else 0: recorded as failed with CF_ETASK. */
static inline int cf__call_record_fail(cf_call *c) {
  if (c->outcome != CF__OUTCOME_NONE) return CF_EINVAL;
  c->outcome = CF__OUTCOME_FAILED;
  c->err = CF_ETASK;
  return 0;
}

/* ---- allocation (any thread) ---- */

/* A zeroed-as-needed future from the calling thread's cache (fcache.h:
 * cf__future_alloc_fast is the inline version); one user handle and one
 * internal reference (the executor's), word = &state = PENDING,
 * vt = &cf__local_future_vtbl. NULL on ENOMEM. */
cf_future *cf__future_alloc(void);

/* Copy the argument in: CF_ENOMEM. */
int cf__future_set_arg(cf_future *f, const void *arg, size_t len);
static inline const void *cf__future_arg(const cf_future *f) {
  return f->arg_len <= CF__INLINE_ARG ? (const void *)f->arg_inline : f->arg_heap;
}

/* Take / drop one internal reference; the last reference (internal or
 * handle) destroys (vt->destroy) and frees. Any thread. */
void cf__future_destroy(cf_future *f);
static inline void cf__future_ref(cf_future *f) {
  /* relaxed: the caller already holds a reference, nothing to order */
  uint64_t old = atomic_fetch_add_explicit(&f->rc, CF__RC_REF, memory_order_relaxed);
  cf__assert(old != 0);
}
static inline void cf__future_unref(cf_future *f) {
  /* Drops an internal reference, or, when none is left, a handle: after
   * cf__future_alloc() two unrefs free a future nobody was given. acq_rel:
   * our writes to f happen before the destroy of whoever drops the last
   * reference, and that destroy sees everyone's writes. */
  uint64_t v = atomic_load_explicit(&f->rc, memory_order_relaxed), n;
  do {
    cf__assert(v != 0); /* the caller holds a reference */
    n = v - ((v >> 32) ? CF__RC_REF : CF__RC_HANDLE);
  } while (!atomic_compare_exchange_weak_explicit(&f->rc, &v, n, memory_order_acq_rel,
                                                  memory_order_relaxed));
  if (n == 0) cf__future_destroy(f);
}

/* memcpy for the small sizes of task arguments and results, inline. */
static inline void cf__copy(void *dst, const void *src, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  if (n > 16) {
    __builtin_memcpy(d, s, n);
  } else if (n >= 8) {
    uint64_t a, b;
    __builtin_memcpy(&a, s, 8);
    __builtin_memcpy(&b, s + n - 8, 8);
    __builtin_memcpy(d, &a, 8);
    __builtin_memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    __builtin_memcpy(&a, s, 4);
    __builtin_memcpy(&b, s + n - 4, 4);
    __builtin_memcpy(d, &a, 4);
    __builtin_memcpy(d + n - 4, &b, 4);
  } else if (n > 0) {
    unsigned char a = s[0], b = s[n / 2], c = s[n - 1];
    d[0] = a;
    d[n / 2] = b;
    d[n - 1] = c;
  }
}

/* The result bytes held in f (inline or on the heap) into out: 0, or
 * CF_ERANGE with *len set when cap is too small. For every future whose
 * outcome lives in the object (thread, moved process, MPI futures). */
static inline int cf__future_copy_result(const cf_future *f, void *out, size_t cap, size_t *len) {
  size_t n = f->res_len;
  if (len) *len = n;
  if (n > cap) return CF_ERANGE;
  cf__copy(out, n <= CF__INLINE_RES ? (const void *)f->res_inline : f->res_heap, n);
  return 0;
}

/* ---- running and completing (the executor's side) ---- */

/* Run a thread-pool future's task in the calling thread: PENDING -> RUNNING
 * with `owner` (worker index + 1, or 0), call the task, publish and complete,
 * then drop the executor's reference. A future that is no longer PENDING
 * (cancelled, deadline passed) is only unref'd. A deadline already passed
 * fails it with CF_EDEADLINE without running. */
int cf__future_run_tagged(cf_future *f, unsigned owner, uint64_t tag);
/* (Returns 1 if the task ran, 0 if it had been cancelled, -1 if it did not
 * run here: its deadline had passed, or another thread runs or ran it.)
 * `tag`, when not 0, is stored in f->ext[0] (release) once this call owns
 * the task, before the task runs: the thread pool's note of where the
 * task's spawned work lies (help.c). */
static inline int cf__future_run(cf_future *f, unsigned owner) {
  return cf__future_run_tagged(f, owner, 0);
}

/* Move *f->word from a word with state `from` (same generation) to state
 * `to`, with error `err` recorded first for FAILED/CANCELLED (thread futures
 * only; process futures record it in the slot before calling). On success,
 * wake waiters if the old word had WAITERS and run the callbacks (unless
 * the word is shared: then the process pool runs them via
 * cf__future_run_callbacks). Returns true if this call made the transition.
 * A transition to a state that is not done (PENDING -> RUNNING) keeps the
 * WAITERS and NOTIFY bits: only the transition to done consumes them. */
bool cf__future_transition(cf_future *f, uint32_t from, uint32_t to, int err);

/* Wake every waiter of f if `old` (the word a completing CAS replaced) had
 * WAITERS. For the process pool's supervisor and workers too. */
void cf__future_wake(_Atomic uint32_t *word, uint32_t old, bool shared);

/* Run and close f's callback list (the completing thread). Idempotent. */
void cf__future_run_callbacks(cf_future *f);
/* Close f's callback list and return it in registration order (NULL if it
 * was empty or closed already); with run_internal, the internal callbacks
 * run here first and only the user callbacks are returned. */
cf__cb *cf__future_take_callbacks(cf_future *f, bool run_internal);
/* Run and free a list that cf__future_take_callbacks returned. */
void cf__future_run_cb_list(cf_future *f, cf__cb *list);
/* cf_future_add_done_callback, for the library's own callbacks too. */
int cf__future_add_callback(cf_future *f, cf_done_fn fn, void *arg, bool internal);

/* cf_future_add_done_callback in two steps, so that a caller can allocate
 * before it commits to anything: a callback node (NULL on ENOMEM), then its
 * registration on f, which cannot fail (it runs fn at once, and frees the
 * node, if f is done). Any thread. */
cf__cb *cf__cb_new(cf_done_fn fn, void *arg, bool internal);
void cf__future_add_cb(cf_future *f, cf__cb *cb);

/* Thread futures only: fail a future that is not done with `err` (claims
 * the outcome, then PENDING/RUNNING -> FAILED, wakes, runs callbacks).
 * True if this call failed it. Used for deadlines and a broken pool. */
bool cf__future_fail(cf_future *f, int err);

/* The one spin-then-futex wait, for every waiter on a word with the state
 * word's layout (a future's, an event's, a process slot's): until *word is
 * done or the absolute deadline (CLOCK_MONOTONIC ns; < 0: forever) passes.
 * Spins ~2 us by the clock (cf__cpu_relax; on a shared word it yields the
 * CPU after 1 us), then sets WAITERS and FUTEX_WAIT_BITSETs on the word with
 * that absolute deadline, looping until it is done. `shared` is the word's
 * futex flavour (never mixed on one word). 0 (done, read with acquire) or
 * CF_ETIMEDOUT. Any thread. */
int cf__word_wait_gen(_Atomic uint32_t *word, uint32_t gen, int64_t deadline_abs, bool shared);
/* cf__word_wait_gen also returns 0 once the word's generation is not
 * `gen` (its use is over: a process slot moved on); CF__GEN_ANY: no check. */
#define CF__GEN_ANY 0xffffffffu
static inline int cf__word_wait(_Atomic uint32_t *word, int64_t deadline_abs, bool shared) {
  return cf__word_wait_gen(word, CF__GEN_ANY, deadline_abs, shared);
}

/* The value of f's state word (acquire). For a process future whose word
 * moved (DESIGN: the move) it loads f->word again; a slot word of another
 * generation that f->word still points at was scribbled by a rogue worker:
 * it reads as RUNNING until the pool repairs it. */
uint32_t cf__future_load_shared(cf_future *f, _Atomic uint32_t *word, uint32_t w);
static inline uint32_t cf__future_load(cf_future *f) {
  _Atomic uint32_t *word = atomic_load_explicit(&f->word, memory_order_acquire);
  uint32_t w = atomic_load_explicit(word, memory_order_acquire);
  if (__builtin_expect(!f->shared, 1)) return w;
  return cf__future_load_shared(f, word, w);
}

/* Like cf__future_wait_until but never helps: cf__word_wait on f's word,
 * failing a thread future whose task deadline passes meanwhile. For the
 * thread pool's helper itself (a bounded block between rounds). */
int cf__future_block_until(cf_future *f, int64_t deadline_abs);

/* Thread futures: the outcome claim of future.c's DESIGN, for code that
 * completes a local future it does not run (promises). cf__future_claim:
 * CAS f->err from 0 to `err` (CF__ERR_OK for FINISHED); true for the one
 * winner, who alone then writes the outcome fields and calls
 * cf__future_complete_claimed: not-done -> `to` (seq_cst: publishes those
 * fields), wakes, runs the callbacks; false if a cancel made the word done
 * first (the outcome is then dropped). Any thread holding a reference. */
bool cf__future_claim(cf_future *f, int32_t err);
bool cf__future_complete_claimed(cf_future *f, uint32_t to);

/* A cf_call on the local future f, as its runner builds it: cf_call_return
 * and cf_call_fail on it store into f (result bytes, code, message) and
 * record the outcome in the call. The claim winner's way to write an
 * outcome with the runner's code. */
void cf__future_call_init(cf_future *f, cf_call *c);

/* Set STOP on the word (cooperative stop). */
void cf__future_request_stop(cf_future *f);

/* Wait until f is done or the absolute deadline (CLOCK_MONOTONIC ns; < 0:
 * forever) passes: cf__future_block_until, or in a thread-pool worker, help
 * instead of blocking (cf__helper). Returns 0 (done) or CF_ETIMEDOUT. */
int cf__future_wait_until(cf_future *f, int64_t deadline_abs);

/* A thread that can run other tasks while it waits (a thread-pool worker)
 * sets this for itself; cf__future_wait_until then calls helper->wait. */
typedef struct cf__helper cf__helper;
struct cf__helper {
  /* Run other work until f is done or the deadline: 0 or CF_ETIMEDOUT. */
  int (*wait)(cf__helper *self, cf_future *f, int64_t deadline_abs);
  /* The same for a wait on several futures (cf_wait, as_completed): until
   * `event` (a future-shaped object over the waiter's event word) is done,
   * running what fs[0..n) need. */
  int (*wait_set)(cf__helper *self, cf_future *event, cf_future *const *fs, size_t n,
                  int64_t deadline_abs);
};
/* initial-exec: the lib is PIC, and a general-dynamic TLS access would cost
 * a __tls_get_addr call on the hot path. */
extern _Thread_local cf__helper *cf__current_helper __attribute__((tls_model("initial-exec")));

/* Set by a process worker around each task it runs (the task's cf_call),
 * NULL elsewhere: there cf_spawn runs the spawned task inline into its frame
 * and cf_join hands its outcome over (frames.c), and a frame's stop request
 * is the task's. */
extern _Thread_local cf_call *cf__inline_spawn;

#endif /* CF_RUNTIME_FUTURE_H */
