/* cf-test: labels=unit;stress timeout=300 variants=thread;process */
/*
 * test_completion.c — completion queues: the fd becomes readable exactly
 * when something is to drain, a drain hands each future out once with its
 * tag, small drains leave the fd readable, free() with registrations still
 * pending, and the race: futures of both pools and promises completing on
 * other threads (and added from several threads) while an epoll loop
 * drains, checked against a sequential oracle (every tag once, every
 * result right), and the same with an io_uring POLL_ADD loop (skipped where
 * io_uring is not available). A lost wake-up shows up as an epoll_wait that times out
 * (10 s) while futures are pending: the test fails there instead of
 * hanging. No timing thresholds.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static bool process_kind;

static void nap(void) {
  struct timespec ts = {0, 50 * 1000};
  nanosleep(&ts, NULL);
}

static int64_t oracle(int64_t x) {
  return x * 5 + 2;
}

static void work_task(cf_call *c) {
  int64_t x;
  memcpy(&x, cf_call_arg(c, NULL), sizeof x);
  volatile uint32_t s = 0;
  for (uint32_t i = 0; i < (uint32_t)(x % 5000); i++) s += i;
  x = oracle(x);
  cf_call_return(c, &x, sizeof x);
}

static bool readable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_basic(void) {
  cf_completion_queue *q = NULL;
  assert_rc(cf_completion_queue_new(&q), 0);
  int fd = cf_completion_queue_fd(q);
  expect_true(fd >= 0);
  expect_true(!readable(fd));
  cf_completion items[4];
  expect_eq(cf_completion_queue_drain(q, items, 4), 0);

  cf_future *p;
  assert_rc(cf_promise_new(&p), 0);
  expect_rc(cf_completion_queue_add(q, p, (void *)1), 0);
  expect_eq(cf_completion_queue_pending(q), 1);
  expect_true(!readable(fd));
  expect_eq(cf_completion_queue_drain(q, items, 4), 0);
  int64_t v = 5;
  expect_rc(cf_promise_set_result(p, &v, sizeof v), 0);
  expect_true(readable(fd));
  expect_eq(cf_completion_queue_drain(q, items, 4), 1);
  expect_true(items[0].future == p && items[0].tag == (void *)1);
  expect_rc(cf_future_release(items[0].future), 0); /* the queue's handle */
  expect_true(!readable(fd));
  expect_eq(cf_completion_queue_pending(q), 0);
  expect_eq(cf_completion_queue_drain(q, items, 4), 0);

  /* done already: delivered at the next drain; twice: twice */
  expect_rc(cf_completion_queue_add(q, p, (void *)2), 0);
  expect_rc(cf_completion_queue_add(q, p, (void *)3), 0);
  expect_true(readable(fd));
  expect_eq(cf_completion_queue_drain(q, items, 4), 2);
  expect_true(items[0].tag == (void *)2 && items[1].tag == (void *)3);
  cf_future_release(items[0].future);
  cf_future_release(items[1].future);
  cf_future_release(p);

  /* a pool's future */
  cf_executor *ex = cf_test_new_executor(process_kind, 1);
  cf_future *f;
  int64_t x = 11;
  assert_rc(cf_submit(ex, work_task, &x, sizeof x, &f), 0);
  expect_rc(cf_completion_queue_add(q, f, (void *)4), 0);
  cf_future_release(f); /* the queue keeps its own */
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  expect_eq(poll(&pf, 1, 10000), 1);
  expect_eq(cf_completion_queue_drain(q, items, 4), 1);
  expect_true(items[0].tag == (void *)4);
  expect_rc(cf_future_result(items[0].future, &x, sizeof x, NULL, 0), 0);
  expect_eq(x, oracle(11));
  cf_future_release(items[0].future);
  expect_rc(cf_executor_destroy(ex), 0);

  expect_rc(cf_completion_queue_new(NULL), CF_EINVAL);
  expect_rc(cf_completion_queue_add(q, NULL, NULL), CF_EINVAL);
  expect_rc(cf_completion_queue_add(NULL, p, NULL), CF_EINVAL);
  expect_eq(cf_completion_queue_fd(NULL), CF_EINVAL);
  expect_eq(cf_completion_queue_drain(NULL, items, 4), CF_EINVAL);
  expect_eq(cf_completion_queue_drain(q, NULL, 4), CF_EINVAL);
  cf_completion_queue_free(q);
  cf_completion_queue_free(NULL);
}

/* More done than a drain takes: the rest wait, in completion order, and the
 * fd stays readable until the last is out. */
static void test_small_drains(void) {
  cf_completion_queue *q = NULL;
  assert_rc(cf_completion_queue_new(&q), 0);
  enum { N = 10 };
  cf_future *ps[N];
  for (int i = 0; i < N; i++) {
    assert_rc(cf_promise_new(&ps[i]), 0);
    expect_rc(cf_completion_queue_add(q, ps[i], (void *)(intptr_t)i), 0);
  }
  for (int i = 0; i < N; i++) expect_rc(cf_promise_set_result(ps[i], NULL, 0), 0);
  int next = 0;
  while (next < N) {
    expect_true(readable(cf_completion_queue_fd(q)));
    cf_completion items[3];
    int n = cf_completion_queue_drain(q, items, 3);
    expect_true(n > 0 && n <= 3);
    for (int k = 0; k < n; k++) {
      expect_eq((intptr_t)items[k].tag, next);
      next++;
      cf_future_release(items[k].future);
    }
    if (n <= 0) break;
  }
  expect_true(!readable(cf_completion_queue_fd(q)));
  for (int i = 0; i < N; i++) cf_future_release(ps[i]);
  cf_completion_queue_free(q);
}

/* free() with futures still pending and entries not drained: both are
 * cleaned up, the late completions find the queue closed (ASan: no leak,
 * no use after free). */
static void test_free_pending(void) {
  cf_executor *ex = cf_test_new_executor(process_kind, 2);
  cf_completion_queue *q = NULL;
  assert_rc(cf_completion_queue_new(&q), 0);
  enum { N = 8 };
  cf_future *ps[N], *fs[N];
  for (int i = 0; i < N; i++) {
    int64_t x = 1000 + i;
    assert_rc(cf_promise_new(&ps[i]), 0);
    assert_rc(cf_submit(ex, work_task, &x, sizeof x, &fs[i]), 0);
    expect_rc(cf_completion_queue_add(q, ps[i], NULL), 0);
    expect_rc(cf_completion_queue_add(q, fs[i], NULL), 0);
  }
  for (int i = 0; i < N / 2; i++) expect_rc(cf_promise_set_result(ps[i], NULL, 0), 0);
  cf_completion_queue_free(q);
  for (int i = N / 2; i < N; i++) expect_rc(cf_promise_set_result(ps[i], NULL, 0), 0);
  for (int i = 0; i < N; i++) {
    expect_rc(cf_future_wait(fs[i], -1), 0);
    cf_future_release(fs[i]);
    cf_future_release(ps[i]);
  }
  expect_rc(cf_executor_destroy(ex), 0);
}

/* ---- the race ----------------------------------------------------------- */

typedef struct race {
  cf_completion_queue *q;
  cf_executor *pools[2];
  unsigned npools;
  size_t per_adder;
  cf_future **promises; /* set by the setter thread */
  size_t npromises;
  _Atomic size_t promises_ready;
  _Atomic int errors;
} race;

typedef struct adder {
  race *r;
  unsigned id;
} adder;

/* tags: adder id * per_adder + i (pool futures); promises after them */
static void *adder_thread(void *arg) {
  adder *a = arg;
  race *r = a->r;
  for (size_t i = 0; i < r->per_adder; i++) {
    int64_t x = (int64_t)(a->id * r->per_adder + i);
    cf_future *f;
    cf_executor *ex = r->pools[(a->id + i) % r->npools];
    if (cf_submit(ex, work_task, &x, sizeof x, &f) != 0) {
      atomic_fetch_add(&r->errors, 1);
      continue;
    }
    if (cf_completion_queue_add(r->q, f, (void *)(intptr_t)x) != 0) atomic_fetch_add(&r->errors, 1);
    cf_future_release(f);
  }
  return NULL;
}

static void *setter_thread(void *arg) {
  race *r = arg;
  while (atomic_load(&r->promises_ready) == 0) nap();
  for (size_t i = 0; i < r->npromises; i++) {
    int64_t x = (int64_t)(2 * r->per_adder + i);
    int64_t v = oracle(x);
    if (cf_promise_set_result(r->promises[i], &v, sizeof v) != 0) atomic_fetch_add(&r->errors, 1);
    if (i % 16 == 0) nap();
  }
  return NULL;
}

static void test_race(void) {
  race r = {0};
  r.pools[0] = cf_test_new_executor(process_kind, 2);
  r.npools = 1;
  if (process_kind) { /* both pools mixed on one queue */
    r.pools[1] = cf_test_new_executor(false, 2);
    r.npools = 2;
  }
  assert_rc(cf_completion_queue_new(&r.q), 0);
  r.per_adder = cf_test_scale(process_kind ? 3000 : 20000);
  r.npromises = cf_test_scale(2000);
  size_t total = 2 * r.per_adder + r.npromises;
  unsigned char *seen = calloc(total, 1);
  r.promises = calloc(r.npromises, sizeof *r.promises);
  for (size_t i = 0; i < r.npromises; i++) {
    assert_rc(cf_promise_new(&r.promises[i]), 0);
    int64_t tag = (int64_t)(2 * r.per_adder + i);
    assert_rc(cf_completion_queue_add(r.q, r.promises[i], (void *)(intptr_t)tag), 0);
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  assert_true(ep >= 0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
  assert_true(epoll_ctl(ep, EPOLL_CTL_ADD, cf_completion_queue_fd(r.q), &ev) == 0);

  pthread_t t[3];
  adder a[2] = {{&r, 0}, {&r, 1}};
  pthread_create(&t[0], NULL, adder_thread, &a[0]);
  pthread_create(&t[1], NULL, adder_thread, &a[1]);
  pthread_create(&t[2], NULL, setter_thread, &r);
  atomic_store(&r.promises_ready, 1);

  size_t delivered = 0, wakeups = 0, empty = 0;
  cf_completion items[16];
  while (delivered < total) {
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, 10000);
    if (n == 0) { /* 10 s with nothing: a lost wake-up (or a hang) */
      cf_test_fail(__FILE__, __LINE__, "epoll_wait", "timed out with %zu of %zu delivered",
                   delivered, total);
      break;
    }
    if (n < 0) continue; /* EINTR */
    wakeups++;
    int k;
    bool any = false;
    while ((k = cf_completion_queue_drain(r.q, items, 16)) > 0) {
      any = true;
      for (int i = 0; i < k; i++) {
        intptr_t tag = (intptr_t)items[i].tag;
        int64_t v = -1;
        if (tag < 0 || (size_t)tag >= total) {
          atomic_fetch_add(&r.errors, 1);
        } else {
          seen[tag]++;
          if (cf_future_result(items[i].future, &v, sizeof v, NULL, 0) != 0 || v != oracle(tag))
            atomic_fetch_add(&r.errors, 1);
        }
        cf_future_release(items[i].future);
        delivered++;
      }
    }
    if (k < 0) atomic_fetch_add(&r.errors, 1);
    if (!any) empty++;
  }
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  expect_eq(atomic_load(&r.errors), 0);
  expect_eq(delivered, total);
  size_t twice = 0, never = 0;
  for (size_t i = 0; i < total; i++) {
    twice += seen[i] > 1;
    never += seen[i] == 0;
  }
  expect_eq(twice, 0);
  expect_eq(never, 0);
  expect_eq(cf_completion_queue_pending(r.q), 0);
  expect_eq(cf_completion_queue_drain(r.q, items, 16), 0);
  printf("race: %zu futures, %zu wake-ups (%zu found nothing)\n", total, wakeups, empty);
  close(ep);
  cf_completion_queue_free(r.q);
  for (size_t i = 0; i < r.npromises; i++) cf_future_release(r.promises[i]);
  free(r.promises);
  free(seen);
  for (unsigned i = 0; i < r.npools; i++) expect_rc(cf_executor_destroy(r.pools[i]), 0);
}

/* ---- io_uring: a poll request on the fd ------------------------------------ */

/* The smallest raw io_uring (no liburing): one POLL_ADD at a time. */
typedef struct uring {
  int fd;
  unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  void *sq, *cq;
  size_t sq_len, cq_len, sqes_len;
  bool single;
} uring;

static int uring_init(uring *u) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  memset(u, 0, sizeof *u);
  u->fd = (int)syscall(__NR_io_uring_setup, 4, &p);
  if (u->fd < 0) return -errno;
  u->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  u->single = p.features & IORING_FEAT_SINGLE_MMAP;
  if (u->single) u->sq_len = u->cq_len = u->sq_len > u->cq_len ? u->sq_len : u->cq_len;
  u->sq = mmap(NULL, u->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
               IORING_OFF_SQ_RING);
  u->cq = u->single ? u->sq
                    : mmap(NULL, u->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                           u->fd, IORING_OFF_CQ_RING);
  u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                 IORING_OFF_SQES);
  if (u->sq == MAP_FAILED || u->cq == MAP_FAILED || u->sqes == MAP_FAILED) return -ENOMEM;
  char *sq = u->sq, *cq = u->cq;
  u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
  u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  u->sq_array = (unsigned *)(sq + p.sq_off.array);
  u->cq_head = (unsigned *)(cq + p.cq_off.head);
  u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
  u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
  u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  return 0;
}

static void uring_free(uring *u) {
  munmap(u->sqes, u->sqes_len);
  if (!u->single) munmap(u->cq, u->cq_len);
  munmap(u->sq, u->sq_len);
  close(u->fd);
}

/* Submit a POLL_ADD(POLLIN) on fd and wait for its completion: its res
 * (the poll mask), or a negative errno. A lost wake-up hangs here: the
 * ctest timeout fails the test. */
static int uring_poll(uring *u, int fd) {
  unsigned tail = *u->sq_tail, idx = tail & *u->sq_mask;
  struct io_uring_sqe *sqe = &u->sqes[idx];
  memset(sqe, 0, sizeof *sqe);
  sqe->opcode = IORING_OP_POLL_ADD;
  sqe->fd = fd;
  sqe->poll_events = POLLIN;
  sqe->user_data = 1;
  u->sq_array[idx] = idx;
  __atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE); /* the kernel reads it */
  for (;;) {
    long r = syscall(__NR_io_uring_enter, u->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    if (r >= 0 || errno != EINTR) break;
  }
  unsigned head = *u->cq_head;
  if (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE)) return -EIO;
  int res = u->cqes[head & *u->cq_mask].res;
  __atomic_store_n(u->cq_head, head + 1, __ATOMIC_RELEASE);
  return res;
}

/* An io_uring loop drains futures completing on the pool's threads. */
static void test_io_uring(void) {
  uring u;
  int rc = uring_init(&u);
  if (rc != 0) {
    printf("io_uring: not available here (%s): skipped\n", strerror(-rc));
    return;
  }
  cf_executor *ex = cf_test_new_executor(process_kind, 2);
  cf_completion_queue *q = NULL;
  assert_rc(cf_completion_queue_new(&q), 0);
  size_t total = cf_test_scale(3000), delivered = 0;
  unsigned char *seen = calloc(total, 1);
  for (size_t i = 0; i < total; i++) {
    int64_t x = (int64_t)i;
    cf_future *f;
    assert_rc(cf_submit(ex, work_task, &x, sizeof x, &f), 0);
    expect_rc(cf_completion_queue_add(q, f, (void *)(intptr_t)i), 0);
    cf_future_release(f);
    if (i % 64 != 63 && i + 1 < total) continue;
    /* every 64 submits, take what is done without waiting */
    cf_completion items[32];
    int k;
    while ((k = cf_completion_queue_drain(q, items, 32)) > 0) {
      for (int j = 0; j < k; j++) {
        seen[(intptr_t)items[j].tag]++;
        cf_future_release(items[j].future);
      }
      delivered += (size_t)k;
    }
  }
  while (delivered < total) {
    int res = uring_poll(&u, cf_completion_queue_fd(q));
    if (res < 0) {
      cf_test_fail(__FILE__, __LINE__, "uring_poll", "%s", strerror(-res));
      break;
    }
    expect_true(res & POLLIN);
    cf_completion items[32];
    int k;
    while ((k = cf_completion_queue_drain(q, items, 32)) > 0) {
      for (int j = 0; j < k; j++) {
        intptr_t tag = (intptr_t)items[j].tag;
        int64_t v = -1;
        expect_rc(cf_future_result(items[j].future, &v, sizeof v, NULL, 0), 0);
        expect_eq(v, oracle(tag));
        seen[tag]++;
        cf_future_release(items[j].future);
      }
      delivered += (size_t)k;
    }
  }
  size_t once = 0;
  for (size_t i = 0; i < total; i++) once += seen[i] == 1;
  expect_eq(once, total);
  free(seen);
  cf_completion_queue_free(q);
  uring_free(&u);
  expect_rc(cf_executor_destroy(ex), 0);
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && strcmp(argv[1], "process") == 0;
  CF_RUN(test_basic);
  CF_RUN(test_small_drains);
  CF_RUN(test_free_pending);
  CF_RUN(test_race);
  CF_RUN(test_io_uring);
  return cf_test_done(process_kind ? "test_completion_process" : "test_completion_thread");
}
