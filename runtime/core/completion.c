/*
 * completion.c — completion queues: an eventfd an event loop polls, and a
 * non-blocking drain of the futures that completed (cf_completion_queue_*).
 *
 * DESIGN
 * cf_completion_queue_add registers one node per future with
 * cf_future_add_done_callback, so any future works (thread, process,
 * promise, continuation) and the callback runs wherever that future
 * completes (a worker, a process pool's supervisor, the thread that set a
 * promise). The callback pushes its node onto `inbox`, a lock-free MPSC
 * list (a Treiber push; the single consumer takes the whole list with one
 * exchange and never pops single nodes, so there is no ABA), and writes the
 * eventfd only if the list was empty before its push.
 *
 * No lost wake-up, in steps (a drain is: 1. read the eventfd, non-blocking,
 * resetting its counter; 2. exchange the list with NULL; 3. hand out):
 *   - The pushes and the drain's exchange are read-modify-writes of one
 *     word, so they are totally ordered (its modification order). A push
 *     ordered before the exchange is taken by this drain. A push after it
 *     finds the list that the exchange left empty or that later pushes
 *     filled: the first push after the exchange sees NULL and writes the
 *     eventfd.
 *   - That write comes after the exchange (it follows its own push, which
 *     follows the exchange), so after the drain's step 1: the read cannot
 *     have consumed it, and the fd stays readable until the next drain,
 *     which takes the node.
 *   - The other way round costs only a spurious wake-up: a node taken by a
 *     drain whose pusher writes the eventfd after that drain's read leaves
 *     the fd readable with nothing new; the next drain returns 0.
 * So at most one write per batch (empty -> not empty) and one read per
 * drain; nobody polls. Entries a drain cannot hand out (more than max) stay
 * on the consumer's private list, and the drain writes the eventfd itself
 * so that a level-triggered loop comes back for them.
 *
 * Lifetime. `refs` counts the owner and every registered callback that has
 * not finished (a node in the lists holds no reference: free() empties
 * them). free() sets `closed` (seq_cst) and then empties the inbox (seq_cst
 * exchange); a callback pushes (seq_cst) and then loads `closed` (seq_cst)
 * and, if set, empties the inbox itself: a store-buffering pair, so a node
 * pushed after free() looked is emptied by its own pusher. Concurrent
 * emptiers take disjoint lists. The fd is closed with the last reference,
 * so a late callback never writes a recycled fd.
 *
 * Roles: add and the callbacks from any thread; drain by one thread at a
 * time (the loop's; checked in debug builds); free once.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "debug.h"
#include "future.h"
#include "sys.h"

typedef struct cq_node {
  struct cq_node *next;
  struct cf_completion_queue *q;
  cf_future *f; /* the handle handed to the drain's caller */
  void *tag;
} cq_node;

struct cf_completion_queue {
  /* written by every completing thread */
  _Atomic(cq_node *) inbox;
  _Atomic size_t refs; /* the owner + each callback still to finish */
  _Atomic bool closed;
  /* a cache line between the completers' fields and the consumer's (the
   * block is not line-aligned: a full line of padding) */
  unsigned char pad_[64];
  /* the consumer's (one drain at a time) */
  cq_node *ready; /* FIFO taken from inbox */
  cq_node *ready_tail;
  _Atomic size_t pending; /* added, not yet handed out */
  _Atomic bool busy;
  int fd;
};

static void fd_signal(int fd) {
  uint64_t one = 1;
  /* EAGAIN only if the counter would overflow: it is readable then anyway */
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

static void node_free(cq_node *n) {
  (void)cf_future_release(n->f);
  cf__free(n, sizeof *n);
}

static void queue_unref(cf_completion_queue *q) {
  /* acq_rel: every use of q by the other holders happens before the free */
  if (atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) != 1) return;
  close(q->fd);
  cf__free(q, sizeof *q);
}

/* After free(): release every node on the inbox. Any thread. */
static void empty_inbox(cf_completion_queue *q) {
  cq_node *l = atomic_exchange(&q->inbox, NULL); /* seq_cst: the Lifetime pair */
  while (l) {
    cq_node *next = l->next;
    node_free(l);
    l = next;
  }
}

/* The done callback: push, signal on empty -> not empty (DESIGN). */
static void cq_done(cf_future *f, void *arg) {
  cq_node *n = arg;
  cf_completion_queue *q = n->q;
  /* relaxed: only a first guess for the CAS, which re-reads it */
  cq_node *head = atomic_load_explicit(&q->inbox, memory_order_relaxed);
  do {
    n->next = head;
    /* seq_cst: its release half publishes n (pairs with the drain's
     * acquire exchange); seq_cst for the Lifetime pair with free() */
  } while (!atomic_compare_exchange_weak_explicit(&q->inbox, &head, n, memory_order_seq_cst,
                                                  memory_order_relaxed));
  /* The list was empty before this push: the consumer may have read the
   * eventfd already and must learn about it (DESIGN, no lost wake-up). */
  if (head == NULL) fd_signal(q->fd);
  if (atomic_load(&q->closed)) empty_inbox(q); /* seq_cst: the Lifetime pair */
  queue_unref(q);
}

int cf_completion_queue_new(cf_completion_queue **out) {
  if (!out) return CF_EINVAL;
  *out = NULL;
  cf_completion_queue *q = cf__alloc(sizeof *q);
  if (!q) return CF_ENOMEM;
  memset(q, 0, sizeof *q);
  q->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (q->fd < 0) {
    cf__free(q, sizeof *q);
    return CF_ESYS;
  }
  atomic_init(&q->inbox, NULL);
  atomic_init(&q->refs, 1);
  atomic_init(&q->closed, false);
  atomic_init(&q->pending, 0);
  atomic_init(&q->busy, false);
  q->ready = q->ready_tail = NULL;
  *out = q;
  return 0;
}

int cf_completion_queue_fd(cf_completion_queue *q) {
  return q ? q->fd : CF_EINVAL;
}

int cf_completion_queue_add(cf_completion_queue *q, cf_future *f, void *tag) {
  if (!q || !f || f->magic != CF__FUTURE_MAGIC) return CF_EINVAL;
  cq_node *n = cf__alloc(sizeof *n);
  if (!n) return CF_ENOMEM;
  int rc = cf_future_retain(f);
  if (rc != 0) {
    cf__free(n, sizeof *n);
    return rc;
  }
  *n = (cq_node){NULL, q, f, tag};
  atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed); /* the caller holds q */
  /* relaxed: a count for cf_completion_queue_pending, ordered by nothing */
  atomic_fetch_add_explicit(&q->pending, 1, memory_order_relaxed);
  rc = cf_future_add_done_callback(f, cq_done, n);
  if (rc != 0) {
    atomic_fetch_sub_explicit(&q->pending, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&q->refs, 1, memory_order_relaxed); /* not the last: ours */
    node_free(n);
  }
  return rc;
}

int cf_completion_queue_drain(cf_completion_queue *q, cf_completion *items, size_t max) {
  if (!q || (!items && max)) return CF_EINVAL;
  if (max > INT32_MAX) max = INT32_MAX;
  cf__debug_enter(&q->busy);
  /* 1. reset the eventfd (EAGAIN when it is 0: nothing new, or a reader of
   * the fd took it: either way what was pushed is in the list) */
  uint64_t v;
  while (read(q->fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
  /* 2. take the whole list. acquire: pairs with the pushes' seq_cst CAS
   * (their nodes' fields are visible) */
  cq_node *l = atomic_exchange_explicit(&q->inbox, NULL, memory_order_acquire);
  cq_node *rev = NULL, *tail = l;
  while (l) { /* LIFO -> completion order */
    cq_node *next = l->next;
    l->next = rev;
    rev = l;
    l = next;
  }
  if (rev) {
    if (q->ready_tail)
      q->ready_tail->next = rev;
    else
      q->ready = rev;
    q->ready_tail = tail;
  }
  /* 3. hand out */
  size_t k = 0;
  while (k < max && q->ready) {
    cq_node *n = q->ready;
    q->ready = n->next;
    items[k].future = n->f; /* the node's handle moves to the caller */
    items[k].tag = n->tag;
    cf__free(n, sizeof *n);
    k++;
  }
  if (!q->ready) q->ready_tail = NULL;
  atomic_fetch_sub_explicit(&q->pending, k, memory_order_relaxed); /* a count (see add) */
  /* More than max were waiting: keep the fd readable for them. */
  if (q->ready) fd_signal(q->fd);
  cf__debug_leave(&q->busy);
  return (int)k;
}

size_t cf_completion_queue_pending(cf_completion_queue *q) {
  return q ? atomic_load_explicit(&q->pending, memory_order_relaxed) : 0; /* a count (see add) */
}

void cf_completion_queue_free(cf_completion_queue *q) {
  if (!q) return;
  cf__assert(!atomic_load_explicit(&q->busy, memory_order_relaxed)); /* not inside a drain */
  atomic_store(&q->closed, true); /* seq_cst: the Lifetime pair */
  empty_inbox(q);
  while (q->ready) {
    cq_node *n = q->ready;
    q->ready = n->next;
    node_free(n);
  }
  q->ready_tail = NULL;
  queue_unref(q);
}
