#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "util/error.h"

namespace bioquant {
namespace {

TEST(ThreadPoolTest, CoversRangeExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (size_t n : {1u, 2u, 7u, 100u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](size_t b, size_t e, int) {
        for (size_t i = b; i < e; ++i) hits[i]++;
      });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1);
    }
  }
}

TEST(ThreadPoolTest, RethrowsWorkerErrors) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.ParallelFor(9,
                                [&](size_t b, size_t, int) {
                                  if (b > 0) Fail("boom {}", b);
                                }),
               Error);
  // The pool is still usable afterwards.
  std::atomic<int> total{0};
  pool.ParallelFor(10, [&](size_t b, size_t e, int) { total += int(e - b); });
  EXPECT_EQ(total.load(), 10);
}

}  // namespace
}  // namespace bioquant
