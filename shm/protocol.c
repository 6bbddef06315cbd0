/*
 * protocol.c — sending a zygote protocol message (protocol.h).
 */
#include "protocol.h"

#include <errno.h>
#include <sys/socket.h>

#include "cfutures.h"

static int zsend(int sock, const cf__zmsg *m, int flags) {
  for (;;) {
    ssize_t n = send(sock, m, sizeof *m, MSG_NOSIGNAL | flags);
    if (n == (ssize_t)sizeof *m) return 0;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return CF_EAGAIN;
    return CF_ESYS;
  }
}

int cf__zsend(int sock, int type, int idx, int pid, int arg) {
  cf__zmsg m = {type, idx, pid, arg};
  return zsend(sock, &m, 0);
}

int cf__zsend_nowait(int sock, const cf__zmsg *m) {
  return zsend(sock, m, MSG_DONTWAIT);
}
