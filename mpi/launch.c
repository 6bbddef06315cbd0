/*
 * launch.c — MPI and the job: initialization and the thread level, which
 * rank does what, the HELLO handshake, spawning, death of peers, and
 * finalization.
 *
 * DESIGN
 * Setup (the first cf_mpi_pool_new of the process, under job.mu):
 *   1. MPI_Init_thread(MPI_THREAD_MULTIPLE) unless the program initialized
 *      MPI (then MPI_Query_thread). Open MPI 4.1 and MPICH 4.0 grant
 *      MULTIPLE; rank 0 needs SERIALIZED (its progress threads make the MPI
 *      calls, one pool at a time below MULTIPLE).
 *   2. A process with a parent communicator was spawned by a pool: it
 *      serves it (cf__mpi_serve, never returns). In a job of N > 1 ranks,
 *      every rank dups MPI_COMM_WORLD (collective); ranks != 0 serve it.
 *      A job of one rank is in spawn mode: each pool spawns its own.
 *   3. Rank 0 takes its module table (fnref.h), sends HELLO with it to each
 *      worker and reads its WELCOME (pid, host key). A worker on the same
 *      host (same boot id and pid namespace) gets a pidfd: its death is seen
 *      without any MPI call (Open MPI 4.1 reports none: under
 *      --enable-recovery a send to a dead rank "succeeds" and a receive
 *      from it never completes; PMIx sends no event).
 *   4. An attribute on MPI_COMM_SELF whose delete callback runs first thing
 *      in MPI_Finalize (the standard's finalize hook) stops the live pools
 *      and sends EXIT to the worker ranks; if cfutures initialized MPI it
 *      also calls MPI_Finalize from an exit handler (bounded in time once
 *      a rank has died: see cf__mpi_finalize).
 * A worker rank that dies under default mpirun/mpiexec settings takes the
 * whole job down (the launcher kills every rank and reports the signal):
 * nothing hangs, but rank 0 cannot report anything. With Open MPI's
 * `mpirun --enable-recovery` the other ranks live on, and the pidfd tells
 * rank 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mpi_pool.h"
#include "sys.h"

cf__mpi_job cf__mpi_the_job = {.mu = PTHREAD_MUTEX_INITIALIZER, .comm = MPI_COMM_NULL};
#define job cf__mpi_the_job

void cf__mpi_pool_finalize(cf__mpi_pool *p); /* pool.c */

/* ---- peers ---- */

uint64_t cf__mpi_host_key(void) {
  uint64_t h = 1469598103934665603ull;
  char id[64] = {0};
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, id, sizeof id - 1);
    (void)n;
    close(fd);
  }
  for (const char *s = id; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) == 0) h ^= (uint64_t)st.st_ino * 0x9e3779b97f4a7c15ull;
  return h;
}

int cf__mpi_pidfd(int pid) {
  if (pid <= 0) return -1;
  long fd = syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : (int)fd;
}

bool cf__mpi_peer_dead(cf__mpi_peer *peer) {
  if (atomic_load_explicit(&peer->dead, memory_order_relaxed)) return true;
  if (peer->pidfd < 0) return false;
  struct pollfd pf = {.fd = peer->pidfd, .events = POLLIN};
  if (poll(&pf, 1, 0) > 0) {
    atomic_store(&peer->dead, true);
    return true;
  }
  return false;
}

int cf__mpi_wait(MPI_Request *req, const cf__mpi_peer *peer, MPI_Status *st) {
  /* The peer is sending or receiving right now (a rendezvous needs a few
   * turns of both sides): poll, yielding, for 2 ms before sleeping at all,
   * then sleep 20 us between looks. */
  int64_t start = cf__now_ns(), next_check = start + 1000000;
  for (;;) {
    int flag = 0;
    if (MPI_Test(req, &flag, st ? st : MPI_STATUS_IGNORE) != MPI_SUCCESS) return CF_ECRASHED;
    if (flag) return 0;
    int64_t now = cf__now_ns();
    if (peer && now >= next_check) {
      if (cf__mpi_peer_dead((cf__mpi_peer *)peer)) return CF_ECRASHED;
      next_check = now + 1000000;
    }
    if (now - start < 2000000) {
      sched_yield();
    } else {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
  }
}

int cf__mpi_hello(MPI_Comm comm, cf__mpi_peer *peers, unsigned n, const cf__modtab *mods) {
  size_t bytes = sizeof(cf__mpi_ctl) + mods->n * sizeof(cf__modrec);
  unsigned char *msg = malloc(bytes);
  if (!msg) return CF_ENOMEM;
  cf__mpi_ctl c;
  memset(&c, 0, sizeof c);
  c.magic = CF__MPI_MAGIC;
  c.version = CF__MPI_VERSION;
  c.type = CTL_HELLO;
  c.a = mods->n;
  c.b = (uint64_t)getpid();
  c.c = job.host ? job.host : cf__mpi_host_key();
  cf__modtab_records(mods, (cf__modrec *)(msg + sizeof c));
  int e = 0;
  for (unsigned i = 0; i < n && !e; i++) {
    c.d = i;
    memcpy(msg, &c, sizeof c);
    if (MPI_Send(msg, (int)bytes, MPI_BYTE, peers[i].rank, CF__MPI_TAG(0, K_CTRL), comm) !=
        MPI_SUCCESS)
      e = CF_EBROKEN;
  }
  free(msg);
  uint64_t host = cf__mpi_host_key();
  for (unsigned i = 0; i < n && !e; i++) {
    cf__mpi_reply r;
    MPI_Request rq;
    peers[i].pidfd = -1;
    if (MPI_Irecv(&r, sizeof r, MPI_BYTE, peers[i].rank, CF__MPI_TAG(0, K_REPLY), comm, &rq) !=
            MPI_SUCCESS ||
        cf__mpi_wait(&rq, NULL, NULL) != 0 || r.magic != CF__MPI_MAGIC) {
      e = CF_EBROKEN;
      break;
    }
    peers[i].pid = r.pid;
    if (r.host == host) peers[i].pidfd = cf__mpi_pidfd(r.pid);
  }
  return e;
}

/* ---- spawn mode ---- */

/* This program and its arguments, from /proc/self (NULL-terminated argv
 * without argv[0]; one allocation). */
static char **own_args(char *exe, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", exe, cap - 1);
  if (n <= 0) return NULL;
  exe[n] = 0;
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t len = 0, bcap = 4096;
  char *buf = malloc(bcap);
  for (;;) {
    if (!buf) break;
    ssize_t r = read(fd, buf + len, bcap - len);
    if (r <= 0) break;
    len += (size_t)r;
    if (len == bcap) {
      char *nb = realloc(buf, bcap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      bcap *= 2;
    }
  }
  close(fd);
  if (!buf) return NULL;
  size_t argc = 0;
  for (size_t i = 0; i < len; i++) argc += buf[i] == 0;
  char **argv = malloc((argc + 1) * sizeof *argv + len + 1);
  if (!argv) {
    free(buf);
    return NULL;
  }
  char *s = (char *)(argv + argc + 1);
  memcpy(s, buf, len);
  s[len] = 0;
  free(buf);
  /* skip argv[0]: MPI_Comm_spawn takes the command apart */
  size_t k = 0, pos = strlen(s) + 1;
  while (pos < len) {
    argv[k++] = s + pos;
    pos += strlen(s + pos) + 1;
  }
  argv[k] = NULL;
  return argv;
}

int cf__mpi_spawn(cf__mpi_pool *p) {
  char exe[PATH_MAX];
  char **argv = own_args(exe, sizeof exe);
  if (!argv) return CF_ESYS;
  MPI_Info info;
  MPI_Info_create(&info);
  if (p->oversubscribe) MPI_Info_set(info, "map_by", ":OVERSUBSCRIBE");
  MPI_Errhandler old;
  MPI_Comm_get_errhandler(MPI_COMM_SELF, &old);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  int *errs = calloc(p->nworkers, sizeof *errs);
  MPI_Comm inter = MPI_COMM_NULL;
  int rc = MPI_Comm_spawn(exe, argv[0] ? argv : MPI_ARGV_NULL, (int)p->nworkers, info, 0,
                          MPI_COMM_SELF, &inter, errs ? errs : MPI_ERRCODES_IGNORE);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, old);
  MPI_Errhandler_free(&old);
  MPI_Info_free(&info);
  free(errs);
  free(argv);
  if (rc != MPI_SUCCESS || inter == MPI_COMM_NULL) return CF_ENOTSUP;
  MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
  p->comm = inter;
  for (unsigned i = 0; i < p->nworkers; i++) p->peers[i].rank = (int)i;
  return cf__mpi_hello(inter, p->peers, p->nworkers, p->mods);
}

/* ---- finalization ---- */

/* MPI_Finalize runs this first (delete callback of an MPI_COMM_SELF
 * attribute): stop every live pool, then release the worker ranks. */
static int at_finalize(MPI_Comm comm, int keyval, void *attr, void *extra) {
  for (;;) {
    pthread_mutex_lock(&job.mu);
    cf__mpi_pool *p = job.nlive ? job.live[job.nlive - 1] : NULL;
    pthread_mutex_unlock(&job.mu);
    if (!p) break;
    cf__mpi_pool_finalize(p); /* removes it from job.live */
  }
  pthread_mutex_lock(&job.mu);
  if (job.mode == CF__MPI_STATIC) {
    cf__mpi_ctl c;
    memset(&c, 0, sizeof c);
    c.magic = CF__MPI_MAGIC;
    c.version = CF__MPI_VERSION;
    c.type = CTL_EXIT;
    bool death = false; /* a = 1: a rank died, bound your finalize */
    for (unsigned i = 0; i < job.nworkers; i++) death |= cf__mpi_peer_dead(&job.peers[i]);
    c.a = death;
    for (unsigned i = 0; i < job.nworkers; i++) {
      if (cf__mpi_peer_dead(&job.peers[i])) continue;
      MPI_Request rq;
      if (MPI_Isend(&c, sizeof c, MPI_BYTE, job.peers[i].rank, CF__MPI_TAG(0, K_CTRL), job.comm,
                    &rq) == MPI_SUCCESS)
        (void)cf__mpi_wait(&rq, &job.peers[i], NULL);
    }
  }
  job.finalized = true;
  pthread_mutex_unlock(&job.mu);
  return MPI_SUCCESS;
}

/* Open MPI 4.1 under --enable-recovery: once a rank has died, the fence
 * that closes MPI_Finalize now and then waits for it forever (test_mpi_crash
 * hung about 1 run in 12 on a loaded machine, in rank 0 and in the
 * surviving worker alike, both in ompi_mpi_finalize's fence loop). So a
 * finalize that cfutures makes after a rank died (rank 0 knows; it tells
 * the workers in EXIT) is bounded: past CF__MPI_FINALIZE_BOUND_S a thread
 * ends the process with the exit status it was leaving with. A finalize
 * the program makes itself is its own and is never cut short. */
static void *finalize_bound(void *arg) {
  struct timespec ts = {CF__MPI_FINALIZE_BOUND_S, 0};
  while (nanosleep(&ts, &ts) != 0) {
  }
  _exit((int)(intptr_t)arg); /* no stdio flush: the main thread may hold its locks */
}

void cf__mpi_finalize(int status, bool bounded) {
  if (bounded) {
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    (void)pthread_create(&t, &at, finalize_bound, (void *)(intptr_t)status);
    pthread_attr_destroy(&at);
  }
  MPI_Finalize();
}

/* A worker rank has died in this job (rank 0). */
static bool job_saw_death(void) {
  bool any = false;
  pthread_mutex_lock(&job.mu);
  for (unsigned i = 0; i < job.nworkers && !any; i++) any = cf__mpi_peer_dead(&job.peers[i]);
  pthread_mutex_unlock(&job.mu);
  return any;
}

/* on_exit: the status the program is leaving with, for a bounded finalize */
static void at_exit(int status, void *arg) {
  (void)arg;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) cf__mpi_finalize(status, job_saw_death());
}

/* ---- setup ---- */

int cf__mpi_job_setup(void) {
  pthread_mutex_lock(&job.mu);
  if (job.mode) {
    int e = job.finalized ? CF_ESHUTDOWN : 0;
    pthread_mutex_unlock(&job.mu);
    return e;
  }
  int inited = 0, fin = 0;
  MPI_Finalized(&fin);
  if (fin) {
    pthread_mutex_unlock(&job.mu);
    return CF_ESHUTDOWN;
  }
  MPI_Initialized(&inited);
  if (!inited) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &job.level) != MPI_SUCCESS) {
      pthread_mutex_unlock(&job.mu);
      return CF_ENOTSUP;
    }
    job.we_init = true;
  } else {
    MPI_Query_thread(&job.level);
  }
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  if (parent != MPI_COMM_NULL) {
    pthread_mutex_unlock(&job.mu);
    MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
    cf__mpi_serve(parent, 0, true);
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) {
    MPI_Comm dup;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS) {
      pthread_mutex_unlock(&job.mu);
      return CF_ENOTSUP;
    }
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    if (rank != 0) {
      pthread_mutex_unlock(&job.mu);
      cf__mpi_serve(dup, 0, false);
    }
    job.comm = dup;
  }
  /* rank 0 (or alone) */
  int keyval;
  if (MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, at_finalize, &keyval, NULL) == MPI_SUCCESS)
    MPI_Comm_set_attr(MPI_COMM_SELF, keyval, NULL);
  if (job.we_init) on_exit(at_exit, NULL);
  job.host = cf__mpi_host_key();
  cf__modtab_build(&job.mods);
  int e = 0;
  if (size > 1) {
    job.mode = CF__MPI_STATIC;
    job.nworkers = (unsigned)size - 1;
    job.peers = calloc(job.nworkers, sizeof *job.peers);
    if (!job.peers) {
      e = CF_ENOMEM;
    } else {
      for (unsigned i = 0; i < job.nworkers; i++) job.peers[i].rank = (int)i + 1;
      e = cf__mpi_hello(job.comm, job.peers, job.nworkers, &job.mods);
    }
  } else {
    job.mode = CF__MPI_SPAWN;
  }
  if (!e && job.level < MPI_THREAD_SERIALIZED) e = CF_ENOTSUP;
  pthread_mutex_unlock(&job.mu);
  return e;
}

int cf__mpi_job_add(cf__mpi_pool *p) {
  pthread_mutex_lock(&job.mu);
  int e = 0;
  if (job.finalized) {
    e = CF_ESHUTDOWN;
  } else if (job.nlive >= sizeof job.live / sizeof job.live[0]) {
    e = CF_EAGAIN;
  } else if (job.nlive > 0 && job.level < MPI_THREAD_MULTIPLE) {
    e = CF_ENOTSUP; /* two progress threads need MPI_THREAD_MULTIPLE */
  } else {
    bool taken;
    do { /* ids wrap: skip one a live pool still uses */
      job.next_pool = job.next_pool % CF__MPI_MAX_POOL_ID + 1;
      taken = false;
      for (unsigned i = 0; i < job.nlive; i++) taken |= job.live[i]->id == job.next_pool;
    } while (taken);
    p->id = job.next_pool;
    job.live[job.nlive++] = p;
  }
  pthread_mutex_unlock(&job.mu);
  return e;
}

void cf__mpi_job_remove(cf__mpi_pool *p) {
  pthread_mutex_lock(&job.mu);
  for (unsigned i = 0; i < job.nlive; i++) {
    if (job.live[i] == p) {
      job.live[i] = job.live[--job.nlive];
      break;
    }
  }
  pthread_mutex_unlock(&job.mu);
}
