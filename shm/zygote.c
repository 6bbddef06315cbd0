/*
 * zygote.c — the zygote process: forks workers on request, reaps them and
 * reports their deaths, signals them on request.
 *
 * DESIGN
 * Forked by the supervisor thread at pool creation, the zygote is
 * single-threaded for its whole life, so forking it is always safe (the
 * parent is multi-threaded; fork() there is done once). It serves the
 * parent over a SOCK_SEQPACKET socket (cf__zmsg) and learns of its
 * children's deaths through a signalfd for SIGCHLD; each reaped child is
 * reported as DIED(idx, pid, wait status). Messages are handled in order, so
 * a KILL the parent sent before it learnt of a death and asked for a
 * replacement is handled before that SPAWN: a KILL always names the worker
 * it was meant for, and the zygote only signals children it has not reaped
 * (their pid cannot have been reused).
 *
 * The zygote dies with the supervisor thread (PR_SET_PDEATHSIG) and its
 * workers die with it. On EXIT or end of file it kills its workers, reaps
 * them and exits with _exit (no atexit handlers of the parent program).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"

int cf__zsend(int sock, int type, int idx, int pid, int arg) {
  cf__zmsg m = {type, idx, pid, arg};
  for (;;) {
    ssize_t n = send(sock, &m, sizeof m, MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof m) return 0;
    if (n < 0 && errno == EINTR) continue;
    return CF_ESYS;
  }
}

static void reap(cf__pool *p, pid_t *child, int sock, bool report) {
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) return;
    for (unsigned i = 0; i < p->nworkers; i++) {
      if (child[i] == pid) {
        child[i] = 0;
        if (report) cf__zsend(sock, CF__Z_DIED, (int)i, pid, st);
        break;
      }
    }
  }
}

__attribute__((noreturn)) static void finish(cf__pool *p, pid_t *child) {
  for (unsigned i = 0; i < p->nworkers; i++)
    if (child[i] > 0) kill(child[i], SIGKILL);
  for (unsigned i = 0; i < p->nworkers; i++) {
    if (child[i] > 0) {
      while (waitpid(child[i], NULL, 0) < 0 && errno == EINTR) {
      }
    }
  }
  _exit(0);
}

void cf__zygote_main(cf__pool *p, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(0);
  cf__pp_in_child = true;
  prctl(PR_SET_NAME, "cf-zygote", 0, 0, 0);
  int sock = p->zsock;
  close(p->sock);
  cf__pp_forget_others(p);
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
      finish(p, child);
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      }
      reap(p, child, sock, true);
    }
    if (fds[0].revents & POLLIN) {
      cf__zmsg m;
      ssize_t r = recv(sock, &m, sizeof m, 0);
      if (r == 0) finish(p, child);
      if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        finish(p, child);
      }
      if (r != (ssize_t)sizeof m) continue;
      if (m.type == CF__Z_EXIT) finish(p, child);
      if (m.idx < 0 || (unsigned)m.idx >= p->nworkers) continue;
      if (m.type == CF__Z_SPAWN) {
        if (child[m.idx] > 0) continue; /* still alive: the parent is confused */
        pid_t pid = fork();
        if (pid == 0) {
          close(sfd);
          close(sock);
          cf__worker_main(p, (unsigned)m.idx, me);
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
      finish(p, child);
    }
  }
}
