/*
 * epoll_service.c — an epoll TCP service that offloads its CPU work to a
 * pool and answers each request when its future completes.
 *
 *     ./epoll_service [threads|processes] [connections] [requests]
 *
 * The pattern: one event-loop thread owns every socket. For each request it
 * submits a task and adds the future to a completion queue
 * (cf_completion_queue_add, with the request as the tag). The queue's fd is
 * in the same epoll set as the sockets: it becomes readable when futures
 * complete, and cf_completion_queue_drain hands them back on the loop
 * thread, where the answer is written. No locks, no extra wake-up pipe, no
 * polling: the pool's threads (or a process pool's supervisor) only push
 * onto the queue.
 *
 * The protocol is one decimal number per line; the answer is "n count\n",
 * where count is the number of primes below n, in completion order (each
 * answer names its request). To be a self-contained test, the program
 * listens on 127.0.0.1 with an ephemeral port, runs its own clients in
 * threads, checks every answer, and exits 0 when all are right.
 */
#define _GNU_SOURCE /* accept4 */
#include <cfutures.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the CPU work (runs in a worker thread or a worker process) ---------- */

static uint32_t primes_below(uint32_t n) {
  uint32_t count = 0;
  for (uint32_t k = 2; k < n; k++) {
    bool prime = true;
    for (uint32_t d = 2; d * d <= k; d++) {
      if (k % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime;
  }
  return count;
}

/* A task takes its argument and returns its result by value (bytes). */
static void primes_task(cf_call *call) {
  uint32_t n;
  memcpy(&n, cf_call_arg(call, NULL), sizeof n);
  uint32_t count = primes_below(n);
  cf_call_return(call, &count, sizeof count);
}

/* ---- the server (the event-loop thread) ----------------------------------- */

typedef struct conn {
  int fd;
  int refs;      /* the socket + one per request in flight (loop thread only) */
  bool closed;   /* the peer closed (EOF) */
  char in[4096]; /* a partial line */
  size_t in_len;
  char *out; /* answers not yet written */
  size_t out_len, out_cap;
  bool want_out; /* EPOLLOUT is armed */
} conn;

typedef struct request {
  conn *c;
  uint32_t n;
} request;

typedef struct server {
  int ep, listener, stop_fd;
  cf_executor *ex;
  cf_completion_queue *q;
  size_t answered;
} server;

static void conn_unref(server *s, conn *c) {
  if (--c->refs > 0) return;
  epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->out);
  free(c);
}

static void conn_flush(server *s, conn *c) {
  while (c->out_len > 0) {
    ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) c->out_len = 0; /* peer gone: drop the answers */
      break;
    }
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (size_t)w;
  }
  bool want = c->out_len > 0;
  if (want != c->want_out && !c->closed) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
  }
}

static void conn_answer(server *s, conn *c, const char *text, size_t len) {
  if (c->out_len + len > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
    while (cap < c->out_len + len) cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p) return;
    c->out = p;
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, text, len);
  c->out_len += len;
  conn_flush(s, c);
}

/* One request line: offload it, the answer comes from the completion queue. */
static void offload(server *s, conn *c, uint32_t n) {
  request *r = malloc(sizeof *r);
  cf_future *f;
  if (!r || cf_submit(s->ex, primes_task, &n, sizeof n, &f) != 0) {
    free(r);
    conn_answer(s, c, "error\n", 6);
    return;
  }
  *r = (request){c, n};
  c->refs++;
  cf_completion_queue_add(s->q, f, r); /* the queue keeps its own handle */
  cf_future_release(f);
}

static void conn_readable(server *s, conn *c) {
  for (;;) {
    ssize_t got = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) return;
    if (got <= 0) {
      /* EOF or error. Answers in flight still hold c and are sent as they
       * come, without waiting for EPOLLOUT (this client reads all its
       * answers before it closes, so nothing is left by then). */
      if (!c->closed) {
        c->closed = true;
        epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
        shutdown(c->fd, SHUT_RD);
        conn_unref(s, c);
      }
      return;
    }
    c->in_len += (size_t)got;
    char *line = c->in, *nl;
    while ((nl = memchr(line, '\n', c->in_len - (size_t)(line - c->in)))) {
      *nl = 0;
      offload(s, c, (uint32_t)strtoul(line, NULL, 10));
      line = nl + 1;
    }
    c->in_len -= (size_t)(line - c->in);
    memmove(c->in, line, c->in_len);
  }
}

/* The completion fd is readable: answer every request that is done. */
static void completions_ready(server *s) {
  cf_completion done[64];
  int n;
  while ((n = cf_completion_queue_drain(s->q, done, 64)) > 0) {
    for (int i = 0; i < n; i++) {
      request *r = done[i].tag;
      uint32_t count = 0;
      char line[64];
      int len;
      if (cf_future_result(done[i].future, &count, sizeof count, NULL, 0) == 0)
        len = snprintf(line, sizeof line, "%u %u\n", r->n, count);
      else
        len = snprintf(line, sizeof line, "%u error\n", r->n);
      cf_future_release(done[i].future);
      conn_answer(s, r->c, line, (size_t)len);
      conn_unref(s, r->c);
      free(r);
      s->answered++;
    }
  }
}

static void accept_all(server *s) {
  for (;;) {
    int fd = accept4(s->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN: all taken */
    conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->refs = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
  }
}

static void serve(server *s) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->listener};
  epoll_ctl(s->ep, EPOLL_CTL_ADD, s->listener, &ev);
  ev.data.ptr = s->q; /* the completion queue: just another fd */
  epoll_ctl(s->ep, EPOLL_CTL_ADD, cf_completion_queue_fd(s->q), &ev);
  ev.data.ptr = &s->stop_fd;
  epoll_ctl(s->ep, EPOLL_CTL_ADD, s->stop_fd, &ev);
  for (;;) {
    struct epoll_event evs[32];
    int n = epoll_wait(s->ep, evs, 32, -1);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &s->listener) {
        accept_all(s);
      } else if (p == s->q) {
        completions_ready(s);
      } else if (p == &s->stop_fd) {
        return; /* the clients are done */
      } else {
        conn *c = p;
        if (evs[i].events & EPOLLOUT) conn_flush(s, c);
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_readable(s, c);
      }
    }
  }
}

/* ---- the clients (threads of this test) ------------------------------------ */

typedef struct client {
  uint16_t port;
  unsigned id, requests;
  unsigned ok;
} client;

static uint32_t request_value(unsigned id, unsigned i) {
  return 1000 + (id * 7919 + i * 104729) % 20000;
}

static void *client_main(void *arg) {
  client *cl = arg;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(cl->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return NULL;
  /* send every request at once (pipelined), then read the answers */
  size_t cap = (size_t)cl->requests * 12 + 1, len = 0;
  char *req = malloc(cap);
  for (unsigned i = 0; i < cl->requests; i++)
    len += (size_t)snprintf(req + len, cap - len, "%u\n", request_value(cl->id, i));
  for (size_t off = 0; off < len;) {
    ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
    if (w <= 0) break;
    off += (size_t)w;
  }
  free(req);
  char buf[8192];
  size_t have = 0;
  unsigned answers = 0;
  while (answers < cl->requests) {
    ssize_t got = recv(fd, buf + have, sizeof buf - have, 0);
    if (got <= 0) break;
    have += (size_t)got;
    char *line = buf, *nl;
    while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
      *nl = 0;
      unsigned n = 0, count = 0;
      if (sscanf(line, "%u %u", &n, &count) == 2 && count == primes_below(n)) cl->ok++;
      answers++;
      line = nl + 1;
    }
    have -= (size_t)(line - buf);
    memmove(buf, line, have);
  }
  close(fd);
  return NULL;
}

typedef struct stopper {
  pthread_t *clients;
  unsigned n;
  int stop_fd;
} stopper;

static void *stopper_main(void *arg) {
  stopper *st = arg;
  for (unsigned i = 0; i < st->n; i++) pthread_join(st->clients[i], NULL);
  uint64_t one = 1;
  if (write(st->stop_fd, &one, sizeof one) < 0) perror("stop");
  return NULL;
}

int main(int argc, char **argv) {
  bool processes = argc > 1 && strcmp(argv[1], "processes") == 0;
  unsigned nclients = argc > 2 ? (unsigned)atoi(argv[2]) : 4;
  unsigned requests = argc > 3 ? (unsigned)atoi(argv[3]) : 300;

  server s = {0};
  cf_options o;
  cf_options_init(&o);
  o.workers = 2;
  int rc = processes ? cf_process_pool_new(&o, &s.ex) : cf_thread_pool_new(&o, &s.ex);
  if (rc != 0 || cf_completion_queue_new(&s.q) != 0) {
    fprintf(stderr, "pool: %s\n", cf_strerror(rc));
    return 1;
  }
  s.ep = epoll_create1(EPOLL_CLOEXEC);
  s.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  s.listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0}; /* an ephemeral port */
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  if (s.ep < 0 || s.stop_fd < 0 || s.listener < 0 ||
      bind(s.listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(s.listener, 64) != 0 ||
      getsockname(s.listener, (struct sockaddr *)&a, &alen) != 0) {
    perror("listen");
    return 1;
  }

  /* The clients run in threads; a stopper joins them and stops the loop. */
  client *cl = calloc(nclients, sizeof *cl);
  stopper st = {calloc(nclients, sizeof(pthread_t)), nclients, s.stop_fd};
  for (unsigned i = 0; i < nclients; i++) {
    cl[i] = (client){ntohs(a.sin_port), i, requests, 0};
    pthread_create(&st.clients[i], NULL, client_main, &cl[i]);
  }
  pthread_t stop_thread;
  pthread_create(&stop_thread, NULL, stopper_main, &st);

  serve(&s);

  pthread_join(stop_thread, NULL);
  unsigned ok = 0;
  for (unsigned i = 0; i < nclients; i++) ok += cl[i].ok;
  printf("%s: %zu requests answered, %u of %u right\n", processes ? "processes" : "threads",
         s.answered, ok, nclients * requests);
  cf_completion_queue_free(s.q);
  cf_executor_destroy(s.ex);
  close(s.listener);
  close(s.stop_fd);
  close(s.ep);
  free(st.clients);
  free(cl);
  return ok == nclients * requests ? 0 : 1;
}
