/*
 * bench_openloop.cc — latency under load (openloop.h has the method):
 *
 *   openloop/<arrivals>/<sys>/rate:R        thread pools, tiny tasks arriving
 *   proc_openloop/<arrivals>/<sys>/rate:R   at R per second, fixed-rate or
 *                                           Poisson; latency from the
 *                                           intended send time, CPU per task
 *   gap/<sys>/gap_us:G                      round trips with G us between
 *   proc_gap/<sys>/gap_us:G                 them: latency, CPU per request
 *
 * Thread systems: cfutures, oneTBB, GLib, the mutex+condvar pool (open loop
 * and gap sweep), GLib and the condvar pool with a futex completion (gap
 * sweep: a round trip's completion is where they differ), libuv (gap sweep
 * only: uv_queue_work completes on the submitting thread's loop, so it has
 * no fire-and-forget form; it is an I/O offload pool, here for reference). Process systems:
 * cfutures and fork+pipe (open loop: OlForkPool, one shared task pipe; gap sweep: the textbook
 * ForkPool round trip).
 *
 * Each case runs one point per call (Iterations(1)); a repetition is a call,
 * and run.sh interleaves every repetition of every case at random
 * (--benchmark_enable_random_interleaving). Before each point the case sleeps
 * 20 ms (so no other system's threads still spin) and runs a short warm-up at
 * the same pace (an adaptive pool learns it; a real service has history).
 *
 * $CF_BENCH_OL_RATES / $CF_BENCH_GAPS_US: comma-separated lists replacing
 * the defaults below.
 */
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"
#include "openloop.h"
#include "procs.h"
#include "systems.h"

namespace {

std::vector<double> list_env(const char *name, std::vector<double> dflt) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  std::vector<double> v;
  for (const char *p = s; *p;) {
    char *end;
    double x = strtod(p, &end);
    if (end == p) break;
    v.push_back(x);
    p = *end == ',' ? end + 1 : end;
  }
  return v;
}

const std::vector<double> kRates =
    list_env("CF_BENCH_OL_RATES", {100, 1e3, 2e3, 5e3, 1e4, 2e4, 4e4, 1e5, 2e5, 5e5, 1e6});
const std::vector<double> kGapsUs =
    list_env("CF_BENCH_GAPS_US", {0, 1, 3, 10, 30, 50, 100, 300, 1000, 10000});

std::string rate_str(double r) {
  char b[32];
  snprintf(b, sizeof b, "%.0f", r);
  return b;
}

/* One open-loop point: warm-up, then the measured run. */
int64_t no_parks() {
  return -1;
}

/* parks(): the pool's count of workers going to sleep (cf_stats), or -1 */
template <class Post, class Parks = int64_t (*)()>
void openloop_case(benchmark::State &st, const std::string &name, double rate, bool poisson,
                   int64_t *done, Post post, Parks parks = no_parks) {
  for (auto _ : st) {
    bench_sleep_ns(20000000);
    int rep = ol::next_rep("warm:" + name);
    ol::Point warm, pt;
    /* the warm-up: 20 ms at the same pace (at least one task), its own seed */
    bool ok = ol::run_point(rate, poisson, 1000003u * (uint64_t)rep + 7, done, post, &warm, 0.02);
    int64_t parks0 = parks();
    if (!ok || !ol::run_point(rate, poisson, 1000003u * (uint64_t)rep, done, post, &pt)) {
      bench_fail(st, "open-loop point: a submit failed or a task never ran");
      return;
    }
    int64_t parks1 = parks();
    st.SetIterationTime((double)pt.wall_ns * 1e-9);
    ol::report_point(st, name, rate, pt);
    if (parks0 >= 0) st.counters["parks_per_task"] = (double)(parks1 - parks0) / (double)pt.n;
  }
}

std::vector<int64_t> &thread_done(size_t n) {
  static std::vector<int64_t> v;
  if (v.size() < n) v.resize(n);
  return v;
}

template <class Sys>
void BM_openloop(benchmark::State &st, std::string name, double rate, bool poisson) {
  Sys sys(bench_workers(), false);
  auto &done = thread_done(ol::max_tasks(rate));
  ol::g_done = done.data();
  auto post = [&sys](int64_t i) { return sys.post(i); };
  if constexpr (std::is_same_v<Sys, SysCf>)
    openloop_case(st, name, rate, poisson, done.data(), post, [&sys] { return sys.parks(); });
  else
    openloop_case(st, name, rate, poisson, done.data(), post);
}

void BM_proc_openloop(benchmark::State &st, std::string name, double rate, bool poisson, bool cf) {
  int64_t *done = ol_shared_done();
  if (ol::max_tasks(rate) > kOlCapacity) {
    bench_fail(st, "open-loop point larger than the shared done[]");
    return;
  }
  if (cf)
    openloop_case(
        st, name, rate, poisson, done, [](int64_t i) { return proc_cf_post(i); },
        [] {
          cf_stats s = {};
          return cf_executor_stats(cf_proc(), &s) == 0 ? (int64_t)s.parks : (int64_t)-1;
        });
  else
    openloop_case(st, name, rate, poisson, done,
                  [p = &ol_fork_pool()](int64_t i) { return p->post(i); });
}

template <class Rt>
void gap_case(benchmark::State &st, const std::string &name, int64_t gap_ns, Rt rt) {
  for (auto _ : st) {
    bench_sleep_ns(20000000);
    ol::GapPoint gp;
    if (!ol::run_gap(gap_ns, rt, &gp)) {
      bench_fail(st, "gap sweep: a round trip failed");
      return;
    }
    st.SetIterationTime((double)gp.wall_ns * 1e-9);
    ol::report_gap(st, name, gap_ns, gp);
  }
}

template <class Sys>
void BM_gap(benchmark::State &st, std::string name, int64_t gap_ns) {
  Sys sys(bench_workers(), false);
  gap_case(st, name, gap_ns, [&sys](int64_t x) { return sys.roundtrip(x); });
}

template <int64_t (*Rt)(int64_t, int64_t *)>
void BM_proc_gap(benchmark::State &st, std::string name, int64_t gap_ns) {
  gap_case(st, name, gap_ns, [](int64_t x) { return Rt(x, nullptr); });
}

template <class Fn, class... Args>
void reg(const std::string &name, Fn fn, Args... args) {
  benchmark::RegisterBenchmark(name.c_str(), fn, name, args...)
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}

template <class Sys>
void reg_thread() {
  std::string s = Sys::kName;
  for (bool poisson : {false, true})
    for (double r : kRates) {
      if (poisson && r < 1000) continue; /* 100/s: the idle-under-ticks point, fixed only */
      reg("openloop/" + std::string(poisson ? "poisson" : "fixed") + "/" + s +
              "/rate:" + rate_str(r),
          BM_openloop<Sys>, r, poisson);
    }
}

template <class Sys>
void reg_gap() {
  for (double g : kGapsUs)
    reg("gap/" + std::string(Sys::kName) + "/gap_us:" + rate_str(g), BM_gap<Sys>,
        (int64_t)(g * 1000));
}

int registered = [] {
  /* the fork pools first: forked before cfutures' pools start threads */
  for (bool cf : {false, true})
    for (bool poisson : {false, true})
      for (double r : kRates) {
        if (poisson && r < 1000) continue;
        reg("proc_openloop/" + std::string(poisson ? "poisson" : "fixed") + "/" +
                (cf ? "cfutures" : "fork_pipe") + "/rate:" + rate_str(r),
            BM_proc_openloop, r, poisson, cf);
      }
  for (double g : kGapsUs) {
    reg("proc_gap/fork_pipe/gap_us:" + rate_str(g), BM_proc_gap<proc_fork_roundtrip>,
        (int64_t)(g * 1000));
    reg("proc_gap/cfutures/gap_us:" + rate_str(g), BM_proc_gap<proc_cf_roundtrip>,
        (int64_t)(g * 1000));
  }
  reg_thread<SysCf>();
  reg_thread<SysTbb>();
  reg_thread<SysGlib>();
  reg_thread<SysMc>();
  reg_gap<SysCf>();
  reg_gap<SysTbb>();
  reg_gap<SysGlib>();
  reg_gap<SysMc>();
  reg_gap<SysMcSpin>();
  reg_gap<SysGlibSpin>();
  reg_gap<SysUv>();
  return 0;
}();

}  // namespace
