/* cpu.cc — see cpu.h. */
#include "cpu.h"

#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "common.h"

static CpuUse from_rusage(int who, clockid_t clk) {
  CpuUse u;
  struct rusage r;
  if (getrusage(who, &r) == 0) {
    u.vcsw = r.ru_nvcsw;
    u.ivcsw = r.ru_nivcsw;
  }
  u.cpu_ns = bench_clock_ns(clk);
  return u;
}

CpuUse cpu_self() {
  return from_rusage(RUSAGE_SELF, CLOCK_PROCESS_CPUTIME_ID);
}

CpuUse cpu_thread() {
  return from_rusage(RUSAGE_THREAD, CLOCK_THREAD_CPUTIME_ID);
}

/* Context switches of every thread of pid, from /proc/pid/task/<tid>/status. */
static void pid_csw(pid_t pid, CpuUse *u) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (!d) return;
  while (struct dirent *e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char sp[320];
    snprintf(sp, sizeof sp, "/proc/%d/task/%s/status", (int)pid, e->d_name);
    FILE *f = fopen(sp, "r");
    if (!f) continue;
    char line[256];
    while (fgets(line, sizeof line, f)) {
      long long v;
      if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1)
        u->vcsw += v;
      else if (sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
        u->ivcsw += v;
    }
    fclose(f);
  }
  closedir(d);
}

bool cpu_pid(pid_t pid, CpuUse *out) {
  clockid_t c;
  struct timespec ts;
  if (clock_getcpuclockid(pid, &c) != 0 || clock_gettime(c, &ts) != 0) return false;
  CpuUse u;
  u.cpu_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  pid_csw(pid, &u);
  *out = u;
  return true;
}

std::vector<CpuProc> cpu_descendants() {
  std::multimap<pid_t, pid_t> kids; /* ppid -> pid */
  DIR *d = opendir("/proc");
  if (d) {
    while (struct dirent *e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      char path[300], buf[512];
      snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
      FILE *f = fopen(path, "r");
      if (!f) continue;
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      buf[n] = 0;
      const char *p = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
      char state;
      int ppid;
      if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && state != 'Z')
        kids.emplace((pid_t)ppid, (pid_t)atoi(e->d_name));
    }
    closedir(d);
  }
  std::vector<CpuProc> out;
  std::vector<CpuProc> frontier{{getpid(), 0, 0}};
  while (!frontier.empty()) {
    std::vector<CpuProc> next;
    for (const CpuProc &p : frontier) {
      auto r = kids.equal_range(p.pid);
      for (auto it = r.first; it != r.second; ++it)
        next.push_back({it->second, p.pid, p.depth + 1});
    }
    out.insert(out.end(), next.begin(), next.end());
    frontier.swap(next);
  }
  return out;
}

void CpuMeter::start() {
  procs_.clear();
  auto ds = cpu_descendants();
  for (const CpuProc &d : ds) {
    Proc p{d.pid, d.depth, true, {}, {}};
    for (const CpuProc &e : ds) p.leaf = p.leaf && e.ppid != d.pid;
    if (cpu_pid(d.pid, &p.a)) procs_.push_back(p);
  }
  wall0_ = bench_now_ns();
  caller0_ = cpu_thread();
  self0_ = cpu_self();
}

void CpuMeter::stop() {
  self_ = cpu_self() - self0_;
  caller_ = cpu_thread() - caller0_;
  wall_ = bench_now_ns() - wall0_;
  for (auto &p : procs_)
    if (!cpu_pid(p.pid, &p.b)) p.b = p.a; /* gone: counted up to its first reading */
}

CpuUse CpuMeter::children() const {
  CpuUse u;
  for (auto &p : procs_) u += p.b - p.a;
  return u;
}

CpuUse CpuMeter::depth(int d) const {
  CpuUse u;
  for (auto &p : procs_)
    if (p.depth == d) u += p.b - p.a;
  return u;
}

CpuUse CpuMeter::leaves() const {
  CpuUse u;
  for (auto &p : procs_)
    if (p.leaf) u += p.b - p.a;
  return u;
}

CpuUse CpuMeter::inner() const {
  CpuUse u;
  for (auto &p : procs_)
    if (!p.leaf) u += p.b - p.a;
  return u;
}

double bench_loadavg1() {
  double l[1];
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}
