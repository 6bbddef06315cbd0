/*
 * protocol.c — sending a zygote protocol message (protocol.h).
 */
#include "protocol.h"

#include <errno.h>
#include <sys/socket.h>

#include "cfutures.h"

int cf__zsend(int sock, int type, int idx, int pid, int arg) {
  cf__zmsg m = {type, idx, pid, arg};
  for (;;) {
    ssize_t n = send(sock, &m, sizeof m, MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof m) return 0;
    if (n < 0 && errno == EINTR) continue;
    return CF_ESYS;
  }
}
