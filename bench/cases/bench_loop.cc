/*
 * bench_loop.cc — a nested parallel loop: 100 rows x 1000 small bodies,
 * each body out[i][j] = mix(i * 1000 + j) (a few ns). The inner loop is
 * itself parallel, so the systems must compose nested parallelism. Every
 * run checks the whole matrix against the sequential twin's checksum; the
 * matrix is cleared outside the timed region (manual time).
 *
 *   - cfutures: the caller submits one task per row; a row task splits its
 *     1000 bodies into 2 x workers chunks, submits all but the last, runs
 *     the last inline and joins the others (the join helps: it runs queued
 *     chunks instead of blocking the worker).
 *   - oneTBB: parallel_for over rows, parallel_for over columns inside, the
 *     default auto_partitioner (TBB's recommended form), run in an arena
 *     of `workers` slots whose first is the caller.
 *   - OpenMP: `parallel for` over rows with an inner `parallel for`:
 *     libgomp's default (max-active-levels 1) runs the inner region with a
 *     team of one, which is what this code gets, and the cheapest nesting
 *     OpenMP offers.
 *   - sequential twin: the double loop.
 */
#include <omp.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <cstring>

#include "common.h"
#include "pools.h"

namespace {

constexpr int kRows = 100;
constexpr int kCols = 1000;
constexpr int kRounds = 4;

uint64_t g_out[kRows * kCols];

inline void body(int i, int j) {
  g_out[i * kCols + j] = bench_mix((uint64_t)(i * kCols + j), kRounds);
}

uint64_t expected_sum() {
  static uint64_t s = [] {
    uint64_t t = 0;
    for (int k = 0; k < kRows * kCols; k++) t += bench_mix((uint64_t)k, kRounds);
    return t;
  }();
  return s;
}

bool check(benchmark::State &st) {
  uint64_t s = 0;
  for (int k = 0; k < kRows * kCols; k++) s += g_out[k];
  if (s != expected_sum())
    return bench_fail(st, "nested loop checksum", (long long)s, (long long)expected_sum());
  return true;
}

template <class Run>
void loop_bench(benchmark::State &st, Run run) {
  CpuScope cpu(st);
  for (auto _ : st) {
    memset(g_out, 0, sizeof g_out);
    int64_t t0 = bench_now_ns();
    bool ok = run();
    st.SetIterationTime((double)(bench_now_ns() - t0) * 1e-9);
    if (!ok) {
      bench_fail(st, "call failed");
      break;
    }
    if (!check(st)) break;
  }
  st.SetItemsProcessed(st.iterations() * kRows * kCols);
}

/* ---- cfutures ---- */

cf_executor *g_ex;
unsigned g_chunks;
std::atomic<int> g_err{0};

struct Chunk {
  int row, lo, hi;
};

void chunk_task(cf_call *c) {
  const Chunk *k = (const Chunk *)cf_call_arg(c, nullptr);
  for (int j = k->lo; j < k->hi; j++) body(k->row, j);
}

void row_task(cf_call *c) {
  int row = *(const int *)cf_call_arg(c, nullptr);
  cf_future *fs[64];
  unsigned n = g_chunks, sub = 0;
  int step = (kCols + (int)n - 1) / (int)n;
  for (unsigned k = 0; k + 1 < n; k++) {
    Chunk ch = {row, (int)k * step, std::min(kCols, (int)(k + 1) * step)};
    int rc = cf_submit(g_ex, chunk_task, &ch, sizeof ch, &fs[sub]);
    if (rc != 0) {
      g_err.store(rc);
      break;
    }
    sub++;
  }
  for (int j = (int)(n - 1) * step; j < kCols; j++) body(row, j);
  for (unsigned k = 0; k < sub; k++) {
    int rc = cf_future_wait(fs[k], -1);
    if (rc != 0) g_err.store(rc);
    cf_future_release(fs[k]);
  }
}

void BM_loop_cfutures(benchmark::State &st) {
  g_ex = pool_cf(bench_workers());
  g_chunks = std::min(64u, 2 * bench_workers());
  loop_bench(st, [] {
    cf_future *fs[kRows];
    int sub = 0;
    for (int i = 0; i < kRows; i++, sub++)
      if (cf_submit(g_ex, row_task, &i, sizeof i, &fs[i]) != 0) break;
    bool ok = sub == kRows;
    for (int i = 0; i < sub; i++) {
      if (cf_future_wait(fs[i], -1) != 0) ok = false;
      cf_future_release(fs[i]);
    }
    return ok && g_err.load() == 0;
  });
}

/* ---- oneTBB ---- */

void BM_loop_tbb(benchmark::State &st) {
  auto &arena = pool_tbb(bench_workers(), true);
  using oneapi::tbb::blocked_range;
  loop_bench(st, [&] {
    arena.execute([] {
      oneapi::tbb::parallel_for(blocked_range<int>(0, kRows), [](const blocked_range<int> &r) {
        for (int i = r.begin(); i != r.end(); ++i)
          oneapi::tbb::parallel_for(blocked_range<int>(0, kCols), [i](const blocked_range<int> &c) {
            for (int j = c.begin(); j != c.end(); ++j) body(i, j);
          });
      });
    });
    return true;
  });
}

/* ---- OpenMP ---- */

void BM_loop_omp(benchmark::State &st) {
  const int w = (int)bench_workers();
  loop_bench(st, [w] {
#pragma omp parallel for num_threads(w) schedule(static)
    for (int i = 0; i < kRows; i++) {
#pragma omp parallel for schedule(static)
      for (int j = 0; j < kCols; j++) body(i, j);
    }
    return true;
  });
}

/* ---- sequential twin ---- */

void BM_loop_seq(benchmark::State &st) {
  loop_bench(st, [] {
    for (int i = 0; i < kRows; i++)
      for (int j = 0; j < kCols; j++) body(i, j);
    return true;
  });
}

int reg = [] {
  benchmark::RegisterBenchmark("loop/cfutures", BM_loop_cfutures)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("loop/tbb", BM_loop_tbb)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("loop/sequential", BM_loop_seq)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("loop/" CF_BENCH_OMP_NAME, BM_loop_omp)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  return 0;
}();

}  // namespace
