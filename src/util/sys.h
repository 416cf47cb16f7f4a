// Process and machine facts: peak RSS, current RSS, wall clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace bioquant {

// Peak resident set size of this process (VmHWM), bytes.
uint64_t PeakRssBytes();
// Current resident set size (VmRSS), bytes.
uint64_t CurrentRssBytes();
// CPU model name and logical core count, for manifests and bench output.
std::string CpuModelName();
int LogicalCores();
uint64_t TotalMemoryBytes();

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void Reset() { start_ = std::chrono::steady_clock::now(); }
  double ElapsedMs() const {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now() - start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace bioquant
