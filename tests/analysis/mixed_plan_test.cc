// plan --analysis: the least-KL assignment that fits a weights budget,
// checked against hand-worked cases, printed as a precision map the engine
// parses; malformed analysis files are one-line errors naming the file.
#include "analysis/mixed_plan.h"

#include <gtest/gtest.h>

#include <fstream>

#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

// Three blocks; bf16 block = 100 bytes, int8 = 50, nf4 = 30; fixed 1000.
nlohmann::json ThreeBlocks() {
  nlohmann::json a = {{"reference", "bf16"},
                      {"precisions", {"nf4", "int8"}},
                      {"fixed_bytes", 1000}};
  const double nf4[] = {0.10, 0.01, 0.50};
  const double int8[] = {0.02, 0.001, 0.05};
  for (int l = 0; l < 3; ++l) {
    a["sensitivity"]["mode"] = "blocks";
    a["sensitivity"]["parts"].push_back(
        {{"part", fmt::format("model.layers.{}", l)},
         {"pattern", fmt::format("model.layers.{}.*", l)},
         {"bytes", {{"bf16", 100}, {"int8", 50}, {"nf4", 30}}},
         {"kl", {{"nf4", nf4[l]}, {"int8", int8[l]}}}});
  }
  return a;
}

TEST(MixedPlan, HandWorkedBudgets) {
  const nlohmann::json a = ThreeBlocks();
  // 1090: everything nf4 (90 bytes), the only fit.
  MixedPlan p = PlanMixedPrecision(a, 1090);
  EXPECT_EQ(p.map.ToString(), "*=nf4");
  EXPECT_NEAR(p.predicted_kl, 0.61, 1e-12);
  // 1110: 20 spare bytes -> block 2 (the most sensitive) to int8:
  // 0.10 + 0.01 + 0.05 = 0.16.
  p = PlanMixedPrecision(a, 1110);
  EXPECT_EQ(p.choices[2].precision, "int8");
  EXPECT_EQ(p.choices[0].precision, "nf4");
  EXPECT_NEAR(p.predicted_kl, 0.16, 1e-12);
  EXPECT_EQ(p.map.ToString(), "model.layers.2.*=int8,*=nf4");
  // 1130: blocks 0 and 2 at int8 (130 bytes): 0.02 + 0.01 + 0.05 = 0.08
  // beats 2 and 1 at int8 (0.151).
  p = PlanMixedPrecision(a, 1130);
  EXPECT_NEAR(p.predicted_kl, 0.08, 1e-12);
  EXPECT_EQ(p.map.ToString(), "model.layers.1.*=nf4,*=int8");
  // 1200: block 2 bf16 + blocks 0, 1 int8 (200 bytes) -> 0.021; block 2
  // bf16, 0 int8, 1 nf4 (180) -> 0.03.
  p = PlanMixedPrecision(a, 1200);
  EXPECT_NEAR(p.predicted_kl, 0.021, 1e-12);
  EXPECT_EQ(p.map.ToString(), "model.layers.2.*=bf16,*=int8");
  EXPECT_LE(p.bytes, 1200u);
  // Everything bf16 fits at 1300.
  EXPECT_EQ(PlanMixedPrecision(a, 1300).map.ToString(), "*=bf16");
  // Too small.
  EXPECT_THROW(PlanMixedPrecision(a, 1089), Error);
  // The map is one the engine accepts.
  EXPECT_EQ(ParsePrecisionMap(p.map.ToString(), "x").rules.size(),
            p.map.rules.size());
  // Uniform baselines.
  ASSERT_EQ(p.uniform.size(), 3u);
  EXPECT_EQ(p.uniform[1].precision, "nf4");
  EXPECT_EQ(p.uniform[1].bytes, 1090u);
  EXPECT_NEAR(p.uniform[1].predicted_kl, 0.61, 1e-12);
}

TEST(MixedPlan, ConsecutiveBlocksBecomeRanges) {
  nlohmann::json a = {
      {"reference", "bf16"}, {"precisions", {"nf4"}}, {"fixed_bytes", 0}};
  for (int l = 0; l < 8; ++l) {
    a["sensitivity"]["parts"].push_back(
        {{"part", fmt::format("model.layers.{}", l)},
         {"pattern", fmt::format("model.layers.{}.*", l)},
         {"bytes", {{"bf16", 100}, {"nf4", 30}}},
         {"kl", {{"nf4", l < 3 ? 1.0 : 0.01}}}});
  }
  // Room for three blocks at bf16: 3*100 + 5*30 = 450.
  const MixedPlan p = PlanMixedPrecision(a, 450);
  EXPECT_EQ(p.map.ToString(), "model.layers.0-2.*=bf16,*=nf4");
}

TEST(MixedPlan, MalformedAnalysisFilesAreOneLineErrorsNamingTheFile) {
  const std::string dir = testing::TempDir("mixed_plan");
  auto err = [&](const std::string& content) {
    const std::string f = dir + "/a.json";
    std::ofstream(f) << content;
    try {
      LoadAnalysis(f);
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      EXPECT_EQ(m.rfind(f, 0), 0u) << m;
      return m;
    }
    return std::string("no error");
  };
  EXPECT_NE(err("{\"reference\":").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err("[1,2]").find("not a JSON object"), std::string::npos);
  nlohmann::json a = ThreeBlocks();
  a["sensitivity"]["parts"][1]["kl"].erase("int8");
  EXPECT_NE(err(a.dump()).find("sensitivity.parts[1].kl.int8"),
            std::string::npos);
  a = ThreeBlocks();
  a["sensitivity"]["parts"] = nlohmann::json::array();
  EXPECT_NE(err(a.dump()).find("--sensitivity"), std::string::npos);
  a = ThreeBlocks();
  a["fixed_bytes"] = -5;
  EXPECT_NE(err(a.dump()).find("fixed_bytes"), std::string::npos);
  EXPECT_EQ(err(ThreeBlocks().dump()), "no error");
  EXPECT_THROW(LoadAnalysis(dir + "/missing.json"), Error);
}

}  // namespace
}  // namespace bioquant
