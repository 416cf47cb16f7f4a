// `bioquant fidelity`: the KL / top-1 / perplexity arithmetic on hand-made
// logits, the window plan, and done-when (d): on a Gaussian-weight synthetic
// model KL(int8) < KL(nf4) < KL(fp4), all > 0, and a precision against
// itself gives exactly 0.
#include "engine/fidelity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "engine/synth.h"
#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

TEST(FidelityMath, LogSumExpIsStable) {
  const float a[] = {0.0f, 0.0f};
  EXPECT_DOUBLE_EQ(LogSumExp(a, 2), std::log(2.0));
  const float big[] = {1000.0f, 1000.0f, -1e30f};
  EXPECT_DOUBLE_EQ(LogSumExp(big, 3), 1000.0 + std::log(2.0));
  const float small[] = {-1000.0f};
  EXPECT_DOUBLE_EQ(LogSumExp(small, 1), -1000.0);
}

TEST(FidelityMath, KlDivergenceByHand) {
  // P = softmax(0, 0) = (1/2, 1/2), Q = softmax(ln 3, 0) = (3/4, 1/4):
  // KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3).
  const float p[] = {0.0f, 0.0f};
  const float q[] = {static_cast<float>(std::log(3.0)), 0.0f};
  const double kl = KlDivergence(p, LogSumExp(p, 2), q, LogSumExp(q, 2), 2);
  EXPECT_NEAR(kl, 0.5 * std::log(4.0 / 3.0), 1e-7);
  // KL(Q || P) = 3/4 ln(3/2) + 1/4 ln(1/2): not symmetric.
  const double rev = KlDivergence(q, LogSumExp(q, 2), p, LogSumExp(p, 2), 2);
  EXPECT_NEAR(rev, 0.75 * std::log(1.5) + 0.25 * std::log(0.5), 1e-7);
  // A constant shift of the logits changes nothing; identical logits give 0.
  const float q_shift[] = {q[0] + 50.0f, q[1] + 50.0f};
  EXPECT_NEAR(
      KlDivergence(p, LogSumExp(p, 2), q_shift, LogSumExp(q_shift, 2), 2), kl,
      1e-6);
  EXPECT_EQ(KlDivergence(q, LogSumExp(q, 2), q, LogSumExp(q, 2), 2), 0.0);
}

TEST(FidelityMath, ArgMaxFirstOnTies) {
  const float x[] = {1.0f, 3.0f, 3.0f, -2.0f};
  EXPECT_EQ(ArgMax(x, 4), 1);
  EXPECT_EQ(ArgMax(x, 1), 0);
}

TEST(FidelityWindows, EveryTargetScoredOnceWithContext) {
  EXPECT_TRUE(PlanFidelityWindows(1, 8).empty());
  auto one = PlanFidelityWindows(5, 8);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].begin, 0);
  EXPECT_EQ(one[0].end, 5);
  EXPECT_EQ(one[0].first_target, 1);
  auto w = PlanFidelityWindows(10, 4);
  ASSERT_EQ(w.size(), 4u);
  const int64_t want[4][3] = {{0, 4, 1}, {2, 6, 4}, {4, 8, 6}, {6, 10, 8}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(w[i].begin, want[i][0]) << i;
    EXPECT_EQ(w[i].end, want[i][1]) << i;
    EXPECT_EQ(w[i].first_target, want[i][2]) << i;
  }
  for (int64_t n : {2, 3, 7, 100, 513}) {
    for (int64_t ctx : {2, 3, 5, 64, 512}) {
      std::multiset<int64_t> targets;
      for (const auto& x : PlanFidelityWindows(n, ctx)) {
        EXPECT_LE(x.end - x.begin, ctx);
        EXPECT_GT(x.first_target, x.begin);
        for (int64_t t = x.first_target; t < x.end; ++t) {
          targets.insert(t);
          if (x.begin > 0) {
            EXPECT_GE(t - x.begin, ctx / 2);
          }
        }
      }
      ASSERT_EQ(static_cast<int64_t>(targets.size()), n - 1) << n << " " << ctx;
      for (int64_t t = 1; t < n; ++t) EXPECT_EQ(targets.count(t), 1u);
    }
  }
  EXPECT_THROW(PlanFidelityWindows(10, 1), Error);
}

// ---- done-when (d) ----------------------------------------------------------

const std::string& GaussianSynth() {
  static const std::string dir = [] {
    SynthOptions s;
    s.preset = "tiny";
    s.out_dir = testing::TempDir("fsynth") + "/tiny";
    s.dtype = "bf16";
    s.seed = 3;
    s.init_std = 0.02;  // N(0, 0.02) matrices
    WriteSyntheticCheckpoint(s);
    return s.out_dir;
  }();
  return dir;
}

std::vector<int32_t> PseudoRandomIds(int n, int vocab) {
  std::vector<int32_t> ids;
  uint64_t s = 12345;
  for (int i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ids.push_back(static_cast<int32_t>((s >> 33) % vocab));
  }
  return ids;
}

FidelityResult Measure(const std::string& model, const std::string& precision,
                       const std::string& reference,
                       const std::vector<int32_t>& ids, int64_t ctx = 0) {
  FidelityOptions o;
  o.model.model_dir = model;
  o.model.precision.name = precision;
  o.model.threads = 2;
  o.reference = reference;
  o.ctx = ctx;
  return MeasureFidelityIds(o, ids);
}

TEST(Fidelity, SamePrecisionIsExactlyZero) {
  const auto ids = PseudoRandomIds(64, 512);
  const FidelityResult r = Measure(GaussianSynth(), "bf16", "bf16", ids);
  EXPECT_EQ(r.precision, "bf16");
  EXPECT_EQ(r.reference, "bf16");
  EXPECT_EQ(r.tokens, 63);
  EXPECT_EQ(r.mean_kld, 0.0);
  EXPECT_EQ(r.max_kld, 0.0);
  EXPECT_EQ(r.top1_agreement, 1.0);
  EXPECT_EQ(r.ppl, r.ppl_reference);
  // A random-weight model predicts close to uniformly over 512 tokens.
  EXPECT_GT(r.ppl, 100.0);
  EXPECT_LT(r.ppl, 2000.0);
}

TEST(Fidelity, GaussianModelOrdersInt8Nf4Fp4) {
  const auto ids = PseudoRandomIds(96, 512);
  const FidelityResult i8 = Measure(GaussianSynth(), "int8", "bf16", ids);
  const FidelityResult n4 = Measure(GaussianSynth(), "nf4", "bf16", ids);
  const FidelityResult f4 = Measure(GaussianSynth(), "fp4", "bf16", ids);
  for (const auto* r : {&i8, &n4, &f4}) {
    SCOPED_TRACE(r->precision);
    EXPECT_EQ(r->tokens, 95);
    EXPECT_GT(r->mean_kld, 0.0);
    EXPECT_GE(r->max_kld, r->mean_kld);
    EXPECT_TRUE(std::isfinite(r->ppl));
    EXPECT_EQ(r->ppl_reference, i8.ppl_reference);  // same reference run
  }
  EXPECT_LT(i8.mean_kld, n4.mean_kld);
  EXPECT_LT(n4.mean_kld, f4.mean_kld);
  EXPECT_GE(i8.top1_agreement, f4.top1_agreement);
}

TEST(Fidelity, WindowsMatchOneWindowWhenContextSuffices) {
  // Windows of 32 over 80 tokens score the same number of predictions; the
  // first window's positions are identical to a single pass, so its KL terms
  // must agree and the totals stay close.
  const auto ids = PseudoRandomIds(80, 512);
  const FidelityResult whole = Measure(GaussianSynth(), "nf4", "bf16", ids);
  const FidelityResult win = Measure(GaussianSynth(), "nf4", "bf16", ids, 32);
  EXPECT_EQ(whole.windows, 1);
  EXPECT_EQ(win.windows, 4);
  EXPECT_EQ(win.tokens, whole.tokens);
  EXPECT_GT(win.mean_kld, 0.0);
  EXPECT_NEAR(win.mean_kld, whole.mean_kld, 0.5 * whole.mean_kld);
}

TEST(Fidelity, TooFewTokensIsAnError) {
  EXPECT_THROW(Measure(GaussianSynth(), "nf4", "bf16", {5}), Error);
}

TEST(FidelityCli, StoriesJson) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string model = testing::OracleDir() + "/stories260k/hf";
  auto r = testing::RunBioquant(
      {"fidelity", "--model", model, "--precision", "nf4", "--reference", "f32",
       "--prompt",
       "Once upon a time, there was a little girl named Lily. She loved to "
       "play outside in the park.",
       "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  for (const char* k : {"precision", "reference", "tokens", "mean_kld",
                        "max_kld", "top1_agreement", "ppl", "ppl_reference"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j.at("precision"), "nf4");
  EXPECT_EQ(j.at("reference"), "f32");
  EXPECT_GT(j.at("tokens").get<int>(), 10);
  EXPECT_GT(j.at("mean_kld").get<double>(), 0.0);
  EXPECT_GT(j.at("top1_agreement").get<double>(), 0.5);
  // stories260K is a trained model: on a story it beats uniform (512) easily.
  EXPECT_LT(j.at("ppl_reference").get<double>(), 50.0);
}

TEST(FidelityCli, UsageErrors) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string model = testing::OracleDir() + "/stories260k/hf";
  auto r = testing::RunBioquant(
      {"fidelity", "--model", model, "--precision", "nf4", "--json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--text-file"), std::string::npos) << r.err;
  r = testing::RunBioquant({"fidelity", "--model", model, "--precision", "nf4",
                            "--text-file", "/nonexistent/t.txt"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/t.txt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace bioquant
