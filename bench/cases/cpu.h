/*
 * cpu.h — what a benchmark costs in CPU, beside what it takes in wall time.
 *
 * A pool's cost is the CPU of every thread and process it runs: for a thread
 * pool the benchmark process (CLOCK_PROCESS_CPUTIME_ID, getrusage's context
 * switches), for a process pool also its helper processes and workers (every
 * descendant of this process, found in /proc, each read with its own
 * process CPU clock: clock_getcpuclockid, nanoseconds, not clock ticks).
 * The thread that drives a benchmark (a load generator, a caller between
 * requests) is read separately so that its share can be taken out.
 *
 * CpuMeter brackets a measured region: start() lists the descendants and
 * reads every clock, stop() reads them again (a process that started or
 * ended in between is counted from its first or up to its last reading).
 */
#ifndef CF_BENCH_CPU_H
#define CF_BENCH_CPU_H

#include <benchmark/benchmark.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

struct CpuUse {
  int64_t cpu_ns = 0; /* user + system */
  int64_t vcsw = 0;   /* voluntary context switches (blocked) */
  int64_t ivcsw = 0;  /* involuntary (preempted) */
  CpuUse &operator+=(const CpuUse &o) {
    cpu_ns += o.cpu_ns;
    vcsw += o.vcsw;
    ivcsw += o.ivcsw;
    return *this;
  }
  CpuUse operator-(const CpuUse &o) const {
    CpuUse r = *this;
    r.cpu_ns -= o.cpu_ns;
    r.vcsw -= o.vcsw;
    r.ivcsw -= o.ivcsw;
    return r;
  }
  CpuUse operator+(const CpuUse &o) const {
    CpuUse r = *this;
    r += o;
    return r;
  }
  int64_t csw() const { return vcsw + ivcsw; }
};

/* This process, every thread. */
CpuUse cpu_self();
/* The calling thread. */
CpuUse cpu_thread();
/* Another process (every thread); false if it is gone. */
bool cpu_pid(pid_t pid, CpuUse *out);
/* Every live descendant of this process, children first (breadth-first),
 * with its depth (1: a child). */
struct CpuProc {
  pid_t pid, ppid;
  int depth;
};
std::vector<CpuProc> cpu_descendants();

/* A measured region: the process, its descendants, and the calling thread. */
class CpuMeter {
 public:
  void start();
  void stop();
  CpuUse self() const { return self_; }               /* this process */
  CpuUse caller() const { return caller_; }           /* the thread that called start/stop */
  CpuUse children() const;                            /* every descendant */
  CpuUse depth(int d) const;                          /* descendants at depth d only */
  CpuUse leaves() const;                              /* descendants with no children */
  CpuUse inner() const;                               /* descendants with children */
  CpuUse total() const { return self_ + children(); } /* pool + caller */
  int64_t wall_ns() const { return wall_; }

 private:
  struct Proc {
    pid_t pid;
    int depth;
    bool leaf;
    CpuUse a, b;
  };
  std::vector<Proc> procs_;
  CpuUse self0_, caller0_, self_, caller_;
  int64_t wall0_ = 0, wall_ = 0;
};

/* 1-minute load average, or -1. */
double bench_loadavg1();

/* The CPU beside the wall time of a benchmark's timed loop: made just before
 * `for (auto _ : st)`, it reports when the function returns
 *   cpu_ns_per_op   CPU of the process and its descendants (the caller
 *                   included) per operation: an iteration, or one of
 *                   `ops_per_iter` items of it
 *   cpu_pct_core    the same over the loop's wall time, % of one core
 *   csw_per_op      context switches per operation */
class CpuScope {
 public:
  explicit CpuScope(benchmark::State &st, double ops_per_iter = 1) : st_(st), ops_(ops_per_iter) {
    m_.start();
  }
  ~CpuScope() {
    m_.stop();
    double ops = (double)st_.iterations() * ops_;
    CpuUse u = m_.total();
    if (ops > 0) {
      st_.counters["cpu_ns_per_op"] = (double)u.cpu_ns / ops;
      st_.counters["csw_per_op"] = (double)u.csw() / ops;
    }
    if (m_.wall_ns() > 0)
      st_.counters["cpu_pct_core"] = 100.0 * (double)u.cpu_ns / (double)m_.wall_ns();
  }
  CpuScope(const CpuScope &) = delete;
  CpuScope &operator=(const CpuScope &) = delete;

 private:
  benchmark::State &st_;
  double ops_;
  CpuMeter m_;
};

#endif /* CF_BENCH_CPU_H */
