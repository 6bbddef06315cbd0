/*
 * exec.c — the exec start mode: spawn the program file as the zygote, and
 * the constructor that turns that process into one (DESIGN in exec.h).
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zygote.h"

extern char **environ;

#define BOOT_MAGIC 0x63666274u /* "cfbt" */

/* What precedes the cfg bytes in the message. */
typedef struct boot_hdr {
  uint32_t magic;
  uint32_t size; /* sizeof(cf__pool_cfg): both sides are one program file */
} boot_hdr;

/* ---- the parent: spawn and hand over (steps 1-2) ---- */

/* The recorded environment plus our marker. NULL on ENOMEM. */
static char **zygote_env(const cf__pool_cfg *c, char *marker) {
  size_t n = 0;
  for (char **e = c->exec_env; e && *e; e++) n++;
  char **env = malloc((n + 2) * sizeof *env);
  if (!env) return NULL;
  for (size_t k = 0; k < n; k++) env[k] = c->exec_env[k];
  env[n] = marker;
  env[n + 1] = NULL;
  return env;
}

/* The umask without changing it (umask(2) can only swap: another thread
 * would see the swapped value): the "Umask:" line of /proc/self/status. */
static int read_umask(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (!f) return -1;
  char line[128];
  int m = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Umask: %o", (unsigned *)&m) == 1) break;
  fclose(f);
  return m;
}

int cf__exec_snapshot(cf__pool_cfg *c) {
  c->exec_cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  c->exec_umask = read_umask();
  size_t n = 0;
  for (char **e = environ; e && *e; e++) n++;
  c->exec_env = calloc(n + 1, sizeof *c->exec_env);
  if (!c->exec_env) return CF_ENOMEM;
  size_t k = 0, plen = strlen(CF__EXEC_ENV);
  for (char **e = environ; e && *e && k < n; e++) {
    if (strncmp(*e, CF__EXEC_ENV, plen) == 0 && (*e)[plen] == '=') continue;
    if (!(c->exec_env[k++] = strdup(*e))) return CF_ENOMEM; /* freed by the caller */
  }
  return 0;
}

void cf__exec_snapshot_free(cf__pool_cfg *c) {
  for (char **e = c->exec_env; e && *e; e++) free(*e);
  free(c->exec_env);
  c->exec_env = NULL;
  if (c->exec_cwd >= 0) close(c->exec_cwd);
  c->exec_cwd = -1;
}

static int send_boot(int sock, const cf__pool_cfg *c) {
  boot_hdr h = {BOOT_MAGIC, (uint32_t)sizeof *c};
  struct iovec iov[2] = {{&h, sizeof h}, {(void *)c, sizeof *c}};
  int fds[2] = {c->seg.fd, c->evfd};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof fds)];
  } cm;
  memset(&cm, 0, sizeof cm);
  struct msghdr msg = {
      .msg_iov = iov, .msg_iovlen = 2, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
  struct cmsghdr *ch = CMSG_FIRSTHDR(&msg);
  ch->cmsg_level = SOL_SOCKET;
  ch->cmsg_type = SCM_RIGHTS;
  ch->cmsg_len = CMSG_LEN(sizeof fds);
  memcpy(CMSG_DATA(ch), fds, sizeof fds);
  for (;;) {
    ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (r == (ssize_t)(sizeof h + sizeof *c)) return 0;
    if (r < 0 && errno == EINTR) continue;
    return CF_ESYS;
  }
}

int cf__exec_zygote(const cf__pool_cfg *c, pid_t *pid) {
  int zs = atomic_load(&c->zsock);
  if (zs < 0 || c->seg.fd < 0) return CF_ESYS;
  /* dup2(CF__EXEC_FD, CF__EXEC_FD) would leave its close-on-exec flag set */
  int src = zs == CF__EXEC_FD ? fcntl(zs, F_DUPFD_CLOEXEC, CF__EXEC_FD + 1) : zs;
  if (src < 0) return CF_ESYS;
  char marker[64];
  snprintf(marker, sizeof marker, "%s=%d", CF__EXEC_ENV, c->parent_pid);
  char **env = zygote_env(c, marker);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  int r = env ? 0 : ENOMEM;
  if (!r) r = posix_spawn_file_actions_init(&fa);
  if (!r) {
    /* the working directory of the pool's creation: first, while its fd
     * is what it is here (it may be the number the dup2 below replaces) */
    if (c->exec_cwd >= 0) r = posix_spawn_file_actions_addfchdir_np(&fa, c->exec_cwd);
    if (!r) r = posix_spawn_file_actions_adddup2(&fa, src, CF__EXEC_FD);
    if (!r) r = posix_spawn_file_actions_addclosefrom_np(&fa, CF__EXEC_FD + 1);
    if (!r) r = posix_spawnattr_init(&at);
    if (!r) {
      sigset_t all;
      sigfillset(&all);
      r = posix_spawnattr_setsigmask(&at, &all);
      if (!r) r = posix_spawnattr_setpgroup(&at, 0);
      if (!r) r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
      char *argv[] = {(char *)"cfutures-zygote", NULL};
      if (!r) r = posix_spawn(pid, "/proc/self/exe", &fa, &at, argv, env);
      posix_spawnattr_destroy(&at);
    }
    posix_spawn_file_actions_destroy(&fa);
  }
  free(env);
  if (src != zs) close(src);
  if (r) {
    errno = r;
    return CF_ESYS;
  }
  if (send_boot(c->sock, c) != 0) {
    kill(*pid, SIGKILL);
    while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return CF_ESYS;
  }
  return 0;
}

/* ---- the exec'ed process: become the zygote (steps 3-5) ---- */

static int bad_init(void *arg) {
  (void)arg;
  return -1; /* the parent's initializer has no counterpart here: CF_EBROKEN */
}

static struct {
  boot_hdr h;
  cf__pool_cfg c;
} boot;

__attribute__((noreturn)) static void boot_zygote(pid_t parent) {
  int fds[2] = {-1, -1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof fds)];
  } cm;
  struct iovec iov = {&boot, sizeof boot};
  struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
  ssize_t n;
  do {
    n = recvmsg(CF__EXEC_FD, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  struct cmsghdr *ch = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (n != (ssize_t)sizeof boot || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || !ch ||
      ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS ||
      ch->cmsg_len != CMSG_LEN(sizeof fds))
    _exit(1);
  memcpy(fds, CMSG_DATA(ch), sizeof fds);
  cf__pool_cfg *c = &boot.c;
  if (boot.h.magic != BOOT_MAGIC || boot.h.size != sizeof *c || c->start != CF_START_EXEC ||
      c->nworkers == 0 || c->nworkers > CF__MAX_WORKERS)
    _exit(1);
  (void)fcntl(CF__EXEC_FD, F_SETFD, FD_CLOEXEC);
  cf__seg_params sp = c->seg.p;
  if (cf__seg_attach(&c->seg, fds[0], &sp) != 0) _exit(1);
  close(fds[0]); /* the mapping keeps the memory */
  c->seg.fd = -1;
  c->evfd = fds[1];
  c->sock = -1;
  atomic_store(&c->zsock, CF__EXEC_FD);
  memset(&c->text, 0, sizeof c->text); /* the parent's addresses: image.h instead */
  cf__image_resolve(&c->image);
  if (c->init) {
    uintptr_t f = cf__image_translate(&c->image, (uint64_t)(uintptr_t)c->init);
    c->init = f ? (cf_init_fn)f : bad_init;
  }
  c->init_arg = NULL; /* exec mode refuses any other at creation */
  if (c->exec_umask >= 0) umask((mode_t)c->exec_umask); /* the host's at creation */
  c->exec_env = NULL;                                   /* the parent's pointer */
  c->exec_cwd = -1;
  cf__zygote_main(c, parent);
}

/* The default priority, so that it runs after the constructors of the
 * program's own objects, which come before the library on the link line
 * (C++ static objects, a static libstdc++'s streams): the zygote, and so
 * every worker, sees the program as it is when main() starts. */
__attribute__((constructor)) static void cf__exec_boot(void) {
  const char *v = getenv(CF__EXEC_ENV);
  if (!v) return;
  char *end;
  long parent = strtol(v, &end, 10);
  unsetenv(CF__EXEC_ENV);
  if (*end || parent <= 0) return; /* not ours: run the program as usual */
  boot_zygote((pid_t)parent);
}
