// Next-token selection: greedy, or temperature -> top-k -> top-p sampling
// (the order transformers applies its logits warpers) with a per-request
// seeded RNG, so the same seed gives the same text.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace bioquant {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  int32_t Sample(const float* logits, int64_t vocab);
  static int32_t Argmax(const float* logits, int64_t vocab);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // reused: no per-token alloc
};

}  // namespace bioquant
