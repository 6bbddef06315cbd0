/*
 * zygote.c — the zygote process: forks workers on request, reaps them and
 * reports their deaths, signals them on request (protocol.h), and takes
 * every process a task started down with its worker.
 *
 * DESIGN
 * Started by the supervisor thread at pool creation (cf__zygote_start):
 * forked from the parent (CF_START_FORK), or made by exec'ing the program
 * file (CF_START_EXEC, exec.c), which hands the zygote nothing of the host
 * but the program's code. Either way the zygote is single-threaded for its
 * whole life, so forking it is always safe. It serves the parent over the
 * zygote socket and learns of its children's deaths through a signalfd for
 * SIGCHLD; each reaped worker is reported as DIED(idx, pid, wait status).
 * It only signals children it has not reaped.
 *
 * Process groups. The zygote and every worker lead a process group of
 * their own (both sides call setpgid, so it holds before the worker runs
 * anything): a key the terminal turns into SIGINT, SIGQUIT or SIGTSTP for
 * the host's foreground group reaches neither (they stay in the host's
 * session). What a task starts (fork, system, popen) is in its worker's
 * group unless it leaves it; the zygote is a child subreaper, so a task's
 * process whose parent dies is reparented to the zygote, not to init.
 *
 * Taking them down. When a worker dies, the zygote sees the zombie first
 * (waitid WNOWAIT), SIGKILLs its process group — the group id cannot have
 * been reused while its leader is an unreaped zombie — and then reaps it.
 * When the zygote finishes (EXIT, end of file on the socket, or SIGTERM,
 * which is its PR_SET_PDEATHSIG: the parent's death, kill -9 included), it
 * kills every worker and worker group, then every child it still has
 * (processes that left a worker's group and were reparented to it), and
 * reaps until it has no child; then it exits with _exit (no atexit handler
 * of the host runs here). A SIGKILL of the zygote itself skips that: its
 * workers die (their PR_SET_PDEATHSIG) but a task's processes are left to
 * init.
 *
 * Signals. The zygote runs with every signal blocked (it reads SIGCHLD and
 * the ones that end it from the signalfd) and sets SIGCHLD to SIG_DFL so
 * that it can reap; a worker gets back the disposition of SIGCHLD the
 * zygote found, and the host's signal mask (worker.c). Its own messages go
 * with MSG_NOSIGNAL: SIGPIPE is left as the host had it.
 */
#include "zygote.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"
#include "future.h"
#include "protocol.h"
#include "registry.h"
#include "worker.h"

int cf__zygote_start(cf__pool_cfg *c, pid_t *pid) {
  if (c->start == CF_START_EXEC) return cf__exec_zygote(c, pid);
  pid_t me = getpid();
  pid_t z = fork();
  if (z == 0) cf__zygote_main(c, me);
  if (z < 0) return CF_ESYS;
  (void)setpgid(z, z); /* and the zygote itself: whoever runs first */
  *pid = z;
  return 0;
}

/* SIGCHLD as the zygote found it: what its workers get back. */
static struct sigaction host_chld;

static int worker_index(const cf__pool_cfg *c, const pid_t *child, pid_t pid) {
  for (unsigned i = 0; i < c->nworkers; i++)
    if (child[i] == pid) return (int)i;
  return -1;
}

/* Reap every child that has exited: a worker after its process group is
 * killed (DESIGN), reported if `report`; any other child (a task's
 * process reparented here) silently. */
static void reap(const cf__pool_cfg *c, pid_t *child, int sock, bool report) {
  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      return; /* ECHILD */
    }
    pid_t pid = si.si_pid;
    if (pid == 0) return;
    int i = worker_index(c, child, pid);
    if (i >= 0) (void)kill(-pid, SIGKILL); /* still a zombie: the group is its */
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (i >= 0) {
      child[i] = 0;
      if (report) cf__zsend(sock, CF__Z_DIED, i, pid, st);
    }
  }
}

/* SIGKILL every child of this process (the list the kernel keeps in
 * /proc; nothing if it cannot be read). */
static void kill_children(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  long v = 0;
  bool in = false;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t k = 0; k < n; k++) {
      if (buf[k] >= '0' && buf[k] <= '9') {
        v = v * 10 + (buf[k] - '0');
        in = true;
      } else if (in) {
        (void)kill((pid_t)v, SIGKILL);
        v = 0;
        in = false;
      }
    }
  }
  if (in) (void)kill((pid_t)v, SIGKILL);
  close(fd);
}

__attribute__((noreturn)) static void finish(const cf__pool_cfg *c, pid_t *child) {
  for (unsigned i = 0; i < c->nworkers; i++) {
    if (child[i] > 0) {
      (void)kill(-child[i], SIGKILL); /* not reaped yet: the group is its */
      (void)kill(child[i], SIGKILL);
    }
  }
  /* Until no child is left: each round kills what is there now (a process
   * reparented here while we reap is killed in the next round). */
  for (;;) {
    kill_children();
    pid_t r = waitpid(-1, NULL, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break; /* ECHILD */
  }
  _exit(0);
}

void cf__zygote_main(const cf__pool_cfg *c, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0); /* read from the signalfd: finish() */
  if (getppid() != parent) _exit(0);
  (void)setpgid(0, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  cf__registry_enter_child(c);
  if (c->start == CF_START_FORK) cf__worker_ex = c->owner_ex; /* sys.h */
  prctl(PR_SET_NAME, "cf-zygote", 0, 0, 0);
  int sock = atomic_load(&c->zsock);
  if (c->sock >= 0) close(c->sock);     /* fork: the parent's end */
  if (c->seg.fd >= 0) close(c->seg.fd); /* fork: the mapping is inherited */
  sigaction(SIGCHLD, NULL, &host_chld);
  signal(SIGCHLD, SIG_DFL);
  sigset_t ours;
  sigemptyset(&ours);
  sigaddset(&ours, SIGCHLD);
  sigaddset(&ours, SIGTERM);
  sigaddset(&ours, SIGINT);
  sigaddset(&ours, SIGHUP);
  sigaddset(&ours, SIGQUIT);
  sigprocmask(SIG_BLOCK, &ours, NULL); /* all are blocked already; these for sure */
  int sfd = signalfd(-1, &ours, SFD_CLOEXEC | SFD_NONBLOCK);
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
      bool end = false;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) end |= si.ssi_signo != SIGCHLD;
      reap(c, child, sock, true);
      if (end) finish(c, child);
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
          cf__worker_main(c, (unsigned)m.idx, me, &host_chld);
        }
        if (pid < 0) {
          cf__zsend(sock, CF__Z_SPAWN_FAILED, m.idx, 0, errno);
        } else {
          (void)setpgid(pid, pid); /* and the worker itself: whoever runs first */
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
