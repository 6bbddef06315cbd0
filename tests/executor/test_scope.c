/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_scope.c — cancellation scopes: cancelling a scope cancels its queued
 * members, sets the stop flag of its running thread tasks and kills its
 * running process tasks; a thread task's submits join its scope (so a
 * request's children, on either executor, are cancelled with it); child
 * scopes go with their parent; a cancelled scope refuses submits; members
 * leave when done. argv[1] picks the executor the members run on; parent
 * tasks that spawn children always run on a thread pool (a process task's
 * own submits inherit nothing). The only time bounds are "within 5 s"
 * guards.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testutil.h"

static bool process_kind;

typedef struct shared {
  _Atomic int gate;     /* stop_aware_task waits for it or for stop */
  _Atomic int started;  /* stop_aware_task entries */
  _Atomic int saw_stop; /* stop_aware_task exits on stop */
  _Atomic long ran;     /* quick_task runs */
} shared;
#define sh ((shared *)cf_test_shm)

static void reset_shared(void) {
  memset((void *)sh, 0, sizeof *sh);
}

/* 200 us: a poll interval */
static void nap(void) {
  cf_test_nap_us(200);
}

/* Is f done within 5 s? (cf_future_wait: a guard, not a timing threshold) */
static bool done_5s(cf_future *f) {
  return cf_future_wait(f, 5000000000LL) == 0;
}

static cf_executor *make_ex(unsigned workers) {
  return cf_test_new_executor(process_kind, workers);
}

/* Runs until the gate opens or it is asked to stop. */
static void stop_aware_task(cf_call *c) {
  atomic_fetch_add(&sh->started, 1);
  while (!atomic_load(&sh->gate)) {
    if (cf_call_stop_requested(c)) {
      atomic_fetch_add(&sh->saw_stop, 1);
      cf_call_fail(c, 1, "stopped");
      return;
    }
    nap();
  }
}

static void quick_task(cf_call *c) {
  atomic_fetch_add(&sh->ran, 1);
}

/* A member's end after a cancel: cancelled while queued, killed (process),
 * or it saw its stop flag and failed (thread). */
static bool cancelled_or_stopped(cf_future *f) {
  int rc = cf_future_result(f, NULL, 0, NULL, 0);
  return rc == CF_ECANCELLED || rc == CF_ETASK;
}

/* ---- members ---- */

static void test_cancel_members(void) {
  reset_shared();
  cf_executor *ex = make_ex(1);
  cf_scope *s = NULL;
  assert_rc(cf_scope_new(NULL, &s), 0);
  expect_true(!cf_scope_cancelled(s));
  enum { N = 5 };
  cf_future *fs[N];
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = s};
  for (int i = 0; i < N; i++) assert_rc(cf_submit_ex(ex, stop_aware_task, NULL, 0, &so, &fs[i]), 0);
  assert_true(cf_test_within_5s(&sh->started, 1)); /* one runs, the others are queued */
  /* a future outside the scope is left alone */
  cf_future *other = NULL;
  assert_rc(cf_submit(ex, quick_task, NULL, 0, &other), 0);
  expect_rc(cf_scope_cancel(s), 0);
  expect_true(cf_scope_cancelled(s));
  for (int i = 0; i < N; i++) {
    expect_true(done_5s(fs[i]));
    expect_true(cancelled_or_stopped(fs[i]));
  }
  expect_eq(atomic_load(&sh->started), 1); /* the queued ones never ran */
  if (!process_kind) expect_eq(atomic_load(&sh->saw_stop), 1);
  if (process_kind)
    expect_rc(cf_future_result(fs[0], NULL, 0, NULL, 0), CF_ECANCELLED); /* killed */
  expect_rc(cf_future_result(other, NULL, 0, NULL, -1), 0);
  /* a cancelled scope refuses submits; cancelling again is fine */
  cf_future *late = (cf_future *)1;
  expect_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &late), CF_ECANCELLED);
  expect_true(late == NULL);
  expect_rc(cf_scope_cancel(s), 0);
  for (int i = 0; i < N; i++) cf_future_release(fs[i]);
  cf_future_release(other);
  cf_scope_free(s);
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->ran), 1);
}

/* ---- a request's children, on the executor under test ---- */

static cf_executor *child_ex; /* where parent_task submits */
enum { KIDS = 4 };
static cf_future *kids[KIDS];
static _Atomic int kids_submitted;
static _Atomic int kid_rc[KIDS];
static cf_scope *_Atomic seen_scope;

/* Runs on a thread pool: submits KIDS children with plain cf_submit (they
 * join its scope), then waits for them and records how they ended. */
static void parent_task(cf_call *c) {
  atomic_store(&seen_scope, cf_scope_current());
  for (int i = 0; i < KIDS; i++) {
    if (cf_submit(child_ex, stop_aware_task, NULL, 0, &kids[i]) != 0) return;
    atomic_fetch_add(&kids_submitted, 1);
  }
  for (int i = 0; i < KIDS; i++) {
    atomic_store(&kid_rc[i], cf_future_result(kids[i], NULL, 0, NULL, -1));
    cf_future_release(kids[i]);
  }
}

static void test_children_inherit(void) {
  reset_shared();
  atomic_store(&kids_submitted, 0);
  atomic_store(&seen_scope, NULL);
  cf_executor *tp = cf_test_new_executor(false, 2);
  child_ex = process_kind ? make_ex(2) : tp;
  cf_scope *req = NULL;
  assert_rc(cf_scope_new(NULL, &req), 0);
  expect_true(cf_scope_current() == NULL); /* not in a task */
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = req};
  cf_future *p = NULL;
  assert_rc(cf_submit_ex(tp, parent_task, NULL, 0, &so, &p), 0);
  assert_true(cf_test_within_5s(&kids_submitted, KIDS));
  assert_true(cf_test_within_5s(&sh->started, 1)); /* a child runs */
  expect_true(atomic_load(&seen_scope) == req);
  expect_rc(cf_scope_cancel(req), 0);
  /* the parent returns once its children are done: all within the guard,
   * with the gate still closed */
  expect_true(done_5s(p));
  for (int i = 0; i < KIDS; i++) {
    int rc = atomic_load(&kid_rc[i]);
    expect_true(rc == CF_ECANCELLED || rc == CF_ETASK);
  }
  expect_true(atomic_load(&sh->gate) == 0);
  cf_future_release(p);
  cf_scope_free(req);
  atomic_store(&sh->gate, 1);
  if (child_ex != tp) expect_rc(cf_executor_destroy(child_ex), 0);
  expect_rc(cf_executor_destroy(tp), 0);
}

/* A task can leave the scope for a submit: CF_SUBMIT_SCOPE with NULL. */
static cf_future *detached;
static void detaching_task(cf_call *c) {
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = NULL};
  (void)cf_submit_ex(child_ex, stop_aware_task, NULL, 0, &so, &detached);
}

static void test_detach(void) {
  reset_shared();
  detached = NULL;
  cf_executor *tp = cf_test_new_executor(false, 2);
  child_ex = process_kind ? make_ex(1) : tp;
  cf_scope *s = NULL;
  assert_rc(cf_scope_new(NULL, &s), 0);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = s};
  cf_future *p = NULL;
  assert_rc(cf_submit_ex(tp, detaching_task, NULL, 0, &so, &p), 0);
  expect_rc(cf_future_result(p, NULL, 0, NULL, -1), 0);
  assert_true(detached != NULL);
  assert_true(cf_test_within_5s(&sh->started, 1));
  expect_rc(cf_scope_cancel(s), 0);
  /* not a member: still running, until the gate opens */
  expect_rc(cf_future_wait(detached, 1000000), CF_ETIMEDOUT);
  atomic_store(&sh->gate, 1);
  expect_rc(cf_future_result(detached, NULL, 0, NULL, -1), 0);
  cf_future_release(detached);
  cf_future_release(p);
  cf_scope_free(s);
  if (child_ex != tp) expect_rc(cf_executor_destroy(child_ex), 0);
  expect_rc(cf_executor_destroy(tp), 0);
}

/* ---- child scopes ---- */

static void test_child_scopes(void) {
  reset_shared();
  cf_executor *ex = make_ex(2);
  cf_scope *parent = NULL, *child = NULL, *grandchild = NULL, *other = NULL;
  assert_rc(cf_scope_new(NULL, &parent), 0);
  assert_rc(cf_scope_new(parent, &child), 0);
  assert_rc(cf_scope_new(child, &grandchild), 0);
  assert_rc(cf_scope_new(NULL, &other), 0);
  cf_future *a = NULL, *b = NULL, *c = NULL;
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = grandchild};
  assert_rc(cf_submit_ex(ex, stop_aware_task, NULL, 0, &so, &a), 0);
  so.scope = child;
  assert_rc(cf_submit_ex(ex, stop_aware_task, NULL, 0, &so, &b), 0);
  so.scope = other;
  assert_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &c), 0);
  /* the child's handle may go first: its members stay reachable */
  cf_scope_free(child);
  assert_true(cf_test_within_5s(&sh->started, 2));
  /* cancelling the child alone leaves the parent as it is */
  expect_rc(cf_scope_cancel(grandchild), 0);
  expect_true(done_5s(a));
  expect_true(cancelled_or_stopped(a));
  expect_true(!cf_scope_cancelled(parent));
  expect_true(!cf_future_done(b));
  expect_rc(cf_scope_cancel(parent), 0);
  expect_true(done_5s(b));
  expect_true(cancelled_or_stopped(b));
  expect_true(cf_scope_cancelled(grandchild));
  expect_true(!cf_scope_cancelled(other));
  expect_rc(cf_future_result(c, NULL, 0, NULL, -1), 0);
  /* born cancelled under a cancelled parent; refuses submits */
  cf_scope *late = NULL;
  assert_rc(cf_scope_new(parent, &late), 0);
  expect_true(cf_scope_cancelled(late));
  cf_future *d = NULL;
  so.scope = late;
  expect_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &d), CF_ECANCELLED);
  cf_scope_free(late);
  cf_future_release(a);
  cf_future_release(b);
  cf_future_release(c);
  cf_scope_free(grandchild);
  cf_scope_free(parent);
  cf_scope_free(other);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- members leave when done ---- */

/* Many short members, some released before they finish: the scope holds
 * none of them afterwards (ASan's leak check sees the scope and every
 * member node freed once the handle goes). */
static void test_members_leave(void) {
  reset_shared();
  atomic_store(&sh->gate, 1);
  cf_executor *ex = make_ex(2);
  cf_scope *s = NULL;
  assert_rc(cf_scope_new(NULL, &s), 0);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = s};
  enum { N = 3000 };
  static cf_future *fs[N];
  for (int i = 0; i < N; i++) {
    assert_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &fs[i]), 0);
    if (i % 2) cf_future_release(fs[i]), fs[i] = NULL;
  }
  for (int i = 0; i < N; i++) {
    if (!fs[i]) continue;
    expect_rc(cf_future_result(fs[i], NULL, 0, NULL, -1), 0);
    cf_future_release(fs[i]);
  }
  cf_scope_free(s); /* members still finishing keep it alive until they are done */
  expect_rc(cf_executor_destroy(ex), 0);
  expect_eq(atomic_load(&sh->ran), N);
}

/* ---- a cancel racing with a growing tree of tasks ---- */

/* A node of the tree: below depth 0 it submits two children (they inherit
 * its scope) and waits for them, else it spins until stopped or done. On a
 * thread pool, so that its submits inherit; leaves on the executor under
 * test. */
static cf_executor *tree_tp, *tree_leaf_ex;
static _Atomic int tree_nodes;

static void tree_task(cf_call *c) {
  int depth = *(const int *)cf_call_arg(c, NULL);
  atomic_fetch_add(&tree_nodes, 1);
  if (depth == 0) {
    for (int i = 0; i < 2000 && !cf_call_stop_requested(c); i++) nap();
    return;
  }
  int d = depth - 1;
  cf_future *kid[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++)
    if (cf_submit(d == 0 ? tree_leaf_ex : tree_tp, tree_task, &d, sizeof d, &kid[i]) != 0)
      kid[i] = NULL; /* the scope is cancelled: CF_ECANCELLED */
  for (int i = 0; i < 2; i++) {
    if (!kid[i]) continue;
    (void)cf_future_wait(kid[i], -1);
    cf_future_release(kid[i]);
  }
}

static void test_cancel_race(void) {
  tree_tp = cf_test_new_executor(false, 3);
  tree_leaf_ex = process_kind ? make_ex(2) : tree_tp;
  int rounds = (int)cf_test_scale(20);
  for (int r = 0; r < rounds; r++) {
    atomic_store(&tree_nodes, 0);
    cf_scope *top = NULL, *s = NULL;
    assert_rc(cf_scope_new(NULL, &top), 0);
    assert_rc(cf_scope_new(top, &s), 0);
    cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = s};
    int depth = 5;
    cf_future *root = NULL;
    assert_rc(cf_submit_ex(tree_tp, tree_task, &depth, sizeof depth, &so, &root), 0);
    /* cancel at a different point of the growth each round */
    assert_true(cf_test_within_5s(&tree_nodes, 1 + r % 6));
    if (r % 2) {
      /* the handle goes first: its members are reached through the parent */
      cf_scope_free(s);
      expect_rc(cf_scope_cancel(top), 0);
    } else {
      expect_rc(cf_scope_cancel(s), 0);
      cf_scope_free(s);
    }
    expect_true(done_5s(root));
    cf_future_release(root);
    cf_scope_free(top);
  }
  if (tree_leaf_ex != tree_tp) expect_rc(cf_executor_destroy(tree_leaf_ex), 0);
  expect_rc(cf_executor_destroy(tree_tp), 0);
}

/* ---- bad input ---- */

static void test_bad_input(void) {
  expect_rc(cf_scope_new(NULL, NULL), CF_EINVAL);
  expect_rc(cf_scope_cancel(NULL), CF_EINVAL);
  expect_true(!cf_scope_cancelled(NULL));
  cf_scope_free(NULL);
  cf_executor *ex = make_ex(1);
  long junk[16] = {0};
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = (cf_scope *)junk};
  cf_future *f = NULL;
  expect_rc(cf_submit_ex(ex, quick_task, NULL, 0, &so, &f), CF_EINVAL);
  expect_rc(cf_scope_new((cf_scope *)junk, &(cf_scope *){NULL}), CF_EINVAL);
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- continuations ---- */

/* A continuation made by a task in scope S runs in S: cancelling S before
 * its predecessor completes means fn never runs and the continuation ends
 * with CF_ECANCELLED (the regression: it ran, outside any scope). */
static cf_future *cont_pred, *cont_out;
static void cont_fn(cf_call *c) {
  atomic_fetch_add(&sh->ran, 1);
}
static void cont_maker_task(cf_call *c) {
  (void)cf_future_then(cont_pred, child_ex, cont_fn, 0, &cont_out);
}

static void test_continuation_in_scope(void) {
  reset_shared();
  cf_executor *tp = cf_test_new_executor(false, 2);
  child_ex = process_kind ? make_ex(2) : tp;
  assert_rc(cf_promise_new(&cont_pred), 0);
  cont_out = NULL;
  cf_scope *req = NULL;
  assert_rc(cf_scope_new(NULL, &req), 0);
  cf_submit_opts so = {.timeout_ns = 0, .flags = CF_SUBMIT_SCOPE, .scope = req};
  cf_future *maker = NULL;
  assert_rc(cf_submit_ex(tp, cont_maker_task, NULL, 0, &so, &maker), 0);
  expect_true(done_5s(maker));
  assert_true(cont_out != NULL);
  expect_rc(cf_scope_cancel(req), 0);
  int v = 7;
  expect_rc(cf_promise_set_result(cont_pred, &v, sizeof v), 0);
  expect_true(done_5s(cont_out));
  expect_rc(cf_future_result(cont_out, NULL, 0, NULL, 0), CF_ECANCELLED);
  expect_eq(atomic_load(&sh->ran), 0);
  cf_future_release(cont_out);
  cf_future_release(cont_pred);
  cf_future_release(maker);
  cf_scope_free(req);
  if (child_ex != tp) expect_rc(cf_executor_destroy(child_ex), 0);
  expect_rc(cf_executor_destroy(tp), 0);
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  cf_test_shared(sizeof(shared));
  CF_RUN(test_cancel_members);
  CF_RUN(test_children_inherit);
  CF_RUN(test_detach);
  CF_RUN(test_child_scopes);
  CF_RUN(test_members_leave);
  CF_RUN(test_cancel_race);
  CF_RUN(test_bad_input);
  CF_RUN(test_continuation_in_scope);
  return cf_test_done(process_kind ? "test_scope_process" : "test_scope_thread");
}
