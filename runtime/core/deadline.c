/*
 * deadline.c — the deadline timer (the DESIGN is in deadline.h).
 *
 * Locking: `mu` guards the heap, every watched future's ext[1], `watched`
 * and `stop`. No user code runs under it: the timer thread unlocks before it
 * fails a future (which runs its callbacks), and step 3 drops the heap's
 * reference after its unlock.
 */
#include "deadline.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "debug.h"
#include "executor.h"
#include "sys.h"

struct cf__timer {
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* CLOCK_MONOTONIC: the thread's sleep until the earliest deadline */
  pthread_cond_t idle; /* destroy waits on it for `watched` to reach 0 */
  cf_future **heap;    /* min-heap on f->deadline */
  size_t n, cap;
  size_t watched; /* futures between their watch and their done (deadline.h) */
  bool stop;
  pthread_t thread;
  _Atomic uint64_t expired; /* statistics */
  char name[16];
};

/* The timer thread of this thread (NULL on every other thread). */
static _Thread_local const cf__timer *tl_timer;

/* Serialises the making of timers (once per executor, on its first deadline). */
static pthread_mutex_t make_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- the heap (mu held) ---- */

static inline void set_index(cf_future *f, size_t i) {
  __atomic_store_n(&f->ext[1], CF__DEADLINE_WATCHED | (uint64_t)(i + 1), __ATOMIC_RELAXED);
}

static void sift_up(cf__timer *t, size_t i) {
  cf_future *f = t->heap[i];
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (t->heap[up]->deadline <= f->deadline) break;
    t->heap[i] = t->heap[up];
    set_index(t->heap[i], i);
    i = up;
  }
  t->heap[i] = f;
  set_index(f, i);
}

static void sift_down(cf__timer *t, size_t i) {
  cf_future *f = t->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= t->n) break;
    if (c + 1 < t->n && t->heap[c + 1]->deadline < t->heap[c]->deadline) c++;
    if (f->deadline <= t->heap[c]->deadline) break;
    t->heap[i] = t->heap[c];
    set_index(t->heap[i], i);
    i = c;
  }
  t->heap[i] = f;
  set_index(f, i);
}

/* Take heap[i] out; its ext[1] becomes WATCHED alone. */
static void heap_remove(cf__timer *t, size_t i) {
  cf__assert(i < t->n);
  cf_future *f = t->heap[i];
  __atomic_store_n(&f->ext[1], CF__DEADLINE_WATCHED, __ATOMIC_RELAXED);
  cf_future *last = t->heap[--t->n];
  if (i == t->n) return;
  t->heap[i] = last;
  if (i > 0 && t->heap[(i - 1) / 2]->deadline > last->deadline)
    sift_up(t, i);
  else
    sift_down(t, i);
}

/* ---- the thread ---- */

static void *timer_main(void *arg) {
  cf__timer *t = arg;
  tl_timer = t;
  (void)prctl(PR_SET_NAME, t->name, 0, 0, 0);
  pthread_mutex_lock(&t->mu);
  while (!t->stop) {
    if (t->n == 0) {
      pthread_cond_wait(&t->cv, &t->mu);
      continue;
    }
    cf_future *f = t->heap[0];
    int64_t dl = f->deadline;
    if (cf__now_ns() < dl) {
      struct timespec ts = {.tv_sec = dl / 1000000000, .tv_nsec = dl % 1000000000};
      (void)pthread_cond_timedwait(&t->cv, &t->mu, &ts);
      continue;
    }
    heap_remove(t, 0);
    pthread_mutex_unlock(&t->mu);
    /* The heap's reference keeps f alive here. A future done meanwhile
     * loses nothing: the claim fails and its completer uncounts it. */
    (void)cf__future_fail(f, CF_EDEADLINE);
    cf__future_unref(f);
    pthread_mutex_lock(&t->mu);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void timer_free(cf__timer *t) {
  pthread_cond_destroy(&t->idle);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  cf__free(t->heap, t->cap * sizeof *t->heap);
  cf__free(t, sizeof *t);
}

static int timer_make(const char *name, cf__timer **out) {
  cf__timer *t = cf__calloc(sizeof *t);
  if (!t) return CF_ENOMEM;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, &ca);
  pthread_cond_init(&t->idle, NULL);
  pthread_condattr_destroy(&ca);
  atomic_init(&t->expired, 0);
  snprintf(t->name, sizeof t->name, "%.10s-tm", name ? name : "cfpool");
  if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
    timer_free(t);
    return CF_ESYS;
  }
  *out = t;
  return 0;
}

static cf__timer *timer_of(const cf_executor *ex) {
  /* acquire: pairs with the release store in get_timer() */
  return atomic_load_explicit(&((cf_executor *)ex)->timer, memory_order_acquire);
}

static int get_timer(cf_executor *ex, const char *name, cf__timer **out) {
  cf__timer *t = timer_of(ex);
  if (t) {
    *out = t;
    return 0;
  }
  pthread_mutex_lock(&make_mu);
  t = timer_of(ex);
  int rc = 0;
  if (!t && (rc = timer_make(name, &t)) == 0)
    atomic_store_explicit(&ex->timer, t, memory_order_release);
  pthread_mutex_unlock(&make_mu);
  *out = t;
  return rc;
}

/* ---- the calls ---- */

int cf__deadline_watch(cf_executor *ex, const char *name, cf_future *f) {
  cf__assert(f->deadline > 0 && f->executor == ex && f->ext[1] == 0);
  cf__timer *t;
  int rc = get_timer(ex, name, &t);
  if (rc != 0) return rc;
  pthread_mutex_lock(&t->mu);
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    cf_future **h = cf__alloc(cap * sizeof *h);
    if (!h) {
      pthread_mutex_unlock(&t->mu);
      return CF_ENOMEM;
    }
    if (t->n) memcpy(h, t->heap, t->n * sizeof *h);
    cf__free(t->heap, t->cap * sizeof *t->heap);
    t->heap = h;
    t->cap = cap;
  }
  cf__future_ref(f); /* the heap's */
  t->heap[t->n++] = f;
  sift_up(t, t->n - 1);
  t->watched++;
  if (t->heap[0] == f) pthread_cond_signal(&t->cv); /* a new earliest deadline */
  pthread_mutex_unlock(&t->mu);
  return 0;
}

/* Step 3 (deadline.h) for f; `done`: f was made done (count an expiry). */
static void uncount(cf_future *f, bool done) {
  cf__timer *t = timer_of(f->executor);
  cf__assert(t != NULL);
  bool drop = false;
  pthread_mutex_lock(&t->mu);
  uint64_t e = __atomic_load_n(&f->ext[1], __ATOMIC_RELAXED);
  if (e & CF__DEADLINE_WATCHED) {
    size_t i = (size_t)(e & ~CF__DEADLINE_WATCHED);
    if (i) {
      heap_remove(t, i - 1);
      drop = true;
    }
    __atomic_store_n(&f->ext[1], 0, __ATOMIC_RELAXED);
    /* relaxed: a statistic. FAILED with CF_EDEADLINE, whoever claimed it
     * (a cancel that won leaves err as a losing claim wrote it) */
    if (done && cf__st_state(atomic_load(f->word)) == CF_STATE_FAILED &&
        atomic_load_explicit(&f->err, memory_order_relaxed) == CF_EDEADLINE)
      atomic_fetch_add_explicit(&t->expired, 1, memory_order_relaxed);
    cf__assert(t->watched > 0);
    if (--t->watched == 0 && t->stop) pthread_cond_broadcast(&t->idle);
  }
  /* the last touch of t (deadline.h, step 4) */
  pthread_mutex_unlock(&t->mu);
  if (drop) cf__future_unref(f); /* never the last: the caller holds one */
}

void cf__deadline_done_slow(cf_future *f) {
  uncount(f, true);
}

void cf__deadline_unwatch(cf_future *f) {
  uncount(f, false);
}

void cf__deadline_destroy(cf_executor *ex) {
  cf__timer *t = timer_of(ex);
  if (!t) return;
  cf__assert(tl_timer != t); /* refused from the timer's own callbacks */
  pthread_mutex_lock(&t->mu);
  t->stop = true;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->thread, NULL);
  pthread_mutex_lock(&t->mu);
  while (t->watched > 0) pthread_cond_wait(&t->idle, &t->mu);
  pthread_mutex_unlock(&t->mu);
  cf__assert(t->n == 0); /* every future is done, so none is in the heap */
  atomic_store_explicit(&ex->timer, NULL, memory_order_relaxed);
  timer_free(t);
}

bool cf__deadline_is_timer_thread(const cf_executor *ex) {
  return tl_timer != NULL && tl_timer == timer_of(ex);
}

uint64_t cf__deadline_expired(const cf_executor *ex) {
  cf__timer *t = timer_of(ex);
  /* relaxed: a statistic */
  return t ? atomic_load_explicit(&t->expired, memory_order_relaxed) : 0;
}
