/*
 * bench_process.cc — process pools: the same tiny task (x -> x + 1) run in
 * `workers` forked worker processes.
 *
 *   proc_roundtrip_hot/<sys>    submit one task, wait for its result
 *   proc_roundtrip_idle/<sys>   the same after 2 ms of sleep each time
 *   proc_throughput/<sys>       N tiny tasks, one task per item
 *   proc_map/<sys>/chunk:C      N items mapped in chunks of C items per task
 *
 * Peers: the fork + pipe pool (forkpool.h) here — textbook form (one
 * syscall per message; fork_pipe) everywhere, and its hand-batched form
 * (fork_pipe_batched: many tasks per write) for throughput too, and Python's
 * concurrent.futures.ProcessPoolExecutor in py_peer.py (run by run.sh in the same run, merged into
 * the table).
 *
 * cfutures throughput keeps a window of futures in flight (submit i, and
 * first collect i - window): a service streams work this way (the pool
 * bounds the tasks in flight, max_futures, not the futures held); map does
 * the same inside the library. Every result is checked.
 */
#include <climits>
#include <memory>

#include "cfutures.h"
#include "common.h"
#include "forkpool.h"
#include "procs.h"

namespace {

constexpr size_t kWindow = 4096;
constexpr size_t kChunk = 256;

void inc_task(cf_call *c) {
  size_t len = 0;
  const int64_t *x = (const int64_t *)cf_call_arg(c, &len);
  if (len != sizeof(int64_t)) {
    cf_call_fail(c, CF_EINVAL, "bad argument");
    return;
  }
  int64_t r = *x + 1;
  cf_call_return(c, &r, sizeof r);
}

template <int64_t (*Rt)(int64_t, int64_t *)>
void BM_proc_roundtrip(benchmark::State &st, bool idle) {
  bench_roundtrip_loop(st, idle, Rt, "process round trip result");
}

/* ---- throughput and map ---- */

bool cf_many(const int64_t *in, int64_t *out, size_t n, size_t chunk) {
  cf_executor *ex = cf_proc();
  if (chunk > 1) {
    /* the library's default window (2 x workers chunks in flight) unless
     * CF_BENCH_MAP_WINDOW says otherwise */
    static const size_t window =
        getenv("CF_BENCH_MAP_WINDOW") ? strtoul(getenv("CF_BENCH_MAP_WINDOW"), nullptr, 10) : 0;
    cf_map_opts mo = {window, chunk, -1};
    cf_map *m = nullptr;
    if (cf_map_array(ex, inc_task, in, n, sizeof(int64_t), &mo, &m) != 0) return false;
    size_t i = 0;
    int rc;
    int64_t extra;
    for (;;) {
      rc = cf_map_next(m, i < n ? &out[i] : &extra, sizeof(int64_t), nullptr);
      if (rc != 0) break;
      i++;
    }
    cf_map_free(m);
    return rc == CF_EDONE && i == n;
  }
  static std::vector<cf_future *> fs(kWindow);
  bool ok = true;
  for (size_t i = 0; i < n + kWindow; i++) {
    if (i >= kWindow) { /* collect i - window first */
      size_t j = i - kWindow;
      cf_future *f = fs[j % kWindow];
      if (cf_future_result(f, &out[j], sizeof(int64_t), nullptr, -1) != 0) ok = false;
      cf_future_release(f);
    }
    if (i < n && cf_submit(ex, inc_task, &in[i], sizeof(int64_t), &fs[i % kWindow]) != 0)
      return false;
  }
  return ok;
}

bool fork_many(const int64_t *in, int64_t *out, size_t n, size_t chunk) {
  return fork_pool(false).run_many(in, out, n, chunk);
}

bool fork_many_batched(const int64_t *in, int64_t *out, size_t n, size_t chunk) {
  return fork_pool(true).run_many(in, out, n, chunk);
}

template <bool (*Many)(const int64_t *, int64_t *, size_t, size_t)>
void BM_proc_many(benchmark::State &st, size_t chunk) {
  const size_t n = bench_tasks();
  std::vector<int64_t> in(n), out(n);
  for (size_t i = 0; i < n; i++) in[i] = (int64_t)i * 3;
  if (!Many(in.data(), out.data(), n, chunk)) { /* warm-up, untimed */
    bench_fail(st, "warm-up run failed");
    return;
  }
  CpuScope cpu(st, (double)n); /* per task */
  for (auto _ : st) {
    std::fill(out.begin(), out.end(), 0);
    int64_t t0 = bench_now_ns();
    bool ok = Many(in.data(), out.data(), n, chunk);
    st.SetIterationTime((double)(bench_now_ns() - t0) * 1e-9);
    if (!ok) {
      bench_fail(st, "run failed");
      break;
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != in[i] + 1;
    if (bad) {
      bench_fail(st, "results wrong", (long long)bad, 0);
      break;
    }
  }
  st.SetItemsProcessed(st.iterations() * (int64_t)n);
}

/* ---- idle ---- */

double idle_seconds() {
  const char *s = getenv("CF_BENCH_IDLE_SECONDS");
  double v = s ? atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

/* A fresh pool, warmed by 1000 round trips, then 1 s without
 * work: the CPU of the parent's threads (this sleeping thread excluded), of
 * the helper processes (descendants that have children: cfutures' zygote)
 * and of the workers (descendants without children), each % of one core. */
template <class Pool>
void BM_proc_idle(benchmark::State &st) {
  double parent = 0, helpers = 0, workers = 0;
  for (auto _ : st) {
    Pool pool;
    if (!pool.warm()) {
      bench_fail(st, "idle warm-up results");
      break;
    }
    CpuMeter m;
    m.start();
    bench_sleep_ns((int64_t)(idle_seconds() * 1e9));
    m.stop();
    double w = (double)m.wall_ns();
    parent += 100.0 * (double)(m.self() - m.caller()).cpu_ns / w;
    helpers += 100.0 * (double)m.inner().cpu_ns / w;
    workers += 100.0 * (double)m.leaves().cpu_ns / w;
    st.SetIterationTime(w * 1e-9);
  }
  double k = st.iterations() ? (double)st.iterations() : 1;
  st.counters["parent_pct_core"] = parent / k;
  st.counters["helpers_pct_core"] = helpers / k;
  st.counters["workers_pct_core"] = workers / k;
  st.counters["cpu_pct_of_core"] = (parent + helpers + workers) / k;
}

struct IdleCf {
  cf_executor *ex = nullptr;
  IdleCf() {
    cf_options o;
    cf_options_init(&o);
    o.workers = bench_workers();
    if (cf_process_pool_new(&o, &ex) != 0) ex = nullptr;
  }
  ~IdleCf() {
    if (ex) cf_executor_destroy(ex);
  }
  bool warm() {
    if (!ex) return false;
    for (int64_t i = 0; i < 1000; i++) {
      cf_future *f = nullptr;
      int64_t r = -1;
      if (cf_submit(ex, inc_task, &i, sizeof i, &f) != 0) return false;
      int rc = cf_future_result(f, &r, sizeof r, nullptr, -1);
      cf_future_release(f);
      if (rc != 0 || r != i + 1) return false;
    }
    return true;
  }
};

struct IdleFork {
  ForkPool pool{bench_workers(), false};
  bool warm() {
    if (!pool.ok()) return false;
    for (int64_t i = 0; i < 1000; i++)
      if (pool.call(i, nullptr) != i + 1) return false;
    return true;
  }
};

int reg = [] {
  /* the fork pool first: its workers are forked before cfutures starts threads */
  auto rt = [](const std::string &name, void (*fn)(benchmark::State &, bool)) {
    benchmark::RegisterBenchmark(("proc_roundtrip_hot/" + name).c_str(), fn, false)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("proc_roundtrip_idle/" + name).c_str(), fn, true)
        ->UseManualTime()
        ->Iterations(bench_idle_iters())
        ->Unit(benchmark::kMicrosecond);
  };
  rt("fork_pipe", BM_proc_roundtrip<proc_fork_roundtrip>);
  rt("cfutures", BM_proc_roundtrip<proc_cf_roundtrip>);
  auto many = [](const std::string &name, void (*fn)(benchmark::State &, size_t)) {
    benchmark::RegisterBenchmark(("proc_throughput/" + name).c_str(), fn, (size_t)1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("proc_map/" + name + "/chunk:" + std::to_string(kChunk)).c_str(),
                                 fn, kChunk)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  many("fork_pipe", BM_proc_many<fork_many>);
  benchmark::RegisterBenchmark("proc_throughput/fork_pipe_batched", BM_proc_many<fork_many_batched>,
                               (size_t)1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  many("cfutures", BM_proc_many<cf_many>);
  for (auto [name, fn] :
       {std::pair<const char *, void (*)(benchmark::State &)>{"fork_pipe", BM_proc_idle<IdleFork>},
        {"cfutures", BM_proc_idle<IdleCf>}})
    benchmark::RegisterBenchmark((std::string("proc_idle/") + name).c_str(), fn)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  return 0;
}();

}  // namespace
