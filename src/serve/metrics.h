// What `bioquant serve` counts, in the Prometheus text format (GET /metrics):
// requests by route and status, tokens, queue length and batch size, and
// latency histograms. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "serve/scheduler.h"

namespace bioquant::serve {

// A cumulative histogram over fixed bucket bounds (seconds).
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  void Observe(double seconds);
  // "<name>_bucket{le=...} n" lines, _sum and _count.
  std::string Render(const std::string& name) const;

 private:
  std::array<uint64_t, kBounds.size()> counts_{};  // per bucket, not summed
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Metrics {
 public:
  void Request(const std::string& route, int status);
  void Latency(double seconds);           // whole request
  void TimeToFirstToken(double seconds);  // streaming requests
  // The exposition text, with the scheduler's gauges and counters and the
  // process's resident memory.
  std::string Render(const SchedulerStats& s) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  Histogram latency_, ttft_;
};

}  // namespace bioquant::serve
