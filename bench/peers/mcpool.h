/*
 * mcpool.h — the textbook thread pool a C++ programmer writes in an
 * afternoon: one std::mutex, one std::condition_variable, a std::deque of
 * std::function jobs, N threads. It is the baseline every "do I need a
 * library?" question starts from, written in its fastest simple form:
 *   - notify_one() after unlocking (the woken thread does not block on the
 *     mutex the notifier still holds);
 *   - submit_bulk() pushes many jobs under one lock and notify_all()s once;
 *   - a worker drains the queue without going back to the condvar while
 *     there is work.
 * Completions (futures) are the caller's business: the benchmarks pair it
 * with a mutex+condvar "done" flag, as such code does.
 */
#ifndef CF_BENCH_MCPOOL_H
#define CF_BENCH_MCPOOL_H

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

class McPool {
 public:
  explicit McPool(unsigned n) {
    for (unsigned i = 0; i < n; i++) threads_.emplace_back([this] { loop(); });
  }
  ~McPool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto &t : threads_) t.join();
  }
  McPool(const McPool &) = delete;
  McPool &operator=(const McPool &) = delete;

  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> g(mu_);
      q_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  /* make(i) builds job i; all n are queued under one lock. */
  template <class Make>
  void submit_bulk(size_t n, Make make) {
    {
      std::lock_guard<std::mutex> g(mu_);
      for (size_t i = 0; i < n; i++) q_.push_back(make(i));
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || !q_.empty(); });
      if (q_.empty()) return; /* stop_ and drained */
      std::function<void()> job = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      job();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

/* The matching textbook completion: a flag under a mutex and a condvar. */
struct McDone {
  std::mutex mu;
  std::condition_variable cv;
  long left = 0;
  void reset(long n) {
    std::lock_guard<std::mutex> g(mu);
    left = n;
  }
  void arrive() {
    bool last;
    {
      std::lock_guard<std::mutex> g(mu);
      last = --left == 0;
    }
    if (last) cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [this] { return left == 0; });
  }
};

#endif /* CF_BENCH_MCPOOL_H */
