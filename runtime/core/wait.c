/*
 * wait.c — cf_wait() and the as_completed iterator.
 *
 * DESIGN
 * Both are built on done callbacks, registered as internal ones
 * (cf__future_add_callback), so they work the same for thread futures
 * (callbacks run by the completing worker) and process futures (internal
 * callbacks run wherever the pool settles the future, never behind a
 * user's callback); no code here assumes which thread runs a callback.
 *
 * cf_wait(CF_ALL_COMPLETED) waits each future in turn with
 * cf__future_wait_until (cheap, and it helps inside a worker). FIRST_*
 * first checks the condition without allocating; if it does not hold it
 * registers one callback per future pointing at a reference-counted waiter
 * (one allocation) and sleeps on the waiter's private event word (wait.h).
 * The waiter holds one reference for cf_wait and one per registered
 * callback, so callbacks that fire after cf_wait returned only drop their
 * reference. Callbacks cannot be unregistered, so a loop of timed-out
 * cf_wait calls would pile up callbacks on long tasks; instead a timed-out
 * call leaves its waiter in a per-thread cache, and the next call on the
 * same futures reuses it while none of its callbacks has run (see
 * waiter_reusable). A callback fires the event when the condition may now hold:
 * FIRST_COMPLETED at once; FIRST_EXCEPTION when its future failed or was
 * cancelled, or when the last of the n callbacks ran (all done).
 *
 * as_completed: one block holds the iterator, its retained futures and one
 * node per future. Each node is registered as a callback; when its future
 * is done the callback pushes the node onto an MPSC Treiber stack (`inbox`)
 * and signals the event. The consumer takes the whole stack with one
 * exchange (no ABA: consumers never pop single nodes), reverses it into a
 * FIFO list and yields from there. Each registration fires exactly once, so
 * each index is yielded exactly once. A future listed more than once is
 * registered under its first index only (Python's as_completed works on
 * set(fs)): the later indexes start out seen. The block is freed when the iterator
 * and every registered callback have dropped their reference.
 *
 * Task deadlines: a future whose deadline passes while it is still queued
 * is failed by whoever looks at it next. Waiters here wake at the earliest
 * task deadline of what they wait for and look (cf__future_wait_until with
 * a past deadline), so the callbacks fire on time.
 */
#include "wait.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "debug.h"
#include "future.h"
#include "sys.h"

/* ---- the event ---------------------------------------------------------- */

void cf__event_signal(_Atomic uint32_t *word) {
  uint32_t old = atomic_load(word);
  for (;;) {
    if (cf__st_done(old)) return; /* already signalled */
    if (atomic_compare_exchange_weak(word, &old, cf__st_with(old, CF_STATE_FINISHED))) break;
  }
  if (old & CF__ST_WAITERS) cf__futex_wake(word, INT32_MAX, false);
}

void cf__event_reset(_Atomic uint32_t *word) {
  uint32_t old = atomic_load(word);
  cf__assert(cf__st_done(old)); /* only a signalled event is reset */
  /* Signallers never write a done word; only the consumer resets. */
  atomic_store(word, cf__st_make(cf__st_gen(old) + 1, 0, CF_STATE_PENDING));
}

void cf__event_dummy_init(cf_future *dummy, _Atomic uint32_t *word) {
  memset(dummy, 0, sizeof *dummy);
  atomic_store_explicit(&dummy->word, word, memory_order_relaxed); /* the consumer's own */
  dummy->magic = CF__FUTURE_MAGIC;
  dummy->shared = 0;
  dummy->deadline = 0;
}

int cf__event_wait(_Atomic uint32_t *word, cf_future *dummy, cf_future *const *fs, size_t n,
                   int64_t deadline_abs) {
  cf__helper *h = cf__current_helper;
  if (dummy && h) {
    if (cf__st_done(atomic_load_explicit(word, memory_order_acquire))) return 0;
    return h->wait_set(h, dummy, fs, n, deadline_abs);
  }
  return cf__word_wait(word, deadline_abs, false);
}

/* Only thread futures: a process future's deadline is enforced by its
 * pool's supervisor (it kills the task). */
static bool has_task_deadline(const cf_future *f) {
  return f->vt == &cf__local_future_vtbl && f->deadline > 0;
}

int64_t cf__min_task_deadline(cf_future *const *fs, size_t n, const bool *skip) {
  int64_t d = -1;
  for (size_t i = 0; i < n; i++) {
    if (skip && skip[i]) continue;
    if (has_task_deadline(fs[i]) && !cf_future_done(fs[i]))
      d = cf__deadline_min(d, fs[i]->deadline);
  }
  return d;
}

/* Fail every thread future whose task deadline has passed (future.c: the
 * waiter that reaches a deadline fails the future); its callbacks fire. */
static void expire_due(cf_future *const *fs, size_t n, const bool *skip) {
  int64_t now = cf__now_ns();
  for (size_t i = 0; i < n; i++) {
    if (skip && skip[i]) continue;
    if (has_task_deadline(fs[i]) && fs[i]->deadline <= now && !cf_future_done(fs[i]))
      (void)cf__future_fail(fs[i], CF_EDEADLINE);
  }
}

static bool valid_future(const cf_future *f) {
  return f && f->magic == CF__FUTURE_MAGIC;
}

/* 0, CF_EINVAL (a NULL or dead entry) or CF_EFORKED (a process future of a
 * pool of another process: see cf__future_foreign). */
static int check_futures(cf_future *const *fs, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!valid_future(fs[i])) return CF_EINVAL;
  for (size_t i = 0; i < n; i++) {
    int e = cf__future_foreign(fs[i]);
    if (e) return e;
  }
  return 0;
}

/* ---- cf_wait ------------------------------------------------------------ */

typedef struct waiter {
  _Atomic uint32_t refs;    /* its holder (a cf_wait call or the thread's
                               cache) + one per registered callback */
  _Atomic uint32_t ev;      /* the event (wait.h) */
  _Atomic size_t remaining; /* FIRST_EXCEPTION: callbacks not yet run */
  _Atomic size_t fired;     /* callbacks that ran */
  int mode;
  size_t n, bytes;
  cf_future **fs;         /* what it is registered on, for reuse */
  struct cf_future dummy; /* lets a worker help while it waits */
} waiter;

static void waiter_unref(waiter *w) {
  uint32_t old = atomic_fetch_sub(&w->refs, 1);
  cf__assert(old > 0);
  if (old == 1) cf__free(w, w->bytes);
}

static void waiter_cb(cf_future *f, void *arg) {
  waiter *w = arg;
  atomic_fetch_add(&w->fired, 1); /* before the signal: see waiter_reusable */
  bool fire = true;
  if (w->mode == CF_FIRST_EXCEPTION) {
    int st = cf_future_state(f);
    if (st != CF_STATE_FAILED && st != CF_STATE_CANCELLED)
      fire = atomic_fetch_sub(&w->remaining, 1) == 1;
  }
  if (fire) cf__event_signal(&w->ev);
  waiter_unref(w);
}

/* The thread's last waiter, kept while none of its callbacks has run, so
 * that a loop of timed cf_wait calls on the same futures registers its
 * callbacks once instead of once per call (callbacks cannot be removed from
 * a future). Released at thread exit by the key's destructor. */
static _Thread_local waiter *tl_waiter;
static pthread_key_t waiter_key;
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;

static void waiter_key_dtor(void *p) {
  if (p == tl_waiter) tl_waiter = NULL;
  waiter_unref(p);
}
static void waiter_key_create(void) {
  (void)pthread_key_create(&waiter_key, waiter_key_dtor);
}

static void cache_drop(void) {
  waiter *w = tl_waiter;
  if (!w) return;
  tl_waiter = NULL;
  (void)pthread_setspecific(waiter_key, NULL);
  waiter_unref(w);
}

static void cache_keep(waiter *w) {
  cf__assert(tl_waiter == NULL); /* the cache holds one waiter at most */
  pthread_once(&waiter_once, waiter_key_create);
  if (pthread_setspecific(waiter_key, w) != 0) {
    waiter_unref(w);
    return;
  }
  tl_waiter = w;
}

/* A cached waiter serves a new call on the same futures only while none of
 * its callbacks has run: then every fs[i] still holds its registration, so
 * it is still the same object (a future is freed only after its callbacks
 * ran: an equal pointer cannot be a recycled future), and the event was
 * never signalled. */
static bool waiter_reusable(const waiter *w, cf_future *const *fs, size_t n, int mode) {
  return w && w->mode == mode && w->n == n && atomic_load(&w->fired) == 0 &&
         memcmp(w->fs, fs, n * sizeof *fs) == 0;
}

static waiter *waiter_new(cf_future *const *fs, size_t n, int mode) {
  if (n > (SIZE_MAX - sizeof(waiter)) / sizeof(cf_future *)) return NULL;
  size_t bytes = sizeof(waiter) + n * sizeof(cf_future *);
  waiter *w = cf__alloc(bytes);
  if (!w) return NULL;
  atomic_init(&w->refs, 1);
  atomic_init(&w->ev, CF_STATE_PENDING);
  atomic_init(&w->remaining, n);
  atomic_init(&w->fired, 0);
  w->mode = mode;
  w->n = n;
  w->bytes = bytes;
  w->fs = (cf_future **)(w + 1);
  memcpy(w->fs, fs, n * sizeof *fs);
  cf__event_dummy_init(&w->dummy, &w->ev);
  return w;
}

/* Does return_when hold? Fills done[] when given. */
static bool condition(cf_future *const *fs, size_t n, int mode, bool *done) {
  size_t ndone = 0;
  bool failed = false;
  for (size_t i = 0; i < n; i++) {
    int st = cf_future_state(fs[i]);
    bool d = st >= CF_STATE_FINISHED;
    if (done) done[i] = d;
    ndone += d;
    failed |= st == CF_STATE_FAILED || st == CF_STATE_CANCELLED;
  }
  switch (mode) {
    case CF_FIRST_COMPLETED:
      return ndone > 0;
    case CF_FIRST_EXCEPTION:
      return failed || ndone == n;
    default:
      return ndone == n;
  }
}

int cf_wait(cf_future *const *fs, size_t n, int return_when, int64_t timeout_ns, bool *done) {
  if (return_when != CF_FIRST_COMPLETED && return_when != CF_FIRST_EXCEPTION &&
      return_when != CF_ALL_COMPLETED)
    return CF_EINVAL;
  if (n == 0) return 0;
  if (!fs) return CF_EINVAL;
  int e = check_futures(fs, n);
  if (e) return e;
  int64_t deadline = cf__deadline_after(timeout_ns);

  if (return_when == CF_ALL_COMPLETED) {
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = cf__future_wait_until(fs[i], deadline);
    if (rc != 0) expire_due(fs, n, NULL);
    return condition(fs, n, return_when, done) ? 0 : CF_ETIMEDOUT;
  }

  expire_due(fs, n, NULL);
  if (condition(fs, n, return_when, NULL)) {
    condition(fs, n, return_when, done);
    return 0;
  }
  if (deadline >= 0 && cf__now_ns() >= deadline) {
    return condition(fs, n, return_when, done) ? 0 : CF_ETIMEDOUT;
  }

  waiter *w = tl_waiter;
  if (waiter_reusable(w, fs, n, return_when)) {
    tl_waiter = NULL; /* this call owns it now (and a nested call in a
                         helping worker cannot take it too) */
    (void)pthread_setspecific(waiter_key, NULL);
  } else {
    cache_drop();
    w = waiter_new(fs, n, return_when);
    if (!w) return CF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      atomic_fetch_add(&w->refs, 1);
      int r = cf__future_add_callback(fs[i], waiter_cb, w, true);
      if (r != 0) {
        atomic_fetch_sub(&w->refs, 1); /* never registered: cannot be the last ref */
        w->n = 0;                      /* partly registered: never reuse */
        waiter_unref(w);
        return r;
      }
      /* A callback that ran already may have fired the event: stop early
       * (such a waiter is never reused: fired > 0). */
      if (cf__st_done(atomic_load(&w->ev))) break;
    }
  }
  int rc = 0;
  for (;;) {
    if (cf__st_done(atomic_load(&w->ev)) && condition(fs, n, return_when, NULL)) break;
    int64_t task_dl = cf__min_task_deadline(fs, n, NULL);
    int64_t until = cf__deadline_min(deadline, task_dl);
    int r = cf__event_wait(&w->ev, &w->dummy, fs, n, until);
    if (r == 0) continue; /* re-check the condition */
    if (deadline >= 0 && cf__now_ns() >= deadline) {
      rc = CF_ETIMEDOUT;
      break;
    }
    expire_due(fs, n, NULL);
  }
  if (condition(fs, n, return_when, done)) rc = 0;
  if (rc == CF_ETIMEDOUT && atomic_load(&w->fired) == 0 && !tl_waiter) {
    cache_keep(w); /* the cache takes this call's reference */
  } else {
    waiter_unref(w);
  }
  return rc;
}

/* ---- as_completed ------------------------------------------------------- */

typedef struct ac_node {
  struct ac_node *next;
  struct cf_as_completed *it;
  size_t index;
} ac_node;

struct cf_as_completed {
  _Atomic uint32_t refs;    /* the iterator + one per registered callback */
  _Atomic uint32_t ev;      /* signalled after each push (wait.h) */
  _Atomic(ac_node *) inbox; /* nodes of done futures, LIFO, pushed by callbacks */
  /* consumer-owned (one cf_as_completed_next at a time: `busy` checks it in
   * debug builds): */
  _Atomic bool busy;
  ac_node *ready; /* FIFO taken from inbox */
  /* unique: the distinct futures of fs, what is yielded */
  size_t n, unique, yielded, registered;
  int64_t deadline;
  bool *seen; /* seen[i]: fs[i] was taken from the inbox */
  cf_future **fs;
  ac_node *nodes;
  size_t bytes;
  int pid; /* the creating process if a future is a process one, else 0 */
  struct cf_future dummy;
};

/* The iterator was made by another process (it was copied by a fork). */
static bool ac_foreign(const cf_as_completed *it) {
  return it->pid && it->pid != cf__self_pid();
}

static void ac_unref(cf_as_completed *it) {
  uint32_t old = atomic_fetch_sub(&it->refs, 1);
  cf__assert(old > 0);
  if (old == 1) cf__free(it, it->bytes);
}

static void ac_cb(cf_future *f, void *arg) {
  ac_node *node = arg;
  cf_as_completed *it = node->it;
  ac_node *head = atomic_load(&it->inbox);
  do {
    node->next = head;
  } while (!atomic_compare_exchange_weak(&it->inbox, &head, node));
  cf__event_signal(&it->ev);
  ac_unref(it);
}

/* Mark in dup[] every fs[i] that also appears at a smaller index (Python's
 * as_completed works on set(fs): each future is yielded once, here under
 * its first index). 0 or CF_ENOMEM. */
static int cmp_by_future(const void *a, const void *b, void *fs) {
  cf_future *const *v = fs;
  uintptr_t x = (uintptr_t)v[*(const size_t *)a], y = (uintptr_t)v[*(const size_t *)b];
  if (x != y) return x < y ? -1 : 1;
  return *(const size_t *)a < *(const size_t *)b ? -1 : 1; /* first index first */
}

static int mark_duplicates(cf_future *const *fs, size_t n, bool *dup) {
  if (n <= 16) { /* the common small call: no allocation */
    for (size_t i = 1; i < n; i++)
      for (size_t j = 0; j < i && !dup[i]; j++) dup[i] = fs[j] == fs[i];
    return 0;
  }
  size_t *order = cf__alloc(n * sizeof *order);
  if (!order) return CF_ENOMEM;
  for (size_t i = 0; i < n; i++) order[i] = i;
  qsort_r(order, n, sizeof *order, cmp_by_future, (void *)fs);
  for (size_t k = 1; k < n; k++) dup[order[k]] = fs[order[k]] == fs[order[k - 1]];
  cf__free(order, n * sizeof *order);
  return 0;
}

int cf_as_completed_new(cf_future *const *fs, size_t n, int64_t timeout_ns, cf_as_completed **out) {
  if (!out || (n > 0 && !fs)) return CF_EINVAL;
  *out = NULL;
  int e = check_futures(fs, n);
  if (e) return e;
  if (n > (SIZE_MAX - sizeof(cf_as_completed)) / (sizeof(ac_node) + sizeof(cf_future *) + 1))
    return CF_ENOMEM;
  size_t bytes = sizeof(cf_as_completed) + n * (sizeof(ac_node) + sizeof(cf_future *) + 1);
  cf_as_completed *it = cf__alloc(bytes);
  if (!it) return CF_ENOMEM;
  memset(it, 0, sizeof *it);
  it->bytes = bytes;
  it->n = n;
  it->nodes = (ac_node *)(it + 1);
  it->fs = (cf_future **)(it->nodes + n);
  it->seen = (bool *)(it->fs + n);
  it->deadline = cf__deadline_after(timeout_ns);
  atomic_init(&it->refs, 1);
  atomic_init(&it->ev, CF_STATE_PENDING);
  atomic_init(&it->inbox, NULL);
  atomic_init(&it->busy, false);
  cf__event_dummy_init(&it->dummy, &it->ev);
  it->pid = 0;
  for (size_t i = 0; i < n; i++) {
    if (fs[i]->shared) it->pid = cf__self_pid();
    it->fs[i] = fs[i];
    it->seen[i] = false;
    it->nodes[i].it = it;
    it->nodes[i].index = i;
    it->nodes[i].next = NULL;
    cf__future_ref(fs[i]);
  }
  /* a repeated future is never registered again: seen from the start */
  if (mark_duplicates(fs, n, it->seen) != 0) {
    it->registered = 0;
    cf_as_completed_free(it);
    return CF_ENOMEM;
  }
  it->unique = n;
  for (size_t i = 0; i < n; i++) it->unique -= it->seen[i];
  for (size_t i = 0; i < n; i++) {
    if (it->seen[i]) continue;
    atomic_fetch_add(&it->refs, 1);
    int r = cf__future_add_callback(fs[i], ac_cb, &it->nodes[i], true);
    if (r != 0) {
      atomic_fetch_sub(&it->refs, 1); /* never registered: not the last ref */
      /* The registered callbacks still point into the block; the iterator
       * gives up its own reference only, as cf_as_completed_free does. */
      it->registered = i;
      cf_as_completed_free(it);
      return r;
    }
  }
  it->registered = n;
  *out = it;
  return 0;
}

/* Move everything from the inbox to the ready list, oldest first. */
static bool ac_take(cf_as_completed *it) {
  ac_node *l = atomic_exchange(&it->inbox, NULL);
  if (!l) return false;
  ac_node *rev = NULL;
  while (l) {
    ac_node *next = l->next;
    l->next = rev;
    rev = l;
    l = next;
  }
  /* append rev to ready */
  if (!it->ready) {
    it->ready = rev;
  } else {
    ac_node *t = it->ready;
    while (t->next) t = t->next;
    t->next = rev;
  }
  return true;
}

static int ac_next(cf_as_completed *it, cf_future **f, size_t *index) {
  if (it->yielded == it->unique) return CF_EDONE;
  for (;;) {
    if (!it->ready) ac_take(it);
    if (it->ready) {
      ac_node *node = it->ready;
      it->ready = node->next;
      it->seen[node->index] = true;
      it->yielded++;
      if (f) *f = it->fs[node->index];
      if (index) *index = node->index;
      return 0;
    }
    if (cf__st_done(atomic_load(&it->ev))) {
      /* Consumed the signal: reset, then look at the inbox again before
       * sleeping (wait.h: no lost wake-up). */
      cf__event_reset(&it->ev);
      continue;
    }
    int64_t task_dl = cf__min_task_deadline(it->fs, it->n, it->seen);
    int64_t until = cf__deadline_min(it->deadline, task_dl);
    if (it->deadline >= 0 && cf__now_ns() >= it->deadline) {
      expire_due(it->fs, it->n, it->seen);
      if (ac_take(it)) continue;
      return CF_ETIMEDOUT;
    }
    if (cf__event_wait(&it->ev, &it->dummy, it->fs, it->n, until) != 0)
      expire_due(it->fs, it->n, it->seen);
  }
}

int cf_as_completed_next(cf_as_completed *it, cf_future **f, size_t *index) {
  if (!it) return CF_EINVAL;
  if (ac_foreign(it)) return CF_EFORKED;
  cf__debug_enter(&it->busy);
  int rc = ac_next(it, f, index);
  cf__debug_leave(&it->busy);
  return rc;
}

void cf_as_completed_free(cf_as_completed *it) {
  if (!it) return;
  if (ac_foreign(it)) return; /* a fork's copy: its futures are the parent's */
  cf__assert(!atomic_load_explicit(&it->busy, memory_order_relaxed)); /* not inside _next */
  for (size_t i = 0; i < it->n; i++) cf__future_unref(it->fs[i]);
  ac_unref(it);
}
