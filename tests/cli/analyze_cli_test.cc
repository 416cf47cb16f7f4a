// End to end: synth --outlier-block, analyze (--json, md/html), plan
// --analysis (and its errors), and --precision-map through generate and
// quantize.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

struct Fixture {
  std::string dir, model, analysis;
};

const Fixture& Model() {
  static const Fixture f = [] {
    Fixture x;
    x.dir = testing::TempDir("analyze_cli");
    x.model = x.dir + "/m";
    auto r = RunBioquant({"synth", "--preset", "tiny", "--out", x.model,
                          "--outlier-block", "1"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    x.analysis = x.dir + "/a.json";
    r = RunBioquant({"analyze", "--model", x.model, "--precision", "nf4,int8",
                     "--sensitivity", "blocks", "--threads", "2", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::ofstream(x.analysis) << r.out;
    return x;
  }();
  return f;
}

TEST(AnalyzeCli, RanksTheOutlierBlockFirstAndWritesReports) {
  const auto a = nlohmann::json::parse(ReadFile(Model().analysis));
  EXPECT_EQ(a["rankings"]["weight_outliers"][0], 1);
  EXPECT_EQ(a["rankings"]["quant_error"][0], 1);
  EXPECT_EQ(a["rankings"]["sensitivity"][0], 1);
  EXPECT_EQ(a["calibration"]["source"], "built-in biomedical paragraphs");
  const std::string html = Model().dir + "/a.html";
  auto r = RunBioquant({"analyze", "--model", Model().model, "--format", "html",
                        "--out", html, "--sensitivity", "modules"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(ReadFile(html).find("<svg"), std::string::npos);
  EXPECT_NE(r.out.find("sensitive #1"), std::string::npos) << r.out;
  // Calibration from task data.
  r = RunBioquant({"analyze", "--model", Model().model, "--data-dir",
                   testing::SourceDir() + "/examples/data", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(nlohmann::json::parse(r.out)["calibration"]["source"]
                .get<std::string>()
                .find("task data"),
            std::string::npos);
}

TEST(AnalyzeCli, BadFlagsAreOneLineErrors) {
  auto r = RunBioquant(
      {"analyze", "--model", Model().model, "--sensitivity", "layers"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--sensitivity"), std::string::npos) << r.err;
  r = RunBioquant({"analyze", "--model", Model().model, "--format", "md"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--out"), std::string::npos) << r.err;
  r = RunBioquant({"synth", "--preset", "tiny", "--out", Model().dir + "/bad",
                   "--outlier-block", "9"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--outlier-block"), std::string::npos) << r.err;
}

TEST(AnalyzeCli, PlanProposesAMapThatGenerateAccepts) {
  // All-nf4 of this model: look the bytes up, then give a little more.
  const auto a = nlohmann::json::parse(ReadFile(Model().analysis));
  uint64_t nf4 = a["fixed_bytes"], int8 = a["fixed_bytes"];
  for (const auto& p : a["sensitivity"]["parts"]) {
    nf4 += p["bytes"]["nf4"].get<uint64_t>();
    int8 += p["bytes"]["int8"].get<uint64_t>();
  }
  const std::string budget = std::to_string((nf4 + int8) / 2);
  auto r = RunBioquant(
      {"plan", "--analysis", Model().analysis, "--memory", budget, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto plan = nlohmann::json::parse(r.out);
  EXPECT_LE(plan["weights_bytes"].get<uint64_t>(), std::stoull(budget));
  // The outlier block is the one lifted above nf4.
  EXPECT_NE(plan["choices"][1]["precision"], "nf4");
  const std::string map = plan["precision_map"];
  r = RunBioquant({"generate", "--model", Model().model, "--precision-map", map,
                   "--prompt-ids", "1,2,3", "--max-new-tokens", "2",
                   "--temperature", "0", "--json", "--no-cache"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto g = nlohmann::json::parse(r.out);
  EXPECT_EQ(g["precision"], "mixed");
  // The ledger's weights are the plan's bytes.
  EXPECT_EQ(g["memory"]["weights_bytes"], plan["weights_bytes"]);
  // Text output names the map.
  r = RunBioquant({"plan", "--analysis", Model().analysis, "--memory", budget});
  EXPECT_NE(r.out.find("--precision-map '"), std::string::npos) << r.out;
}

TEST(AnalyzeCli, PlanRejectsMalformedAnalysisNamingTheFile) {
  const std::string bad = Model().dir + "/bad.json";
  std::ofstream(bad) << "{\"reference\": \"bf16\", \"precisions\": [";
  auto r = RunBioquant({"plan", "--analysis", bad, "--memory", "1GiB"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(bad + ": not valid JSON"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  std::ofstream(bad) << "{\"reference\": \"bf16\", \"precisions\": [\"nf4\"],"
                        " \"fixed_bytes\": 10}";
  r = RunBioquant({"plan", "--analysis", bad, "--memory", "1GiB"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(bad + ": not a usable"), std::string::npos) << r.err;
  r = RunBioquant({"plan", "--analysis", Model().analysis, "--memory", "1KiB"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--memory"), std::string::npos) << r.err;
}

TEST(PrecisionMapCli, GenerateAndQuantizeFollowOrRejectTheMap) {
  auto r = RunBioquant({"generate", "--model", Model().model, "--precision-map",
                        "*=nf5", "--prompt-ids", "1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--precision-map: line 1: unknown precision 'nf5'"),
            std::string::npos)
      << r.err;
  // quantize: one quantized format per checkpoint; float rules become
  // skipped modules.
  r = RunBioquant({"quantize", "--model", Model().model, "--precision-map",
                   "model.layers.0.*=int8,*=nf4", "--out",
                   Model().dir + "/q1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("one quantized format"), std::string::npos) << r.err;
  r = RunBioquant({"quantize", "--model", Model().model, "--precision-map",
                   "model.layers.1.*=bf16,*=nf4", "--out", Model().dir + "/q2",
                   "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto q = nlohmann::json::parse(r.out);
  EXPECT_EQ(q["precision"], "nf4");
  EXPECT_EQ(q["skipped_modules"], 7);
  const auto cfg =
      nlohmann::json::parse(ReadFile(Model().dir + "/q2/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["llm_int8_skip_modules"].size(), 7u);
}

}  // namespace
}  // namespace bioquant
