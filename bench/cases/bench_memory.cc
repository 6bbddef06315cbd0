/*
 * bench_memory.cc — memory per in-flight task and heap allocations per task
 * (its own binary, cf_bench_memory, because it turns jemalloc's thread
 * caches off — see below).
 *
 * memory/<sys>: a fresh pool of `workers` threads; every worker is blocked
 * in a task that waits on a gate, then N tiny tasks are submitted and stay
 * pending. Measured across that submit:
 *   heap_bytes_per_task  jemalloc "stats.allocated" delta / N: live heap
 *                        bytes, exact (all threads, malloc and mallocx)
 *   rss_bytes_per_task   resident set delta / N, in the first cycle of a
 *                        fresh process (run.sh runs each system in its own
 *                        process so freed pages of another system are not
 *                        reused); counts what no allocator statistic sees
 *                        (TBB's own allocator, mmaps)
 * then the gate opens and every task is waited for and checked.
 *   allocs_per_task      heap allocations (malloc, calloc, realloc,
 *                        mallocx, new ...) per task over a whole second
 *                        cycle — submit, run, complete, read, release —
 *                        with N tasks in flight at once
 *   allocs_per_task_steady  the same in steady state: N tasks in bursts of
 *                        64 (submit 64, wait for them, release), after a
 *                        warm-up: the hot path's allocations
 * Counts come from jemalloc's exact per-arena nmalloc counters:
 *                        malloc_conf "tcache:false" below makes every
 *                        allocation reach the arena, so the counts are
 *                        exact (thread caches would batch them).
 * What counts as the task's memory is what the system's idiom needs per
 * task between submit and completion: cfutures' future (plus the caller's
 * array of future pointers), GLib's job structs (the caller allocates them),
 * the textbook pool's std::function and deque slot, TBB's task object. The
 * results array all systems write to is allocated before the measurement.
 *
 * GLib 2.74 takes its queue nodes from its slice allocator, which gets
 * pages from malloc only now and then; run.sh runs the GLib case with
 * G_SLICE=always-malloc so that every node is a counted malloc.
 * oneTBB allocates its tasks from tbbmalloc (libtbbmalloc, loaded at run
 * time), which jemalloc's counters cannot see: for TBB the heap and alloc
 * counters read low and `jemalloc_sees_all` is 0; its RSS figure is valid.
 */
#include <linux/futex.h>
#include <sys/syscall.h>

#include <jemalloc/jemalloc.h>
#include <oneapi/tbb/task_arena.h>

#include <cstring>
#include <fstream>
#include <string>

#include "common.h"
#include "mcpool.h"
#include "pools.h"

/* Every allocation reaches jemalloc's arenas, where it is counted. */
extern "C" {
const char *malloc_conf = "tcache:false";
}

namespace {

uint64_t je_u64(const char *name) {
  uint64_t v = 0;
  size_t sz = sizeof v;
  if (mallctl(name, &v, &sz, nullptr, 0) != 0) return 0;
  return v;
}

void je_refresh() {
  uint64_t e = 1;
  size_t sz = sizeof e;
  mallctl("epoch", &e, &sz, &e, sz);
}

uint64_t heap_allocated() {
  je_refresh();
  size_t v = 0, sz = sizeof v;
  mallctl("stats.allocated", &v, &sz, nullptr, 0);
  return v;
}

uint64_t heap_nmalloc() {
  je_refresh();
  char a[96], b[96];
  snprintf(a, sizeof a, "stats.arenas.%u.small.nmalloc", (unsigned)MALLCTL_ARENAS_ALL);
  snprintf(b, sizeof b, "stats.arenas.%u.large.nmalloc", (unsigned)MALLCTL_ARENAS_ALL);
  return je_u64(a) + je_u64(b);
}

int64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  long long size = 0, res = 0;
  f >> size >> res;
  return res * sysconf(_SC_PAGESIZE);
}

bool tbbmalloc_loaded() {
  std::ifstream f("/proc/self/maps");
  std::string line;
  while (std::getline(f, line))
    if (line.find("libtbbmalloc") != std::string::npos) return true;
  return false;
}

/* Workers block here until the measurement is taken. */
struct Gate {
  /* A generation, not an open flag that reset() closes again: a blocker of
   * the last cycle that has not yet seen its release (preempted on a busy
   * machine) must not block again on the next cycle's closed gate (it did:
   * the next cycle then waited for ever for a worker to start its blocker). */
  std::atomic<uint32_t> gen{0};
  std::atomic<int> started{0};
  void reset() { started.store(0); }
  void block() {
    uint32_t g = gen.load(std::memory_order_acquire);
    started.fetch_add(1);
    while (gen.load(std::memory_order_acquire) == g)
      syscall(SYS_futex, (uint32_t *)&gen, FUTEX_WAIT_PRIVATE, g, nullptr, nullptr, 0);
  }
  void wait_started(int n) {
    while (started.load() < n) bench_sleep_ns(100000);
  }
  void release() {
    gen.fetch_add(1, std::memory_order_release); /* pairs with the acquire in block() */
    syscall(SYS_futex, (uint32_t *)&gen, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
  }
};

Gate g_gate;

struct Cycle {
  double heap_per_task, rss_per_task, allocs_per_task;
  bool ok;
};

/* A system: block(w) occupies the workers, submit(n, out) queues n tasks
 * out[i] = i + 1, finish() waits for all and releases them, drop() frees
 * the caller's per-task arrays (kept between steady-state bursts, as a
 * caller would). */
template <class S>
Cycle cycle(S &s, size_t n, std::vector<int64_t> &out) {
  const unsigned w = bench_workers();
  std::fill(out.begin(), out.end(), 0);
  g_gate.reset();
  s.block(w);
  g_gate.wait_started((int)w);
  uint64_t n0 = heap_nmalloc();
  uint64_t a0 = heap_allocated();
  int64_t r0 = rss_bytes();
  bool ok = s.submit(n, out.data());
  uint64_t a1 = heap_allocated();
  int64_t r1 = rss_bytes();
  g_gate.release();
  ok = s.finish() && ok;
  s.drop(); /* the caller's per-task arrays: allocated anew next cycle */
  uint64_t n1 = heap_nmalloc();
  for (size_t i = 0; i < n && ok; i++) ok = out[i] == (int64_t)i + 1;
  /* the two heap_* calls in between allocate nothing (mallctl reads) */
  return {(double)((int64_t)a1 - (int64_t)a0) / (double)n, (double)(r1 - r0) / (double)n,
          (double)(n1 - n0) / (double)n, ok};
}

/* ---- the systems ---- */

void inc_task(cf_call *c) {
  const int64_t *x = (const int64_t *)cf_call_arg(c, nullptr);
  int64_t r = *x + 1;
  cf_call_return(c, &r, sizeof r);
}
void block_task(cf_call *) {
  g_gate.block();
}

struct MemCf {
  static constexpr bool kTbb = false;
  cf_executor *ex = nullptr;
  std::vector<cf_future *> fs, blockers;
  int64_t *out = nullptr;
  MemCf() {
    cf_options o;
    cf_options_init(&o);
    o.workers = bench_workers();
    if (cf_thread_pool_new(&o, &ex) != 0) abort();
  }
  ~MemCf() { cf_executor_destroy(ex); }
  void block(unsigned w) {
    blockers.assign(w, nullptr);
    for (auto &f : blockers) cf_submit(ex, block_task, nullptr, 0, &f);
  }
  bool submit(size_t n, int64_t *o) {
    out = o;
    fs.assign(n, nullptr); /* the caller's array of futures: counted */
    for (size_t i = 0; i < n; i++) {
      int64_t x = (int64_t)i;
      if (cf_submit(ex, inc_task, &x, sizeof x, &fs[i]) != 0) return false;
    }
    return true;
  }
  bool finish() {
    bool ok = true;
    for (size_t i = 0; i < fs.size(); i++) {
      if (!fs[i] || cf_future_result(fs[i], &out[i], sizeof(int64_t), nullptr, -1) != 0) ok = false;
      if (fs[i]) cf_future_release(fs[i]);
    }
    for (auto f : blockers) {
      if (!f || cf_future_wait(f, -1) != 0) ok = false;
      if (f) cf_future_release(f);
    }
    blockers.clear();
    return ok;
  }
  void drop() { std::vector<cf_future *>().swap(fs); }
};

struct MemTbb {
  static constexpr bool kTbb = true;
  oneapi::tbb::task_arena arena{(int)bench_workers(), 0};
  Countdown cd;
  void block(unsigned w) {
    for (unsigned i = 0; i < w; i++) arena.enqueue([] { g_gate.block(); });
  }
  bool submit(size_t n, int64_t *out) {
    cd.reset((int64_t)n);
    Countdown *c = &cd;
    for (size_t i = 0; i < n; i++)
      arena.enqueue([i, out, c] {
        out[i] = (int64_t)i + 1;
        c->arrive();
      });
    return true;
  }
  bool finish() {
    cd.wait();
    return true;
  }
  void drop() {}
};

struct GItem {
  GJob base;
  int64_t i;
  int64_t *out;
  Countdown *cd;
};
void gitem_run(GJob *j) {
  GItem *t = (GItem *)j;
  t->out[t->i] = t->i + 1;
  t->cd->arrive();
}
void gblock_run(GJob *) {
  g_gate.block();
}

struct MemGlib {
  static constexpr bool kTbb = false;
  GThreadPool *pool = pool_glib_new(bench_workers());
  std::vector<GItem> items;
  std::vector<GJob> blockers;
  Countdown cd;
  ~MemGlib() { g_thread_pool_free(pool, FALSE, TRUE); }
  void block(unsigned w) {
    blockers.assign(w, GJob{gblock_run});
    for (auto &b : blockers) g_thread_pool_push(pool, &b, nullptr);
  }
  bool submit(size_t n, int64_t *out) {
    cd.reset((int64_t)n);
    items.resize(n); /* the jobs GLib needs the caller to keep: counted */
    for (size_t i = 0; i < n; i++) {
      items[i] = GItem{{gitem_run}, (int64_t)i, out, &cd};
      g_thread_pool_push(pool, &items[i], nullptr);
    }
    return true;
  }
  bool finish() {
    cd.wait();
    return true;
  }
  void drop() { std::vector<GItem>().swap(items); }
};

struct MemMc {
  static constexpr bool kTbb = false;
  McPool pool{bench_workers()};
  Countdown cd;
  void block(unsigned w) {
    for (unsigned i = 0; i < w; i++) pool.submit([] { g_gate.block(); });
  }
  bool submit(size_t n, int64_t *out) {
    cd.reset((int64_t)n);
    struct Ctx {
      int64_t *out;
      Countdown *cd;
    };
    static Ctx ctx;
    ctx = {out, &cd};
    Ctx *c = &ctx;
    for (size_t i = 0; i < n; i++)
      pool.submit([c, i] { /* two words: kept inline by std::function */
                           c->out[i] = (int64_t)i + 1;
                           c->cd->arrive();
      });
    return true;
  }
  bool finish() {
    cd.wait();
    return true;
  }
  void drop() {}
};

/* Steady state: bursts of 64 tasks, no worker blocked. */
template <class S>
double steady_allocs(S &s, size_t n, std::vector<int64_t> &out) {
  const size_t burst = 64;
  for (int warm = 0; warm < 2; warm++) {
    uint64_t n0 = heap_nmalloc();
    for (size_t done = 0; done < n; done += burst) {
      if (!s.submit(burst, out.data()) || !s.finish()) return -1;
    }
    uint64_t n1 = heap_nmalloc();
    if (warm == 1) return (double)(n1 - n0) / (double)n;
  }
  return -1;
}

/* Is jemalloc the program's malloc, with exact counts? (Not under ASan or
 * TSan, which bring their own malloc: then every counter would read 0.) */
bool counts_are_exact() {
  static const bool exact = [] {
    uint64_t n0 = heap_nmalloc();
    std::vector<void *> ps(1000);
    for (auto &p : ps) p = malloc(24);
    uint64_t n1 = heap_nmalloc();
    for (auto p : ps) free(p);
    return n1 - n0 >= 1000;
  }();
  return exact;
}

template <class S>
void BM_memory(benchmark::State &st) {
  if (!counts_are_exact()) {
    bench_fail(st, "jemalloc is not counting every malloc (sanitizer build?): no valid figures");
    return;
  }
  const size_t n = bench_tasks();
  std::vector<int64_t> out(n);
  for (auto _ : st) {
    S s;
    Cycle first = cycle(s, n, out);  /* cold: RSS of a fresh process */
    Cycle second = cycle(s, n, out); /* warm: heap bytes and allocations */
    if (!first.ok || !second.ok) {
      bench_fail(st, "memory cycle results");
      break;
    }
    st.counters["rss_bytes_per_task"] = first.rss_per_task;
    st.counters["heap_bytes_per_task"] = second.heap_per_task;
    st.counters["allocs_per_task"] = second.allocs_per_task;
    st.counters["allocs_per_task_cold"] = first.allocs_per_task;
    double steady = steady_allocs(s, n, out);
    if (steady < 0) {
      bench_fail(st, "steady-state bursts failed");
      break;
    }
    st.counters["allocs_per_task_steady"] = steady;
    st.counters["jemalloc_sees_all"] = S::kTbb && tbbmalloc_loaded() ? 0 : 1;
    st.counters["tasks"] = (double)n;
  }
}

int reg = [] {
  benchmark::RegisterBenchmark("memory/cfutures", BM_memory<MemCf>)->Iterations(1);
  benchmark::RegisterBenchmark("memory/glib", BM_memory<MemGlib>)->Iterations(1);
  benchmark::RegisterBenchmark("memory/mutex_condvar", BM_memory<MemMc>)->Iterations(1);
  benchmark::RegisterBenchmark("memory/tbb", BM_memory<MemTbb>)->Iterations(1);
  return 0;
}();

}  // namespace
