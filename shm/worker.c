/*
 * worker.c — the worker process: take a hint, claim the slot, check and run
 * the task, write the outcome, complete, wake.
 *
 * DESIGN
 * Claim. A hint names a slot and the low bits of its generation. While it
 * takes a hint the worker records it (rec->taking; the ring stores it just
 * before its CAS), and before claiming it records the slot and the RUNNING
 * word it is about to install (rec->cur_slot/cur_word). So when the worker
 * dies, the supervisor finds the slot it may own in its record, and puts
 * back a hint it took but never claimed. The claim is the CAS (gen,
 * PENDING) -> (gen, RUNNING, owner = idx + 1); WAITERS, NOTIFY and STOP
 * are kept (waiters still sleep; only the done CAS consumes them).
 *
 * Completion. The outcome (result bytes, res_len, err, code, msg) is written
 * first, then the CAS RUNNING(owner) -> FINISHED|FAILED (release; it keeps
 * the flags, see pool.h). If that CAS fails, the parent completed the task
 * and a SIGKILL is on its way: the worker exits at once (pool.h, killing a
 * running task). After the CAS: FUTEX_WAKE if the old word had WAITERS
 * (the parent's waiter is woken straight from here), and if it had NOTIFY a
 * notice is pushed onto the completion ring and the supervisor kicked only
 * if it sleeps (idle.h).
 *
 * Idle. Spin on the ring (yielding the CPU between looks) for a bounded
 * time, then sleep on ctl->wake_seq by the protocol in idle.h. A spin pays
 * only when a task comes within it, so the worker predicts its next idle
 * gap from its recent ones (the time from its first empty look until it
 * took a hint, clamped to GAP_CLAMP_NS; an average, weight 1/8): above
 * SPIN_GAP_NS it sleeps at once, else it spins for 4 x the prediction,
 * clamped to [SPIN_MIN_NS, SPIN_MAX_NS]. At 1-10 k tasks/s a worker then
 * costs a wake-up per task, not a 50 us spin.
 *
 * The function pointer is checked against the executable ranges recorded
 * at creation (text.h) before the call.
 */
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "mutex.h"
#include "fault.h"
#include "future.h"
#include "idle.h"
#include "registry.h"
#include "sys.h"
#include "worker.h"

#define SPIN_MAX_NS 50000   /* the longest idle spin before sleeping */
#define SPIN_MIN_NS 8000    /* the shortest, when one is worth it */
#define SPIN_GAP_NS 50000   /* predicted gap beyond which the worker sleeps at once */
#define GAP_CLAMP_NS 200000 /* one idle gap counts at most this much */

#ifdef CF_TEST_HOOKS
cf__fault_hook_fn cf__fault_hook; /* fault.h */
#endif

/* ---- the task's context ---- */

typedef struct wcall {
  cf_call c;
  const cf__pool_cfg *cfg;
  cf__slot *sl;
  uint32_t s;
  int64_t deadline;
} wcall;

/* The outcome code. Written during the call, so that nothing the task wrote
 * into its slot afterwards is overwritten (which is how the tests play a
 * rogue worker). relaxed: published by the release of the completing CAS.
 * code/msg are written only for CF_ETASK (w_fail), the only error whose
 * code the parent reads. */
static void set_outcome(cf__slot *sl, int err) {
  atomic_store_explicit(&sl->err, err, memory_order_relaxed);
}

static int w_ret(cf_call *c, const void *v, size_t len) {
  wcall *wc = (wcall *)c;
  int rc = cf__call_record_return(c, v, len); /* c->max_result: the pool's */
  if (rc == CF_E2BIG) set_outcome(wc->sl, CF_E2BIG);
  if (rc != 0) return rc;
  unsigned char *dst = cf__slot_res(&wc->cfg->seg, wc->sl, wc->s, len);
  if (len) {
    memcpy(dst, v, len / 2);
    cf__fault_point(CF__PP_MID_RESULT, wc->s);
    memcpy(dst + len / 2, (const unsigned char *)v + len / 2, len - len / 2);
  } else {
    cf__fault_point(CF__PP_MID_RESULT, wc->s);
  }
  /* relaxed: published by the release of the completing CAS */
  atomic_store_explicit(&wc->sl->res_len, (uint32_t)len, memory_order_relaxed);
  set_outcome(wc->sl, 0);
  return 0;
}

static int w_fail(cf_call *c, int code, const char *msg) {
  wcall *wc = (wcall *)c;
  if (cf__call_record_fail(c) != 0) return CF_EINVAL;
  size_t n = msg ? strnlen(msg, CF_MESSAGE_MAX - 1) : 0;
  if (n) memcpy(wc->sl->msg, msg, n);
  wc->sl->msg[n] = 0;
  /* relaxed: published by the release of the completing CAS */
  atomic_store_explicit(&wc->sl->msg_len, (uint32_t)n, memory_order_relaxed);
  atomic_store_explicit(&wc->sl->code, code, memory_order_relaxed);
  atomic_store_explicit(&wc->sl->err, CF_ETASK, memory_order_relaxed);
  return 0;
}

static bool w_stop(cf_call *c) {
  wcall *wc = (wcall *)c;
  /* relaxed: STOP is a polled hint */
  if (atomic_load_explicit(&wc->sl->word, memory_order_relaxed) & CF__ST_STOP) return true;
  /* past its deadline, the kill from the supervisor is on its way */
  return wc->deadline && cf__now_ns() >= wc->deadline;
}

static const cf__call_ops w_ops = {w_ret, w_fail, w_stop};

/* ---- the loop ---- */

/* Take the next hint off the sq, spinning then sleeping (idle.h) while the
 * ring is empty. Exits the process when the pool enters its exit phase and
 * the ring is empty. */
/* A hint was taken after idling since `idle_since` (0: not idle): the idle
 * gap goes into the prediction (DESIGN: idle). */
static void idle_gap(int64_t *gap_ns, int64_t idle_since) {
  if (!idle_since) return;
  int64_t gap = cf__now_ns() - idle_since;
  *gap_ns += ((gap < GAP_CLAMP_NS ? gap : GAP_CLAMP_NS) - *gap_ns) / 8;
}

static uint32_t next_hint(const cf__pool_cfg *cfg, cf__worker_rec *rec) {
  static int64_t gap_ns; /* the predicted idle gap (DESIGN: idle) */
  cf__seg_ctl *ctl = cfg->seg.ctl;
  unsigned log2 = cfg->seg.p.sq_log2;
  uint32_t h;
  int64_t spin_end = 0, idle_since = 0;
  for (;;) {
    if (cf__ring_pop(&ctl->sq, cfg->seg.sq, log2, &h, &rec->taking) == 0) {
      idle_gap(&gap_ns, idle_since);
      return h;
    }
    if (atomic_load(&ctl->phase) == CF__PHASE_EXIT) _exit(0);
    int64_t now = cf__now_ns();
    if (!idle_since) idle_since = now;
    if (!spin_end) {
      int64_t spin = gap_ns > SPIN_GAP_NS ? 0 : 4 * gap_ns;
      if (spin) spin = spin < SPIN_MIN_NS ? SPIN_MIN_NS : spin > SPIN_MAX_NS ? SPIN_MAX_NS : spin;
      spin_end = now + spin;
    }
    if (now < spin_end) {
      /* Yield while spinning: if the process this worker waits for (the
       * submitter) shares its CPU, it runs now rather than after our time
       * slice; on a CPU of our own it returns at once (one syscall). */
      sched_yield();
      for (int i = 0; i < 16; i++) cf__cpu_relax();
      continue;
    }
    atomic_fetch_add(&ctl->nsleep, 1); /* seq_cst: Dekker with cf__wake_worker() */
    atomic_store(&rec->asleep, 1);
    uint32_t seq = atomic_load(&ctl->wake_seq);
    if (cf__ring_pop(&ctl->sq, cfg->seg.sq, log2, &h, &rec->taking) == 0) {
      atomic_store(&rec->asleep, 0);
      atomic_fetch_sub(&ctl->nsleep, 1);
      idle_gap(&gap_ns, idle_since);
      return h;
    }
    if (atomic_load(&ctl->phase) != CF__PHASE_EXIT) {
      atomic_fetch_add_explicit(&rec->parks, 1, memory_order_relaxed); /* statistic */
      cf__futex_wait(&ctl->wake_seq, seq, -1, true);
    }
    atomic_store(&rec->asleep, 0);
    atomic_fetch_sub(&ctl->nsleep, 1);
    spin_end = 0;
  }
}

static void notify(const cf__pool_cfg *cfg, uint32_t s, uint32_t gen) {
  cf__seg_ctl *ctl = cfg->seg.ctl;
  if (cf__ring_push(&ctl->cq, cfg->seg.cq, cfg->seg.p.cq_log2,
                    cf__hint_make(s, cf__hint_genbits(gen))) != 0)
    atomic_store(&ctl->cq_overflow, 1);
  /* seq_cst: Dekker with the supervisor going to sleep (idle.h) */
  if (atomic_exchange(&ctl->sv_sleeping, 0)) cf__sv_kick(cfg->evfd);
}

/* Claim the slot of hint h for worker idx: the RUNNING word, or 0. */
static uint32_t claim(const cf__pool_cfg *cfg, cf__worker_rec *rec, unsigned idx, uint32_t h) {
  uint32_t s = cf__hint_slot(h);
  if (s >= cfg->nslots) return 0;
  cf__slot *sl = cf__seg_slot(&cfg->seg, s);
  /* acquire: pairs with the parent's release store of the PENDING word,
   * which published fn and the argument */
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_acquire);
  while (cf__st_state(w) == CF_STATE_PENDING &&
         cf__hint_genbits(cf__st_gen(w)) == cf__hint_gen(h)) {
    uint32_t nw = cf__st_make(cf__st_gen(w), idx + 1, CF_STATE_RUNNING) |
                  (w & (CF__ST_WAITERS | CF__ST_NOTIFY | CF__ST_STOP));
    atomic_store(&rec->cur_slot, s);
    atomic_store(&rec->cur_word, nw);
    if (atomic_compare_exchange_weak_explicit(&sl->word, &w, nw, memory_order_acquire,
                                              memory_order_acquire))
      return nw;
  }
  if (cf__st_state(w) == CF_STATE_CANCELLED && cf__st_owner(w) == 0 &&
      cf__hint_genbits(cf__st_gen(w)) == cf__hint_gen(h)) {
    /* Cancelled while queued, by the generic cancel, which cannot tell the
     * supervisor: a notice lets it give back a watch's reference. */
    atomic_fetch_add_explicit(&rec->dropped_cancelled, 1, memory_order_relaxed); /* statistic */
    notify(cfg, s, cf__st_gen(w));
  }
  return 0;
}

static void run_one(const cf__pool_cfg *cfg, unsigned idx, uint32_t s, uint32_t running) {
  cf__slot *sl = cf__seg_slot(&cfg->seg, s);
  uint32_t gen = cf__st_gen(running);
  cf__fault_point(CF__PP_AFTER_CLAIM, s);
  wcall wc = {.cfg = cfg, .sl = sl, .s = s, .deadline = sl->deadline};
  wc.c.ops = &w_ops;
  wc.c.ctx = sl;
  wc.c.max_result = cfg->max_result;
  uintptr_t fn = (uintptr_t)sl->fn;
  uint32_t alen = sl->arg_len;
  int err = 0;
  if (alen > cfg->max_arg) {
    err = CF_EPROTO;
  } else if (!cf__text_contains(&cfg->text, fn)) {
    err = CF_EINVAL;
  } else {
    wc.c.arg = cf__slot_arg(&cfg->seg, sl, s, alen);
    wc.c.arg_len = alen;
    ((cf_fn)fn)(&wc.c);
    if (wc.c.outcome == CF__OUTCOME_FAILED) err = wc.c.err;
    if (wc.deadline && cf__now_ns() >= wc.deadline) {
      /* finished past its deadline: fails like a thread task would */
      err = CF_ETIMEDOUT;
      set_outcome(sl, err);
    }
    if (wc.c.outcome == CF__OUTCOME_NONE) {
      atomic_store_explicit(&sl->res_len, 0, memory_order_relaxed); /* see set_outcome */
      set_outcome(sl, 0);
    }
  }
  if (wc.c.outcome == CF__OUTCOME_NONE && err) set_outcome(sl, err);
  uint32_t to = err ? CF_STATE_FAILED : CF_STATE_FINISHED;
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_relaxed);
  for (;;) {
    if (cf__st_state(w) != CF_STATE_RUNNING || cf__st_owner(w) != idx + 1 || cf__st_gen(w) != gen)
      _exit(0); /* the parent completed it and is killing us (DESIGN) */
    uint32_t nw =
        cf__st_make(gen, idx + 1, to) | (w & (CF__ST_WAITERS | CF__ST_NOTIFY | CF__ST_STOP));
    /* release: pairs with the parent's acquire load of the done word
     * before it reads the outcome written above */
    if (atomic_compare_exchange_weak_explicit(&sl->word, &w, nw, memory_order_release,
                                              memory_order_relaxed))
      break;
  }
  cf__fault_point(CF__PP_AFTER_COMPLETE, s);
  if (w & CF__ST_WAITERS) cf__futex_wake(&sl->word, INT_MAX, true);
  if (w & CF__ST_NOTIFY) notify(cfg, s, gen);
}

void cf__worker_main(const cf__pool_cfg *cfg, unsigned idx, pid_t zygote) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != zygote) _exit(0); /* the zygote died before the prctl */
  cf__assert(cf__pp_in_child);       /* inherited from the zygote */
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  cf__worker_rec *rec = &cfg->seg.workers[idx];
  atomic_store(&rec->pid, (int32_t)getpid());
  if (cf__seg_check(&cfg->seg) != 0) _exit(2);
  cf__worker_name_self(cfg->name, idx);
  if (cfg->pin) cf__worker_pin_self(&cfg->cpus, idx);
  if (cfg->init && cfg->init(cfg->init_arg) != 0) {
    atomic_store(&rec->init_failed, 1);
    _exit(3);
  }
  unsigned long done = 0;
  for (;;) {
    uint32_t h = next_hint(cfg, rec);
    cf__fault_point(CF__PP_AFTER_POP, cf__hint_slot(h));
    uint32_t running = claim(cfg, rec, idx, h);
    atomic_store(&rec->taking, CF__HINT_NONE);
    if (!running) continue; /* stale or duplicate hint */
    run_one(cfg, idx, cf__hint_slot(h), running);
    atomic_fetch_add_explicit(&rec->completed, 1, memory_order_relaxed); /* statistic */
    if (cfg->max_tasks && ++done >= cfg->max_tasks) _exit(0);
  }
}
