// Sensitivity-guided mixed precision: given `bioquant analyze`'s
// sensitivity of each part (block or module type) at each precision, the
// assignment of one precision per part that fits a weights budget with the
// least predicted KL divergence. The prediction is additive — the sum of
// each part's KL measured alone — which holds while the perturbations are
// small and is what the choice needs (an ordering, not an exact KL).
//
// Budget: the model's weights, exactly (formats.h bytes): the analysis'
// fixed_bytes (embeddings, lm_head, norms) plus each part's bytes at its
// precision. The KV cache and scratch come on top (`plan --model` predicts
// them).
//
// Solved exactly up to a byte rounding: a dynamic programme over the budget
// in 4096 steps, each part's bytes rounded up to whole steps (so the answer
// always fits).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/precision_map.h"

namespace bioquant {

struct MixedPlan {
  std::string mode;       // "blocks" | "modules"
  std::string reference;  // e.g. "bf16"
  uint64_t budget_bytes = 0;
  uint64_t bytes = 0;       // weights of the chosen assignment
  double predicted_kl = 0;  // sum over parts
  struct Choice {
    std::string part, pattern, precision;
    uint64_t bytes = 0;
    double kl = 0;
  };
  std::vector<Choice> choices;  // one per part, in the analysis' order
  // Every part at one precision: {precision, bytes, predicted_kl}.
  struct Uniform {
    std::string precision;
    uint64_t bytes = 0;
    double predicted_kl = 0;
  };
  std::vector<Uniform> uniform;
  PrecisionMap map;  // the assignment as --precision-map rules

  nlohmann::ordered_json ToJson() const;
  std::string ToText() const;
};

// Reads and checks an analysis JSON file (analyze --json or --out F.json):
// a malformed or incomplete one is an Error naming the file and the field.
nlohmann::json LoadAnalysis(const std::string& path);
// Checks an analysis object (errors name `what`).
void CheckAnalysis(const nlohmann::json& a, const std::string& what);

// The plan; throws Error when even the smallest assignment exceeds the
// budget (naming --memory).
MixedPlan PlanMixedPrecision(const nlohmann::json& analysis,
                             uint64_t budget_bytes);

}  // namespace bioquant
