// bioquant analyze on a tiny synthetic model whose block 2 has deliberate
// weight outliers: it ranks that block first for weight outliers,
// activation-weighted quantization error and sensitivity; the statistics
// match hand-computed small cases.
#include "analysis/analysis.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/synth.h"
#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

std::string OutlierModel() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("analysis");
    o.outlier_block = 2;
    WriteSyntheticCheckpoint(o);
    return o.out_dir;
  }();
  return dir;
}

std::vector<int32_t> Ids() {
  std::vector<int32_t> ids;
  for (int i = 0; i < 48; ++i) ids.push_back((i * 37 + 11) % 500);
  return ids;
}

TEST(WeightStats, HandComputedCase) {
  // [2, 4]: mean 0, values +-1 and one +-3 per row.
  const float w[] = {1, -1, 3, -3, 1, -1, 1, -1};
  const WeightStats s = ComputeWeightStats(w, 2, 4);
  EXPECT_DOUBLE_EQ(s.absmax, 3.0);
  // E[x^2] = (1+1+9+9+4)/8 = 3, E[x^4] = (1+1+81+81+4)/8 = 21.
  EXPECT_NEAR(s.std, std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(s.excess_kurtosis, 21.0 / 9.0 - 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(s.frac_beyond_6sigma, 0.0);
  // Row absmax 3 and 1: median (upper) 3 -> spread 1; see the next case.
  const float v[] = {1, 0, 0, 2, 0, 0, 8, 0, 0};
  EXPECT_DOUBLE_EQ(ComputeWeightStats(v, 3, 3).row_absmax_spread, 8.0 / 2.0);
}

TEST(QuantErrorStats, HandComputedCase) {
  const float w[] = {3, 4, 0, 0};  // ||W|| = 5
  const float q[] = {3, 4, 0, 1};  // ||dW|| = 1 (column 1)
  const QuantError e = ComputeQuantError(w, q, 2, 2, {1.0, 2.0});
  EXPECT_DOUBLE_EQ(e.rel_frobenius, 0.2);
  EXPECT_NEAR(e.snr_db, 10 * std::log10(25.0), 1e-12);
  // sqrt(1^2 * 2^2 / 2 rows)
  EXPECT_DOUBLE_EQ(e.act_weighted, std::sqrt(2.0));
}

TEST(Analyze, RanksTheOutlierBlockFirst) {
  AnalysisOptions o;
  o.model.model_dir = OutlierModel();
  o.model.threads = 2;
  o.precisions = {"nf4", "int8"};
  o.sensitivity = SensitivityMode::kBlocks;
  const nlohmann::json a = Analyze(o, Ids());
  ASSERT_EQ(a["modules"].size(), 4u * 7u);
  ASSERT_EQ(a["blocks"].size(), 4u);
  EXPECT_EQ(a["rankings"]["weight_outliers"][0], 2);
  EXPECT_EQ(a["rankings"]["quant_error"][0], 2);
  EXPECT_EQ(a["rankings"]["sensitivity"][0], 2);
  EXPECT_EQ(a["top5"][0]["part"], "model.layers.2");
  // Clearly first, not by a hair.
  const auto& parts = a["sensitivity"]["parts"];
  for (int b : {0, 1, 3}) {
    EXPECT_GT(parts[2]["kl"]["nf4"].get<double>(),
              2 * parts[b]["kl"]["nf4"].get<double>());
  }
  // int8 hurts less than nf4 everywhere; block bytes are exact.
  for (const auto& p : parts) {
    EXPECT_LT(p["kl"]["int8"].get<double>(), p["kl"]["nf4"].get<double>());
    EXPECT_LT(p["bytes"]["nf4"].get<uint64_t>(),
              p["bytes"]["int8"].get<uint64_t>());
    EXPECT_LT(p["bytes"]["int8"].get<uint64_t>(),
              p["bytes"]["bf16"].get<uint64_t>());
    EXPECT_LE(p["top1"]["nf4"].get<double>(), 1.0);
  }
  // The outlier block's weights: heavy tails and >6 sigma weights.
  const auto& m = a["modules"][2 * 7 + 5];  // layers.2 mlp.up_proj
  EXPECT_EQ(m["name"], "model.layers.2.mlp.up_proj");
  EXPECT_GT(m["weights"]["excess_kurtosis"].get<double>(), 10.0);
  EXPECT_GT(m["weights"]["frac_beyond_6sigma"].get<double>(), 0.005);
  EXPECT_LT(a["modules"][5]["weights"]["excess_kurtosis"].get<double>(), 1.0);
}

TEST(Analyze, ModuleSensitivityCoversTheSevenTypes) {
  AnalysisOptions o;
  o.model.model_dir = OutlierModel();
  o.model.threads = 2;
  o.sensitivity = SensitivityMode::kModules;
  const nlohmann::json a = Analyze(o, Ids());
  const auto& parts = a["sensitivity"]["parts"];
  ASSERT_EQ(parts.size(), 7u);
  EXPECT_EQ(parts[6]["pattern"], "*.mlp.down_proj");
  for (const auto& p : parts) EXPECT_GT(p["kl"]["nf4"].get<double>(), 0.0);
  const std::string md = RenderAnalysisMarkdown(a);
  EXPECT_NE(md.find("| mlp.down_proj |"), std::string::npos) << md;
  const std::string html = RenderAnalysisHtml(a);
  EXPECT_NE(html.find("<svg"), std::string::npos);
}

TEST(Analyze, RejectsBadInputWithOneLine) {
  AnalysisOptions o;
  o.model.model_dir = OutlierModel();
  o.precisions = {"bf16"};
  EXPECT_THROW(Analyze(o, Ids()), Error);
  o.precisions = {"nf4"};
  EXPECT_THROW(Analyze(o, {1}), Error);
  EXPECT_THROW(ParseSensitivityMode("layers"), Error);
}

}  // namespace
}  // namespace bioquant
