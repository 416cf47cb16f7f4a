#include "tasks/stats.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace bioquant {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

size_t SplitMix64::Index(size_t n) {
  return static_cast<size_t>((static_cast<unsigned __int128>(Next()) * n) >>
                             64);
}

std::vector<uint32_t> BootstrapWeights(uint64_t seed, int b, size_t n) {
  // One stream per resample, so resample b does not depend on how many
  // resamples came before it (or on n of an earlier call).
  SplitMix64 rng(seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(b) + 1);
  std::vector<uint32_t> w(n, 0);
  for (size_t i = 0; i < n; ++i) ++w[rng.Index(n)];
  return w;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::nan("");
  const double h = (static_cast<double>(sorted.size()) - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

McNemarResult McNemarExact(const std::vector<bool>& correct_a,
                           const std::vector<bool>& correct_b) {
  if (correct_a.size() != correct_b.size()) {
    Fail(
        "McNemar: the two runs have {} and {} examples; pairing needs equal "
        "sets",
        correct_a.size(), correct_b.size());
  }
  McNemarResult r;
  for (size_t i = 0; i < correct_a.size(); ++i) {
    if (correct_a[i] && !correct_b[i]) ++r.only_a;
    if (!correct_a[i] && correct_b[i]) ++r.only_b;
  }
  const int n = r.only_a + r.only_b;
  if (n == 0) return r;
  const int k = std::min(r.only_a, r.only_b);
  // P[X <= k] summed in log space: n can be thousands.
  const double log_half_n = n * std::log(0.5);
  double cdf = 0;
  for (int i = 0; i <= k; ++i) {
    const double log_choose =
        std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0);
    cdf += std::exp(log_choose + log_half_n);
  }
  r.p_value = std::min(1.0, 2 * cdf);
  return r;
}

double FlipRate(const std::vector<std::string>& pred_a,
                const std::vector<std::string>& pred_b) {
  if (pred_a.size() != pred_b.size()) {
    Fail(
        "flip rate: the two runs have {} and {} examples; pairing needs equal "
        "sets",
        pred_a.size(), pred_b.size());
  }
  if (pred_a.empty()) return 0;
  size_t flips = 0;
  for (size_t i = 0; i < pred_a.size(); ++i) flips += pred_a[i] != pred_b[i];
  return static_cast<double>(flips) / static_cast<double>(pred_a.size());
}

}  // namespace bioquant
