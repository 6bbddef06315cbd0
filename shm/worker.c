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
 * (the parent's waiter is woken straight from here), and a notice on the
 * completion ring if the parent wants one — the old word had NOTIFY (a
 * watched future), the pool is hungry for slots, or the result
 * fills this worker's result region — with a kick only if the supervisor
 * sleeps (idle.h). A result goes into the slot (up to CF__SLOT_RES_INLINE
 * bytes), else into the slot's result area (up to slot_res), else into the
 * worker's result region (segment.h), once the parent has copied the last
 * one out (rec->res_busy); only the region needs the parent before the
 * worker's next result, so only it asks for a notice.
 *
 * Idle. Spin on the ring (yielding the CPU between looks) for a bounded
 * time, then sleep on ctl->wake_seq by the protocol in idle.h, for at
 * most IDLE_CHECK_NS: the sleeper count is shared memory a rogue task may
 * overwrite, and a lost wake-up then costs that much, not a task. A spin
 * pays only when a task comes within it, so the worker predicts its next
 * idle gap from its recent ones (the time from its first empty look until
 * it took a hint, clamped to GAP_CLAMP_NS; an average, weight 1/8): above
 * SPIN_GAP_NS it sleeps at once, else it spins for 4 x the prediction,
 * clamped to [SPIN_MIN_NS, SPIN_MAX_NS]. At 1-10 k tasks/s a worker then
 * costs a wake-up per task, not a 50 us spin. A worker never exits on its
 * own (but for max_tasks_per_worker): the parent stops workers through the
 * zygote.
 *
 * The function pointer is checked against the executable ranges recorded
 * at creation before the call: as it is in fork mode (text.h), translated
 * to this process's copy of its module in exec mode (image.h).
 *
 * Start. The worker keeps what the host gave the zygote: its signal mask
 * (cfg->host_mask, the creating thread's) and dispositions (SIGCHLD's
 * comes back from the zygote; SIGPIPE ignored stays ignored), and leads a
 * process group of its own (zygote.c). It drops the stdio buffers it
 * copied (fork mode: the host's unflushed output would be written twice)
 * and registers, before the initializer, an on_exit handler that flushes
 * stdout and stderr and calls _exit: a task (or initializer) that calls
 * exit() runs its own atexit handlers, never the host's (registered
 * earlier, so run later), and its worker dies like any crash (CF_ECRASHED
 * with the exit status). Every other way out of the worker goes through
 * the same flush and _exit.
 *
 * Forks inside a task. A process a task forks is not the worker: its
 * cf_call_return / cf_call_fail give CF_EFORKED and write nothing, and if
 * it returns from the task (or from the initializer) it _exits at once
 * instead of completing the slot or taking tasks (the worker's pid, read
 * at start, against cf__self_pid(), which a fork child sees as its own).
 *
 * The eventfd. A task may close or replace any descriptor (close_range(3,
 * ~0)), the eventfd that kicks the supervisor included. Before each kick
 * the worker checks that the fd is still the one it started with (same
 * flags and inode; where kcmp is allowed, the same open file as the
 * zygote's); if not, it exits (CF__WORKER_EXIT_MUTE) instead of writing
 * into a descriptor it no longer owns: the supervisor sees the death,
 * settles the worker's last slot again (its notice is on the cq already)
 * and starts a replacement with a good fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mutex.h"
#include "fault.h"
#include "future.h"
#include "idle.h"
#include "registry.h"
#include "sys.h"
#include "worker.h"

#define SPIN_MAX_NS 50000          /* the longest idle spin before sleeping */
#define SPIN_MIN_NS 8000           /* the shortest, when one is worth it */
#define SPIN_GAP_NS 50000          /* predicted gap beyond which the worker sleeps at once */
#define GAP_CLAMP_NS 200000        /* one idle gap counts at most this much */
#define IDLE_CHECK_NS 1000000000LL /* a sleeping worker looks at the ring this often */

#ifdef CF_TEST_HOOKS
cf__fault_hook_fn cf__fault_hook;               /* fault.h */
int64_t cf__test_idle_check_ns = IDLE_CHECK_NS; /* fault.h */
static int64_t idle_deadline(void) {
  return cf__test_idle_check_ns < 0 ? -1 : cf__now_ns() + cf__test_idle_check_ns;
}
#else
static int64_t idle_deadline(void) {
  return cf__now_ns() + IDLE_CHECK_NS;
}
#endif

/* ---- the process ---- */

static pid_t self;   /* this worker's pid: a process with another is a fork of it */
static pid_t zygote; /* its parent */

static bool is_self(void) {
  return cf__self_pid() == self;
}

/* Every way out of the worker: the task's own output, then no atexit
 * handler and no other stdio buffer (DESIGN, Start). */
__attribute__((noreturn)) static void leave(int status) {
  fflush(stdout);
  fflush(stderr);
  _exit(status);
}

static void on_exit_call(int status, void *arg) {
  (void)arg;
  leave(status); /* in a task's fork too: no host handler runs there either */
}

/* The eventfd as the worker found it (DESIGN, The eventfd). */
static struct {
  dev_t dev;
  ino_t ino;
  dev_t rdev;
  mode_t mode;
  int flags;
} evfd_id;

static void evfd_record(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) leave(CF__WORKER_EXIT_MUTE);
  evfd_id.dev = st.st_dev;
  evfd_id.ino = st.st_ino;
  evfd_id.rdev = st.st_rdev;
  evfd_id.mode = st.st_mode;
  evfd_id.flags = fcntl(fd, F_GETFL);
}

static bool evfd_ours(int fd) {
  struct stat st;
  if (fcntl(fd, F_GETFL) != evfd_id.flags || fstat(fd, &st) != 0 || st.st_dev != evfd_id.dev ||
      st.st_ino != evfd_id.ino || st.st_rdev != evfd_id.rdev || st.st_mode != evfd_id.mode)
    return false;
  /* eventfds share one inode: only kcmp tells two apart (0: the same open
   * file as the zygote's fd of that number; ENOSYS/EPERM: no verdict) */
  long k = syscall(SYS_kcmp, self, zygote, KCMP_FILE, fd, fd);
  return k == 0 || (k < 0 && errno != EBADF);
}

/* ---- the task's context ---- */

typedef struct wcall {
  cf_call c;
  const cf__pool_cfg *cfg;
  cf__worker_rec *rec;
  cf__slot *sl;
  uint32_t s;
  unsigned idx;
  int64_t deadline;
  bool region; /* the result went into the worker's result region */
} wcall;

/* Wait until the parent has copied the last result out of this worker's
 * result region, and take it for slot s. */
static void take_region(cf__worker_rec *rec, uint32_t s) {
  uint32_t b;
  while ((b = atomic_load(&rec->res_busy)) != 0)
    cf__futex_wait(&rec->res_busy, b, cf__now_ns() + 100000000LL, true);
  atomic_store(&rec->res_busy, s + 1);
}

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
  if (!is_self()) return CF_EFORKED;          /* DESIGN, Forks inside a task */
  int rc = cf__call_record_return(c, v, len); /* c->max_result: the pool's */
  if (rc == CF_E2BIG) set_outcome(wc->sl, CF_E2BIG);
  if (rc != 0) return rc;
  if (cf__res_in_region(&wc->cfg->seg, len)) {
    take_region(wc->rec, wc->s);
    wc->region = true;
  }
  unsigned char *dst = cf__slot_res(&wc->cfg->seg, wc->sl, wc->s, wc->idx, len);
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
  if (!is_self()) return CF_EFORKED;
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

/* A code address of the parent, as one of this process (0: none): checked
 * as it is in fork mode (text.h), translated in exec mode (image.h). The
 * task's own function and a map chunk's (cf__call_fn) come this way. */
static uintptr_t fn_here(const cf__pool_cfg *cfg, uint64_t a) {
  if (cfg->start == CF_START_EXEC) return cf__image_translate(&cfg->image, a);
  return cf__text_contains(&cfg->text, (uintptr_t)a) ? (uintptr_t)a : 0;
}

static uintptr_t w_fn_here(cf_call *c, uint64_t a) {
  return fn_here(((wcall *)c)->cfg, a);
}

static const cf__call_ops w_ops = {w_ret, w_fail, w_stop, w_fn_here};

/* ---- the loop ---- */

/* Take the next hint off the sq, spinning then sleeping (idle.h) while the
 * ring is empty. */
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
    /* The sleeper's steps of idle.h, every access seq_cst (Dekker with
     * cf__wake_worker(); the no-lost-wake-up argument is there). */
    atomic_fetch_add(&ctl->nsleep, 1); /* 1 */
    atomic_store(&rec->asleep, 1);
    uint32_t seq = atomic_load(&ctl->wake_seq);                                  /* 2 */
    bool got = cf__ring_pop(&ctl->sq, cfg->seg.sq, log2, &h, &rec->taking) == 0; /* 3 */
    if (!got && !(seq & 1u)) {
      uint32_t cur = seq; /* 4 */
      if (!atomic_compare_exchange_strong(&ctl->wake_seq, &cur, seq | 1u) && cur != (seq | 1u)) {
        /* a producer woke someone since step 2: look again */
        atomic_store(&rec->asleep, 0);
        atomic_fetch_sub(&ctl->nsleep, 1);
        continue;
      }
      seq |= 1u;
    }
    if (!got) got = cf__ring_pop(&ctl->sq, cfg->seg.sq, log2, &h, &rec->taking) == 0; /* 5 */
    if (got) {
      atomic_store(&rec->asleep, 0);
      atomic_fetch_sub(&ctl->nsleep, 1);
      idle_gap(&gap_ns, idle_since);
      return h;
    }
    atomic_fetch_add_explicit(&rec->parks, 1, memory_order_relaxed); /* statistic */
    cf__futex_wait(&ctl->wake_seq, seq, idle_deadline(), true);      /* 6 */
    atomic_store(&rec->asleep, 0);
    atomic_fetch_sub(&ctl->nsleep, 1); /* 7 */
    spin_end = 0;
  }
}

static void notify(const cf__pool_cfg *cfg, uint32_t s, uint32_t gen) {
  cf__seg_ctl *ctl = cfg->seg.ctl;
  if (cf__ring_push(&ctl->cq, cfg->seg.cq, cfg->seg.p.cq_log2,
                    cf__hint_make(s, cf__hint_genbits(gen))) != 0)
    atomic_store(&ctl->cq_overflow, 1);
  /* seq_cst: Dekker with the supervisor going to sleep (idle.h) */
  if (atomic_exchange(&ctl->sv_sleeping, 0)) {
    if (!evfd_ours(cfg->evfd)) leave(CF__WORKER_EXIT_MUTE); /* DESIGN, The eventfd */
    cf__sv_kick(cfg->evfd);
  }
}

/* Claim the slot of hint h for worker idx: the RUNNING word, or 0 (a stale
 * or duplicate hint: dropped). */
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
    /* acq_rel: acquire as above; release publishes this worker's record
     * (its pid) to a parent that fails the task it now owns */
    if (atomic_compare_exchange_weak_explicit(&sl->word, &w, nw, memory_order_acq_rel,
                                              memory_order_acquire))
      return nw;
  }
  return 0;
}

static void run_one(const cf__pool_cfg *cfg, cf__worker_rec *rec, unsigned idx, uint32_t s,
                    uint32_t running) {
  cf__slot *sl = cf__seg_slot(&cfg->seg, s);
  uint32_t gen = cf__st_gen(running);
  cf__fault_point(CF__PP_AFTER_CLAIM, s);
  wcall wc = {.cfg = cfg, .rec = rec, .sl = sl, .s = s, .idx = idx, .deadline = sl->deadline};
  wc.c.ops = &w_ops;
  wc.c.ctx = sl;
  wc.c.max_result = cfg->max_result;
  uintptr_t fn = (uintptr_t)sl->fn;
  uint32_t alen = sl->arg_len;
  int err = 0;
  const unsigned char *arg =
      alen <= cfg->max_arg ? cf__slot_arg(&cfg->seg, sl, s, alen, sl->big) : NULL;
  if (!arg) {
    err = CF_EPROTO;
  } else if (!(fn = fn_here(cfg, fn))) {
    err = CF_EINVAL;
  } else {
    wc.c.arg = arg;
    wc.c.arg_len = alen;
    cf__inline_spawn = &wc.c; /* cf_spawn inside the task runs inline */
    bool timed = sl->timed;
    if (timed) sl->t_start = cf__now_ns();
    ((cf_fn)fn)(&wc.c);
    if (!is_self()) _exit(0); /* a fork of the task returned: DESIGN */
    cf__inline_spawn = NULL;
    /* published by the completing CAS's release, with the outcome */
    if (timed) sl->t_end = cf__now_ns();
    if (wc.c.outcome == CF__OUTCOME_FAILED) err = wc.c.err;
    if (wc.deadline && cf__now_ns() >= wc.deadline) {
      /* finished past its deadline: fails like a thread task would */
      err = CF_EDEADLINE;
      set_outcome(sl, err);
    }
    if (wc.c.outcome == CF__OUTCOME_NONE) {
      atomic_store_explicit(&sl->res_len, 0, memory_order_relaxed); /* see set_outcome */
      set_outcome(sl, 0);
    }
  }
  if (wc.c.outcome == CF__OUTCOME_NONE && err) set_outcome(sl, err);
  uint32_t to = err ? CF_STATE_FAILED : CF_STATE_FINISHED;
  /* Counted before the completing CAS: once the word is done the parent may
   * stop this worker (an idle pool's shutdown) before it counts. relaxed:
   * a statistic. */
  atomic_fetch_add_explicit(&rec->completed, 1, memory_order_relaxed);
  uint32_t w = atomic_load_explicit(&sl->word, memory_order_relaxed);
  for (;;) {
    if (cf__st_state(w) != CF_STATE_RUNNING || cf__st_owner(w) != idx + 1 || cf__st_gen(w) != gen) {
      atomic_fetch_sub_explicit(&rec->completed, 1, memory_order_relaxed);
      leave(0); /* the parent completed it and is killing us (DESIGN) */
    }
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
  /* relaxed: hungry is a hint (the parent's sweep does not rely on it) */
  if ((w & CF__ST_NOTIFY) || wc.region ||
      atomic_load_explicit(&cfg->seg.ctl->hungry, memory_order_relaxed))
    notify(cfg, s, gen);
}

void cf__worker_main(const cf__pool_cfg *cfg, unsigned idx, pid_t parent,
                     const struct sigaction *host_chld) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(0); /* the zygote died before the prctl */
  (void)setpgid(0, 0);               /* and the zygote: whoever runs first */
  self = getpid();
  zygote = parent;
  cf__assert(cf__self_pid() == self);
  sigaction(SIGCHLD, host_chld, NULL);
  /* The copied stdio buffers are the host's (fork mode): not ours to write
   * or to read again. */
  __fpurge(stdin);
  __fpurge(stdout);
  __fpurge(stderr);
  cf__worker_rec *rec = &cfg->seg.workers[idx];
  atomic_store(&rec->pid, (int32_t)self);
  if (cf__seg_check(&cfg->seg) != 0) _exit(CF__WORKER_EXIT_SEGMENT);
  evfd_record(cfg->evfd);
  cf__worker_name_self(cfg->name, idx);
  if (cfg->pin) cf__worker_pin_self(&cfg->cpus, idx);
  on_exit(on_exit_call, NULL); /* after the host's handlers: runs before them */
  /* Last: from here signals reach the worker as they would the host's
   * creating thread. */
  sigprocmask(SIG_SETMASK, &cfg->host_mask, NULL);
  if (cfg->init && cfg->init(cfg->init_arg) != 0) {
    if (!is_self()) _exit(0);
    leave(CF__WORKER_EXIT_INIT); /* not started: the pool breaks (recovery.c) */
  }
  atomic_store(&rec->started, 1);
  unsigned long done = 0;
  for (;;) {
    if (!is_self()) _exit(0); /* a fork of the initializer returned */
    uint32_t h = next_hint(cfg, rec);
    cf__fault_point(CF__PP_AFTER_POP, cf__hint_slot(h));
    uint32_t running = claim(cfg, rec, idx, h);
    atomic_store(&rec->taking, CF__HINT_NONE);
    if (!running) continue; /* stale or duplicate hint */
    run_one(cfg, rec, idx, cf__hint_slot(h), running);
    if (cfg->max_tasks && ++done >= cfg->max_tasks) leave(0);
  }
}
