/*
 * ring.h — a bounded MPMC ring of 32-bit values that survives the death of
 * any producer or consumer at any instruction (internal).
 *
 * DESIGN
 * The ring lives in shared memory (offsets, no pointers): an index pair
 * {tail, head} (64-bit counters, each on its own cache line) and 2^k cells.
 * Every cell is ONE 64-bit word {seq:32 | value:32}, so writing a value and
 * committing it is a single CAS. For the cell of index i (lap L = i >> k):
 *
 *   seq == 2L      empty, waiting for the producer of index i
 *   seq == 2L + 1  full, holding index i's value for its consumer
 *   seq == 2L + 2  consumed: empty for index i + 2^k
 *
 * A producer loads tail t and CASes cell t from {2L, *} to {2L+1, v}; a
 * consumer loads head h and CASes cell h from {2L+1, v} to {2L+2, 0}. Only
 * THEN are tail/head advanced, by CAS t -> t+1, and anyone who finds the cell
 * at the index already committed helps advance it. So there is no window in
 * which a dead process blocks the ring: a process killed before its cell CAS
 * did nothing; one killed after it did all that matters, and the index is
 * advanced by the next caller. (Vyukov's bounded queue reserves the index
 * first and commits the cell later; ck_ring's MP enqueue serialises commits
 * through one word: in both, a process that dies in between stalls the ring.)
 *
 * Cells are filled and emptied in index order: a producer only fills cell t
 * after tail reached t, i.e. after every earlier cell was filled (same for
 * head).
 * seq comparisons are modular (int32 difference), so the ring runs for 2^31
 * laps before a stale index could be mistaken for a live one; a stale index
 * is at most a few operations old. Every operation is seq_cst: the idle /
 * wake protocol of the process pool is a Dekker pattern over a push and a
 * sleeper count, and TSan checks the ring test with these orders.
 *
 * The cell values of a ring in a shared segment are untrusted (a rogue
 * process can write anything): callers bounds-check what they pop, and they
 * pass the capacity from their own memory, never from the segment.
 */
#ifndef CF_SHM_RING_H
#define CF_SHM_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct cf__ring_idx {
  alignas(64) _Atomic uint64_t tail; /* next index to fill */
  alignas(64) _Atomic uint64_t head; /* next index to pop */
  char pad_[64 - sizeof(uint64_t)];
} cf__ring_idx;

_Static_assert(sizeof(cf__ring_idx) == 128, "ring index: two cache lines");

/* Push v into the ring of 2^log2cap cells: 0, or CF_EAGAIN if it is full.
 * Any thread of any process. */
int cf__ring_push(cf__ring_idx *r, _Atomic uint64_t *cells, unsigned log2cap, uint32_t v);

/* What a `taking` word holds when it names no value. */
#define CF__RING_NONE 0xffffffffu

/* Pop the oldest value into *out: 0, or CF_EAGAIN if the ring is empty.
 * If `taking` is not NULL, the value about to be taken is stored there just
 * before the CAS that takes it, so that someone who finds this process dead
 * can put it back; if that CAS fails (another consumer took the value) the
 * word is set back to CF__RING_NONE before anything else. Only a process
 * that dies between the two stores leaves a value another consumer took: a
 * duplicate, which the process pool tolerates. After a success the word
 * still names the value: the caller clears it once the value is safe
 * elsewhere. Any thread of any process.
 * CF_EPROTO (push too) only if the ring was corrupted so that it cannot make
 * progress. */
int cf__ring_pop(cf__ring_idx *r, _Atomic uint64_t *cells, unsigned log2cap, uint32_t *out,
                 _Atomic uint32_t *taking);

/* Values in the ring now (tail - head): a snapshot for statistics. */
uint64_t cf__ring_count(cf__ring_idx *r);

#endif /* CF_SHM_RING_H */
