/*
 * scope.c — cancellation scopes (the DESIGN is in scope.h).
 *
 * Locking: a scope's `mu` guards its member lists and its list of
 * children; a child's link in its parent's list is guarded by the parent's
 * `mu`. A thread holds at most one scope's mutex, never a future's callback
 * or cancel under it.
 */
#include "scope.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "debug.h"
#include "executor.h"
#include "future.h"
#include "sys.h"

#define SCOPE_MAGIC 0xcf5c0be1u

_Thread_local cf_scope *cf__scope_tl __attribute__((tls_model("initial-exec")));

typedef struct link {
  struct link *prev, *next;
} link;

typedef struct member {
  link l; /* on the scope's fresh or asked list */
  cf_future *f;
  cf_scope *s;
} member;

struct cf_scope {
  uint32_t magic;
  _Atomic uint32_t refs; /* scope.h: Lifetime */
  _Atomic bool cancelled;
  _Atomic bool released; /* cf_scope_free was called */
  pthread_mutex_t mu;
  link fresh;    /* members not yet asked to cancel */
  link asked;    /* members cancel has asked (still running, or finishing) */
  link children; /* child scopes, through their `sib` */
  link sib;      /* in parent->children (under parent->mu) */
  cf_scope *parent;
};

/* ---- lists (circular, with a sentinel) ---- */

static void list_init(link *h) {
  h->prev = h->next = h;
}
static bool list_empty(const link *h) {
  return h->next == h;
}
static void list_push(link *h, link *l) {
  l->next = h->next;
  l->prev = h;
  h->next->prev = l;
  h->next = l;
}
static void list_unlink(link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = l;
}

/* ---- references ---- */

static bool valid(const cf_scope *s) {
  return s && s->magic == SCOPE_MAGIC;
}

static void scope_ref(cf_scope *s) {
  /* relaxed: the caller holds a reference */
  uint32_t old = atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  cf__assert(old > 0);
}

/* A reference on a child found in its parent's list (parent->mu held),
 * unless it is already on its way out. */
static bool scope_tryref(cf_scope *s) {
  uint32_t v = atomic_load_explicit(&s->refs, memory_order_relaxed);
  while (v > 0)
    if (atomic_compare_exchange_weak_explicit(&s->refs, &v, v + 1, memory_order_relaxed,
                                              memory_order_relaxed))
      return true;
  return false;
}

static void scope_unref(cf_scope *s) {
  /* acq_rel: every use of s happens before its free */
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  cf_scope *parent = s->parent;
  if (parent) {
    pthread_mutex_lock(&parent->mu);
    list_unlink(&s->sib);
    pthread_mutex_unlock(&parent->mu);
  }
  cf__assert(list_empty(&s->fresh) && list_empty(&s->asked) && list_empty(&s->children));
  pthread_mutex_destroy(&s->mu);
  s->magic = 0;
  cf__free(s, sizeof *s);
  if (parent) scope_unref(parent);
}

/* ---- membership ---- */

/* A member's done-callback: the future leaves the scope. */
static void member_done(cf_future *f, void *arg) {
  member *m = arg;
  cf_scope *s = m->s;
  cf__assert(m->f == f);
  pthread_mutex_lock(&s->mu);
  list_unlink(&m->l);
  pthread_mutex_unlock(&s->mu);
  cf__free(m, sizeof *m);
  scope_unref(s);
}

int cf__scope_submit(cf_executor *ex, cf_fn fn, const void *arg, size_t len, int64_t deadline,
                     unsigned flags, cf_scope *s, cf_future **out) {
  if (!valid(s)) return CF_EINVAL;
  if (atomic_load(&s->cancelled)) return CF_ECANCELLED;
  member *m = cf__alloc(sizeof *m);
  cf__cb *cb = m ? cf__cb_new(member_done, m, true) : NULL;
  if (!cb) {
    if (m) cf__free(m, sizeof *m);
    return CF_ENOMEM;
  }
  int rc = ex->vt->submit(ex, fn, arg, len, deadline, flags, s, out);
  if (rc != 0) {
    cf__free(cb, sizeof(cf__cb));
    cf__free(m, sizeof *m);
    return rc;
  }
  cf_future *f = *out;
  m->f = f;
  m->s = s;
  scope_ref(s); /* the member's */
  pthread_mutex_lock(&s->mu);
  bool cancel = atomic_load(&s->cancelled);
  list_push(cancel ? &s->asked : &s->fresh, &m->l);
  pthread_mutex_unlock(&s->mu);
  cf__future_add_cb(f, cb);
  /* cancelled since the check above: cancel missed this one (scope.h) */
  if (cancel) (void)cf_future_cancel(f);
  return 0;
}

/* ---- public ---- */

void cf__scope_retain(cf_scope *s) {
  scope_ref(s);
}
void cf__scope_release(cf_scope *s) {
  scope_unref(s);
}

int cf_scope_new(cf_scope *parent, cf_scope **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  if (parent && !valid(parent)) return CF_EINVAL;
  cf_scope *s = cf__calloc(sizeof *s);
  if (!s) return CF_ENOMEM;
  s->magic = SCOPE_MAGIC;
  atomic_init(&s->refs, 1);
  atomic_init(&s->cancelled, false);
  atomic_init(&s->released, false);
  pthread_mutex_init(&s->mu, NULL);
  list_init(&s->fresh);
  list_init(&s->asked);
  list_init(&s->children);
  list_init(&s->sib);
  if (parent) {
    scope_ref(parent); /* the child's */
    s->parent = parent;
    pthread_mutex_lock(&parent->mu);
    list_push(&parent->children, &s->sib);
    /* under the parent's mutex: a cancel of the parent either finds this
     * child in its list or has set its flag before we read it */
    if (atomic_load(&parent->cancelled)) atomic_store(&s->cancelled, true);
    pthread_mutex_unlock(&parent->mu);
  }
  *out = s;
  return 0;
}

int cf_scope_cancel(cf_scope *s) {
  if (!valid(s)) return CF_EINVAL;
  scope_ref(s); /* the caller may free its handle from a callback we run */
  pthread_mutex_lock(&s->mu);
  bool was = atomic_exchange(&s->cancelled, true);
  while (!was && !list_empty(&s->fresh)) {
    member *m = (member *)s->fresh.next;
    list_unlink(&m->l);
    list_push(&s->asked, &m->l);
    cf_future *f = m->f;
    cf__future_ref(f); /* alive: its member is linked (scope.h) */
    pthread_mutex_unlock(&s->mu);
    (void)cf_future_cancel(f); /* may run callbacks, member_done among them */
    cf__future_unref(f);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  /* then the children, one at a time, each cancelled once */
  for (;;) {
    cf_scope *child = NULL;
    pthread_mutex_lock(&s->mu);
    for (link *l = s->children.next; l != &s->children; l = l->next) {
      cf_scope *c = (cf_scope *)((char *)l - offsetof(cf_scope, sib));
      if (!atomic_load(&c->cancelled) && scope_tryref(c)) {
        child = c;
        break;
      }
    }
    pthread_mutex_unlock(&s->mu);
    if (!child) break;
    (void)cf_scope_cancel(child);
    scope_unref(child);
  }
  scope_unref(s);
  return 0;
}

bool cf_scope_cancelled(const cf_scope *s) {
  return valid(s) && atomic_load(&s->cancelled);
}

void cf_scope_free(cf_scope *s) {
  if (!valid(s)) return;
  if (atomic_exchange(&s->released, true)) {
    cf__assert(!"cf_scope_free: released twice");
    return;
  }
  scope_unref(s);
}

cf_scope *cf_scope_current(void) {
  return cf__scope_tl;
}
