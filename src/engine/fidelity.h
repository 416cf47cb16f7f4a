// `bioquant fidelity`: how much a precision changes the model, measured on
// text without labels (llama.cpp's perplexity --kl-divergence, in one run):
// KL(reference || quantized) of the next-token distribution at every scored
// position, top-1 agreement, and the perplexity of both.
//
// The two engines are loaded one after the other (never both in memory): the
// reference's logits at the scored positions are kept (f32 rows plus their
// log-sum-exp in double, [scored, vocab]), the reference is freed, then the
// quantized engine runs over the same windows.
//
// Long texts are cut into windows of `ctx` tokens with stride ctx/2: the
// first window scores all its positions, each later one only the tokens past
// the previous window's end, so every prediction is scored exactly once and
// (after the first window) with at least ctx/2 tokens of context.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace bioquant {

struct FidelityOptions {
  // model_dir, threads, and the precision under test (name, blocksize, ...).
  EngineOptions model;
  // The reference precision name ("" = the checkpoint's dtype); it shares
  // the other PrecisionSpec fields.
  std::string reference = "bf16";
  int64_t ctx = 0;         // window length; 0 = min(max_position, 4096)
  int64_t chunk = 0;       // tokens per forward call (0 = whole window)
  int64_t max_tokens = 0;  // keep the first N text tokens (0 = all)
};

struct FidelityResult {
  std::string precision;  // resolved names, e.g. "nf4", "bf16"
  std::string reference;
  int64_t tokens = 0;  // scored predictions (text tokens - 1)
  int64_t windows = 0;
  int64_t ctx = 0;
  double mean_kld = 0;  // nats
  double max_kld = 0;
  double top1_agreement = 0;  // share of positions with the same argmax
  double ppl = 0;             // exp(mean NLL) of the quantized engine
  double ppl_reference = 0;
  nlohmann::json ToJson() const;
};

// Tokenizes `text` with the checkpoint's tokenizer (BOS as configured) and
// measures. Throws Error when fewer than 2 tokens remain.
FidelityResult MeasureFidelity(const FidelityOptions& o,
                               const std::string& text);
// The same on token ids.
FidelityResult MeasureFidelityIds(const FidelityOptions& o,
                                  std::vector<int32_t> ids);

// ---- the pieces, exposed for tests ------------------------------------------

// Tokens [begin, end) are fed; targets [first_target, end) are scored, each
// predicted by the logits of the token before it.
struct FidelityWindow {
  int64_t begin = 0, end = 0, first_target = 0;
};
std::vector<FidelityWindow> PlanFidelityWindows(int64_t n, int64_t ctx);

// log(sum(exp(x))) in double, shifted by the max (stable for any logits).
double LogSumExp(const float* x, int64_t n);

// KL(P || Q) in nats of the softmax distributions of logits p and q, given
// their LogSumExp: sum_i exp(lp_i) * (lp_i - lq_i), in double.
double KlDivergence(const float* p, double p_lse, const float* q, double q_lse,
                    int64_t n);

// Index of the largest logit (the first one on ties).
int64_t ArgMax(const float* x, int64_t n);

}  // namespace bioquant
