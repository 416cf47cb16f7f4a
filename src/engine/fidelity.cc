#include "engine/fidelity.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace bioquant {
namespace {

// Checks a logit row is finite: a NaN would make every statistic NaN with no
// hint where it came from.
void CheckFinite(const float* x, int64_t n, const std::string& precision,
                 int64_t target) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      Fail("fidelity: {} logits are not finite at position {} (token {})",
           precision, target - 1, i);
    }
  }
}

}  // namespace

nlohmann::json FidelityResult::ToJson() const {
  return {{"precision", precision},
          {"reference", reference},
          {"tokens", tokens},
          {"windows", windows},
          {"ctx", ctx},
          {"mean_kld", mean_kld},
          {"max_kld", max_kld},
          {"top1_agreement", top1_agreement},
          {"ppl", ppl},
          {"ppl_reference", ppl_reference}};
}

std::vector<FidelityWindow> PlanFidelityWindows(int64_t n, int64_t ctx) {
  if (ctx < 2) Fail("--ctx must be >= 2 (got {})", ctx);
  std::vector<FidelityWindow> w;
  if (n < 2) return w;
  const int64_t stride = ctx / 2;
  int64_t end = std::min(n, ctx);
  w.push_back({0, end, 1});
  while (end < n) {
    const int64_t next_end = std::min(n, end + stride);
    w.push_back({std::max<int64_t>(0, next_end - ctx), next_end, end});
    end = next_end;
  }
  return w;
}

double LogSumExp(const float* x, int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(x[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - m);
  return m + std::log(s);
}

double KlDivergence(const float* p, double p_lse, const float* q, double q_lse,
                    int64_t n) {
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double lp = static_cast<double>(p[i]) - p_lse;
    const double lq = static_cast<double>(q[i]) - q_lse;
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

int64_t ArgMax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

FidelityResult MeasureFidelityIds(const FidelityOptions& o,
                                  std::vector<int32_t> ids) {
  if (o.max_tokens < 0) Fail("--max-tokens must be >= 0");
  if (o.chunk < 0) Fail("--chunk must be >= 0");
  if (o.max_tokens > 0 && static_cast<int64_t>(ids.size()) > o.max_tokens) {
    ids.resize(o.max_tokens);
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 2) {
    Fail(
        "fidelity: the text has {} token(s); at least 2 are needed to score "
        "a next-token prediction",
        n);
  }

  EngineOptions ref_opts = o.model;
  ref_opts.precision.name = o.reference;
  ref_opts.precision.module_map = {};  // the map is the precision under test
  FidelityResult r;

  // Reference pass: keep the logit rows of the scored positions.
  std::vector<float> ref_rows;  // [tokens, vocab] f32
  std::vector<double> ref_lse;  // [tokens]
  std::vector<FidelityWindow> windows;
  int64_t V = 0;
  double ref_nll = 0;
  {
    auto ref = Engine::Load(ref_opts);
    V = ref->config().vocab_size;
    r.reference = ref->weights().precision;
    r.ctx = o.ctx > 0
                ? o.ctx
                : std::min<int64_t>(
                      4096, std::max<int64_t>(
                                2, ref->config().max_position_embeddings));
    windows = PlanFidelityWindows(n, r.ctx);
    ref_rows.reserve(static_cast<size_t>(n - 1) * V);
    for (const FidelityWindow& w : windows) {
      const std::vector<int32_t> win(ids.begin() + w.begin,
                                     ids.begin() + w.end);
      const std::vector<float> logits = ref->Logits(win, o.chunk);
      for (int64_t t = w.first_target; t < w.end; ++t) {
        const float* row = logits.data() + (t - 1 - w.begin) * V;
        CheckFinite(row, V, r.reference, t);
        const double lse = LogSumExp(row, V);
        ref_nll += lse - row[ids[t]];
        ref_lse.push_back(lse);
        ref_rows.insert(ref_rows.end(), row, row + V);
      }
    }
  }  // the reference engine is freed here

  auto eng = Engine::Load(o.model);
  r.precision = eng->weights().precision;
  if (eng->config().vocab_size != V) {
    Fail("fidelity: vocab sizes differ ({} vs {})", eng->config().vocab_size,
         V);
  }
  double kl_sum = 0, nll = 0;
  int64_t agree = 0, k = 0;
  for (const FidelityWindow& w : windows) {
    const std::vector<int32_t> win(ids.begin() + w.begin, ids.begin() + w.end);
    const std::vector<float> logits = eng->Logits(win, o.chunk);
    for (int64_t t = w.first_target; t < w.end; ++t, ++k) {
      const float* q = logits.data() + (t - 1 - w.begin) * V;
      const float* p = ref_rows.data() + k * V;
      CheckFinite(q, V, r.precision, t);
      const double q_lse = LogSumExp(q, V);
      const double kl = KlDivergence(p, ref_lse[k], q, q_lse, V);
      kl_sum += kl;
      r.max_kld = k == 0 ? kl : std::max(r.max_kld, kl);
      nll += q_lse - q[ids[t]];
      agree += ArgMax(p, V) == ArgMax(q, V);
    }
  }
  r.tokens = k;
  r.windows = static_cast<int64_t>(windows.size());
  r.mean_kld = kl_sum / k;
  r.top1_agreement = static_cast<double>(agree) / k;
  r.ppl = std::exp(nll / k);
  r.ppl_reference = std::exp(ref_nll / k);
  return r;
}

FidelityResult MeasureFidelity(const FidelityOptions& o,
                               const std::string& text) {
  // Only the tokenizer is needed here; loading it through the checkpoint
  // keeps BOS handling identical to generate/logits.
  std::vector<int32_t> ids;
  {
    auto tok = Tokenizer::Load(o.model.model_dir);
    ids = tok->Encode(text, true);
  }
  return MeasureFidelityIds(o, std::move(ids));
}

}  // namespace bioquant
