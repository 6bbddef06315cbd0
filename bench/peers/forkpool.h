/*
 * forkpool.h — the textbook process pool a C programmer writes without a
 * library: fork N workers at start; the parent writes a task into worker
 * i's pipe and reads the result from worker i's result pipe.
 *
 * Two forms, chosen at construction:
 *   textbook (batched = false): one write() per task and one read() per
 *     result on both sides — what a submit(task)/result() API over pipes
 *     does, and the semantic twin of cf_submit (each task is visible to the
 *     workers at once, without waiting for more);
 *   batched (batched = true): the fastest simple form we know — when many
 *     tasks are known up front, many messages go out in one write() and
 *     results come back in one read() (hand-rolled batching, the twin of a
 *     chunked map rather than of per-task submit).
 * Both: workers forked once and reused (no fork per task); one pipe pair per
 * worker, so no message ever interleaves with another worker's and no lock
 * is needed; fixed little headers, no serialisation library; a window of
 * bytes in flight per worker keeps both pipes below their 64 KiB capacity,
 * so neither side blocks on a full pipe while the other waits for it.
 * The task is fixed: each item x becomes x + 1 (the same tiny body the
 * cfutures and Python peers run).
 */
#ifndef CF_BENCH_FORKPOOL_H
#define CF_BENCH_FORKPOOL_H

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

class ForkPool {
 public:
  ForkPool(unsigned workers, bool batched);
  ~ForkPool();
  ForkPool(const ForkPool &) = delete;
  ForkPool &operator=(const ForkPool &) = delete;

  bool ok() const { return ok_; }

  /* One task, one result: the round trip (textbook form only). Returns
   * x + 1 as the worker computed it (or INT64_MIN on an I/O error); the
   * worker also reports when it started the task (CLOCK_MONOTONIC ns). */
  int64_t call(int64_t x, int64_t *started);

  /* out[i] = in[i] + 1 for i < n, computed by the workers: `per_msg` items
   * per task message (1: one task per item; C: chunked map), tasks dealt
   * round-robin. False on an I/O error. */
  bool run_many(const int64_t *in, int64_t *out, size_t n, size_t per_msg);

 private:
  bool run_batched(const int64_t *in, int64_t *out, size_t n, size_t per_msg);
  bool run_textbook(const int64_t *in, int64_t *out, size_t n, size_t per_msg);

  struct Worker {
    pid_t pid = -1;
    int task_wr = -1;
    int res_rd = -1;
    size_t inflight = 0;    /* bytes of results still owed */
    std::vector<char> rbuf; /* partial result bytes */
    size_t rlen = 0;
    std::vector<size_t> fifo; /* textbook: ids of tasks sent, oldest first */
    size_t head = 0;
  };
  std::vector<Worker> w_;
  std::vector<char> wbuf_;
  unsigned next_ = 0;
  bool batched_;
  bool ok_ = false;
};

#endif /* CF_BENCH_FORKPOOL_H */
