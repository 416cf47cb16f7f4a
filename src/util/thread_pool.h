// A small fixed-size thread pool (Highway 1.0.3 has none). The calling thread
// takes part in every ParallelFor, so a pool of N threads spawns N-1 workers.
// Decoding one token runs ~200 ParallelFor calls of a few tens of
// microseconds each, so waking a sleeping worker (a futex round trip) would
// cost a visible share: workers and the caller spin for a short while on an
// atomic before falling back to the condition variables.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bioquant {

class ThreadPool {
 public:
  // num_threads <= 0 means hardware concurrency.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  // Splits [0, n) into size() contiguous chunks and calls fn(begin, end,
  // thread_index) for each, blocking until all are done. Exceptions thrown by
  // fn are rethrown in the caller (the first one wins).
  void ParallelFor(size_t n,
                   const std::function<void(size_t, size_t, int)>& fn);

  // Calls fn(thread_index) once on every thread.
  void RunOnAll(const std::function<void(int)>& fn);

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int)>* task_ = nullptr;
  std::atomic<size_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

}  // namespace bioquant
