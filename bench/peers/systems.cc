/* systems.cc — see systems.h. */
#include "systems.h"

#include <climits>

#include "openloop.h"

std::atomic<int64_t> g_rt_started{0};

/* relaxed: the caller reads it after the task's completion, which orders it */
static inline void rt_mark() {
  g_rt_started.store(bench_now_ns(), std::memory_order_relaxed);
}

/* ---- cfutures ------------------------------------------------------------ */

static void rt_task(cf_call *c) {
  rt_mark();
  size_t len = 0;
  const int64_t *x = (const int64_t *)cf_call_arg(c, &len);
  int64_t r = *x + 1;
  cf_call_return(c, &r, sizeof r);
}

static void inc_task(cf_call *c) {
  size_t len = 0;
  const int64_t *x = (const int64_t *)cf_call_arg(c, &len);
  int64_t r = *x + 1;
  cf_call_return(c, &r, sizeof r);
}

SysCf::SysCf(unsigned workers, bool own) : own_(own) {
  if (!own) {
    ex_ = pool_cf(workers);
    return;
  }
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  ex_ = nullptr;
  if (cf_thread_pool_new(&o, &ex_) != 0) abort();
}

SysCf::~SysCf() {
  if (own_) cf_executor_destroy(ex_);
}

int64_t SysCf::roundtrip(int64_t x) {
  cf_future *f = nullptr;
  if (cf_submit(ex_, rt_task, &x, sizeof x, &f) != 0) return INT64_MIN;
  int64_t r = INT64_MIN;
  if (cf_future_result(f, &r, sizeof r, nullptr, -1) != 0) r = INT64_MIN;
  cf_future_release(f);
  return r;
}

bool SysCf::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local std::vector<cf_future *> fs;
  fs.resize((size_t)(hi - lo));
  bool ok = true;
  int64_t n = 0;
  for (int64_t i = lo; i < hi; i++, n++) {
    if (cf_submit(ex_, inc_task, &i, sizeof i, &fs[(size_t)n]) != 0) {
      ok = false;
      break;
    }
  }
  for (int64_t k = 0; k < n; k++) {
    if (cf_future_result(fs[(size_t)k], &out[lo + k], sizeof(int64_t), nullptr, -1) != 0)
      ok = false;
    cf_future_release(fs[(size_t)k]);
  }
  return ok;
}

static void ol_task(cf_call *c) {
  ol::mark(ol::g_done, *(const int64_t *)cf_call_arg(c, nullptr));
}

bool SysCf::post(int64_t i) {
  cf_future *f = nullptr;
  if (cf_submit(ex_, ol_task, &i, sizeof i, &f) != 0) return false;
  cf_future_release(f); /* fire and forget: the task still runs */
  return true;
}

int64_t SysCf::parks() const {
  cf_stats s = {};
  return cf_executor_stats(ex_, &s) == 0 ? (int64_t)s.parks : -1;
}

/* ---- oneTBB -------------------------------------------------------------- */

SysTbb::SysTbb(unsigned workers, bool own) : own_(own) {
  if (!own) {
    arena_ = &pool_tbb(workers, false);
    return;
  }
  arena_ = new oneapi::tbb::task_arena((int)workers, 0);
  arena_->initialize();
}

SysTbb::~SysTbb() {
  if (own_) delete arena_;
}

int64_t SysTbb::roundtrip(int64_t x) {
  static thread_local Completion done;
  static thread_local int64_t r;
  Completion *d = &done;
  int64_t *rp = &r;
  d->reset();
  arena_->enqueue([x, rp, d] {
    rt_mark();
    *rp = x + 1;
    d->signal();
  });
  d->wait();
  return r;
}

bool SysTbb::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local Countdown cd;
  Countdown *c = &cd;
  c->reset(hi - lo);
  for (int64_t i = lo; i < hi; i++)
    arena_->enqueue([i, out, c] {
      out[i] = i + 1;
      c->arrive();
    });
  c->wait();
  return true;
}

bool SysTbb::post(int64_t i) {
  arena_->enqueue([i] { ol::mark(ol::g_done, i); });
  return true;
}

/* ---- GLib ------------------------------------------------------------------ */

namespace {

struct GDone {
  gint left = 0;
  gboolean flag = FALSE;
  GMutex mu;
  GCond cv;
  GDone() {
    g_mutex_init(&mu);
    g_cond_init(&cv);
  }
  void reset(gint n) {
    g_atomic_int_set(&left, n);
    flag = FALSE;
  }
  void arrive() {
    if (!g_atomic_int_dec_and_test(&left)) return;
    g_mutex_lock(&mu);
    flag = TRUE;
    g_mutex_unlock(&mu);
    g_cond_signal(&cv); /* the GDone is per thread and outlives the wait */
  }
  void wait() {
    g_mutex_lock(&mu);
    while (!flag) g_cond_wait(&cv, &mu);
    g_mutex_unlock(&mu);
  }
};

struct GTask {
  GJob base; /* first: the pool passes &base */
  int64_t x;
  int64_t *dst;
  GDone *done;
};

void gtask_run(GJob *j) {
  GTask *t = (GTask *)j;
  *t->dst = t->x + 1;
  t->done->arrive();
}

void gtask_rt(GJob *j) {
  rt_mark();
  gtask_run(j);
}

}  // namespace

SysGlib::SysGlib(unsigned workers, bool own) : own_(own) {
  if (!own) {
    pool_ = pool_glib(workers);
    return;
  }
  pool_ = pool_glib_new(workers);
}

SysGlib::~SysGlib() {
  if (own_) g_thread_pool_free(pool_, FALSE, TRUE);
}

int64_t SysGlib::roundtrip(int64_t x) {
  static thread_local GDone done;
  static thread_local int64_t r;
  static thread_local GTask t;
  t.base.run = gtask_rt;
  t.x = x;
  t.dst = &r;
  t.done = &done;
  done.reset(1);
  g_thread_pool_push(pool_, &t, nullptr);
  done.wait();
  return r;
}

bool SysGlib::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local GDone done;
  static thread_local std::vector<GTask> ts;
  ts.resize((size_t)(hi - lo));
  done.reset((gint)(hi - lo));
  for (int64_t i = lo; i < hi; i++) {
    GTask &t = ts[(size_t)(i - lo)];
    t.base.run = gtask_run;
    t.x = i;
    t.dst = &out[i];
    t.done = &done;
    g_thread_pool_push(pool_, &t, nullptr);
  }
  done.wait();
  return true;
}

bool SysGlib::post(int64_t i) {
  g_thread_pool_push(pool_, glib_ol_data(i), nullptr);
  return true;
}

/* ---- mutex + condvar pool ----------------------------------------------- */

namespace {
struct McCtx {
  std::atomic<long> left{0};
  McDone done;
  int64_t *out = nullptr;
  int64_t r = 0;
  void reset(long n, int64_t *o) {
    out = o;
    left.store(n, std::memory_order_relaxed);
    done.reset(1);
  }
  void arrive() {
    /* acq_rel: the last arriver publishes every task's write to done */
    if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) done.arrive();
  }
};
}  // namespace

SysMc::SysMc(unsigned workers, bool own) : own_(own) {
  pool_ = own ? new McPool(workers) : &pool_mc(workers);
}

SysMc::~SysMc() {
  if (own_) delete pool_;
}

int64_t SysMc::roundtrip(int64_t x) {
  static thread_local McCtx ctx;
  McCtx *c = &ctx;
  c->reset(1, nullptr);
  /* two words captured: std::function keeps them inline (no allocation) */
  pool_->submit([c, x] {
    rt_mark();
    c->r = x + 1;
    c->arrive();
  });
  c->done.wait();
  return c->r;
}

bool SysMc::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local McCtx ctx;
  McCtx *c = &ctx;
  c->reset((long)(hi - lo), out);
  for (int64_t i = lo; i < hi; i++)
    pool_->submit([c, i] {
      c->out[i] = i + 1;
      c->arrive();
    });
  c->done.wait();
  return true;
}

bool SysMc::post(int64_t i) {
  pool_->submit([i] { ol::mark(ol::g_done, i); }); /* one word: kept inline */
  return true;
}

/* ---- the same pools with a futex completion ------------------------------ */

namespace {
struct SpinCtx {
  Countdown cd;
  int64_t r = 0;
};
struct GSpinTask {
  GJob base; /* first: the pool passes &base */
  int64_t x;
  int64_t *dst;
  Countdown *cd;
};
void gspin_run(GJob *j) {
  GSpinTask *t = (GSpinTask *)j;
  *t->dst = t->x + 1;
  t->cd->arrive();
}
void gspin_rt(GJob *j) {
  rt_mark();
  gspin_run(j);
}
}  // namespace

SysMcSpin::SysMcSpin(unsigned workers, bool own) : own_(own) {
  pool_ = own ? new McPool(workers) : &pool_mc(workers);
}

SysMcSpin::~SysMcSpin() {
  if (own_) delete pool_;
}

int64_t SysMcSpin::roundtrip(int64_t x) {
  static thread_local SpinCtx ctx;
  SpinCtx *c = &ctx;
  c->cd.reset(1);
  pool_->submit([c, x] {
    rt_mark();
    c->r = x + 1;
    c->cd.arrive();
  });
  c->cd.wait();
  return c->r;
}

bool SysMcSpin::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local Countdown cd;
  Countdown *c = &cd;
  c->reset(hi - lo);
  for (int64_t i = lo; i < hi; i++)
    pool_->submit([c, i, out] {
      out[i] = i + 1;
      c->arrive();
    });
  c->wait();
  return true;
}

SysGlibSpin::SysGlibSpin(unsigned workers, bool own) : own_(own) {
  pool_ = own ? pool_glib_new(workers) : pool_glib(workers);
}

SysGlibSpin::~SysGlibSpin() {
  if (own_) g_thread_pool_free(pool_, FALSE, TRUE);
}

int64_t SysGlibSpin::roundtrip(int64_t x) {
  static thread_local Countdown cd;
  static thread_local int64_t r;
  static thread_local GSpinTask t;
  t.base.run = gspin_rt;
  t.x = x;
  t.dst = &r;
  t.cd = &cd;
  cd.reset(1);
  g_thread_pool_push(pool_, &t, nullptr);
  cd.wait();
  return r;
}

bool SysGlibSpin::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local Countdown cd;
  static thread_local std::vector<GSpinTask> ts;
  ts.resize((size_t)(hi - lo));
  cd.reset(hi - lo);
  for (int64_t i = lo; i < hi; i++) {
    GSpinTask &t = ts[(size_t)(i - lo)];
    t.base.run = gspin_run;
    t.x = i;
    t.dst = &out[i];
    t.cd = &cd;
    g_thread_pool_push(pool_, &t, nullptr);
  }
  cd.wait();
  return true;
}

/* ---- libuv ------------------------------------------------------------------ */

namespace {
struct UvLoop {
  uv_loop_t loop;
  UvLoop() { uv_loop_init(&loop); }
  ~UvLoop() { uv_loop_close(&loop); }
};
struct UvReq {
  uv_work_t req; /* first: libuv hands back &req */
  int64_t x;
  int64_t *dst;
};
std::atomic<int> uv_err{0};
void uv_work(uv_work_t *r) {
  UvReq *q = (UvReq *)r;
  *q->dst = q->x + 1;
}
void uv_work_rt(uv_work_t *r) {
  rt_mark();
  uv_work(r);
}
void uv_after(uv_work_t *, int status) {
  if (status != 0) uv_err.store(status);
}
uv_loop_t *my_loop() {
  static thread_local UvLoop l;
  return &l.loop;
}
}  // namespace

SysUv::SysUv(unsigned, bool) {}
SysUv::~SysUv() {}

int64_t SysUv::roundtrip(int64_t x) {
  static thread_local UvReq q;
  static thread_local int64_t r;
  q.x = x;
  q.dst = &r;
  if (uv_queue_work(my_loop(), &q.req, uv_work_rt, uv_after) != 0) return INT64_MIN;
  uv_run(my_loop(), UV_RUN_DEFAULT);
  return uv_err.load() ? INT64_MIN : r;
}

bool SysUv::burst(int64_t lo, int64_t hi, int64_t *out) {
  static thread_local std::vector<UvReq> qs;
  qs.resize((size_t)(hi - lo));
  uv_loop_t *loop = my_loop();
  for (int64_t i = lo; i < hi; i++) {
    UvReq &q = qs[(size_t)(i - lo)];
    q.x = i;
    q.dst = &out[i];
    if (uv_queue_work(loop, &q.req, uv_work, uv_after) != 0) return false;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_err.load() == 0;
}
