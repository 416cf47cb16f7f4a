// Statistics for comparing runs: seeded bootstrap resampling, percentile
// intervals, exact McNemar test, flip rate. Everything is deterministic for a
// given seed on every platform (own RNG and index mapping, no <random>
// distributions, whose output differs between standard libraries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bioquant {

struct BootstrapOptions {
  uint64_t seed = 1;
  int resamples = 1000;  // >= 1000 for reported intervals
  double level = 0.95;   // central percentile interval
};

// SplitMix64: tiny, seedable, identical everywhere.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform index in [0, n) by the multiply-shift map (bias < n / 2^64).
  size_t Index(size_t n);

 private:
  uint64_t state_;
};

// Resample b of a bootstrap: n draws with replacement from [0, n), returned
// as a multiplicity per unit. The same (seed, b, n) always gives the same
// draw, so paired comparisons of two systems see identical resamples.
std::vector<uint32_t> BootstrapWeights(uint64_t seed, int b, size_t n);

// Percentile of sorted values with linear interpolation between order
// statistics (numpy's default "linear" method); p in [0, 1].
double Percentile(const std::vector<double>& sorted, double p);

// Exact two-sided McNemar test on paired per-example correctness: with
// b = examples only A got right and c = examples only B got right,
// p = min(1, 2 * P[X <= min(b, c)]) for X ~ Binomial(b + c, 1/2); p = 1 when
// b + c = 0.
struct McNemarResult {
  int only_a = 0;  // b
  int only_b = 0;  // c
  double p_value = 1.0;
};
McNemarResult McNemarExact(const std::vector<bool>& correct_a,
                           const std::vector<bool>& correct_b);

// Share of examples whose (canonical) prediction differs between two runs;
// an unparsed answer is its own value (empty string) here, so a change from
// a label to unparsed is a flip.
double FlipRate(const std::vector<std::string>& pred_a,
                const std::vector<std::string>& pred_b);

}  // namespace bioquant
