/*
 * uv_queue.c — cfutures in a libuv program: the equivalent of
 * uv_queue_work(), with the work on a cfutures pool (threads or processes).
 *
 *     ./uv_queue [threads|processes] [jobs]
 *
 * uv_queue_work(loop, req, work_cb, after_cb) runs work_cb on libuv's
 * thread pool and after_cb on the loop thread. Here, cf_uv_queue_work()
 * submits a task to a cfutures executor and adds its future to a completion
 * queue; one uv_poll_t watches the queue's fd, and its callback drains the
 * completed futures and calls each request's `after` on the loop thread.
 * Like uv_queue_work, pending work keeps the loop alive: the poll handle is
 * active only while something is in flight.
 *
 * It also adapts a libuv callback into a future: a uv_timer_t sets a
 * promise, and cf_future_then() runs a task on the pool once it fires; that
 * continuation comes back through the same completion queue.
 *
 * The program checks every result against a sequential run and exits 0.
 */
#include <cfutures.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the glue: one completion queue per loop -------------------------------- */

typedef struct cf_uv {
  uv_poll_t poll;
  cf_completion_queue *q;
  cf_executor *ex;
  size_t in_flight;
} cf_uv;

typedef struct cf_uv_work cf_uv_work;
typedef void (*cf_uv_after)(cf_uv_work *req, cf_future *f);
struct cf_uv_work {
  cf_uv_after after; /* on the loop thread, with the done future */
  void *data;
};

static void on_completions(uv_poll_t *h, int status, int events) {
  cf_uv *u = h->data;
  (void)status;
  (void)events;
  cf_completion done[32];
  int n;
  while ((n = cf_completion_queue_drain(u->q, done, 32)) > 0) {
    for (int i = 0; i < n; i++) {
      cf_uv_work *req = done[i].tag;
      u->in_flight--;
      req->after(req, done[i].future);
      cf_future_release(done[i].future);
    }
  }
  if (u->in_flight == 0) uv_poll_stop(&u->poll); /* let the loop end */
}

/* Deliver f to req->after on the loop thread once it is done. */
static int cf_uv_watch(cf_uv *u, cf_uv_work *req, cf_future *f) {
  int rc = cf_completion_queue_add(u->q, f, req);
  if (rc != 0) return rc;
  if (u->in_flight++ == 0) uv_poll_start(&u->poll, UV_READABLE, on_completions);
  return 0;
}

/* uv_queue_work's twin: fn(arg) on the executor, req->after on the loop. */
static int cf_uv_queue_work(cf_uv *u, cf_uv_work *req, cf_fn fn, const void *arg, size_t len) {
  cf_future *f;
  int rc = cf_submit(u->ex, fn, arg, len, &f);
  if (rc != 0) return rc;
  rc = cf_uv_watch(u, req, f);
  cf_future_release(f); /* the queue holds its own handle */
  return rc;
}

static int cf_uv_init(uv_loop_t *loop, cf_uv *u, cf_executor *ex) {
  memset(u, 0, sizeof *u);
  u->ex = ex;
  int rc = cf_completion_queue_new(&u->q);
  if (rc != 0) return rc;
  rc = uv_poll_init(loop, &u->poll, cf_completion_queue_fd(u->q));
  u->poll.data = u;
  return rc;
}

/* ---- the program ------------------------------------------------------------ */

static uint32_t primes_below(uint32_t n) {
  uint32_t count = 0;
  for (uint32_t k = 2; k < n; k++) {
    bool prime = true;
    for (uint32_t d = 2; d * d <= k; d++)
      if (k % d == 0) {
        prime = false;
        break;
      }
    count += prime;
  }
  return count;
}

static void primes_task(cf_call *call) {
  uint32_t n;
  memcpy(&n, cf_call_arg(call, NULL), sizeof n);
  uint32_t c = primes_below(n);
  cf_call_return(call, &c, sizeof c);
}

typedef struct job {
  cf_uv_work req;
  uint32_t n;
  uint32_t count; /* the answer, set by after */
  bool done;
} job;

typedef struct app {
  cf_uv uv;
  job *jobs;
  unsigned njobs, queued, finished, failed;
  uv_timer_t timer;
  cf_future *fired; /* a promise the timer sets */
  job timer_job;
} app;

static void queue_next(app *a);

static void job_after(cf_uv_work *req, cf_future *f) {
  job *j = (job *)req;
  app *a = j->req.data;
  if (cf_future_result(f, &j->count, sizeof j->count, NULL, 0) != 0) a->failed++;
  j->done = true;
  a->finished++;
  queue_next(a); /* like a libuv program queueing more work from after_cb */
}

/* Keep at most 8 jobs in flight. */
static void queue_next(app *a) {
  while (a->queued < a->njobs && a->queued - a->finished < 8) {
    job *j = &a->jobs[a->queued++];
    j->req = (cf_uv_work){job_after, a};
    if (cf_uv_queue_work(&a->uv, &j->req, primes_task, &j->n, sizeof j->n) != 0) a->failed++;
  }
}

/* The timer's callback completes a promise; the continuation registered on
 * it (cf_future_then) then runs primes_task on the pool. */
static void on_timer(uv_timer_t *t) {
  app *a = t->data;
  uint32_t n = a->timer_job.n;
  cf_promise_set_result(a->fired, &n, sizeof n);
  uv_close((uv_handle_t *)t, NULL);
}

int main(int argc, char **argv) {
  bool processes = argc > 1 && strcmp(argv[1], "processes") == 0;
  app a = {0};
  a.njobs = argc > 2 ? (unsigned)atoi(argv[2]) : 200;
  a.jobs = calloc(a.njobs, sizeof *a.jobs);
  for (unsigned i = 0; i < a.njobs; i++) a.jobs[i].n = 1000 + (i * 7919) % 30000;

  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  cf_executor *ex = NULL;
  int rc = processes ? cf_process_pool_new(&o, &ex) : cf_thread_pool_new(&o, &ex);
  if (rc != 0) {
    fprintf(stderr, "pool: %s\n", cf_strerror(rc));
    return 1;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  if (cf_uv_init(&loop, &a.uv, ex) != 0) return 1;

  /* a libuv timer adapted into a future, and a continuation on the pool */
  cf_future *cont = NULL;
  a.timer_job = (job){{job_after, &a}, 25000, 0, false};
  cf_promise_new(&a.fired);
  cf_future_then(a.fired, ex, primes_task, 0, &cont);
  cf_uv_watch(&a.uv, &a.timer_job.req, cont);
  cf_future_release(cont);
  uv_timer_init(&loop, &a.timer);
  a.timer.data = &a;
  uv_timer_start(&a.timer, on_timer, 5, 0);

  queue_next(&a);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns when nothing is in flight */

  unsigned ok = 0;
  for (unsigned i = 0; i < a.njobs; i++)
    ok += a.jobs[i].done && a.jobs[i].count == primes_below(a.jobs[i].n);
  bool timer_ok = a.timer_job.done && a.timer_job.count == primes_below(a.timer_job.n);
  printf("%s: %u of %u jobs right, timer continuation %s, %u failed\n",
         processes ? "processes" : "threads", ok, a.njobs, timer_ok ? "right" : "WRONG", a.failed);

  uv_close((uv_handle_t *)&a.uv.poll, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  cf_completion_queue_free(a.uv.q);
  cf_future_release(a.fired);
  cf_executor_destroy(ex);
  free(a.jobs);
  return ok == a.njobs && timer_ok && a.failed == 0 ? 0 : 1;
}
