/*
 * zygote.c — the zygote process: forks workers on request, reaps them and
 * reports their deaths, signals them on request (protocol.h).
 *
 * DESIGN
 * Forked by the supervisor thread at pool creation, the zygote is
 * single-threaded for its whole life, so forking it is always safe (the
 * parent is multi-threaded; fork() there is done once). It serves the
 * parent over the zygote socket and learns of its children's deaths
 * through a signalfd for SIGCHLD; each reaped child is reported as
 * DIED(idx, pid, wait status). It only signals children it has not reaped.
 *
 * The zygote dies with the supervisor thread (PR_SET_PDEATHSIG) and its
 * workers die with it. On EXIT or end of file it kills its workers, reaps
 * them and exits with _exit (no atexit handlers of the parent program).
 */
#include "zygote.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "future.h"
#include "protocol.h"
#include "registry.h"
#include "worker.h"

static void reap(const cf__pool_cfg *c, pid_t *child, int sock, bool report) {
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) return;
    for (unsigned i = 0; i < c->nworkers; i++) {
      if (child[i] == pid) {
        child[i] = 0;
        if (report) cf__zsend(sock, CF__Z_DIED, (int)i, pid, st);
        break;
      }
    }
  }
}

__attribute__((noreturn)) static void finish(const cf__pool_cfg *c, pid_t *child) {
  for (unsigned i = 0; i < c->nworkers; i++)
    if (child[i] > 0) kill(child[i], SIGKILL);
  for (unsigned i = 0; i < c->nworkers; i++) {
    if (child[i] > 0) {
      while (waitpid(child[i], NULL, 0) < 0 && errno == EINTR) {
      }
    }
  }
  _exit(0);
}

void cf__zygote_main(const cf__pool_cfg *c, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(0);
  cf__registry_enter_child(c);
  prctl(PR_SET_NAME, "cf-zygote", 0, 0, 0);
  int sock = atomic_load(&c->zsock);
  close(c->sock);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGCHLD, SIG_DFL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) _exit(1);
  pid_t child[CF__MAX_WORKERS];
  memset(child, 0, sizeof child);
  pid_t me = getpid();
  for (;;) {
    struct pollfd fds[2] = {{.fd = sock, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      finish(c, child);
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      }
      reap(c, child, sock, true);
    }
    if (fds[0].revents & POLLIN) {
      cf__zmsg m;
      ssize_t r = recv(sock, &m, sizeof m, 0);
      if (r == 0) finish(c, child);
      if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        finish(c, child);
      }
      if (r != (ssize_t)sizeof m) continue;
      if (m.type == CF__Z_EXIT) finish(c, child);
      if (m.idx < 0 || (unsigned)m.idx >= c->nworkers) continue;
      if (m.type == CF__Z_SPAWN) {
        if (child[m.idx] > 0) continue; /* still alive: the parent is confused */
        pid_t pid = fork();
        if (pid == 0) {
          close(sfd);
          close(sock);
          cf__worker_main(c, (unsigned)m.idx, me);
        }
        if (pid < 0) {
          cf__zsend(sock, CF__Z_SPAWN_FAILED, m.idx, 0, errno);
        } else {
          child[m.idx] = pid;
          cf__zsend(sock, CF__Z_SPAWNED, m.idx, pid, 0);
        }
      } else if (m.type == CF__Z_KILL) {
        pid_t pid = child[m.idx];
        if (pid > 0 && (m.pid == 0 || m.pid == pid)) kill(pid, m.arg);
      }
    } else if (fds[0].revents & (POLLHUP | POLLERR)) {
      finish(c, child);
    }
  }
}
