/*
 * worker.c — a worker rank: receive tasks from rank 0, run them one at a
 * time on this (the rank's main) thread, send each outcome as it is known.
 *
 * DESIGN
 * One loop serves every pool rank 0 opens (static mode) or the one pool
 * that spawned this process. Each turn: take every message rank 0 has sent
 * (MPI_Improbe on any tag, MPI_Mrecv into one reused buffer), then run the
 * oldest queued task. A batch's large arguments (TF_EXT_ARG) are received
 * right after it, each into its own buffer (no copy). The task's function
 * and, for a map chunk, the function inside its argument are translated and
 * checked (fnref.h); a refused one fails with CF_ENOTLOADED and the rank lives on.
 *
 * Outcomes. Small results are copied into the outcome batch; a result
 * above CF__MPI_INLINE_MAX is sent from the task's own buffer inside
 * cf_call_return (an outcome with OF_EXT_DATA, then the bytes: no copy), so
 * rank 0 may see a task finished before the function returned. While tasks
 * are short (< SHORT_TASK_NS) outcomes leave in batches (at most
 * BATCH_MAX, at most BATCH_AGE_NS old when the next task starts or polls
 * its stop flag): one message for many tasks. A batch is sent whenever no
 * task is left here, so a lone task's outcome never waits. (A task that
 * runs long right after short ones and never polls its stop flag holds
 * their outcomes until it returns.) Sends are blocking: rank 0's progress
 * thread never blocks, so they complete.
 *
 * Stop. cf_call_stop_requested is true when rank 0 sent STOP for the task,
 * or its deadline (sent as a remaining time, so the two clocks need not
 * agree) passed here. While a task runs nothing else reads messages, so the
 * stop check itself looks for this pool's control messages, at most every
 * CTL_POLL_NS, also once the task was told to stop (it may go on). STOP for
 * a task still queued here drops it (CF_ECANCELLED, sent at once while a
 * task runs); so does a STOP that came before its task (the stop check
 * looks for tasks, then for control messages: the task can land between
 * the two), when the task comes; a STOP for a task that is done here is
 * dropped (seq <= the pool's highest received). The check reads only the
 * running task's pool: a STOP for another pool's queued task waits until
 * the running task returns.
 *
 * Idle. After the last message or task, poll (yielding the CPU between
 * looks) for SPIN_NS, then sleep between looks for 1/16 of the time idle so
 * far, at most 1 ms: an idle rank costs ~0 CPU, a busy one answers at once.
 * MPI has no call that blocks without spinning, hence the polling. If rank
 * 0 runs on this host, its death (pidfd) ends this rank.
 */
#include <sched.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpi_pool.h"
#include "sys.h"

#define SPIN_NS 50000
#define MAX_SLEEP_NS 1000000
#define CTL_POLL_NS 20000
#define MAX_WPOOLS 64

typedef struct wpool {
  unsigned id;
  size_t max_result;
  bool used, closing;
  unsigned ntasks;  /* queued or running here */
  uint64_t max_seq; /* the highest task seq received: rank 0 numbers a
                     * pool's tasks in the order it sends them, and one tag
                     * keeps them in that order */
} wpool;

typedef struct wtask {
  struct wtask *next;
  wpool *wp;
  uint64_t seq;
  uint32_t slot, arg_len;
  cf_fn fn;
  int err; /* refused before running */
  int64_t deadline;
  unsigned char *arg; /* inline: right after the struct; else its own buffer */
  bool ext;
} wtask;

static struct {
  MPI_Comm comm;
  int parent;
  bool spawned;
  cf__modtab mods;
  int16_t map[CF__MPI_MAX_MODS];
  unsigned nmap;
  cf__mpi_peer rank0;
  wpool pools[MAX_WPOOLS];
  wtask *head, *tail, *cur;
  bool cur_stop; /* rank 0 sent STOP for cur (a queued task is dropped instead) */
  unsigned char *rbuf, *sbuf, *res;
  size_t rcap, scap, rescap;
  size_t slen;   /* outcome batch bytes in sbuf */
  unsigned nout; /* outcomes in it */
  unsigned out_pool;
  int64_t out_since, last_task_ns;
  int64_t next_ctl;
  /* STOPs that came before their task (a task is read only between tasks,
   * its STOP also during one): the oldest is forgotten when full */
  struct {
    unsigned pool;
    uint32_t slot;
    uint64_t seq;
  } early[64];
  unsigned nearly;
} W;

static bool grow(unsigned char **b, size_t *cap, size_t n) {
  if (n <= *cap) return true;
  size_t c = *cap ? *cap : 4096;
  while (c < n) c *= 2;
  unsigned char *nb = realloc(*b, c);
  if (!nb) return false;
  *b = nb;
  *cap = c;
  return true;
}

/* `bounded`: a rank of the job has died (rank 0's EXIT says so), and
 * MPI_Finalize may then never return (cf__mpi_finalize). */
__attribute__((noreturn)) static void leave(int status, bool bounded) {
  if (status == 0) {
    if (W.spawned) MPI_Comm_disconnect(&W.comm);
    cf__mpi_finalize(0, bounded);
  }
  fflush(NULL);
  _exit(status);
}

static wpool *find_pool(unsigned id) {
  for (int i = 0; i < MAX_WPOOLS; i++)
    if (W.pools[i].used && W.pools[i].id == id) return &W.pools[i];
  return NULL;
}

static void send_bytes(const void *b, size_t n, int tag) {
  if (MPI_Send(b, (int)n, MPI_BYTE, W.parent, tag, W.comm) != MPI_SUCCESS) leave(1, false);
}

static void flush_outcomes(void);

static void reply(unsigned pool, uint32_t type, int status) {
  flush_outcomes();
  cf__mpi_reply r = {.magic = CF__MPI_MAGIC,
                     .type = type,
                     .status = status,
                     .pid = getpid(),
                     .host = cf__mpi_host_key()};
  send_bytes(&r, sizeof r, CF__MPI_TAG(pool, K_REPLY));
}

/* Outcomes wait in one batch (one pool's) and go out as one message: when
 * no task is left here, before a task when the last one ran long or the
 * batch is old, when it is full, before an outcome whose bytes follow in
 * their own message, and before any reply. */
#define BATCH_MAX 64
#define BATCH_AGE_NS 20000
#define SHORT_TASK_NS 10000

static void flush_outcomes(void) {
  if (!W.nout) return;
  send_bytes(W.sbuf, W.slen, CF__MPI_TAG(W.out_pool, K_RESULTS));
  W.nout = 0;
  W.slen = 0;
}

static void send_outcome(const wtask *t, int err, int code, const void *bytes, uint32_t len,
                         uint32_t flags) {
  uint32_t inl = (flags & OF_EXT_DATA) ? 0 : len;
  size_t n = sizeof(cf__mpi_outcome) + cf__pad8(inl);
  if (W.nout && (W.out_pool != t->wp->id || W.slen + n > 65536)) flush_outcomes();
  if (!grow(&W.sbuf, &W.scap, W.slen + n)) leave(1, false);
  cf__mpi_outcome o = {.magic = CF__MPI_MAGIC,
                       .slot = t->slot,
                       .seq = t->seq,
                       .err = err,
                       .code = code,
                       .len = len,
                       .flags = flags};
  unsigned char *b = W.sbuf + W.slen;
  memcpy(b, &o, sizeof o);
  if (inl) memcpy(b + sizeof o, bytes, inl);
  memset(b + sizeof o + inl, 0, cf__pad8(inl) - inl);
  if (!W.nout) W.out_since = cf__now_ns();
  W.out_pool = t->wp->id;
  W.slen += n;
  W.nout++;
  if (W.nout >= BATCH_MAX || (flags & OF_EXT_DATA)) flush_outcomes();
}

static void maybe_closed(wpool *wp) {
  if (!wp->closing || wp->ntasks) return;
  flush_outcomes();
  wp->used = false;
  reply(wp->id, CTL_CLOSE, 0);
}

static void task_done(wtask *t) {
  wpool *wp = t->wp;
  if (t->ext) free(t->arg);
  free(t);
  wp->ntasks--;
  maybe_closed(wp);
}

/* ---- messages ---- */

static void on_hello(const unsigned char *b, size_t n) {
  cf__mpi_ctl c;
  memcpy(&c, b, sizeof c);
  size_t nm = c.a;
  if (nm > CF__MPI_MAX_MODS || n < sizeof c + nm * sizeof(cf__modrec)) leave(1, false);
  cf__modtab_build(&W.mods);
  cf__modrec *recs = malloc(nm * sizeof *recs + 1);
  if (!recs) leave(1, false);
  memcpy(recs, b + sizeof c, nm * sizeof *recs);
  cf__modmap_build(&W.mods, recs, (unsigned)nm, W.map);
  free(recs);
  W.nmap = (unsigned)nm;
  W.rank0.pid = (int)c.b;
  W.rank0.pidfd = -1;
  if (c.c == cf__mpi_host_key()) W.rank0.pidfd = cf__mpi_pidfd((int)c.b);
  reply(0, CTL_HELLO, 0);
}

static void on_open(const cf__mpi_ctl *c) {
  wpool *wp = NULL;
  for (int i = 0; i < MAX_WPOOLS && !wp; i++)
    if (!W.pools[i].used) wp = &W.pools[i];
  int status = 0;
  if (!wp) {
    status = CF_EAGAIN;
  } else {
    memset(wp, 0, sizeof *wp);
    wp->used = true;
    wp->id = c->pool;
    wp->max_result = c->b;
    if (c->has_init) {
      cf__fnref fr = {.off = c->init_off, .check = c->init_check, .mod = c->init_mod};
      cf__fnref ar = {.off = c->arg_off, .check = 0, .mod = c->arg_mod};
      uintptr_t fn = cf__addr_decode(&W.mods, W.map, W.nmap, &fr, true);
      uintptr_t arg = c->has_arg ? cf__addr_decode(&W.mods, W.map, W.nmap, &ar, false) : 0;
      if (!fn || (c->has_arg && !arg))
        status = CF_ENOTLOADED;
      else if (((cf_init_fn)fn)((void *)arg) != 0)
        status = CF_EBROKEN;
    }
  }
  reply(c->pool, CTL_OPEN, status);
}

static bool stopped_early(const wtask *t);
static void dropped(wtask *t);

static void on_tasks(wpool *wp, const unsigned char *b, size_t n) {
  cf__mpi_batch h;
  if (n < sizeof h) return;
  memcpy(&h, b, sizeof h);
  size_t pos = sizeof h;
  for (uint32_t i = 0; i < h.count; i++) {
    cf__mpi_task e;
    if (n - pos < sizeof e) return;
    memcpy(&e, b + pos, sizeof e);
    pos += sizeof e;
    bool ext = e.flags & TF_EXT_ARG;
    size_t inl = ext ? 0 : e.arg_len;
    if (!ext && n - pos < cf__pad8(e.arg_len)) return;
    wtask *t = malloc(sizeof *t + inl + 8);
    if (!t) leave(1, false);
    memset(t, 0, sizeof *t);
    t->wp = wp;
    t->seq = e.seq;
    t->slot = e.slot;
    t->arg_len = e.arg_len;
    t->ext = ext;
    if (ext) {
      t->arg = malloc(e.arg_len ? e.arg_len : 1);
      MPI_Request rq;
      if (!t->arg ||
          MPI_Irecv(t->arg, (int)e.arg_len, MPI_BYTE, W.parent, CF__MPI_TAG(wp->id, K_ARG), W.comm,
                    &rq) != MPI_SUCCESS ||
          cf__mpi_wait(&rq, &W.rank0, NULL) != 0)
        leave(1, false);
    } else {
      t->arg = (unsigned char *)(t + 1);
      memcpy(t->arg, b + pos, inl);
      pos += cf__pad8(e.arg_len);
    }
    if (e.remaining_ns > 0) t->deadline = cf__now_ns() + e.remaining_ns;
    cf__fnref fr = {.off = e.fn_off, .check = e.fn_check, .mod = e.fn_mod};
    t->fn = (cf_fn)cf__addr_decode(&W.mods, W.map, W.nmap, &fr, true);
    if (!t->fn) t->err = CF_ENOTLOADED;
    if (!t->err && (e.flags & TF_CHUNK)) {
      uint64_t packed;
      cf__fnref ir;
      if (t->arg_len < 16) {
        t->err = CF_EPROTO;
      } else {
        memcpy(&packed, t->arg, 8);
        cf__fnref_unpack(packed, e.inner_check, &ir);
        uint64_t inner = cf__addr_decode(&W.mods, W.map, W.nmap, &ir, true);
        if (!inner) t->err = CF_ENOTLOADED;
        memcpy(t->arg, &inner, 8);
      }
    }
    wp->ntasks++;
    if (e.seq > wp->max_seq) wp->max_seq = e.seq;
    if (W.nearly && stopped_early(t)) {
      /* its STOP came first: dropped now, as a queued one is (on_stop), not
       * when it comes to run: the task running here may wait for it */
      dropped(t);
      continue;
    }
    if (W.tail)
      W.tail->next = t;
    else
      W.head = t;
    W.tail = t;
  }
}

static void on_stop(wpool *wp, uint32_t slot, uint64_t seq) {
  if (W.cur && W.cur->wp == wp && W.cur->seq == seq && W.cur->slot == slot) {
    W.cur_stop = true;
    return;
  }
  for (wtask **pp = &W.head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
    wtask *t = *pp;
    if (t->wp != wp || t->seq != seq || t->slot != slot) continue;
    *pp = t->next;
    if (W.tail == t) W.tail = prev;
    dropped(t);
    return;
  }
  /* Its task came already and is done (the STOP raced its outcome, or a
   * second STOP, a deadline's after a cancel's): nothing to keep. Kept, it
   * would stay for ever (no later task has that seq), every arriving task
   * would scan it, and 64 such would push out a STOP whose task is still
   * on its way. */
  if (seq <= wp->max_seq) return;
  /* Its task is still on its way (read by the next look for tasks). So no
   * entry outlives its pool (rank 0 closes a pool with nothing on its way),
   * and a pool id that comes round again finds none of the old one's. */
  if (W.nearly == 64) {
    memmove(W.early, W.early + 1, sizeof W.early[0] * 63);
    W.nearly--;
  }
  unsigned i = W.nearly++;
  W.early[i].pool = wp->id;
  W.early[i].slot = slot;
  W.early[i].seq = seq;
}

/* A queued task stopped before it ran: CF_ECANCELLED, sent at once while a
 * task runs here (the stop check called us: the running task may wait for
 * this outcome, and may not poll again soon), else with the batch. */
static void dropped(wtask *t) {
  send_outcome(t, CF_ECANCELLED, 0, NULL, 0, 0);
  task_done(t);
  if (W.cur) flush_outcomes();
}

static bool stopped_early(const wtask *t) {
  for (unsigned i = 0; i < W.nearly; i++) {
    if (W.early[i].pool == t->wp->id && W.early[i].seq == t->seq && W.early[i].slot == t->slot) {
      W.early[i] = W.early[--W.nearly];
      return true;
    }
  }
  return false;
}

static void on_message(int tag, const unsigned char *b, size_t n) {
  unsigned pool = (unsigned)tag / 8, kind = (unsigned)tag % 8;
  if (pool == 0 && kind == K_CTRL) {
    cf__mpi_ctl c;
    if (n < sizeof c) return;
    memcpy(&c, b, sizeof c);
    if (c.magic != CF__MPI_MAGIC) return;
    if (c.type == CTL_HELLO) on_hello(b, n);
    if (c.type == CTL_OPEN) on_open(&c);
    if (c.type == CTL_EXIT) leave(0, c.a != 0);
    return;
  }
  wpool *wp = find_pool(pool);
  if (!wp) return;
  if (kind == K_TASKS) {
    on_tasks(wp, b, n);
  } else if (kind == K_CTRL) {
    cf__mpi_ctl c;
    if (n < sizeof c) return;
    memcpy(&c, b, sizeof c);
    if (c.type == CTL_STOP) on_stop(wp, (uint32_t)c.a, c.b);
    if (c.type == CTL_CLOSE) {
      wp->closing = true;
      maybe_closed(wp);
    }
  }
}

/* Take the messages waiting with this tag (MPI_ANY_TAG: all). */
static bool poll_messages(int tag) {
  bool any = false;
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    if (MPI_Improbe(W.parent, tag, W.comm, &flag, &msg, &st) != MPI_SUCCESS) leave(1, false);
    if (!flag) return any;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    if (!grow(&W.rbuf, &W.rcap, (size_t)n + 8)) leave(1, false);
    if (MPI_Mrecv(W.rbuf, n, MPI_BYTE, &msg, &st) != MPI_SUCCESS) leave(1, false);
    on_message(st.MPI_TAG, W.rbuf, (size_t)n);
    any = true;
  }
}

/* ---- running a task ---- */

typedef struct wcall {
  cf_call c;
  wtask *t;
  bool sent;
  uint32_t len;
  int code;
  uint32_t msg_len;
  char msg[CF_MESSAGE_MAX];
} wcall;

static int w_ret(cf_call *c, const void *v, size_t len) {
  wcall *wc = (wcall *)c;
  if (c->outcome) return CF_EINVAL;
  if (len && !v) return CF_EINVAL;
  if (len > wc->t->wp->max_result) {
    c->outcome = 2;
    c->err = CF_E2BIG;
    return CF_E2BIG;
  }
  c->outcome = 1;
  wc->len = (uint32_t)len;
  if (len > CF__MPI_INLINE_MAX) {
    /* from the task's own buffer: no copy */
    send_outcome(wc->t, 0, 0, NULL, (uint32_t)len, OF_EXT_DATA);
    send_bytes(v, len, CF__MPI_TAG(wc->t->wp->id, K_RDATA));
    wc->sent = true;
    return 0;
  }
  if (!grow(&W.res, &W.rescap, len + 8)) {
    c->outcome = 2;
    c->err = CF_ENOMEM;
    return CF_ENOMEM;
  }
  if (len) memcpy(W.res, v, len);
  return 0;
}

static int w_fail(cf_call *c, int code, const char *msg) {
  wcall *wc = (wcall *)c;
  if (c->outcome) return CF_EINVAL;
  size_t n = msg ? strnlen(msg, CF_MESSAGE_MAX - 1) : 0;
  memcpy(wc->msg, msg ? msg : "", n);
  wc->msg[n] = 0;
  wc->msg_len = (uint32_t)n;
  wc->code = code;
  c->outcome = 2;
  c->err = CF_ETASK;
  return 0;
}

#ifdef CF_TEST_HOOKS
/* Test hook (a library built with CF_TEST_HOOKS only): while true, the stop
 * check reads control messages only, and tasks once a STOP came before its
 * task, so that a test can make that order certain
 * (tests/mpi/test_mpi_pool.c, test_stop_before_task). Set by a task on this
 * rank's main thread, the thread that reads it. */
bool cf__test_mpi_ctl_first;
static bool hold_tasks(void) {
  return cf__test_mpi_ctl_first && !W.nearly;
}
#else
static bool hold_tasks(void) {
  return false;
}
#endif

/* Also after the running task was told to stop: a task may go on after
 * that, and the outcomes batched here, and the drops of queued tasks that
 * its own STOP or later ones ask for, must still leave. */
static bool w_stop(cf_call *c) {
  wcall *wc = (wcall *)c;
  int64_t now = cf__now_ns();
  if (now >= W.next_ctl) {
    W.next_ctl = now + CTL_POLL_NS;
    /* only this pool's tasks (queued) and control messages (STOP, CLOSE):
     * nothing that runs user code; the receive buffer is free (the task's
     * argument is a copy) */
    if (W.nout && now - W.out_since >= BATCH_AGE_NS) flush_outcomes();
    if (!hold_tasks()) poll_messages(CF__MPI_TAG(wc->t->wp->id, K_TASKS));
    poll_messages(CF__MPI_TAG(wc->t->wp->id, K_CTRL));
  }
  return W.cur_stop || (wc->t->deadline && now >= wc->t->deadline);
}

#ifdef CF_TEST_HOOKS
/* Test hook: how many STOPs wait here for their task (test_stale_stop). */
unsigned cf__test_mpi_early_stops(void) {
  return W.nearly;
}
#endif

static const cf__call_ops w_ops = {w_ret, w_fail, w_stop,
                                   NULL}; /* the chunk's function is translated already */

static void run_one(void) {
  wtask *t = W.head;
  W.head = t->next;
  if (!W.head) W.tail = NULL;
  if (t->err) { /* refused here (a stopped one never queues: on_stop, on_tasks) */
    int e = t->err;
    send_outcome(t, e, e, NULL, 0, 0);
    task_done(t);
    return;
  }
  wcall wc;
  memset(&wc, 0, sizeof wc);
  wc.c.ops = &w_ops;
  wc.c.arg = t->arg;
  wc.c.arg_len = t->arg_len;
  wc.c.ctx = t;
  wc.c.max_result = t->wp->max_result;
  wc.t = t;
  int64_t start = cf__now_ns();
  if (W.nout && (W.last_task_ns >= SHORT_TASK_NS || start - W.out_since >= BATCH_AGE_NS))
    flush_outcomes();
  W.cur = t;
  W.cur_stop = false;
  W.next_ctl = start + CTL_POLL_NS;
  t->fn(&wc.c);
  W.cur = NULL;
  W.last_task_ns = cf__now_ns() - start;
  if (!wc.sent) {
    if (wc.c.outcome == 2 && wc.c.err == CF_ETASK)
      send_outcome(t, CF_ETASK, wc.code, wc.msg, wc.msg_len, 0);
    else if (wc.c.outcome == 2)
      send_outcome(t, wc.c.err, wc.c.err, NULL, 0, 0);
    else
      send_outcome(t, 0, 0, W.res, wc.len, 0);
  }
  task_done(t);
}

/* ---- the loop ---- */

void cf__mpi_serve(MPI_Comm comm, int parent, bool spawned) {
  W.comm = comm;
  W.parent = parent;
  W.spawned = spawned;
  W.rank0.pidfd = -1;
  prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0); /* its sleeps are its polling period */
  int64_t last = cf__now_ns(), next_check = last;
  for (;;) {
    bool did = poll_messages(MPI_ANY_TAG);
    if (W.head) {
      run_one();
      did = true;
    }
    if (!W.head) flush_outcomes(); /* nothing left to run: send what is known */
    int64_t now = cf__now_ns();
    if (did) {
      last = now;
      continue;
    }
    if (now >= next_check) {
      if (cf__mpi_peer_dead(&W.rank0)) leave(1, false);
      next_check = now + 10000000;
    }
    int64_t idle = now - last;
    if (idle < SPIN_NS) {
      sched_yield();
      continue;
    }
    int64_t ns = idle / 16;
    if (ns > MAX_SLEEP_NS) ns = MAX_SLEEP_NS;
    struct timespec ts = {0, (long)ns};
    nanosleep(&ts, NULL);
  }
}
