/* cf-test: labels=unit timeout=120 variants=thread;process */
/*
 * test_cpp.cc — the C++17 layer (include/cfutures.hpp) against both pools:
 * typed submit, results, exceptions mapped to cf_call_fail and back to
 * cf::error, then / then_inline, promises (and broken promises), when_all /
 * when_any, handle semantics, and the C API underneath (native()). The
 * harness (tests/support/testutil.c) is C, linked as is.
 */
#include <atomic>
#include <cstring>
#include <string>

#include "cfutures.hpp"

extern "C" {
#include "testutil.h"
}

static bool process_kind;

static cf::executor make_ex(unsigned workers = 2) {
  cf_options o;
  cf_options_init(&o);
  o.workers = workers;
  return process_kind ? cf::executor::process_pool(&o) : cf::executor::thread_pool(&o);
}

/* ---- tasks: plain functions ---------------------------------------------- */

static long square(int x) {
  return long(x) * x;
}
static long plus_one(long x) {
  return x + 1;
}
static long widen(int x) {
  return x;
}
static long square_l(long x) {
  return x * x;
}

struct point {
  int x, y;
};
struct stats {
  double sum;
  int n;
  char tag;
};
static stats mix(int a, double b, point p, char tag) {
  return stats{a + b + p.x + p.y, 4, tag};
}

static int nothing_in() {
  return 5;
}
static void returns_nothing(int) {}

static int throws_task_error(int code) {
  throw cf::task_error(code, "forty-two");
}
static int throws_runtime(int) {
  throw std::runtime_error("boom");
}
static int throws_other(int) {
  throw 17;
}
static int with_call(cf_call *c, int x) {
  return cf_call_stop_requested(c) ? -1 : x * 3;
}

/* a captureless lambda, bound to a constexpr function pointer */
static constexpr auto twice = +[](long x) { return 2 * x; };

static void test_submit(void) {
  cf::executor ex = make_ex();
  cf::future<long> f = ex.submit<square>(7);
  expect_eq(f.get(), 49);
  expect_true(f.done());
  expect_eq(f.state(), CF_STATE_FINISHED);

  cf::future<stats> s = ex.submit<mix>(1, 2.5, point{3, 4}, 'q');
  stats r = s.get();
  expect_true(r.sum == 10.5 && r.n == 4 && r.tag == 'q');

  expect_eq(ex.submit<nothing_in>().get(), 5);
  cf::future<void> v = ex.submit<returns_nothing>(1);
  v.get();
  expect_true(v.done());
  expect_eq(ex.submit<with_call>(4).get(), 12);
  expect_eq(ex.submit<twice>(21L).get(), 42);

  /* the C API underneath */
  long raw = 0;
  expect_rc(cf_future_result(f.native(), &raw, sizeof raw, nullptr, 0), 0);
  expect_eq(raw, 49);
  cf_future *c = nullptr;
  int arg = 9;
  assert_rc(cf_submit(ex.native(), cf::detail::task_entry<square>, &arg, sizeof arg, &c), 0);
  cf::future<long> adopted(c);
  expect_eq(adopted.get(), 81);
}

static void test_exceptions(void) {
  cf::executor ex = make_ex();
  try {
    ex.submit<throws_task_error>(42).get();
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_ETASK);
    expect_eq(e.task_code(), 42);
    expect_true(std::string(e.what()) == "forty-two");
  }
  try {
    ex.submit<throws_runtime>(0).get();
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_ETASK);
    expect_eq(e.task_code(), cf::exception_code);
    expect_true(std::string(e.what()) == "boom");
  }
  try {
    ex.submit<throws_other>(0).get();
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.task_code(), cf::exception_code);
  }
  /* a timeout */
  cf::promise<int> p;
  try {
    p.get_future().get(1000);
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_ETIMEDOUT);
  }
  p.set_value(1);
  /* errors of the C API */
  ex.shutdown();
  try {
    ex.submit<square>(1);
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_ESHUTDOWN);
  }
}

static void test_then(void) {
  cf::executor ex = make_ex();
  cf::future<long> f = ex.submit<square>(6);
  cf::future<long> g = f.then<plus_one>(ex);
  cf::future<long> h = g.then<twice>(ex);
  cf::future<long> i = f.then_inline<plus_one>();
  expect_eq(h.get(), 74);
  expect_eq(g.get(), 37);
  expect_eq(i.get(), 37);

  /* failure propagates as the same cf::error */
  cf::future<long> bad = ex.submit<throws_task_error>(9).then<widen>(ex);
  try {
    bad.get();
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_ETASK);
    expect_eq(e.task_code(), 9);
  }
  /* from a promise */
  cf::promise<long> p;
  cf::future<long> j = p.get_future().then<square_l>(ex);
  p.set_value(12);
  expect_eq(j.get(), 144);
}

static void test_promise(void) {
  cf::promise<int> p;
  cf::future<int> f = p.get_future();
  expect_true(!f.done());
  p.set_value(5);
  expect_eq(f.get(), 5);
  try {
    p.set_value(6);
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_EDONE);
  }
  cf::promise<void> pv;
  cf::future<void> fv = pv.get_future();
  pv.set_value();
  fv.get();

  cf::promise<int> pe;
  cf::future<int> fe = pe.get_future();
  pe.set_error(3, "three");
  try {
    fe.get();
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.task_code(), 3);
    expect_true(std::string(e.what()) == "three");
  }

  cf::future<int> broken;
  {
    cf::promise<int> gone;
    broken = gone.get_future();
  }
  try {
    broken.get();
    expect_true(false);
  } catch (const cf::error &e) {
    expect_eq(e.code(), CF_ETASK);
    expect_eq(e.task_code(), CF_EBROKEN);
  }
  cf::promise<int> moved;
  cf::future<int> mf = moved.get_future();
  cf::promise<int> taker = std::move(moved);
  taker.set_value(8);
  expect_eq(mf.get(), 8);

  cf::promise<int> pc;
  cf::future<int> fc = pc.get_future();
  expect_true(fc.cancel());
  expect_true(fc.cancelled());
}

static void test_when_and_handles(void) {
  cf::executor ex = make_ex();
  cf::promise<int> p;
  cf::future<long> a = ex.submit<square>(3);
  cf::future<int> b = p.get_future();
  cf::future<void> all = cf::when_all(a, b);
  cf::future<uint64_t> any = cf::when_any(b, a);
  expect_eq(any.get(), 1);
  expect_true(!all.done());
  p.set_value(1);
  all.get();
  expect_true(all.done());

  /* copies share the future; moves leave nothing behind */
  cf::future<long> c = a;
  cf::future<long> d = std::move(c);
  expect_true(!c);
  expect_eq(d.get(), 9);
  c = d;
  expect_eq(c.get(), 9);
  cf_future *raw = c.release();
  expect_rc(cf_future_release(raw), 0);

  cf::executor moved = std::move(ex);
  expect_true(ex.native() == nullptr);
  expect_eq(moved.submit<square>(2).get(), 4);
}

int main(int argc, char **argv) {
  process_kind = argc > 1 && std::strcmp(argv[1], "process") == 0;
  CF_RUN(test_submit);
  CF_RUN(test_exceptions);
  CF_RUN(test_then);
  CF_RUN(test_promise);
  CF_RUN(test_when_and_handles);
  return cf_test_done(process_kind ? "test_cpp_process" : "test_cpp_thread");
}
