/* pools.cc — see pools.h. */
#include "pools.h"

#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "common.h"
#include "openloop.h"

static std::mutex mu;

cf_executor *pool_cf(unsigned workers) {
  static std::map<unsigned, cf_executor *> m;
  std::lock_guard<std::mutex> g(mu);
  auto it = m.find(workers);
  if (it != m.end()) return it->second;
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  o.name = "cfbench";
  cf_executor *ex = nullptr;
  int rc = cf_thread_pool_new(&o, &ex);
  if (rc != 0) {
    fprintf(stderr, "cf_thread_pool_new: %s\n", cf_strerror(rc));
    abort();
  }
  m[workers] = ex;
  bench_at_exit([ex] { cf_executor_destroy(ex); });
  return ex;
}

oneapi::tbb::task_arena &pool_tbb(unsigned workers, bool reserve_external) {
  static std::map<std::pair<unsigned, bool>, std::unique_ptr<oneapi::tbb::task_arena>> m;
  std::lock_guard<std::mutex> g(mu);
  auto &slot = m[{workers, reserve_external}];
  if (!slot) {
    slot.reset(new oneapi::tbb::task_arena((int)workers, reserve_external ? 1 : 0));
    slot->initialize();
    bench_at_exit([workers, reserve_external] {
      std::lock_guard<std::mutex> g2(mu);
      m[{workers, reserve_external}].reset();
    });
  }
  return *slot;
}

static void glib_dispatch(gpointer data, gpointer) {
  if ((uintptr_t)data & 1) /* an open-loop task (glib_ol_data) */
    ol::mark(ol::g_done, (int64_t)((uintptr_t)data >> 1));
  else
    ((GJob *)data)->run((GJob *)data);
}

GThreadPool *pool_glib_new(unsigned workers) {
  GError *err = nullptr;
  GThreadPool *p = g_thread_pool_new(glib_dispatch, nullptr, (gint)workers, TRUE, &err);
  if (!p) {
    fprintf(stderr, "g_thread_pool_new: %s\n", err ? err->message : "?");
    abort();
  }
  return p;
}

GThreadPool *pool_glib(unsigned workers) {
  static std::map<unsigned, GThreadPool *> m;
  std::lock_guard<std::mutex> g(mu);
  auto it = m.find(workers);
  if (it != m.end()) return it->second;
  GThreadPool *p = pool_glib_new(workers);
  m[workers] = p;
  bench_at_exit([p] { g_thread_pool_free(p, FALSE, TRUE); });
  return p;
}

McPool &pool_mc(unsigned workers) {
  static std::map<unsigned, std::unique_ptr<McPool>> m;
  std::lock_guard<std::mutex> g(mu);
  auto &slot = m[workers];
  if (!slot) {
    slot.reset(new McPool(workers));
    bench_at_exit([workers] {
      std::lock_guard<std::mutex> g2(mu);
      m[workers].reset();
    });
  }
  return *slot;
}
