/*
 * forker.c — the parent's side of the zygote (forker.h).
 */
#include "forker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "idle.h"
#include "recovery.h"
#include "settle.h"
#include "supervisor.h"
#include "sys.h"
#include "zygote.h"

#define SPAWN_TRIES 100             /* failed forks in a row, no worker left: broken */
#define ZYGOTE_TRIES 20             /* zygotes in a row that died before making a worker: broken */
#define BACKOFF_MIN_NS 1000000LL    /* 1 ms, doubling ... */
#define BACKOFF_MAX_NS 1000000000LL /* ... up to 1 s */
#define FORKER_PATIENCE_NS 1000000000LL /* a stopped zygote; a zygote that ignores EXIT */

static int64_t backoff(unsigned fails) {
  if (fails == 0) return 0;
  int64_t d = BACKOFF_MIN_NS << (fails - 1 < 10 ? fails - 1 : 10);
  return d < BACKOFF_MAX_NS ? d : BACKOFF_MAX_NS;
}

/* ---- messages ---- */

void cf__forker_send(cf__pool *p, int type, int idx, int pid, int arg) {
  cf__assert(cf__pp_locked(p));
  if (!p->forker_up) return; /* no zygote: its workers are dead, a new one spawns anew */
  cf__zmsg m = {type, idx, pid, arg};
  if (p->nout == 0 && cf__zsend_nowait(p->cfg.sock, &m) != CF_EAGAIN) return; /* sent, or gone */
  if (p->nout == p->out_cap) {
    size_t cap = p->out_cap ? 2 * p->out_cap : 16;
    cf__zmsg *n = realloc(p->out, cap * sizeof *n);
    if (!n) {
      /* A lost KILL leaves a failed task's worker running (its slot stays
       * quarantined until it ends); a lost SPAWN is asked again. */
      if (type == CF__Z_SPAWN && idx >= 0 && (unsigned)idx < p->cfg.nworkers) {
        cf__pworker *w = &p->w[idx];
        w->spawning = false;
        p->nspawning--;
        w->spawn_at = cf__now_ns() + BACKOFF_MIN_NS;
      }
      return;
    }
    p->out = n;
    p->out_cap = cap;
  }
  p->out[p->nout++] = m;
  if (!cf__sv_is_current(p)) cf__sv_kick(p->cfg.evfd); /* it polls for POLLOUT */
}

/* mu held: send what the outbox holds, in order, until the socket is full. */
static void flush(cf__pool *p) {
  size_t i = 0;
  while (i < p->nout) {
    int r = cf__zsend_nowait(p->cfg.sock, &p->out[i]);
    if (r == CF_EAGAIN) break;
    i++; /* sent, or the zygote is gone (its death is seen through the pidfd) */
  }
  memmove(p->out, p->out + i, (p->nout - i) * sizeof *p->out);
  p->nout -= i;
}

void cf__forker_spawn_locked(cf__pool *p, unsigned idx, int64_t at) {
  cf__assert(cf__pp_locked(p));
  cf__pworker *w = &p->w[idx];
  cf__assert(!w->alive && !w->spawning);
  int64_t now = cf__now_ns();
  if (at > now || !p->forker_up) {
    w->spawn_at = at > now ? at : now;
    return;
  }
  w->spawn_at = 0;
  w->spawning = true;
  w->spawned_at = now;
  w->pid = 0;
  w->inc = ++p->inc_seq;
  if (w->inc == 0) w->inc = ++p->inc_seq; /* 0 means "none" in a quarantine */
  p->nspawning++;
  /* The new process's record starts clean (the last one is dead). */
  cf__worker_rec *rec = &p->cfg.seg.workers[idx];
  atomic_store(&rec->pid, 0);
  atomic_store(&rec->started, 0);
  atomic_store(&rec->taking, CF__HINT_NONE);
  atomic_store(&rec->cur_slot, CF__HINT_NONE);
  atomic_store(&rec->asleep, 0);
  cf__forker_send(p, CF__Z_SPAWN, (int)idx, 0, 0);
}

/* ---- start ---- */

static int pidfd_of(pid_t pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  return -1;
#endif
}

int cf__forker_start(cf__pool *p) {
  cf__assert(cf__sv_is_current(p));
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return CF_ESYS;
  cf__pp_lock(p);
  p->cfg.sock = sv[0];
  atomic_store(&p->cfg.zsock, sv[1]);
  cf__pp_unlock(p);
  pid_t z = -1;
  int zerr = cf__zygote_start(&p->cfg, &z); /* fork or exec: zygote.h */
  /* Store -1 before the close: see config.h. */
  close(atomic_exchange(&p->cfg.zsock, -1));
  if (zerr) {
    cf__pp_lock(p);
    p->cfg.sock = -1;
    cf__pp_unlock(p);
    close(sv[0]);
    return zerr;
  }
  int pfd = pidfd_of(z); /* our unreaped child: the pid cannot be reused */
  if (pfd >= 0) (void)fcntl(pfd, F_SETFD, FD_CLOEXEC);
  cf__pp_lock(p);
  p->zygote_pid = z;
  p->zpidfd = pfd;
  p->forker_up = true;
  p->zspawned = false;
  p->zstart_at = 0;
  p->zstopped_since = 0;
  p->nout = 0;
  for (unsigned i = 0; i < p->cfg.nworkers; i++) {
    cf__pworker *w = &p->w[i];
    if (!w->alive && !w->spawning && !p->stopping && !p->broken)
      cf__forker_spawn_locked(p, i, w->spawn_at); /* a backoff still holds */
  }
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  return 0;
}

/* ---- death ---- */

/* The zygote died or must go: kill it to be sure, reap it, and let every
 * worker it had go (recovery.c); then start another unless stopping. */
static void forker_dead(cf__pool *p) {
  pid_t z = p->zygote_pid;
  if (z > 0) {
    kill(z, SIGKILL); /* it may only have closed its socket */
    while (waitpid(z, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  cf__pp_lock(p);
  int sock = p->cfg.sock;
  p->cfg.sock = -1;
  p->forker_up = false;
  p->zygote_pid = 0;
  p->nout = 0; /* messages for the dead one are moot */
  int pfd = p->zpidfd;
  p->zpidfd = -1;
  cf__pp_unlock(p);
  if (sock >= 0) close(sock);
  if (pfd >= 0) close(pfd);
  cf__pp_on_forker_death(p);
  int64_t now = cf__now_ns();
  bool newly_broken = false;
  cf__pp_lock(p);
  if (p->stopping) {
    p->stopped = true;
  } else if (!p->broken) {
    /* young: it never made a worker (a zygote killed after it did its work
     * is replaced at once, however often) */
    p->zfails = p->zspawned ? 0 : p->zfails + 1;
    if (p->cfg.start == CF_START_FORK) {
      /* Fork mode: the zygote was the host's copy at creation, and no copy
       * of that moment is left; a new fork of the host would copy it as it
       * is now (its threads' locks held, memory changed, code unloaded).
       * The pool breaks instead (forker.h). */
      newly_broken = cf__pp_break_locked(p);
    } else if (p->zfails > ZYGOTE_TRIES) {
      newly_broken = cf__pp_break_locked(p);
    } else {
      p->zstart_at = now + backoff(p->zfails);
    }
  }
  if (p->broken && !p->stopping) p->stopped = true; /* nothing will run again */
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  if (newly_broken) cf__pp_fail_pending(p, CF_EBROKEN);
}

/* ---- messages from the zygote ---- */

static void on_spawn_reply(cf__pool *p, const cf__zmsg *m) {
  bool newly_broken = false;
  cf__pp_lock(p);
  cf__pworker *w = &p->w[m->idx];
  if (!w->spawning) {
    cf__pp_unlock(p);
    return;
  }
  w->spawning = false;
  p->nspawning--;
  if (m->type == CF__Z_SPAWNED) {
    w->pid = m->pid;
    w->alive = true;
    p->nalive++;
    p->zspawned = true;
  } else if (++w->fails < SPAWN_TRIES || p->nalive || p->nspawning) {
    /* the fork failed (EAGAIN, ENOMEM): ask again a little later */
    if (!p->stopping && !p->broken)
      cf__forker_spawn_locked(p, m->idx, cf__now_ns() + backoff(w->fails));
  } else {
    newly_broken = cf__pp_break_locked(p); /* no worker left, none can be made */
  }
  pthread_cond_broadcast(&p->cv);
  cf__pp_unlock(p);
  if (newly_broken) cf__pp_fail_pending(p, CF_EBROKEN);
}

/* Read every message the zygote sent: false once it is gone. */
static bool read_messages(cf__pool *p) {
  for (;;) {
    cf__zmsg m;
    ssize_t r = recv(p->cfg.sock, &m, sizeof m, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (r <= 0) return false; /* end of file, ECONNRESET: gone */
    if (r != (ssize_t)sizeof m || m.idx < 0 || (unsigned)m.idx >= p->cfg.nworkers) continue;
    if (m.type == CF__Z_SPAWNED || m.type == CF__Z_SPAWN_FAILED) {
      on_spawn_reply(p, &m);
    } else if (m.type == CF__Z_DIED) {
      cf__pp_on_death(p, (unsigned)m.idx, m.pid, m.arg);
    }
  }
}

void cf__forker_events(cf__pool *p, short sock_revents, short pidfd_revents) {
  cf__assert(cf__sv_is_current(p));
  if (!p->forker_up) return;
  bool gone = pidfd_revents != 0;
  /* Messages first: a zygote that died after reporting deaths has them
   * queued still. */
  if (sock_revents & (POLLIN | POLLHUP | POLLERR)) gone |= !read_messages(p);
  if (!gone && (sock_revents & POLLOUT)) {
    cf__pp_lock(p);
    flush(p);
    cf__pp_unlock(p);
  }
  if (gone) forker_dead(p);
}

/* ---- timers ---- */

/* Is process pid stopped (SIGSTOP, a tracer)? From /proc; false if unknown. */
static bool is_stopped(pid_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  char *e = strrchr(buf, ')'); /* "pid (comm) S ..." */
  return e && e[1] == ' ' && (e[2] == 'T' || e[2] == 't');
}

void cf__forker_watch(cf__pool *p, int64_t now) {
  cf__assert(cf__sv_is_current(p));
  cf__pp_lock(p);
  pid_t z = p->forker_up && !p->stopping ? p->zygote_pid : 0;
  bool busy = p->slots.nfree < p->slots.n || p->nspawning || p->nout;
  cf__pp_unlock(p);
  if (z <= 0 || !busy || !is_stopped(z)) {
    p->zstopped_since = 0;
  } else if (p->zstopped_since == 0) {
    p->zstopped_since = now;
  } else if (now - p->zstopped_since > FORKER_PATIENCE_NS) {
    kill(z, SIGKILL); /* its pidfd reports the death */
    p->zstopped_since = 0;
  }
}

int64_t cf__forker_next_timer(cf__pool *p) {
  cf__assert(cf__pp_locked(p));
  int64_t t = -1;
#define AT(x)                                \
  do {                                       \
    int64_t v_ = (x);                        \
    if (v_ > 0 && (t < 0 || v_ < t)) t = v_; \
  } while (0)
  if (!p->stopping) {
    if (!p->forker_up && !p->broken) AT(p->zstart_at);
    for (unsigned i = 0; i < p->cfg.nworkers; i++) AT(p->w[i].spawn_at);
  } else if (!p->stopped) {
    AT(p->term_until);
    AT(p->exit_until);
    if (!p->exit_sent) AT(cf__now_ns()); /* the stop sequence has a step to take */
  }
#undef AT
  return t;
}

/* The stop sequence (forker.h DESIGN); mu held. */
static void stop_step(cf__pool *p, int64_t now) {
  if (!p->forker_up) {
    if (!p->stopped) {
      p->stopped = true;
      pthread_cond_broadcast(&p->cv);
    }
    return;
  }
  if (p->stop_signal == SIGTERM && !p->term_sent) {
    p->term_sent = true;
    p->term_until = now + (int64_t)CF_TERMINATE_GRACE_MS * 1000000;
    for (unsigned i = 0; i < p->cfg.nworkers; i++)
      if (p->w[i].alive || p->w[i].spawning)
        cf__forker_send(p, CF__Z_KILL, (int)i, p->w[i].pid, SIGTERM);
  }
  if (!p->exit_sent && (p->stop_signal != SIGTERM || (p->nalive == 0 && p->nspawning == 0) ||
                        now >= p->term_until)) {
    p->exit_sent = true;
    p->exit_until = now + FORKER_PATIENCE_NS;
    cf__forker_send(p, CF__Z_EXIT, 0, 0, 0);
  }
  if (p->exit_sent && now >= p->exit_until && p->zygote_pid > 0) {
    /* it does not exit (stopped?): its death takes the workers along */
    kill(p->zygote_pid, SIGCONT);
    kill(p->zygote_pid, SIGKILL);
    p->exit_until = 0;
  }
}

void cf__forker_tick(cf__pool *p, int64_t now) {
  cf__assert(cf__sv_is_current(p));
  cf__pp_lock(p);
  if (p->stopping) {
    stop_step(p, now);
    cf__pp_unlock(p);
    return;
  }
  bool start = !p->forker_up && !p->broken && p->zstart_at > 0 && now >= p->zstart_at;
  if (p->forker_up) {
    for (unsigned i = 0; i < p->cfg.nworkers; i++) {
      cf__pworker *w = &p->w[i];
      if (w->spawn_at > 0 && now >= w->spawn_at && !w->alive && !w->spawning && !p->broken)
        cf__forker_spawn_locked(p, i, 0);
    }
  }
  cf__pp_unlock(p);
  if (start && cf__forker_start(p) != 0) {
    bool newly_broken = false;
    cf__pp_lock(p);
    if (++p->zfails > ZYGOTE_TRIES)
      newly_broken = cf__pp_break_locked(p);
    else
      p->zstart_at = now + backoff(p->zfails);
    if (p->broken) p->stopped = true;
    pthread_cond_broadcast(&p->cv);
    cf__pp_unlock(p);
    if (newly_broken) cf__pp_fail_pending(p, CF_EBROKEN);
  }
}
