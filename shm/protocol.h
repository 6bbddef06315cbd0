/*
 * protocol.h — the zygote protocol: the messages the parent's supervisor
 * thread and the zygote exchange (internal).
 *
 * DESIGN
 * One SOCK_SEQPACKET socketpair per pool, made at creation: the parent
 * keeps one end (cfg.sock), the zygote the other (cfg.zsock). Every message
 * is one fixed-size cf__zmsg; a message of another size is dropped, and so
 * is one that names a worker index out of range (the receiver checks it
 * against its own nworkers).
 *
 *   parent -> zygote   SPAWN(idx)        fork worker idx
 *                      KILL(idx, pid, sig)  signal worker idx (only if its
 *                                        pid is `pid`, when pid != 0)
 *                      EXIT              kill every worker, reap, exit
 *   zygote -> parent   SPAWNED(idx, pid)
 *                      SPAWN_FAILED(idx, errno)
 *                      DIED(idx, pid, wait status)
 *
 * Ordering is the socket's: each side handles messages in the order they
 * were sent. So a KILL the parent sent before it learnt of a death and
 * asked for a replacement reaches the zygote before that SPAWN: a KILL
 * always names the worker it was meant for. The zygote only signals a
 * child it has not reaped, so the pid cannot have been reused. End of file
 * on either end means the other side is gone.
 */
#ifndef CF_SHM_PROTOCOL_H
#define CF_SHM_PROTOCOL_H

#include <stdint.h>

enum {
  CF__Z_SPAWN = 1,
  CF__Z_KILL = 2,
  CF__Z_EXIT = 3,
  CF__Z_SPAWNED = 4,
  CF__Z_SPAWN_FAILED = 5,
  CF__Z_DIED = 6,
};

typedef struct cf__zmsg {
  int32_t type, idx, pid, arg; /* arg: signal, wait status or errno */
} cf__zmsg;
_Static_assert(sizeof(cf__zmsg) == 16, "zygote message: four 32-bit fields");

/* Send one message: 0 or CF_ESYS (the other end is gone). Retries EINTR;
 * never raises SIGPIPE. Any thread of the parent, or the zygote. */
int cf__zsend(int sock, int type, int idx, int pid, int arg);
/* The same without blocking: 0, CF_EAGAIN (the socket is full: the zygote
 * is not reading, e.g. stopped) or CF_ESYS. The parent sends only this way
 * (forker.c queues what does not fit), so it never waits for the zygote. */
int cf__zsend_nowait(int sock, const cf__zmsg *m);

#endif /* CF_SHM_PROTOCOL_H */
