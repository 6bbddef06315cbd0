/* openloop.cc — see openloop.h. */
#include "openloop.h"

#include <cmath>
#include <mutex>

namespace ol {

int64_t *g_done;

static double base_seconds() {
  static double s = [] {
    const char *e = getenv("CF_BENCH_OL_SECONDS");
    double v = e ? atof(e) : 0.25;
    return v > 0 ? v : 0.25;
  }();
  return s;
}

double point_seconds(double rate) {
  double s = base_seconds();
  double want = 1000.0 / rate; /* at least 1000 tasks */
  if (want > s) s = want < 4 * base_seconds() ? want : 4 * base_seconds();
  return s;
}

size_t max_tasks(double rate) {
  return (size_t)std::llround(rate * point_seconds(rate)) + 1;
}

std::vector<int64_t> schedule(double rate, double seconds, bool poisson, uint64_t seed) {
  size_t n = (size_t)std::llround(rate * seconds);
  if (n < 1) n = 1;
  std::vector<int64_t> off(n);
  double gap = 1e9 / rate, t = 0;
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    off[i] = (int64_t)t;
    if (poisson) {
      x = bench_mix(x, 1); /* splitmix64: uniform in (0, 1] below */
      double u = ((double)(x >> 11) + 1.0) * 0x1.0p-53;
      t += -std::log(u) * gap;
    } else {
      t += gap;
    }
  }
  return off;
}

int next_rep(const std::string &name) {
  static std::mutex mu;
  static std::map<std::string, int> reps;
  std::lock_guard<std::mutex> g(mu);
  return reps[name]++;
}

static std::string side_head(const std::string &name, int rep) {
  char b[160];
  snprintf(b, sizeof b, "{\"name\": \"%s\", \"rep\": %d, \"load1\": %.2f", name.c_str(), rep,
           bench_loadavg1());
  return b;
}

void report_point(benchmark::State &st, const std::string &name, double rate, const Point &pt) {
  int rep = next_rep(name);
  double n = (double)pt.n;
  st.counters["rate"] = rate;
  st.counters["sent_rate"] = pt.sent_rate;
  st.counters["samples"] = n;
  st.counters["p50_ns"] = pt.lat.pct(0.50);
  st.counters["p90_ns"] = pt.lat.pct(0.90);
  st.counters["p99_ns"] = pt.lat.pct(0.99);
  st.counters["p999_ns"] = pt.lat.pct(0.999);
  st.counters["max_ns"] = (double)pt.lat.max;
  st.counters["svc_p50_ns"] = pt.svc.pct(0.50);
  st.counters["svc_p99_ns"] = pt.svc.pct(0.99);
  st.counters["lag_p50_ns"] = pt.lag.pct(0.50);
  st.counters["lag_p99_ns"] = pt.lag.pct(0.99);
  st.counters["behind"] = pt.behind ? 1 : 0;
  st.counters["cpu_ns_per_task"] = (double)pt.pool.cpu_ns / n;
  st.counters["cpu_pct_core"] = 100.0 * (double)pt.pool.cpu_ns / (double)pt.wall_ns;
  st.counters["csw_per_task"] = (double)pt.pool.csw() / n;
  st.counters["gen_cpu_ns_per_task"] = (double)pt.gen.cpu_ns / n;
  st.counters["load1"] = bench_loadavg1();
  char b[256];
  snprintf(b, sizeof b,
           ", \"kind\": \"openloop\", \"rate\": %.0f, \"n\": %lld, \"wall_ns\": %lld, "
           "\"cpu_ns\": %lld, \"csw\": %lld, \"gen_cpu_ns\": %lld, \"behind\": %d",
           rate, (long long)pt.n, (long long)pt.wall_ns, (long long)pt.pool.cpu_ns,
           (long long)pt.pool.csw(), (long long)pt.gen.cpu_ns, pt.behind ? 1 : 0);
  bench_side(side_head(name, rep) + b + ", \"lat\": \"" + pt.lat.encode() + "\", \"svc\": \"" +
             pt.svc.encode() + "\", \"lag\": \"" + pt.lag.encode() + "\"}");
}

double gap_alone_ns(int64_t gap_ns) {
  static std::mutex mu;
  static std::map<int64_t, double> cache;
  std::lock_guard<std::mutex> g(mu);
  auto it = cache.find(gap_ns);
  if (it != cache.end()) return it->second;
  const int64_t n = gap_samples(gap_ns) < 200 ? gap_samples(gap_ns) : 200;
  int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
  int64_t c0 = bench_clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (int64_t i = 0; i < n; i++) {
    int64_t t0 = bench_now_ns(); /* the loop's own clock reads */
    int64_t t1 = bench_now_ns();
    benchmark::DoNotOptimize(t0);
    gap_wait(t1, gap_ns);
  }
  double v = (double)(bench_clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n;
  prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0);
  cache[gap_ns] = v;
  return v;
}

int64_t gap_samples(int64_t gap_ns) {
  double n = base_seconds() * 1e9 / (double)(gap_ns + 10000);
  return n < 40 ? 40 : n > 4000 ? 4000 : (int64_t)n;
}

void report_gap(benchmark::State &st, const std::string &name, int64_t gap_ns, const GapPoint &gp) {
  int rep = next_rep(name);
  double n = (double)gp.n;
  int64_t cpu = gp.pool.cpu_ns + gp.caller_rt_ns;
  st.counters["gap_ns"] = (double)gap_ns;
  st.counters["mean_gap_ns"] = gp.mean_gap_ns;
  st.counters["samples"] = n;
  st.counters["p50_ns"] = gp.lat.pct(0.50);
  st.counters["p99_ns"] = gp.lat.pct(0.99);
  st.counters["p999_ns"] = gp.lat.pct(0.999);
  st.counters["cpu_ns_per_req"] = (double)cpu / n;
  st.counters["pool_cpu_ns_per_req"] = (double)gp.pool.cpu_ns / n;
  st.counters["caller_cpu_ns_per_req"] = (double)gp.caller_rt_ns / n;
  st.counters["csw_per_req"] = (double)gp.csw / n;
  st.counters["load1"] = bench_loadavg1();
  char b[256];
  snprintf(
      b, sizeof b,
      ", \"kind\": \"gap\", \"gap_ns\": %lld, \"n\": %lld, \"wall_ns\": %lld, \"cpu_ns\": %lld, "
      "\"caller_cpu_ns\": %lld, \"csw\": %lld, \"mean_gap_ns\": %.0f",
      (long long)gap_ns, (long long)gp.n, (long long)gp.wall_ns, (long long)cpu,
      (long long)gp.caller_rt_ns, (long long)gp.csw, gp.mean_gap_ns);
  bench_side(side_head(name, rep) + b + ", \"lat\": \"" + gp.lat.encode() + "\"}");
}

}  // namespace ol
