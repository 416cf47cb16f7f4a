#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace bioquant {

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {
  if (p.temperature < 0)
    Fail("--temperature must be >= 0 (got {})", p.temperature);
  if (p.top_p <= 0 || p.top_p > 1)
    Fail("--top-p must be in (0, 1] (got {})", p.top_p);
  if (p.top_k < 0) Fail("--top-k must be >= 0 (got {})", p.top_k);
}

int32_t Sampler::Argmax(const float* logits, int64_t vocab) {
  // First maximum wins, as torch.argmax.
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) -
                              logits);
}

int32_t Sampler::Sample(const float* logits, int64_t vocab) {
  if (p_.temperature == 0.0f) return Argmax(logits, vocab);
  cand_.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) {
    cand_[i] = {logits[i] / p_.temperature, static_cast<int32_t>(i)};
  }
  // Sort descending by logit; ties by id so the order is deterministic.
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t n = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(),
                      by_logit);
    n = p_.top_k;
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  const float mx = cand_[0].first;
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    cand_[i].first = static_cast<float>(std::exp(double(cand_[i].first) - mx));
    total += cand_[i].first;
  }
  if (p_.top_p < 1.0f) {
    // Keep the smallest prefix whose mass reaches top_p (at least one token).
    double cum = 0;
    size_t keep = 0;
    while (keep < n) {
      cum += cand_[keep].first / total;
      ++keep;
      if (cum >= p_.top_p) break;
    }
    n = keep;
    total = 0;
    for (size_t i = 0; i < n; ++i) total += cand_[i].first;
  }
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (size_t i = 0; i < n; ++i) {
    r -= cand_[i].first;
    if (r < 0) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace bioquant
