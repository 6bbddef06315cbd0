/*
 * main.cc — the benchmark driver shared by the bench binaries.
 *
 * Before google-benchmark starts it fixes what every peer needs to get the
 * same worker count: libuv's thread pool size (UV_THREADPOOL_SIZE, read at
 * its first use) and oneTBB's global parallelism (a default TBB on a 2-core
 * machine has one worker thread; arenas fed from outside need `workers`).
 */
#include <stdlib.h>

#include <mutex>

#include "common.h"

#ifdef CF_BENCH_WITH_TBB
#include <oneapi/tbb/global_control.h>
#endif

static unsigned env_unsigned(const char *name, unsigned long long dflt) {
  const char *s = getenv(name);
  if (!s || !*s) return (unsigned)dflt;
  return (unsigned)strtoull(s, nullptr, 10);
}

unsigned bench_workers() {
  static unsigned w = env_unsigned("CF_BENCH_WORKERS", 2) ? env_unsigned("CF_BENCH_WORKERS", 2) : 2;
  return w;
}

size_t bench_tasks() {
  static size_t n =
      env_unsigned("CF_BENCH_TASKS", 100000) ? env_unsigned("CF_BENCH_TASKS", 100000) : 100000;
  return n;
}

int64_t bench_idle_iters() {
  static int64_t n =
      env_unsigned("CF_BENCH_IDLE_ITERS", 1000) ? env_unsigned("CF_BENCH_IDLE_ITERS", 1000) : 1000;
  return n;
}

bool bench_fail(benchmark::State &st, const char *what, long long got, long long want) {
  char buf[256];
  snprintf(buf, sizeof buf, "CHECK FAILED: %s (got %lld, want %lld)", what, got, want);
  fprintf(stderr, "%s\n", buf);
  st.SkipWithError(buf);
  return false;
}

void bench_report_latency(benchmark::State &st, std::vector<int64_t> &lat) {
  std::sort(lat.begin(), lat.end());
  st.counters["p50_ns"] = bench_pct(lat, 0.50);
  st.counters["p99_ns"] = bench_pct(lat, 0.99);
  st.counters["p999_ns"] = bench_pct(lat, 0.999);
  st.counters["max_ns"] = lat.empty() ? 0.0 : (double)lat.back();
  st.counters["samples"] = (double)lat.size();
}

void bench_report_split(benchmark::State &st, std::vector<int64_t> &dispatch,
                        std::vector<int64_t> &notify) {
  std::sort(dispatch.begin(), dispatch.end());
  std::sort(notify.begin(), notify.end());
  st.counters["dispatch_p50_ns"] = bench_pct(dispatch, 0.50);
  st.counters["dispatch_p99_ns"] = bench_pct(dispatch, 0.99);
  st.counters["notify_p50_ns"] = bench_pct(notify, 0.50);
  st.counters["notify_p99_ns"] = bench_pct(notify, 0.99);
}

void bench_side(const std::string &line) {
  static std::mutex mu;
  static FILE *f = [] {
    const char *p = getenv("CF_BENCH_SIDE");
    return p && *p ? fopen(p, "a") : (FILE *)nullptr;
  }();
  if (!f) return;
  std::lock_guard<std::mutex> g(mu);
  fputs(line.c_str(), f);
  fputc('\n', f);
  fflush(f);
}

static std::vector<std::function<void()>> &exit_fns() {
  static std::vector<std::function<void()>> v;
  return v;
}
static std::mutex exit_mu;

void bench_at_exit(std::function<void()> fn) {
  std::lock_guard<std::mutex> g(exit_mu);
  exit_fns().push_back(std::move(fn));
}

int main(int argc, char **argv) {
  char buf[32];
  snprintf(buf, sizeof buf, "%u", bench_workers());
  setenv("UV_THREADPOOL_SIZE", buf, 1); /* libuv reads it once, at first use */
#ifdef CF_BENCH_WITH_TBB
  /* workers + 1: the +1 is the external thread's slot TBB always counts. */
  oneapi::tbb::global_control gc(oneapi::tbb::global_control::max_allowed_parallelism,
                                 bench_workers() + 1);
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("workers", buf);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  auto &v = exit_fns();
  for (auto it = v.rbegin(); it != v.rend(); ++it) (*it)();
  return 0;
}
