/* procs.cc — see procs.h. */
#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

#include "common.h"
#include "openloop.h"

cf_executor *cf_proc() {
  static cf_executor *ex = [] {
    cf_options o;
    cf_options_init(&o);
    o.workers = bench_workers();
    o.name = "cfbench";
    cf_executor *e = nullptr;
    int rc = cf_process_pool_new(&o, &e);
    if (rc != 0) {
      fprintf(stderr, "cf_process_pool_new: %s\n", cf_strerror(rc));
      abort();
    }
    bench_at_exit([e] { cf_executor_destroy(e); });
    return e;
  }();
  return ex;
}

ForkPool &fork_pool(bool batched) {
  static ForkPool *pools[2];
  ForkPool *&p = pools[batched];
  if (!p) {
    p = new ForkPool(bench_workers(), batched);
    if (!p->ok()) {
      fprintf(stderr, "fork pool: cannot start\n");
      abort();
    }
    ForkPool *fp = p;
    bench_at_exit([fp] { delete fp; });
  }
  return *p;
}

/* ---- round trips ---- */

/* The round-trip task also returns when it started: latency = dispatch +
 * notify. */
static void rt_task(cf_call *c) {
  int64_t r[2] = {0, bench_now_ns()};
  size_t len = 0;
  const int64_t *x = (const int64_t *)cf_call_arg(c, &len);
  r[0] = *x + 1;
  cf_call_return(c, r, sizeof r);
}

int64_t proc_cf_roundtrip(int64_t x, int64_t *started) {
  cf_future *f = nullptr;
  if (cf_submit(cf_proc(), rt_task, &x, sizeof x, &f) != 0) return INT64_MIN;
  int64_t r[2] = {INT64_MIN, 0};
  if (cf_future_result(f, r, sizeof r, nullptr, -1) != 0) r[0] = INT64_MIN;
  cf_future_release(f);
  if (started) *started = r[1];
  return r[0];
}

int64_t proc_fork_roundtrip(int64_t x, int64_t *started) {
  return fork_pool(false).call(x, started);
}

/* ---- the shared done[] ---- */

static int64_t *map_done(pid_t owner, bool create) {
  char name[64];
  snprintf(name, sizeof name, "/cfbench-ol-%d", (int)owner);
  int fd = shm_open(name, O_RDWR | (create ? O_CREAT | O_EXCL : 0), 0600);
  if (fd < 0) return nullptr;
  size_t len = kOlCapacity * sizeof(int64_t);
  if (create && ftruncate(fd, (off_t)len) != 0) {
    close(fd);
    return nullptr;
  }
  void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? nullptr : (int64_t *)p;
}

int64_t *ol_shared_done() {
  static int64_t *done = [] {
    pid_t me = getpid();
    int64_t *p = map_done(me, true);
    if (!p) {
      perror("open-loop shared memory");
      abort();
    }
    bench_at_exit([me] {
      char name[64];
      snprintf(name, sizeof name, "/cfbench-ol-%d", (int)me);
      shm_unlink(name);
    });
    return p;
  }();
  return done;
}

/* In a worker: the parent's done[], mapped at the first task. */
static void ol_proc_task(cf_call *c) {
  static int64_t *done;
  static pid_t owner;
  const int64_t *a = (const int64_t *)cf_call_arg(c, nullptr);
  if (!done || owner != (pid_t)a[1]) {
    owner = (pid_t)a[1];
    done = map_done(owner, false);
    if (!done) {
      cf_call_fail(c, CF_EINVAL, "no shared done[]");
      return;
    }
  }
  if ((size_t)a[0] < kOlCapacity) ol::mark(done, a[0]);
}

bool proc_cf_post(int64_t i) {
  static const int64_t me = (ol_shared_done(), (int64_t)getpid());
  int64_t a[2] = {i, me};
  cf_future *f = nullptr;
  if (cf_submit(cf_proc(), ol_proc_task, a, sizeof a, &f) != 0) return false;
  cf_future_release(f);
  return true;
}

/* ---- the open-loop fork + pipe pool ---- */

static bool write_full(int fd, const void *p, size_t len) {
  const char *c = (const char *)p;
  while (len) {
    ssize_t r = write(fd, c, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    len -= (size_t)r;
  }
  return true;
}

/* One message per read (8 bytes, written atomically, so a read of 8 from a
 * pipe holding whole messages gets exactly one), one answer per task. */
[[noreturn]] static void ol_worker(int in, int out, int64_t *done) {
  for (;;) {
    int64_t i;
    ssize_t r = read(in, &i, sizeof i);
    if (r < 0 && errno == EINTR) continue;
    if (r != (ssize_t)sizeof i) _exit(0);
    if ((size_t)i < kOlCapacity) ol::mark(done, i);
    if (!write_full(out, &i, sizeof i)) _exit(1);
  }
}

OlForkPool::OlForkPool(unsigned workers) {
  int64_t *done = ol_shared_done(); /* mapped before the fork: inherited */
  int tp[2], rp[2];
  if (pipe2(tp, O_CLOEXEC) != 0) return;
  if (pipe2(rp, O_CLOEXEC) != 0) return;
  pid_t parent = getpid();
  for (unsigned k = 0; k < workers; k++) {
    pid_t pid = fork();
    if (pid < 0) return;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      close(tp[1]);
      close(rp[0]);
      ol_worker(tp[0], rp[1], done);
    }
    pids_.push_back(pid);
  }
  close(tp[0]);
  close(rp[1]);
  task_wr_ = tp[1];
  res_rd_ = rp[0];
  collector_ = std::thread([fd = res_rd_] {
    static int64_t buf[512];
    for (;;) {
      ssize_t r = read(fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return; /* every worker gone */
    }
  });
  ok_ = true;
}

OlForkPool::~OlForkPool() {
  if (task_wr_ >= 0) close(task_wr_);
  for (pid_t p : pids_) {
    kill(p, SIGKILL); /* a later fork (a zygote) may hold the pipe open */
    waitpid(p, nullptr, 0);
  }
  if (collector_.joinable()) collector_.join();
  if (res_rd_ >= 0) close(res_rd_);
}

bool OlForkPool::post(int64_t i) {
  return write_full(task_wr_, &i, sizeof i);
}

OlForkPool &ol_fork_pool() {
  static OlForkPool *p = [] {
    auto *fp = new OlForkPool(bench_workers());
    if (!fp->ok()) {
      fprintf(stderr, "open-loop fork pool: cannot start\n");
      abort();
    }
    bench_at_exit([fp] { delete fp; });
    return fp;
  }();
  return *p;
}
