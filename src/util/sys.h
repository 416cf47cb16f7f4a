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

namespace bioquant {
// Resets this process's peak RSS (VmHWM) to the current RSS, so each
// precision of a study gets its own peak. Returns false where the kernel
// does not allow it (then peaks are cumulative).
bool ResetPeakRss();
// 64-bit FNV-1a, as lower-case hex (fingerprints, prompt hashes).
std::string Fnv1aHex(const std::string& data);
uint64_t Fnv1a(const std::string& data, uint64_t h = 1469598103934665603ull);
// UTC time as ISO-8601 ("2026-11-27T10:46:51Z").
std::string UtcNowIso();
}  // namespace bioquant
