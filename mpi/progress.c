/*
 * progress.c — rank 0's progress thread (every MPI call of a pool) and the
 * callback thread (every done callback of a pool's futures).
 *
 * DESIGN
 * The progress thread loops:
 *   1. take the inbox (one exchange; reversed into submission order) onto
 *      the ready list; futures with a deadline also go on a min-heap;
 *   2. take requests under mu: STOP for running futures (cancel), a
 *      cancelling shutdown (every PENDING future becomes CANCELLED, now and
 *      for whatever arrives later), closing;
 *   3. take every outcome that arrived (MPI_Improbe on the pool's result
 *      tag, any source): check it against the slot it names (slot, seq),
 *      receive a large result straight into the future's buffer, write the
 *      outcome, complete the future;
 *   4. dispatch: the oldest ready future goes to the alive worker with the
 *      fewest tasks in flight (below max_inflight; ties: the lowest index,
 *      so a lone task finds the same warm rank), PENDING -> RUNNING first;
 *      tasks for one worker in one turn share a batch message; a large
 *      argument follows as its own message, sent from the future's copy;
 *   5. test the sends in flight, fail expired deadlines (a PENDING future
 *      never runs; a RUNNING one fails at once and its worker gets STOP,
 *      its slot stays taken until the worker answers), and every
 *      DEATH_CHECK_NS look at the workers' pidfds.
 * When a turn did nothing it polls again, yielding the CPU, for SPIN_NS
 * (SEND_SPIN_NS while a send is in flight: a rendezvous needs both sides);
 * then it sleeps on its eventfd: while tasks are in flight for 1/8 of the
 * time idle so far (at most 1 ms: it must look at MPI, which cannot wake
 * it), else until the next deadline or a kick. A submitter kicks only when
 * the thread said it sleeps (`sleeping`, stored before the thread's last
 * look at the inbox: a Dekker pair with the submitter's push and load).
 *
 * A worker found dead: the futures it held fail with CF_ECRASHED (pid in
 * the crash info; the signal is unknown, the rank is not our child), the
 * pool is broken: queued futures fail with CF_EBROKEN, submits refuse.
 * Futures on other workers still complete.
 *
 * Closing (destroy or MPI_Finalize, once nothing is live): CLOSE to every
 * alive worker, wait for their CLOSED (each answers once no task of the
 * pool is left with it), wait for the sends in flight, and in spawn mode
 * EXIT and MPI_Comm_disconnect.
 */
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpi_pool.h"
#include "sys.h"

#define SPIN_NS 50000
#define MAX_SLEEP_NS 1000000
#define DEATH_CHECK_NS 1000000
#define SEND_SPIN_NS 2000000

static inline cf__mpi_slot *slot_at(cf__mpi_pool *p, unsigned w, unsigned k) {
  return &p->slots[(size_t)w * p->max_inflight + k];
}

void cf__mpi_kick(cf__mpi_pool *p) {
  uint64_t one = 1;
  ssize_t r = write(p->evfd, &one, sizeof one);
  (void)r;
}

/* ---- completion ---- */

typedef struct cbnode {
  struct cbnode *next;
  cf_future *f;
} cbnode;

static void to_callbacks(cf__mpi_pool *p, cf_future *f) {
  cbnode *n = malloc(sizeof *n);
  if (!n) { /* no memory: run them here rather than lose them */
    cf__future_run_callbacks(f);
    return;
  }
  cf__future_ref(f);
  n->f = f;
  n->next = NULL;
  pthread_mutex_lock(&p->cmu);
  if (p->cb_tail)
    ((cbnode *)p->cb_tail)->next = n;
  else
    p->cb_head = (cf_future *)n;
  p->cb_tail = (cf_future *)n;
  bool wake = p->cb_sleeping;
  pthread_mutex_unlock(&p->cmu);
  if (wake) pthread_cond_signal(&p->ccv);
}

bool cf__mpi_settle(cf__mpi_pool *p, cf_future *f, unsigned from_mask, uint32_t to) {
  _Atomic uint32_t *word = f->word;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  for (;;) {
    if (!(from_mask & (1u << cf__st_state(w)))) return false;
    /* seq_cst: release publishes the outcome written before; the load of
     * the callback list below is the second half of the Dekker with
     * cf_future_add_done_callback (push, then re-load the word) */
    if (atomic_compare_exchange_weak_explicit(word, &w, cf__st_with(w, to), memory_order_seq_cst,
                                              memory_order_relaxed))
      break;
  }
  cf__future_wake(word, w, true);
  if (atomic_load(&f->callbacks) != NULL) to_callbacks(p, f);
  return true;
}

#define FROM(s) (1u << (s))

/* The pool is done with f: drop its reference. */
static void drop(cf__mpi_pool *p, cf_future *f) {
  cf__future_unref(f);
  /* seq_cst: Dekker with a shutdown that counts itself in live_waiters and
   * then re-reads live */
  if (atomic_fetch_sub(&p->live, 1) == 1 && atomic_load(&p->live_waiters)) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
}

static void fail_pending(cf__mpi_pool *p, cf_future *f, int err) {
  atomic_store_explicit(&f->err, err, memory_order_relaxed); /* published by the settle */
  (void)cf__mpi_settle(p, f, FROM(CF_STATE_PENDING), CF_STATE_FAILED);
}

/* ---- sends ---- */

static void add_send(cf__mpi_pool *p, MPI_Request rq, void *buf, size_t len, cf_future *f, int w) {
  if (p->nsends == p->sends_cap) {
    size_t cap = p->sends_cap ? 2 * p->sends_cap : 16;
    cf__mpi_send *n = realloc(p->sends, cap * sizeof *n);
    if (!n) { /* keep going without the record: wait for it here */
      (void)cf__mpi_wait(&rq, &p->peers[w], NULL);
      free(buf);
      if (f) cf__future_unref(f);
      return;
    }
    p->sends = n;
    p->sends_cap = cap;
  }
  p->sends[p->nsends++] =
      (cf__mpi_send){.req = rq, .buf = buf, .buf_len = len, .f = f, .worker = w};
}

static bool poll_sends(cf__mpi_pool *p) {
  bool any = false;
  for (size_t i = 0; i < p->nsends;) {
    cf__mpi_send *s = &p->sends[i];
    int flag = 0;
    if (atomic_load_explicit(&p->peers[s->worker].dead, memory_order_relaxed)) {
      /* never completes: abandon (the buffer may still be read by MPI) */
      if (s->f) cf__future_unref(s->f);
      *s = p->sends[--p->nsends];
      continue;
    }
    MPI_Test(&s->req, &flag, MPI_STATUS_IGNORE);
    if (!flag) {
      i++;
      continue;
    }
    free(s->buf);
    if (s->f) cf__future_unref(s->f);
    *s = p->sends[--p->nsends];
    any = true;
  }
  return any;
}

static void send_ctl(cf__mpi_pool *p, unsigned w, const cf__mpi_ctl *c, int tag) {
  cf__mpi_ctl *b = malloc(sizeof *b);
  if (!b) return;
  *b = *c;
  MPI_Request rq;
  if (MPI_Isend(b, sizeof *b, MPI_BYTE, p->peers[w].rank, tag, p->comm, &rq) != MPI_SUCCESS) {
    free(b);
    return;
  }
  add_send(p, rq, b, sizeof *b, NULL, (int)w);
}

static void send_stop(cf__mpi_pool *p, unsigned w, unsigned k) {
  cf__mpi_ctl c;
  memset(&c, 0, sizeof c);
  c.magic = CF__MPI_MAGIC;
  c.version = CF__MPI_VERSION;
  c.type = CTL_STOP;
  c.pool = p->id;
  c.a = k;
  c.b = slot_at(p, w, k)->seq;
  send_ctl(p, w, &c, CF__MPI_TAG(p->id, K_CTRL));
}

/* ---- deaths ---- */

static void mark_broken(cf__mpi_pool *p) {
  pthread_mutex_lock(&p->mu);
  p->broken = true;
  atomic_store(&p->doomed, true);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static void on_death(cf__mpi_pool *p, unsigned w) {
  atomic_fetch_add_explicit(&p->crashed, 1, memory_order_relaxed); /* statistic */
  for (unsigned k = 0; k < p->max_inflight; k++) {
    cf__mpi_slot *s = slot_at(p, w, k);
    if (!s->f) continue;
    cf_future *f = s->f;
    s->f = NULL;
    f->task_code = p->peers[w].pid;
    atomic_store_explicit(&f->err, CF_ECRASHED, memory_order_relaxed);
    (void)cf__mpi_settle(p, f, FROM(CF_STATE_RUNNING), CF_STATE_FAILED);
    drop(p, f);
  }
  p->busy[w] = 0;
  mark_broken(p);
}

static bool check_deaths(cf__mpi_pool *p) {
  bool any = false;
  for (unsigned w = 0; w < p->nworkers; w++) {
    if (p->gone[w] || !cf__mpi_peer_dead(&p->peers[w])) continue;
    p->gone[w] = true;
    on_death(p, w);
    any = true;
  }
  return any;
}

/* ---- deadlines ---- */

static void heap_push(cf__mpi_pool *p, int64_t when, cf_future *f) {
  if (p->nheap == p->heap_cap) {
    size_t cap = p->heap_cap ? 2 * p->heap_cap : 64;
    cf__mpi_dl *n = realloc(p->heap, cap * sizeof *n);
    if (!n) return; /* no deadline then */
    p->heap = n;
    p->heap_cap = cap;
  }
  cf__future_ref(f);
  size_t i = p->nheap++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (p->heap[up].when <= when) break;
    p->heap[i] = p->heap[up];
    i = up;
  }
  p->heap[i] = (cf__mpi_dl){when, f};
}

static cf__mpi_dl heap_pop(cf__mpi_pool *p) {
  cf__mpi_dl top = p->heap[0], last = p->heap[--p->nheap];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= p->nheap) break;
    if (c + 1 < p->nheap && p->heap[c + 1].when < p->heap[c].when) c++;
    if (p->heap[c].when >= last.when) break;
    p->heap[i] = p->heap[c];
    i = c;
  }
  if (p->nheap) p->heap[i] = last;
  return top;
}

/* The slot a RUNNING future holds on its worker, or -1. */
static int find_slot(cf__mpi_pool *p, cf_future *f, unsigned *wp) {
  unsigned owner = cf__st_owner(atomic_load_explicit(f->word, memory_order_relaxed));
  if (owner == 0 || owner > p->nworkers) return -1;
  unsigned w = owner - 1;
  for (unsigned k = 0; k < p->max_inflight; k++) {
    if (slot_at(p, w, k)->f == f) {
      *wp = w;
      return (int)k;
    }
  }
  return -1;
}

static bool expire(cf__mpi_pool *p, int64_t now) {
  bool any = false;
  while (p->nheap && p->heap[0].when <= now) {
    cf__mpi_dl d = heap_pop(p);
    cf_future *f = d.f;
    uint32_t st = cf__st_state(atomic_load_explicit(f->word, memory_order_acquire));
    if (st == CF_STATE_PENDING) {
      fail_pending(p, f, CF_EDEADLINE); /* it stays on the ready list, done */
    } else if (st == CF_STATE_RUNNING) {
      unsigned w;
      int k = find_slot(p, f, &w);
      atomic_store_explicit(&f->err, CF_EDEADLINE, memory_order_relaxed);
      if (cf__mpi_settle(p, f, FROM(CF_STATE_RUNNING), CF_STATE_FAILED) && k >= 0)
        send_stop(p, w, (unsigned)k);
    }
    cf__future_unref(f);
    any = true;
  }
  return any;
}

/* ---- the inbox and requests ---- */

static bool take_inbox(cf__mpi_pool *p) {
  cf_future *l = atomic_exchange(&p->inbox, NULL);
  if (!l) return false;
  cf_future *rev = NULL;
  while (l) { /* LIFO -> submission order */
    cf_future *next = atomic_load_explicit(&l->next, memory_order_relaxed);
    atomic_store_explicit(&l->next, rev, memory_order_relaxed);
    rev = l;
    l = next;
  }
  for (cf_future *f = rev; f;) {
    cf_future *next = atomic_load_explicit(&f->next, memory_order_relaxed);
    atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
    if (p->ready_tail)
      atomic_store_explicit(&p->ready_tail->next, f, memory_order_relaxed);
    else
      p->ready_head = f;
    p->ready_tail = f;
    if (f->deadline > 0) heap_push(p, f->deadline, f);
    f = next;
  }
  return true;
}

static void cancel_ready(cf__mpi_pool *p) {
  for (cf_future *f = p->ready_head; f; f = atomic_load_explicit(&f->next, memory_order_relaxed))
    (void)cf__mpi_settle(p, f, FROM(CF_STATE_PENDING), CF_STATE_CANCELLED);
}

static bool take_requests(cf__mpi_pool *p, bool *closing) {
  if (!atomic_load(&p->req)) return false;
  atomic_store(&p->req, false);
  pthread_mutex_lock(&p->mu);
  cf_future **stops = p->stops;
  size_t nstops = p->nstops;
  p->stops = NULL;
  p->nstops = p->stops_cap = 0;
  bool cancel = p->cancel_gen != p->cancel_done;
  unsigned gen = p->cancel_gen;
  bool kill = p->kill_req;
  p->kill_req = false;
  *closing = p->closing;
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < nstops; i++) {
    cf_future *f = stops[i];
    unsigned w;
    int k = cf__st_state(atomic_load(f->word)) == CF_STATE_RUNNING ? find_slot(p, f, &w) : -1;
    if (k >= 0) send_stop(p, w, (unsigned)k);
    cf__future_unref(f);
  }
  free(stops);
  for (unsigned w = 0; kill && w < p->nworkers; w++)
    for (unsigned k = 0; k < p->max_inflight; k++)
      if (slot_at(p, w, k)->f) send_stop(p, w, k);
  if (cancel) {
    take_inbox(p);
    p->cancel_sticky = true;
    cancel_ready(p);
    pthread_mutex_lock(&p->mu);
    p->cancel_done = gen;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  return true;
}

/* ---- dispatch ---- */

static bool batch_put(cf__mpi_pool *p, unsigned w, const cf__mpi_task *e, const void *arg,
                      size_t inl) {
  size_t need = p->bbuf_len[w] + sizeof *e + cf__pad8((uint32_t)inl);
  if (need > p->bbuf_cap[w]) {
    size_t cap = p->bbuf_cap[w] ? p->bbuf_cap[w] : 1024;
    while (cap < need) cap *= 2;
    unsigned char *n = realloc(p->bbuf[w], cap);
    if (!n) return false;
    p->bbuf[w] = n;
    p->bbuf_cap[w] = cap;
  }
  if (p->bbuf_len[w] == 0) p->bbuf_len[w] = sizeof(cf__mpi_batch);
  unsigned char *b = p->bbuf[w] + p->bbuf_len[w];
  memcpy(b, e, sizeof *e);
  if (inl) memcpy(b + sizeof *e, arg, inl);
  memset(b + sizeof *e + inl, 0, cf__pad8((uint32_t)inl) - inl);
  p->bbuf_len[w] += sizeof *e + cf__pad8((uint32_t)inl);
  p->bbuf_count[w]++;
  return true;
}

static void batch_flush(cf__mpi_pool *p, unsigned w) {
  if (!p->bbuf_count[w]) return;
  cf__mpi_batch h = {CF__MPI_MAGIC, p->bbuf_count[w]};
  memcpy(p->bbuf[w], &h, sizeof h);
  unsigned char *buf = p->bbuf[w];
  size_t len = p->bbuf_len[w];
  p->bbuf[w] = NULL; /* the send owns it now */
  p->bbuf_len[w] = p->bbuf_cap[w] = 0;
  p->bbuf_count[w] = 0;
  MPI_Request rq;
  if (MPI_Isend(buf, (int)len, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(p->id, K_TASKS), p->comm,
                &rq) != MPI_SUCCESS) {
    free(buf); /* the worker is gone: its death check fails the tasks */
    return;
  }
  add_send(p, rq, buf, len, NULL, (int)w);
}

static int pick_worker(cf__mpi_pool *p) {
  int best = -1;
  for (unsigned w = 0; w < p->nworkers; w++) {
    if (p->busy[w] >= p->max_inflight) continue;
    if (atomic_load_explicit(&p->peers[w].dead, memory_order_relaxed)) continue;
    if (best < 0 || p->busy[w] < p->busy[best]) best = (int)w;
    if (p->busy[w] == 0) break;
  }
  return best;
}

static void pop_ready(cf__mpi_pool *p) {
  cf_future *f = p->ready_head;
  p->ready_head = atomic_load_explicit(&f->next, memory_order_relaxed);
  if (!p->ready_head) p->ready_tail = NULL;
  atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
  /* seq_cst: Dekker with a submitter that counts itself in queue_waiters
   * and then re-reads queued */
  atomic_fetch_sub(&p->queued, 1);
  if (atomic_load(&p->queue_waiters)) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
}

static bool dispatch(cf__mpi_pool *p, int64_t now) {
  bool any = false;
  while (p->ready_head) {
    cf_future *f = p->ready_head;
    uint32_t w0 = atomic_load_explicit(f->word, memory_order_acquire);
    if (cf__st_state(w0) == CF_STATE_PENDING && (p->cancel_sticky || p->broken)) {
      if (p->cancel_sticky)
        (void)cf__mpi_settle(p, f, FROM(CF_STATE_PENDING), CF_STATE_CANCELLED);
      else
        fail_pending(p, f, CF_EBROKEN);
      continue; /* looked at again: no longer PENDING */
    }
    if (cf__st_state(w0) != CF_STATE_PENDING) {
      pop_ready(p);
      if (cf__st_state(w0) == CF_STATE_CANCELLED)
        atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_relaxed); /* statistic */
      drop(p, f);
      any = true;
      continue;
    }
    if (f->deadline > 0 && now >= f->deadline) {
      fail_pending(p, f, CF_EDEADLINE);
      continue;
    }
    int wi = pick_worker(p);
    if (wi < 0) break;
    unsigned w = (unsigned)wi, k = 0;
    while (slot_at(p, w, k)->f) k++;
    /* PENDING -> RUNNING on worker w (owner w + 1); a cancel may win.
     * relaxed: nothing is published to readers by RUNNING */
    uint32_t nw = (cf__st_with(w0, CF_STATE_RUNNING) & ~CF__ST_OWNER_MASK) |
                  ((w + 1) << CF__ST_OWNER_SHIFT) | (w0 & (CF__ST_WAITERS | CF__ST_NOTIFY));
    if (!atomic_compare_exchange_strong_explicit(f->word, &w0, nw, memory_order_relaxed,
                                                 memory_order_relaxed))
      continue;
    pop_ready(p);
    any = true;
    cf__mpi_slot *s = slot_at(p, w, k);
    s->f = f;
    s->seq = ++p->seq;
    p->busy[w]++;
    bool chunk = f->fn == cf__map_chunk_runner && f->arg_len >= 16;
    bool ext = f->arg_len > CF__MPI_INLINE_MAX;
    const unsigned char *arg = cf__future_arg(f);
    cf__mpi_task e = {
        .seq = s->seq,
        .slot = k,
        .arg_len = f->arg_len,
        .fn_off = f->ext[0] & ((1ull << 48) - 1),
        .fn_check = f->ext[1],
        .inner_check = 0,
        .remaining_ns = f->deadline > 0 ? (f->deadline - now > 0 ? f->deadline - now : 1) : 0,
        .fn_mod = (uint16_t)(f->ext[0] >> 48),
        .flags = (uint16_t)((ext ? TF_EXT_ARG : 0) | (chunk ? TF_CHUNK : 0)),
    };
    if (chunk) {
      uint64_t packed;
      memcpy(&packed, arg, 8);
      e.inner_check = cf__fnref_check_packed(p->mods, packed);
    }
    if (!batch_put(p, w, &e, arg, ext ? 0 : f->arg_len)) {
      /* no memory for the message: fail it (nothing was sent) */
      s->f = NULL;
      p->busy[w]--;
      atomic_store_explicit(&f->err, CF_ENOMEM, memory_order_relaxed);
      (void)cf__mpi_settle(p, f, FROM(CF_STATE_RUNNING), CF_STATE_FAILED);
      drop(p, f);
      continue;
    }
    if (ext) { /* the batch first, then the argument from f's own copy */
      batch_flush(p, w);
      MPI_Request rq;
      cf__future_ref(f);
      if (MPI_Isend(arg, (int)f->arg_len, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(p->id, K_ARG),
                    p->comm, &rq) == MPI_SUCCESS)
        add_send(p, rq, NULL, 0, f, (int)w);
      else
        cf__future_unref(f);
    }
  }
  for (unsigned w = 0; w < p->nworkers; w++) batch_flush(p, w);
  return any;
}

/* ---- outcomes ---- */

static int worker_of(cf__mpi_pool *p, int src) {
  int w = p->spawned ? src : src - 1;
  if (w < 0 || (unsigned)w >= p->nworkers || p->peers[w].rank != src) return -1;
  return w;
}

static void put_result(cf_future *f, const void *b, uint32_t n) {
  if (n <= CF__INLINE_RES) {
    cf__copy(f->res_inline, b, n);
  } else {
    f->res_heap = cf__alloc(n);
    if (!f->res_heap) {
      atomic_store_explicit(&f->err, CF_ENOMEM, memory_order_relaxed);
      return;
    }
    memcpy(f->res_heap, b, n);
  }
  f->res_len = n;
}

/* One outcome record at b (n bytes left in its message): returns the bytes
 * it takes, or 0 if the rest of the message is unreadable. */
static size_t on_outcome(cf__mpi_pool *p, unsigned w, const unsigned char *b, size_t n) {
  cf__mpi_outcome o;
  if (n < sizeof o) return 0;
  memcpy(&o, b, sizeof o);
  bool ext = o.flags & OF_EXT_DATA;
  size_t rec = sizeof o + (ext ? 0 : cf__pad8(o.len));
  if (o.magic != CF__MPI_MAGIC || rec > n || (ext && rec != n)) return 0;
  cf_future *f = NULL;
  if (o.magic == CF__MPI_MAGIC && o.slot < p->max_inflight && slot_at(p, w, o.slot)->f &&
      slot_at(p, w, o.slot)->seq == o.seq)
    f = slot_at(p, w, o.slot)->f;
  bool live =
      f && cf__st_state(atomic_load_explicit(f->word, memory_order_acquire)) == CF_STATE_RUNNING;
  int err = o.err;
  if (ext) { /* the bytes follow in their own message: take them in any case */
    void *buf = NULL;
    bool keep = live && err == 0 && o.len <= p->max_result && o.len > CF__INLINE_RES;
    buf = keep ? cf__alloc(o.len) : malloc(o.len ? o.len : 1);
    MPI_Request rq;
    if (!buf ||
        MPI_Irecv(buf, (int)o.len, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(p->id, K_RDATA), p->comm,
                  &rq) != MPI_SUCCESS ||
        cf__mpi_wait(&rq, &p->peers[w], NULL) != 0) {
      if (buf) keep ? cf__free(buf, o.len) : free(buf);
      atomic_store(&p->peers[w].dead, true); /* its death check fails the rest */
      return 0;
    }
    if (keep) {
      f->res_heap = buf;
      f->res_len = o.len;
    } else {
      if (live && err == 0) err = CF_EPROTO;
      free(buf);
    }
  }
  if (!f) return rec; /* stale (or corrupt): nothing names it */
  slot_at(p, w, o.slot)->f = NULL;
  p->busy[w]--;
  if (live) {
    uint32_t to = CF_STATE_FAILED;
    size_t inl = rec - sizeof o;
    if (err == 0 && !ext) {
      if (o.len > inl || o.len > p->max_result) {
        err = CF_EPROTO;
      } else {
        put_result(f, b + sizeof o, o.len);
        err = atomic_load_explicit(&f->err, memory_order_relaxed);
      }
    }
    if (err == 0) {
      to = CF_STATE_FINISHED;
    } else if (err == CF_ETASK) {
      size_t ml = o.len < inl ? o.len : inl;
      if (ml > CF_MESSAGE_MAX - 1) ml = CF_MESSAGE_MAX - 1;
      f->task_code = o.code;
      if (ml) {
        f->msg = cf__alloc(ml + 1);
        if (f->msg) {
          memcpy(f->msg, b + sizeof o, ml);
          f->msg[ml] = 0;
        }
      }
    } else if (err == CF_ECANCELLED) {
      to = CF_STATE_CANCELLED;
    } else if (err != CF_E2BIG && err != CF_ENOTLOADED && err != CF_ENOMEM && err != CF_EPROTO) {
      err = CF_EPROTO;
    }
    if (to == CF_STATE_CANCELLED) {
      atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_relaxed); /* statistic */
    } else {
      atomic_fetch_add_explicit(&p->completed, 1, memory_order_relaxed); /* statistic */
      if (to == CF_STATE_FAILED) atomic_store_explicit(&f->err, err, memory_order_relaxed);
    }
    (void)cf__mpi_settle(p, f, FROM(CF_STATE_RUNNING), to);
  } else if (err != CF_ECANCELLED) {
    /* failed here at its deadline (or by a crash check) while it ran */
    atomic_fetch_add_explicit(&p->completed, 1, memory_order_relaxed); /* statistic */
  }
  drop(p, f);
  return rec;
}

static void on_outcomes(cf__mpi_pool *p, unsigned w, const unsigned char *b, size_t n) {
  size_t pos = 0;
  while (pos < n) {
    size_t used = on_outcome(p, w, b + pos, n - pos);
    if (!used) return;
    pos += used;
  }
}

static bool poll_results(cf__mpi_pool *p) {
  bool any = false;
  for (int i = 0; i < 256; i++) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    if (MPI_Improbe(MPI_ANY_SOURCE, CF__MPI_TAG(p->id, K_RESULTS), p->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag)
      break;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    if ((size_t)n > p->rbuf_cap) {
      unsigned char *nb = realloc(p->rbuf, (size_t)n);
      if (!nb) break; /* try again next turn */
      p->rbuf = nb;
      p->rbuf_cap = (size_t)n;
    }
    if (MPI_Mrecv(p->rbuf, n, MPI_BYTE, &msg, &st) != MPI_SUCCESS) break;
    int w = worker_of(p, st.MPI_SOURCE);
    if (w >= 0) on_outcomes(p, (unsigned)w, p->rbuf, (size_t)n);
    any = true;
  }
  return any;
}

/* ---- open and close ---- */

static int open_workers(cf__mpi_pool *p) {
  int e = 0;
  cf__mpi_ctl c = p->open;
  c.pool = p->id;
  for (unsigned w = 0; w < p->nworkers; w++)
    if (MPI_Send(&c, sizeof c, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(0, K_CTRL), p->comm) !=
        MPI_SUCCESS)
      return CF_EBROKEN;
  for (unsigned w = 0; w < p->nworkers; w++) {
    cf__mpi_reply r;
    MPI_Request rq;
    if (MPI_Irecv(&r, sizeof r, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(p->id, K_REPLY), p->comm,
                  &rq) != MPI_SUCCESS ||
        cf__mpi_wait(&rq, &p->peers[w], NULL) != 0)
      return CF_EBROKEN;
    if (!e && r.status) e = r.status;
  }
  return e;
}

static void close_workers(cf__mpi_pool *p) {
  cf__mpi_ctl c;
  memset(&c, 0, sizeof c);
  c.magic = CF__MPI_MAGIC;
  c.version = CF__MPI_VERSION;
  c.type = CTL_CLOSE;
  c.pool = p->id;
  for (unsigned w = 0; w < p->nworkers; w++)
    if (!cf__mpi_peer_dead(&p->peers[w])) send_ctl(p, w, &c, CF__MPI_TAG(p->id, K_CTRL));
  for (unsigned w = 0; w < p->nworkers; w++) {
    if (cf__mpi_peer_dead(&p->peers[w])) continue;
    cf__mpi_reply r;
    MPI_Request rq;
    for (;;) { /* late outcomes of stopped tasks may come first */
      int flag = 0;
      MPI_Message msg;
      MPI_Status st;
      MPI_Improbe(p->peers[w].rank, CF__MPI_TAG(p->id, K_RESULTS), p->comm, &flag, &msg, &st);
      if (flag) {
        int n = 0;
        MPI_Get_count(&st, MPI_BYTE, &n);
        unsigned char *b = malloc((size_t)n + 1);
        if (!b) break;
        MPI_Mrecv(b, n, MPI_BYTE, &msg, &st);
        on_outcomes(p, w, b, (size_t)n);
        free(b);
        continue;
      }
      int done = 0;
      MPI_Iprobe(p->peers[w].rank, CF__MPI_TAG(p->id, K_REPLY), p->comm, &done, MPI_STATUS_IGNORE);
      if (done || cf__mpi_peer_dead(&p->peers[w])) break;
      poll_sends(p);
      sched_yield();
    }
    if (cf__mpi_peer_dead(&p->peers[w])) continue;
    if (MPI_Irecv(&r, sizeof r, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(p->id, K_REPLY), p->comm,
                  &rq) == MPI_SUCCESS)
      (void)cf__mpi_wait(&rq, &p->peers[w], NULL);
  }
  while (p->nsends) {
    poll_sends(p);
    if (p->nsends) sched_yield();
  }
  if (p->spawned) {
    c.type = CTL_EXIT;
    c.pool = 0;
    bool any_dead = false;
    for (unsigned w = 0; w < p->nworkers; w++) {
      if (cf__mpi_peer_dead(&p->peers[w])) {
        any_dead = true;
        continue;
      }
      MPI_Request rq;
      if (MPI_Isend(&c, sizeof c, MPI_BYTE, p->peers[w].rank, CF__MPI_TAG(0, K_CTRL), p->comm,
                    &rq) == MPI_SUCCESS)
        (void)cf__mpi_wait(&rq, &p->peers[w], NULL);
    }
    if (any_dead)
      MPI_Comm_free(&p->comm);
    else
      MPI_Comm_disconnect(&p->comm);
  }
}

/* ---- the loop ---- */

static void sleep_for(cf__mpi_pool *p, int64_t ns) {
  atomic_store(&p->sleeping, true); /* seq_cst: Dekker with pp_submit's push */
  if (atomic_load(&p->inbox) || atomic_load(&p->req)) {
    atomic_store(&p->sleeping, false);
    return;
  }
  struct pollfd pf = {.fd = p->evfd, .events = POLLIN};
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  (void)ppoll(&pf, 1, ns < 0 ? NULL : &ts, NULL);
  atomic_store(&p->sleeping, false);
  uint64_t v;
  ssize_t r = read(p->evfd, &v, sizeof v);
  (void)r;
}

void *cf__mpi_progress_main(void *arg) {
  cf__mpi_pool *p = arg;
  /* its short sleeps are its polling period: no 50 us timer slack */
  prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
  int e = p->spawned ? cf__mpi_spawn(p) : 0;
  bool opened = false;
  if (!e) {
    e = open_workers(p);
    opened = true;
  }
  pthread_mutex_lock(&p->mu);
  p->start_err = e;
  p->started = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);

  int64_t last = cf__now_ns(), next_death = last + DEATH_CHECK_NS;
  bool closing = false;
  while (!e) {
    int64_t now = cf__now_ns();
    bool did = take_inbox(p);
    did |= take_requests(p, &closing);
    did |= poll_results(p);
    did |= dispatch(p, now);
    did |= poll_sends(p);
    did |= expire(p, now);
    if (now >= next_death) {
      did |= check_deaths(p);
      next_death = now + DEATH_CHECK_NS;
    }
    if (closing && atomic_load(&p->live) == 0) break;
    if (did) {
      last = now;
      continue;
    }
    int64_t idle = now - last;
    /* a send in flight is usually a rendezvous the peer is in the middle
     * of: it needs our MPI calls to finish, so do not sleep for a while */
    if (idle < SPIN_NS || (p->nsends && idle < SEND_SPIN_NS)) {
      sched_yield();
      continue;
    }
    bool inflight = p->nsends > 0;
    for (unsigned w = 0; w < p->nworkers && !inflight; w++) inflight = p->busy[w] > 0;
    int64_t ns = -1;
    if (inflight) {
      ns = idle / 8 < MAX_SLEEP_NS ? idle / 8 : MAX_SLEEP_NS;
      if (ns > next_death - now) ns = next_death - now > 0 ? next_death - now : 0;
    }
    if (p->nheap) {
      int64_t d = p->heap[0].when - now;
      if (d < 0) d = 0;
      if (ns < 0 || d < ns) ns = d;
    }
    sleep_for(p, ns);
  }
  while (p->nheap) cf__future_unref(heap_pop(p).f);
  if (opened) close_workers(p);
  pthread_mutex_lock(&p->mu);
  p->stopped = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* ---- the callback thread ---- */

void *cf__mpi_callback_main(void *arg) {
  cf__mpi_pool *p = arg;
  pthread_mutex_lock(&p->cmu);
  for (;;) {
    while (!p->cb_head && !p->cb_stop) {
      p->cb_sleeping = true;
      pthread_cond_wait(&p->ccv, &p->cmu);
      p->cb_sleeping = false;
    }
    cbnode *list = (cbnode *)p->cb_head;
    p->cb_head = p->cb_tail = NULL;
    if (!list && p->cb_stop) break;
    pthread_mutex_unlock(&p->cmu);
    while (list) {
      cbnode *next = list->next;
      cf__future_run_callbacks(list->f);
      cf__future_unref(list->f);
      free(list);
      list = next;
    }
    pthread_mutex_lock(&p->cmu);
  }
  pthread_mutex_unlock(&p->cmu);
  return NULL;
}
