/*
 * wire.h — the messages between rank 0 and the worker ranks (internal).
 *
 * DESIGN
 * Tags. Job-level messages use pool 0; pool p (1..CF__MPI_MAX_POOL_ID) uses
 * the tags CF__MPI_TAG(p, kind). MPI keeps messages of one sender, one tag
 * and one communicator in order, which the protocol relies on twice: the
 * K_ARG messages of a TASKS batch arrive in the order of its EXT_ARG
 * entries, and the K_RDATA message of an EXT_DATA outcome is the next one
 * of that tag from that worker.
 *
 *   rank 0 -> worker                       worker -> rank 0
 *   (0, K_CTRL)  HELLO + module table      (0, K_REPLY)  WELCOME (pid, host)
 *   (0, K_CTRL)  OPEN pool p               (p, K_REPLY)  OPENED (status)
 *   (p, K_TASKS) a batch of tasks          (p, K_RESULTS) a batch of outcomes
 *   (p, K_ARG)   a large argument          (p, K_RDATA)  a large result
 *   (p, K_CTRL)  STOP (slot, seq) / CLOSE  (p, K_REPLY)  CLOSED
 *   (0, K_CTRL)  EXIT
 *
 * Everything a worker sends is checked by rank 0 (lengths, slot, seq)
 * before it is used; a mismatch is dropped (CF_EPROTO if it names a task).
 */
#ifndef CF_MPI_WIRE_H
#define CF_MPI_WIRE_H

#include <stdint.h>

#define CF__MPI_MAGIC 0xcf3b1e01u
#define CF__MPI_VERSION 1u

enum { K_TASKS = 0, K_ARG = 1, K_CTRL = 2, K_RESULTS = 3, K_RDATA = 4, K_REPLY = 5 };
#define CF__MPI_TAG(pool, kind) ((int)(pool)*8 + (kind))
#define CF__MPI_MAX_POOL_ID 4000 /* 8 x 4001 < 32767, the smallest MPI_TAG_UB allowed */

/* Inline bytes (arguments in a batch, results in an outcome) up to this;
 * larger ones travel in a message of their own, sent from and received
 * into their final buffer. Copying 16 KB costs less than a second message
 * (a map chunk of 256 small items answers ~6 KB). */
#define CF__MPI_INLINE_MAX 16000

enum { CTL_HELLO = 1, CTL_OPEN = 2, CTL_STOP = 3, CTL_CLOSE = 4, CTL_EXIT = 5 };

typedef struct cf__mpi_ctl {
  uint32_t magic, version;
  uint32_t type, pool;
  /* HELLO: a = number of cf__modrec that follow, b = rank 0's pid,
   *        c = rank 0's host key, d = worker index
   * OPEN:  a = max_arg, b = max_result, init/init_arg as below
   * STOP:  a = slot, b = seq
   * EXIT:  a = 1 if a rank of the job has died (the finalize is bounded) */
  uint64_t a, b, c, d;
  uint64_t init_off, init_check, arg_off;
  uint16_t init_mod, arg_mod;
  uint8_t has_init, has_arg;
  uint8_t pad[2];
} cf__mpi_ctl;
_Static_assert(sizeof(cf__mpi_ctl) == 80, "cf__mpi_ctl: wire size");

typedef struct cf__mpi_reply {
  uint32_t magic, type;
  int32_t status; /* OPENED: 0 or the initializer's failure (CF_EBROKEN, CF_ENOTLOADED) */
  int32_t pid;
  uint64_t host; /* WELCOME: the worker's host key (boot id ^ pid namespace) */
} cf__mpi_reply;

typedef struct cf__mpi_batch {
  uint32_t magic, count;
} cf__mpi_batch;

enum { TF_EXT_ARG = 1, TF_CHUNK = 2 };

/* One task of a batch; arg_len inline bytes (padded to 8) follow unless
 * TF_EXT_ARG. TF_CHUNK: a map chunk, whose first argument word is the
 * packed reference of the user's function (fnref.h), checked with
 * inner_check. */
typedef struct cf__mpi_task {
  uint64_t seq;
  uint32_t slot, arg_len;
  uint64_t fn_off, fn_check, inner_check;
  int64_t remaining_ns; /* deadline, relative at send; 0: none */
  uint16_t fn_mod, flags;
  uint32_t pad;
} cf__mpi_task;
_Static_assert(sizeof(cf__mpi_task) == 56, "cf__mpi_task: wire size");

enum { OF_EXT_DATA = 1 };

/* One outcome of a batch (records back to back; an OF_EXT_DATA one is
 * alone in its message): err 0 (len result bytes follow, or a K_RDATA message when
 * OF_EXT_DATA), CF_ETASK (code, and len message bytes), CF_E2BIG, CF_ENOTLOADED
 * (the function was refused here), CF_ECANCELLED (stopped before it ran). */
typedef struct cf__mpi_outcome {
  uint32_t magic, slot;
  uint64_t seq;
  int32_t err, code;
  uint32_t len, flags;
} cf__mpi_outcome;
_Static_assert(sizeof(cf__mpi_outcome) == 32, "cf__mpi_outcome: wire size");

static inline uint32_t cf__pad8(uint32_t n) {
  return (n + 7) & ~7u;
}

#endif /* CF_MPI_WIRE_H */
