/*
 * cfutures.hpp — a header-only C++17 layer over cfutures.h.
 *
 * RAII handles, typed tasks and exceptions, on top of the C API (which it
 * does not hide: every object gives its C handle with native(), and adopts
 * one with its explicit constructor).
 *
 *     long square(int x) { return long(x) * x; }
 *     long plus_one(long x) { return x + 1; }
 *
 *     cf::executor ex = cf::executor::thread_pool();     // or process_pool()
 *     cf::future<long> f = ex.submit<square>(7);          // checked at compile time
 *     cf::future<long> g = f.then<plus_one>(ex);          // on ex, once f is done
 *     long r = g.get();                                   // 50; throws cf::error
 *
 * Tasks. submit<Fn>(args...) runs the plain function Fn (a function, or a
 * captureless lambda bound to a constexpr function pointer) with copies of
 * the arguments. Arguments and results travel as bytes, as in the C API, so
 * the same task runs in a thread or in a worker process: each must be
 * trivially copyable (a static_assert says so otherwise). A task that
 * throws fails its future: cf::task_error carries the code given to it,
 * any other std::exception fails with cf::exception_code, and its what()
 * is the message (cf_call_fail). A task that needs its cf_call (to poll
 * cf_call_stop_requested) takes it as its first parameter.
 *
 * Errors. Every failing call throws cf::error: code() is the CF_E* code;
 * for a failed task (CF_ETASK) task_code() and what() are its code and
 * message.
 *
 * Lifetimes follow the C API: a cf::future holds one handle (copies
 * retain, destruction releases); cf::executor owns its executor
 * (destruction is cf_executor_destroy: it waits for the executor's work);
 * cf::promise is move-only, and one destroyed without a value fails its
 * future with code CF_EBROKEN ("broken promise", as folly does).
 */
#ifndef CFUTURES_HPP
#define CFUTURES_HPP

#if __cplusplus < 201703L
#error "cfutures.hpp needs C++17"
#endif

#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cfutures.h"

namespace cf {

/* The code a task's future reports for an exception that is not a
 * cf::task_error. */
inline constexpr int exception_code = -1;

/* What every failing call throws. */
class error : public std::runtime_error {
 public:
  error(int code, const std::string &what, int task_code = 0)
      : std::runtime_error(what), code_(code), task_code_(task_code) {}
  int code() const noexcept { return code_; }           /* CF_E* */
  int task_code() const noexcept { return task_code_; } /* CF_ETASK: cf_call_fail's code */

 private:
  int code_, task_code_;
};

/* Throw this from a task to fail it with `code` (cf_call_fail). */
class task_error : public std::runtime_error {
 public:
  task_error(int code, const std::string &what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/* Throws cf::error for a negative code; returns it otherwise. */
inline int check(int rc) {
  if (rc < 0) throw error(rc, cf_strerror(rc));
  return rc;
}

namespace detail {

template <class F>
struct fn_traits;
template <class R, class... P>
struct fn_traits<R (*)(P...)> {
  using result = R;
  using args = std::tuple<std::decay_t<P>...>;
  static constexpr bool takes_call = false;
};
template <class R, class... P>
struct fn_traits<R (*)(cf_call *, P...)> {
  using result = R;
  using args = std::tuple<std::decay_t<P>...>;
  static constexpr bool takes_call = true;
};
template <class R, class... P>
struct fn_traits<R (*)(P...) noexcept> : fn_traits<R (*)(P...)> {};
template <class R, class... P>
struct fn_traits<R (*)(cf_call *, P...) noexcept> : fn_traits<R (*)(cf_call *, P...)> {};

template <class... P>
constexpr size_t bytes_of(std::tuple<P...> *) {
  return (size_t{0} + ... + sizeof(P));
}
template <class... P>
constexpr bool all_trivial(std::tuple<P...> *) {
  return (true && ... && std::is_trivially_copyable_v<P>);
}
template <class... P>
constexpr bool all_default(std::tuple<P...> *) {
  return (true && ... && std::is_default_constructible_v<P>);
}

/* Arguments as bytes: each parameter's bytes in order, no padding. */
template <class Tuple>
struct packed {
  static constexpr size_t size = bytes_of(static_cast<Tuple *>(nullptr));
  unsigned char bytes[size ? size : 1];
  size_t len() const { return size; }
};

template <class Tuple, class... A>
packed<Tuple> pack(A &&...a) {
  static_assert(sizeof...(A) == std::tuple_size_v<Tuple>, "wrong number of task arguments");
  packed<Tuple> p{};
  Tuple t(std::forward<A>(a)...); /* converts to the parameter types */
  size_t off = 0;
  std::apply(
      [&](const auto &...v) { ((std::memcpy(p.bytes + off, &v, sizeof v), off += sizeof v), ...); },
      t);
  return p;
}

template <class Tuple>
Tuple unpack(const unsigned char *b) {
  Tuple t{};
  size_t off = 0;
  std::apply([&](auto &...v) { ((std::memcpy(&v, b + off, sizeof v), off += sizeof v), ...); }, t);
  return t;
}

template <class R>
constexpr void check_result() {
  static_assert(std::is_void_v<R> || std::is_trivially_copyable_v<R>,
                "a task's result travels as bytes: it must be trivially copyable (or void)");
}

template <class F>
constexpr void check_task() {
  using tr = fn_traits<F>;
  using args = typename tr::args;
  static_assert(all_trivial(static_cast<args *>(nullptr)),
                "task arguments travel as bytes: each must be trivially copyable");
  static_assert(all_default(static_cast<args *>(nullptr)),
                "task arguments are rebuilt from bytes: each must be default-constructible");
  check_result<typename tr::result>();
}

/* The cf_fn that runs Fn: unpack, call, return the result or map the
 * exception to cf_call_fail. */
template <auto Fn>
void task_entry(cf_call *c) noexcept {
  using tr = fn_traits<decltype(Fn)>;
  using args = typename tr::args;
  using R = typename tr::result;
  size_t len = 0;
  const void *a = cf_call_arg(c, &len);
  if (len != packed<args>::size) {
    cf_call_fail(c, CF_EINVAL, "cfutures.hpp: argument size does not match the task");
    return;
  }
  try {
    args t = unpack<args>(static_cast<const unsigned char *>(a));
    auto call = [&](auto &&...v) -> decltype(auto) {
      if constexpr (tr::takes_call)
        return Fn(c, std::forward<decltype(v)>(v)...);
      else
        return Fn(std::forward<decltype(v)>(v)...);
    };
    if constexpr (std::is_void_v<R>) {
      std::apply(call, std::move(t));
    } else {
      R r = std::apply(call, std::move(t));
      cf_call_return(c, &r, sizeof r);
    }
  } catch (const task_error &e) {
    cf_call_fail(c, e.code(), e.what());
  } catch (const std::exception &e) {
    cf_call_fail(c, exception_code, e.what());
  } catch (...) {
    cf_call_fail(c, exception_code, "unknown exception");
  }
}

[[noreturn]] inline void throw_outcome(cf_future *f, int rc) {
  if (rc == CF_ETASK) {
    int code = 0;
    char msg[CF_MESSAGE_MAX] = "";
    cf_future_error(f, &code, msg, sizeof msg);
    throw error(rc, msg, code);
  }
  throw error(rc, cf_strerror(rc));
}

}  // namespace detail

class executor;

/* A handle on a future whose result is a T (void: no result). */
template <class T>
class future {
  static_assert(std::is_void_v<T> || std::is_trivially_copyable_v<T>,
                "a future's result is bytes: T must be trivially copyable (or void)");

 public:
  future() noexcept = default;
  /* Adopts one handle (from cf_submit, cf_promise_new ...). */
  explicit future(cf_future *adopt) noexcept : f_(adopt) {}
  future(const future &o) noexcept : f_(o.f_) {
    if (f_) cf_future_retain(f_);
  }
  future(future &&o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
  future &operator=(future o) noexcept {
    std::swap(f_, o.f_);
    return *this;
  }
  ~future() {
    if (f_) cf_future_release(f_);
  }

  cf_future *native() const noexcept { return f_; }
  cf_future *release() noexcept { return std::exchange(f_, nullptr); }
  explicit operator bool() const noexcept { return f_ != nullptr; }

  /* Wait (timeout_ns < 0: forever) and return the result; throws
   * cf::error (CF_ETIMEDOUT if not done in time). */
  T get(int64_t timeout_ns = -1) const {
    if constexpr (std::is_void_v<T>) {
      int rc = cf_future_result(f_, nullptr, 0, nullptr, timeout_ns);
      if (rc != 0) detail::throw_outcome(f_, rc);
    } else {
      static_assert(std::is_default_constructible_v<T>, "get() rebuilds T from bytes");
      T out{};
      size_t len = 0;
      int rc = cf_future_result(f_, &out, sizeof out, &len, timeout_ns);
      if (rc != 0) detail::throw_outcome(f_, rc);
      if (len != sizeof out) throw error(CF_EPROTO, "cfutures.hpp: result size does not match T");
      return out;
    }
  }
  /* true once done. */
  bool wait(int64_t timeout_ns = -1) const { return cf_future_wait(f_, timeout_ns) == 0; }
  bool done() const noexcept { return cf_future_done(f_); }
  bool cancelled() const noexcept { return cf_future_cancelled(f_); }
  int state() const noexcept { return cf_future_state(f_); }
  /* true if it is cancelled now (cf_future_cancel returned 0). */
  bool cancel() const noexcept { return cf_future_cancel(f_) == 0; }

  /* Fn(T) on ex once this future finished (failure and cancellation
   * propagate without calling Fn): cf_future_then. */
  template <auto Fn>
  auto then(executor &ex) const;
  /* The same, run in the thread that completes this future. */
  template <auto Fn>
  auto then_inline() const;

 private:
  template <auto Fn>
  static constexpr void check_then() {
    using tr = detail::fn_traits<decltype(Fn)>;
    using args = typename tr::args;
    if constexpr (std::is_void_v<T>)
      static_assert(std::tuple_size_v<args> == 0, "a continuation of future<void> takes nothing");
    else
      static_assert(std::is_same_v<args, std::tuple<T>>,
                    "a continuation of future<T> takes exactly one T");
    detail::check_task<decltype(Fn)>();
  }
  cf_future *f_ = nullptr;
};

/* Owns an executor: destruction shuts it down, waits for its work and
 * frees it (cf_executor_destroy). */
class executor {
 public:
  static executor thread_pool(const cf_options *o = nullptr) {
    cf_executor *ex = nullptr;
    check(cf_thread_pool_new(o, &ex));
    return executor(ex);
  }
  static executor process_pool(const cf_options *o = nullptr) {
    cf_executor *ex = nullptr;
    check(cf_process_pool_new(o, &ex));
    return executor(ex);
  }
  explicit executor(cf_executor *adopt) noexcept : ex_(adopt) {}
  executor(const executor &) = delete;
  executor &operator=(const executor &) = delete;
  executor(executor &&o) noexcept : ex_(std::exchange(o.ex_, nullptr)) {}
  executor &operator=(executor &&o) noexcept {
    if (this != &o) {
      reset();
      ex_ = std::exchange(o.ex_, nullptr);
    }
    return *this;
  }
  ~executor() { reset(); }

  cf_executor *native() const noexcept { return ex_; }
  cf_executor *release() noexcept { return std::exchange(ex_, nullptr); }
  void reset() noexcept {
    if (ex_) cf_executor_destroy(std::exchange(ex_, nullptr));
  }
  void shutdown(unsigned flags = CF_SHUTDOWN_WAIT) { check(cf_executor_shutdown(ex_, flags)); }

  /* Run Fn(args...) on the executor; Fn's parameters and result must be
   * trivially copyable. */
  template <auto Fn, class... A>
  auto submit(A &&...a) {
    using tr = detail::fn_traits<decltype(Fn)>;
    detail::check_task<decltype(Fn)>();
    auto p = detail::pack<typename tr::args>(std::forward<A>(a)...);
    cf_future *f = nullptr;
    check(cf_submit(ex_, detail::task_entry<Fn>, p.bytes, p.len(), &f));
    return future<typename tr::result>(f);
  }

 private:
  cf_executor *ex_ = nullptr;
};

template <class T>
template <auto Fn>
auto future<T>::then(executor &ex) const {
  check_then<Fn>();
  cf_future *out = nullptr;
  check(cf_future_then(f_, ex.native(), detail::task_entry<Fn>, 0, &out));
  return future<typename detail::fn_traits<decltype(Fn)>::result>(out);
}

template <class T>
template <auto Fn>
auto future<T>::then_inline() const {
  check_then<Fn>();
  cf_future *out = nullptr;
  check(cf_future_then_inline(f_, detail::task_entry<Fn>, 0, &out));
  return future<typename detail::fn_traits<decltype(Fn)>::result>(out);
}

/* A future completed by code (cf_promise_new). Move-only. */
template <class T>
class promise {
  static_assert(std::is_void_v<T> || std::is_trivially_copyable_v<T>,
                "a promise's value is bytes: T must be trivially copyable (or void)");
  struct no_value {};

 public:
  using value_type = std::conditional_t<std::is_void_v<T>, no_value, T>;

  promise() {
    cf_future *p = nullptr;
    check(cf_promise_new(&p));
    fut_ = future<T>(p);
  }
  promise(const promise &) = delete;
  promise &operator=(const promise &) = delete;
  promise(promise &&) noexcept = default;
  promise &operator=(promise &&o) noexcept {
    if (this != &o) {
      abandon();
      fut_ = std::move(o.fut_);
    }
    return *this;
  }
  ~promise() { abandon(); }

  future<T> get_future() const { return fut_; }
  cf_future *native() const noexcept { return fut_.native(); }

  /* The value as a T (converted first: its bytes are sizeof(T)). */
  void set_value(const value_type &v) {
    static_assert(!std::is_void_v<T>, "promise<void>: set_value()");
    check(cf_promise_set_result(fut_.native(), &v, sizeof v));
  }
  void set_value() {
    static_assert(std::is_void_v<T>, "set_value() without a value is for promise<void>");
    check(cf_promise_set_result(fut_.native(), nullptr, 0));
  }
  void set_error(int code, const char *message = nullptr) {
    check(cf_promise_set_error(fut_.native(), code, message));
  }

 private:
  void abandon() noexcept {
    if (fut_ && !fut_.done()) cf_promise_set_error(fut_.native(), CF_EBROKEN, "broken promise");
  }
  future<T> fut_;
};

/* cf_when_all over futures of any types: done once all are. */
template <class... T>
future<void> when_all(const future<T> &...fs) {
  cf_future *v[] = {fs.native()..., nullptr};
  cf_future *out = nullptr;
  check(cf_when_all(v, sizeof...(T), &out));
  return future<void>(out);
}

/* cf_when_any: the index of the first one done. */
template <class... T>
future<uint64_t> when_any(const future<T> &...fs) {
  static_assert(sizeof...(T) > 0, "when_any of nothing");
  cf_future *v[] = {fs.native()...};
  cf_future *out = nullptr;
  check(cf_when_any(v, sizeof...(T), &out));
  return future<uint64_t>(out);
}

}  // namespace cf

#endif /* CFUTURES_HPP */
