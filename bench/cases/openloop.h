/*
 * openloop.h — the open-loop load generator and the gap sweep, shared by
 * every pool (bench_openloop.cc registers them for threads and processes).
 *
 * Open loop (wrk2's method). Requests arrive on their own schedule, not when
 * the previous one is done: task i is due at t0 + s_i, with s_i on a fixed
 * grid (i / rate) or a Poisson process (exponential gaps of mean 1 / rate,
 * the same seeded sequence for every system of a repetition). The generator
 * (the benchmark's thread) sleeps until each due time (clock_nanosleep to
 * an absolute time, timer slack 1 ns, no spinning: a spinning generator
 * would take one of the CPUs the pool runs on), then submits every task
 * that is due. A task stamps the time it runs into done[i]. Three
 * latencies per task:
 *   latency  done - due   (from the intended send time: a generator held up
 *                          by the pool, or by the machine, cannot hide the
 *                          wait: coordinated omission corrected)
 *   service  done - sent  (from the actual submit)
 *   lag      sent - due   (how late the generator was)
 * and the point is flagged `behind` when the generator could not keep the
 * schedule: its p99 lag over 1 ms, or it sent at under 95 % of the rate.
 * CPU: every thread and process of the pool over the run (the process
 * minus the generator thread, plus every descendant process), from 1 ms
 * before the first due time until 2 ms after the last task ran (so a pool
 * that spins after its work pays for that too); per task and as % of one
 * core (the run's wall time). Context switches likewise, per task.
 *
 * Gap sweep (closed loop with think time): one request, wait for its result,
 * then a fixed gap before the next (0 .. 10 ms). Latency is the round trip
 * as the caller sees it; CPU per request is the pool's CPU (process minus
 * the caller thread, plus descendants) plus the caller's own CPU inside the
 * round trips (submit and wait, read from its thread clock around each
 * one): the caller's time in the gap itself (a spin below 100 us, a sleep
 * above) is nobody's cost. The mean gap actually kept is reported beside
 * the nominal one.
 *
 * Both report google-benchmark counters for the repetition and append each
 * repetition's histograms (hist.h) to the side file (bench_side(), one JSON
 * line each), which summarize.py pools across repetitions.
 */
#ifndef CF_BENCH_OPENLOOP_H
#define CF_BENCH_OPENLOOP_H

#include <sys/prctl.h>

#include <map>
#include <string>
#include <vector>

#include "common.h"
#include "cpu.h"
#include "hist.h"

namespace ol {

/* done[i] for the running point: set by the task (a thread pool's task
 * writes it directly; a process task writes its shared mapping). */
extern int64_t *g_done;

/* The task body every open-loop system runs: stamp done[i]. relaxed: the
 * generator polls with acquire loads after the run, and only needs to see
 * the value eventually; the stamp is the measured thing. */
static inline void mark(int64_t *done, int64_t i) {
  __atomic_store_n(&done[i], bench_now_ns(), __ATOMIC_RELEASE);
}

/* Per-point duration: $CF_BENCH_OL_SECONDS (default 0.25) at the least,
 * longer at low rates so that a point has at least 1000 tasks (capped at
 * 4 x the minimum). */
double point_seconds(double rate);

/* The schedule: offsets in ns from t0. */
std::vector<int64_t> schedule(double rate, double seconds, bool poisson, uint64_t seed);

/* How many times `name` has run in this process: its repetition index. */
int next_rep(const std::string &name);

struct Point {
  Hist lat, svc, lag;
  CpuUse pool, gen;
  int64_t wall_ns = 0, n = 0;
  double sent_rate = 0;
  bool behind = false;
};

/* The most tasks a point at this rate has (room needed in done[]). */
size_t max_tasks(double rate);

/* Run one open-loop point of `seconds` (0: point_seconds(rate)): post(i)
 * submits task i (which must mark(done, i) when it runs); done has room for
 * max_tasks(rate) entries and is zeroed here. False if a post failed or a
 * task did not run within 30 s. */
template <class Post>
bool run_point(double rate, bool poisson, uint64_t seed, int64_t *done, Post &&post, Point *pt,
               double seconds = 0) {
  std::vector<int64_t> off =
      schedule(rate, seconds > 0 ? seconds : point_seconds(rate), poisson, seed);
  const size_t n = off.size();
  std::vector<int64_t> sent(n);
  for (size_t i = 0; i < n; i++) done[i] = 0;
  int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
  CpuMeter m;
  m.start();
  const int64_t t0 = bench_now_ns() + 1000000;
  for (size_t i = 0; i < n; i++) {
    int64_t due = t0 + off[i];
    int64_t now = bench_now_ns();
    if (now < due) {
      struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
      }
      now = bench_now_ns();
    }
    sent[i] = now;
    if (!post((int64_t)i)) {
      prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0);
      return false;
    }
  }
  /* every task has run: poll (sleeping; the generator is idle now) */
  int64_t last = 0, give_up = bench_now_ns() + 30 * (int64_t)1000000000;
  for (size_t i = 0; i < n; i++) {
    int64_t d;
    while ((d = __atomic_load_n(&done[i], __ATOMIC_ACQUIRE)) == 0) {
      if (bench_now_ns() > give_up) { /* a task never ran */
        prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0);
        return false;
      }
      bench_sleep_ns(50000);
    }
    if (d > last) last = d;
  }
  int64_t now = bench_now_ns();
  if (now < last + 2000000) bench_sleep_ns(last + 2000000 - now);
  m.stop();
  prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0);
  pt->gen = m.caller();
  pt->pool = (m.self() - m.caller()) + m.children();
  pt->wall_ns = m.wall_ns();
  pt->n = (int64_t)n;
  for (size_t i = 0; i < n; i++) {
    int64_t due = t0 + off[i];
    pt->lat.add(done[i] - due);
    pt->svc.add(done[i] - sent[i]);
    pt->lag.add(sent[i] - due);
  }
  double span = n > 1 ? (double)(sent[n - 1] - sent[0]) * 1e-9 : 0;
  double want = n > 1 ? (double)(off[n - 1] - off[0]) * 1e-9 : 0;
  pt->sent_rate = span > 0 ? (double)(n - 1) / span : rate;
  pt->behind = pt->lag.pct(0.99) > 1e6 || (want > 0 && span > want / 0.95);
  return true;
}

/* Counters of a point, and its histograms into the side file. */
void report_point(benchmark::State &st, const std::string &name, double rate, const Point &pt);

/* ---- the gap sweep ---- */

struct GapPoint {
  Hist lat;
  CpuUse pool;              /* the pool's threads and processes, not the caller */
  int64_t caller_rt_ns = 0; /* the caller's CPU in its round trips (gap_alone_ns) */
  int64_t csw = 0;          /* context switches, caller's included */
  int64_t n = 0, wall_ns = 0;
  double mean_gap_ns = 0;
};

/* Samples per gap point: about $CF_BENCH_OL_SECONDS of run, 40 .. 4000. */
int64_t gap_samples(int64_t gap_ns);

/* The caller's CPU per gap alone (the spin or sleep between requests, and
 * the loop), measured once per gap length in this process: subtracted from
 * the caller's CPU over a point, it leaves what the round trips cost it.
 * (Reading the thread's CPU clock around each round trip instead costs a
 * system call per read, microseconds on this VM.) */
double gap_alone_ns(int64_t gap_ns);

/* Wait from `from` until from + gap_ns: a spin below 100 us, a sleep (timer
 * slack 1 ns, set by the caller) above. */
inline void gap_wait(int64_t from, int64_t gap_ns) {
  int64_t until = from + gap_ns;
  if (gap_ns >= 100000) {
    struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
    }
  } else {
    while (bench_now_ns() < until) __builtin_ia32_pause();
  }
}

/* rt(x) runs one round trip and returns x + 1 (checked). */
template <class Rt>
bool run_gap(int64_t gap_ns, Rt &&rt, GapPoint *gp) {
  const int64_t n = gap_samples(gap_ns);
  const int64_t warm = n / 10 < 20 ? 20 : n / 10;
  const double alone = gap_alone_ns(gap_ns);
  int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
  bool ok = true;
  /* warm-up at the same gap: an adaptive pool learns the pace */
  for (int64_t i = 0; i < warm && ok; i++) {
    ok = rt(i) == i + 1;
    gap_wait(bench_now_ns(), gap_ns);
  }
  CpuMeter m;
  m.start();
  int64_t prev_end = 0, gap_sum = 0;
  for (int64_t i = 0; i < n && ok; i++) {
    int64_t t0 = bench_now_ns();
    ok = rt(i) == i + 1;
    int64_t t1 = bench_now_ns();
    gp->lat.add(t1 - t0);
    if (prev_end) gap_sum += t0 - prev_end;
    prev_end = t1;
    gap_wait(t1, gap_ns);
  }
  m.stop();
  prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0);
  gp->n = n;
  gp->wall_ns = m.wall_ns();
  double in_rt = (double)m.caller().cpu_ns - alone * (double)n;
  gp->caller_rt_ns = in_rt > 0 ? (int64_t)in_rt : 0;
  gp->pool = (m.self() - m.caller()) + m.children();
  gp->csw = m.total().csw();
  gp->mean_gap_ns = n > 1 ? (double)gap_sum / (double)(n - 1) : 0;
  return ok;
}

void report_gap(benchmark::State &st, const std::string &name, int64_t gap_ns, const GapPoint &gp);

}  // namespace ol

#endif /* CF_BENCH_OPENLOOP_H */
