/*
 * forkpool.cc — see forkpool.h. Wire format, both directions:
 *   struct { uint64_t id; uint32_t n; uint32_t op; } then n int64 items.
 * A task with id I carries items I..I+n-1; its result carries the same id
 * and n results. op 1 = compute, no other ops (EOF on the task pipe ends a
 * worker).
 */
#include "forkpool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <climits>
#include <cstring>

namespace {

struct Hdr {
  uint64_t id;
  uint32_t n;
  uint32_t op;
};
static_assert(sizeof(Hdr) == 16, "wire header");

constexpr size_t kWindow = 24 * 1024; /* bytes in flight per worker (< 64 KiB pipe) */
constexpr size_t kBuf = 64 * 1024;

bool write_all(int fd, const void *p, size_t len) {
  const char *c = (const char *)p;
  while (len) {
    ssize_t r = write(fd, c, len);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    c += r;
    len -= (size_t)r;
  }
  return true;
}

bool read_all(int fd, void *p, size_t len) {
  char *c = (char *)p;
  while (len) {
    ssize_t r = read(fd, c, len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    len -= (size_t)r;
  }
  return true;
}

/* The worker: read whatever is there, answer every complete message in one
 * write, keep the partial tail. Static buffers: nothing is allocated after
 * fork() (the parent may have threads). */
[[noreturn]] void worker_main(int in, int out) {
  static char ibuf[kBuf + sizeof(Hdr)];
  static char obuf[kBuf + sizeof(Hdr)];
  size_t have = 0;
  for (;;) {
    ssize_t r = read(in, ibuf + have, kBuf - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) _exit(0);
    have += (size_t)r;
    size_t pos = 0, olen = 0;
    while (have - pos >= sizeof(Hdr)) {
      Hdr h;
      memcpy(&h, ibuf + pos, sizeof h);
      size_t body = (size_t)h.n * 8;
      if (have - pos < sizeof h + body) break;
      memcpy(obuf + olen, &h, sizeof h);
      for (uint32_t i = 0; i < h.n; i++) {
        int64_t x;
        memcpy(&x, ibuf + pos + sizeof h + 8 * i, 8);
        x += 1; /* the task */
        memcpy(obuf + olen + sizeof h + 8 * i, &x, 8);
      }
      olen += sizeof h + body;
      pos += sizeof h + body;
    }
    if (olen && !write_all(out, obuf, olen)) _exit(1);
    memmove(ibuf, ibuf + pos, have - pos);
    have -= pos;
  }
}

/* The textbook worker: one read per header, one per body, one write per
 * result. */
int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

[[noreturn]] void worker_textbook(int in, int out) {
  static int64_t items[1024 + 3];
  for (;;) {
    Hdr h;
    if (!read_all(in, &h, sizeof h)) _exit(0);
    if (h.n > 1024 || !read_all(in, items + 2, 8 * (size_t)h.n)) _exit(1);
    int64_t started = now_ns();
    for (uint32_t i = 0; i < h.n; i++) items[2 + i] += 1; /* the task */
    memcpy(items, &h, sizeof h);
    size_t len = sizeof h + 8 * (size_t)h.n;
    if (h.op == 2) { /* round trip: also say when the task started */
      memcpy((char *)items + len, &started, 8);
      len += 8;
    }
    if (!write_all(out, items, len)) _exit(1);
  }
}

}  // namespace

ForkPool::ForkPool(unsigned workers, bool batched) : w_(workers), wbuf_(kBuf), batched_(batched) {
  for (auto &wk : w_) wk.rbuf.resize(kBuf + sizeof(Hdr));
  for (unsigned i = 0; i < workers; i++) {
    int tp[2], rp[2];
    if (pipe2(tp, O_CLOEXEC) != 0) return;
    if (pipe2(rp, O_CLOEXEC) != 0) return;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      for (unsigned j = 0; j < i; j++) {
        close(w_[j].task_wr);
        close(w_[j].res_rd);
      }
      close(tp[1]);
      close(rp[0]);
      if (batched)
        worker_main(tp[0], rp[1]);
      else
        worker_textbook(tp[0], rp[1]);
    }
    close(tp[0]);
    close(rp[1]);
    w_[i].pid = pid;
    w_[i].task_wr = tp[1];
    w_[i].res_rd = rp[0];
  }
  ok_ = true;
}

ForkPool::~ForkPool() {
  for (auto &wk : w_) {
    if (wk.task_wr >= 0) close(wk.task_wr); /* EOF: the worker exits */
  }
  for (auto &wk : w_) {
    /* a process forked later (another pool's zygote) may hold a copy of
     * the pipe, so EOF alone is not enough: the workers keep no state */
    if (wk.pid > 0) kill(wk.pid, SIGKILL);
    if (wk.pid > 0) waitpid(wk.pid, nullptr, 0);
    if (wk.res_rd >= 0) close(wk.res_rd);
  }
}

int64_t ForkPool::call(int64_t x, int64_t *started) {
  Worker &wk = w_[next_];
  next_ = (next_ + 1) % (unsigned)w_.size();
  struct {
    Hdr h;
    int64_t x;
  } m = {{0, 1, 2}, x};
  struct {
    Hdr h;
    int64_t x, started;
  } r;
  if (batched_) return INT64_MIN; /* round trips use the textbook form */
  if (!write_all(wk.task_wr, &m, sizeof m)) return INT64_MIN;
  if (!read_all(wk.res_rd, &r, sizeof r)) return INT64_MIN;
  if (started) *started = r.started;
  return r.x;
}

bool ForkPool::run_many(const int64_t *in, int64_t *out, size_t n, size_t per_msg) {
  if (per_msg == 0) per_msg = 1;
  if (per_msg > 1024) return false; /* one message must fit the buffers */
  return batched_ ? run_batched(in, out, n, per_msg) : run_textbook(in, out, n, per_msg);
}

/* One write per task, one read per result. A worker's results come back in
 * the order its tasks went out, so a full window is drained by reading that
 * worker's oldest result. */
bool ForkPool::run_textbook(const int64_t *in, int64_t *out, size_t n, size_t per_msg) {
  const size_t msg_bytes = sizeof(Hdr) + 8 * per_msg;
  const size_t window = kWindow / msg_bytes ? kWindow / msg_bytes : 1;
  static thread_local int64_t buf[1024 + 2];
  auto read_one = [&](Worker &wk) {
    size_t id = wk.fifo[wk.head++];
    Hdr h;
    if (!read_all(wk.res_rd, &h, sizeof h) || h.id != id || id + h.n > n) return false;
    return read_all(wk.res_rd, out + id, 8 * (size_t)h.n);
  };
  for (auto &wk : w_) {
    wk.fifo.clear();
    wk.head = 0;
  }
  size_t k = 0;
  for (size_t sent = 0; sent < n;) {
    Worker &wk = w_[k];
    k = (k + 1) % w_.size();
    if (wk.fifo.size() - wk.head >= window && !read_one(wk)) return false;
    size_t m = n - sent < per_msg ? n - sent : per_msg;
    Hdr h = {(uint64_t)sent, (uint32_t)m, 1};
    memcpy(buf, &h, sizeof h);
    memcpy(buf + 2, in + sent, 8 * m);
    if (!write_all(wk.task_wr, buf, sizeof h + 8 * m)) return false;
    wk.fifo.push_back(sent);
    sent += m;
  }
  for (auto &wk : w_)
    while (wk.head < wk.fifo.size())
      if (!read_one(wk)) return false;
  return true;
}

/* Many messages per write, whatever has arrived per read. */
bool ForkPool::run_batched(const int64_t *in, int64_t *out, size_t n, size_t per_msg) {
  const size_t msg_bytes = sizeof(Hdr) + 8 * per_msg;
  size_t sent = 0, received = 0;
  std::vector<pollfd> pfd(w_.size());
  while (received < n) {
    /* send: fill each worker's window, batching messages into one write */
    for (auto &wk : w_) {
      size_t len = 0;
      while (sent < n && wk.inflight + msg_bytes <= kWindow && len + msg_bytes <= wbuf_.size()) {
        size_t k = n - sent < per_msg ? n - sent : per_msg;
        Hdr h = {(uint64_t)sent, (uint32_t)k, 1};
        memcpy(wbuf_.data() + len, &h, sizeof h);
        memcpy(wbuf_.data() + len + sizeof h, in + sent, 8 * k);
        len += sizeof h + 8 * k;
        wk.inflight += sizeof h + 8 * k;
        sent += k;
      }
      if (len && !write_all(wk.task_wr, wbuf_.data(), len)) return false;
    }
    /* receive: whatever any worker has answered */
    for (size_t i = 0; i < w_.size(); i++) {
      pfd[i].fd = w_[i].inflight ? w_[i].res_rd : -1;
      pfd[i].events = POLLIN;
      pfd[i].revents = 0;
    }
    if (poll(pfd.data(), pfd.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    for (size_t i = 0; i < w_.size(); i++) {
      if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Worker &wk = w_[i];
      ssize_t r = read(wk.res_rd, wk.rbuf.data() + wk.rlen, kBuf - wk.rlen);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      wk.rlen += (size_t)r;
      size_t pos = 0;
      while (wk.rlen - pos >= sizeof(Hdr)) {
        Hdr h;
        memcpy(&h, wk.rbuf.data() + pos, sizeof h);
        size_t body = (size_t)h.n * 8;
        if (wk.rlen - pos < sizeof h + body) break;
        if (h.id + h.n > n) return false;
        memcpy(out + h.id, wk.rbuf.data() + pos + sizeof h, body);
        pos += sizeof h + body;
        wk.inflight -= sizeof h + body;
        received += h.n;
      }
      memmove(wk.rbuf.data(), wk.rbuf.data() + pos, wk.rlen - pos);
      wk.rlen -= pos;
    }
  }
  return true;
}
