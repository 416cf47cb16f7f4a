#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <exception>

namespace bioquant {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) {
    num_threads = static_cast<int>(std::thread::hardware_concurrency());
  }
  num_threads_ = std::max(1, num_threads);
  for (int i = 1; i < num_threads_; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {
// Spins until pred() or ~kSpinUs microseconds have passed; true if pred().
template <class Pred>
bool SpinFor(Pred pred) {
  constexpr int64_t kSpinUs = 200;
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinUs);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    if (std::chrono::steady_clock::now() > until) return false;
  }
}
}  // namespace

void ThreadPool::WorkerLoop(int index) {
  size_t seen = 0;
  for (;;) {
    auto started = [&] {
      return stop_.load(std::memory_order_acquire) ||
             generation_.load(std::memory_order_acquire) != seen;
    };
    if (!SpinFor(started)) {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, started);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    const std::function<void(int)>* task = task_;
    try {
      (*task)(index);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // The caller may be asleep on done_cv_: notify under the mutex so the
      // wake-up cannot slip between its check and its wait.
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::RunOnAll(const std::function<void(int)>& fn) {
  if (num_threads_ == 1) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = &fn;
    pending_.store(num_threads_ - 1, std::memory_order_relaxed);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  std::exception_ptr mine;
  try {
    fn(0);
  } catch (...) {
    mine = std::current_exception();
  }
  auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  std::exception_ptr err;
  if (!SpinFor(done)) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, done);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = nullptr;
    err = error_;
  }
  if (mine) std::rethrow_exception(mine);
  if (err) std::rethrow_exception(err);
}

void ThreadPool::ParallelFor(
    size_t n, const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  const size_t t = std::min<size_t>(num_threads_, n);
  if (t == 1) {
    fn(0, n, 0);
    return;
  }
  RunOnAll([&](int i) {
    if (static_cast<size_t>(i) >= t) return;
    const size_t begin = n * i / t;
    const size_t end = n * (i + 1) / t;
    fn(begin, end, i);
  });
}

}  // namespace bioquant
