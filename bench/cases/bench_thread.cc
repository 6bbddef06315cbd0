/*
 * bench_thread.cc — thread pools fed from outside threads (systems.h):
 *
 *   roundtrip_hot/<sys>    one tiny task submitted and waited for, back to
 *                          back: per-iteration latency, p50/p99/p99.9, and
 *                          its two halves: dispatch (submit -> the task
 *                          starts) and notify (-> the caller has the result)
 *   roundtrip_idle/<sys>   the same after 2 ms of sleep each time, so the
 *                          workers have parked: the wake-up path
 *   throughput/<sys>/submitters:T   N tiny tasks from T outside threads,
 *                          then wait for all; tasks/s
 *   idle/<sys>             CPU the pool's threads use in 1 s without work,
 *                          right after warm work: % of one core
 *
 * Every round trip checks its result; every burst checks all N results
 * (outside the timed region: manual time).
 */
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common.h"
#include "systems.h"

namespace {

/* T-1 helper threads that run a submitter share each, with the caller as
 * share 0. A generation counter under a mutex: cheap next to a burst. */
class Submitters {
 public:
  explicit Submitters(int total) : total_(total) {
    for (int k = 1; k < total; k++) th_.emplace_back([this, k] { loop(k); });
  }
  ~Submitters() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto &t : th_) t.join();
  }
  template <class Fn>
  void run(Fn fn) {
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = fn;
      pending_ = total_ - 1;
      gen_++;
    }
    cv_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
  }

 private:
  void loop(int k) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
      if (stop_) return;
      seen = gen_;
      auto fn = job_;
      lk.unlock();
      fn(k);
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
  int total_;
  std::vector<std::thread> th_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::function<void(int)> job_;
  uint64_t gen_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

template <class Sys>
void BM_roundtrip(benchmark::State &st, bool idle) {
  Sys sys(bench_workers(), false);
  bench_roundtrip_loop(
      st, idle,
      [&sys](int64_t x, int64_t *started) {
        int64_t r = sys.roundtrip(x);
        *started = g_rt_started.load(std::memory_order_relaxed); /* set by the task */
        return r;
      },
      "round trip result");
}

template <class Sys>
void BM_throughput(benchmark::State &st, int submitters) {
  Sys sys(bench_workers(), false);
  const size_t n = bench_tasks();
  std::vector<int64_t> out(n);
  Submitters sub(submitters);
  std::atomic<bool> ok{true};
  auto share = [&](int k) {
    int64_t lo = (int64_t)(n * (size_t)k / (size_t)submitters);
    int64_t hi = (int64_t)(n * (size_t)(k + 1) / (size_t)submitters);
    if (!sys.burst(lo, hi, out.data())) ok = false;
  };
  sub.run(share); /* warm-up burst, untimed */
  /* per task, the submitters' CPU included */
  CpuScope cpu(st, (double)n);
  for (auto _ : st) {
    std::fill(out.begin(), out.end(), 0);
    int64_t t0 = bench_now_ns();
    sub.run(share);
    st.SetIterationTime((double)(bench_now_ns() - t0) * 1e-9);
    if (!ok) {
      bench_fail(st, "burst call failed");
      break;
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != (int64_t)i + 1;
    if (bad) {
      bench_fail(st, "burst results wrong", (long long)bad, 0);
      break;
    }
  }
  st.SetItemsProcessed(st.iterations() * (int64_t)n);
}

double idle_seconds() {
  const char *s = getenv("CF_BENCH_IDLE_SECONDS");
  double v = s ? atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

template <class Sys>
void BM_idle(benchmark::State &st) {
  double sum_pct = 0;
  for (auto _ : st) {
    Sys sys(bench_workers(), true); /* a fresh pool: only its threads work */
    const size_t n = 20000;
    std::vector<int64_t> out(n);
    bool ok = sys.burst(0, (int64_t)n, out.data());
    for (int64_t i = 0; i < 1000 && ok; i++) ok = sys.roundtrip(i) == i + 1;
    for (size_t i = 0; i < n && ok; i++) ok = out[i] == (int64_t)i + 1;
    if (!ok) {
      bench_fail(st, "idle warm-up results");
      break;
    }
    /* process CPU minus this (sleeping) thread's: the pool's threads, plus
     * any thread a system left behind (TBB's and libuv's are global) */
    int64_t c0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    int64_t m0 = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t w0 = bench_now_ns();
    bench_sleep_ns((int64_t)(idle_seconds() * 1e9));
    int64_t c1 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    int64_t m1 = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t w1 = bench_now_ns();
    double pct = 100.0 * (double)((c1 - c0) - (m1 - m0)) / (double)(w1 - w0);
    sum_pct += pct;
    st.SetIterationTime((double)(w1 - w0) * 1e-9);
  }
  st.counters["cpu_pct_of_core"] = st.iterations() ? sum_pct / (double)st.iterations() : 0;
}

template <class Sys>
void reg_system() {
  std::string s = Sys::kName;
  benchmark::RegisterBenchmark(("roundtrip_hot/" + s).c_str(), BM_roundtrip<Sys>, false)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("roundtrip_idle/" + s).c_str(), BM_roundtrip<Sys>, true)
      ->UseManualTime()
      ->Iterations(bench_idle_iters())
      ->Unit(benchmark::kMicrosecond);
  for (int t : {1, 2})
    benchmark::RegisterBenchmark(("throughput/" + s + "/submitters:" + std::to_string(t)).c_str(),
                                 BM_throughput<Sys>, t)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

int reg = [] {
  reg_system<SysCf>();
  reg_system<SysTbb>();
  reg_system<SysGlib>();
  reg_system<SysMc>();
  reg_system<SysMcSpin>();
  reg_system<SysGlibSpin>();
  reg_system<SysUv>();
  /* idle: TBB last, libuv before it: both keep global threads after their
   * pool is gone, which would be charged to the systems measured after. */
  auto idle = [](const char *name, void (*fn)(benchmark::State &)) {
    benchmark::RegisterBenchmark((std::string("idle/") + name).c_str(), fn)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  };
  idle(SysCf::kName, BM_idle<SysCf>);
  idle(SysMc::kName, BM_idle<SysMc>);
  idle(SysGlib::kName, BM_idle<SysGlib>);
  idle(SysUv::kName, BM_idle<SysUv>);
  idle(SysTbb::kName, BM_idle<SysTbb>);
  return 0;
}();

}  // namespace
