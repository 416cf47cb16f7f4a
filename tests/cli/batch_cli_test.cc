// Batching through the CLI: `eval --batch 1` and `--batch 4` store the same
// generations (greedy and self-consistency sampling), and record the batch;
// `bench -b B` decodes B sequences together and reports it.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "study/store.h"
#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

const std::string& TinyModel() {
  return testing::SynthModel("batchcli", 4, {"--std", "0.1"});
}

std::vector<std::string> EvalArgs(const std::string& out,
                                  const std::string& batch) {
  return {"eval",
          "--model",
          TinyModel(),
          "--data-dir",
          testing::SourceDir() + "/examples/data",
          "--out",
          out,
          "--precisions",
          "nf4",
          "--tasks",
          "bc5cdr_chem,pubmedqa",
          "--strategies",
          "zero-shot,sc:3",
          "--limit",
          "5",
          "--max-new-tokens",
          "10",
          "--max-new-tokens-cot",
          "10",
          "--resamples",
          "20",
          "--threads",
          "2",
          "--batch",
          batch};
}

// Everything about a row except wall-clock timings.
std::vector<std::string> Canonical(const std::string& run) {
  auto store = RunStore::OpenForRead(run);
  std::vector<std::string> out;
  for (const auto& r : store->Rows()) {
    nlohmann::json j = {
        r.key.precision,  r.key.task,   r.key.strategy, r.key.templ,
        r.key.example_id, r.key.sample, r.compute,      r.prompt_hash,
        r.raw_output,     r.parsed,     r.parse_ok,     r.parse_reason,
        r.gold,           r.tokens_in,  r.tokens_out,   r.seed};
    out.push_back(
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return out;
}

TEST(BatchCli, EvalBatchSizeDoesNotChangeGenerations) {
  const std::string tmp = testing::TempDir("evalbatch");
  std::vector<std::vector<std::string>> rows;
  for (const std::string batch : {"1", "4"}) {
    const std::string run = tmp + "/b" + batch;
    auto r = RunBioquant(EvalArgs(run, batch));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    rows.push_back(Canonical(run));
    // 2 tasks x (1 + 3 samples) x 5 examples.
    EXPECT_EQ(rows.back().size(), 2u * 4 * 5);
    const auto manifest = ReadJsonFile(run + "/manifest.json");
    EXPECT_EQ(manifest["run"]["batch"], std::stoi(batch));
    auto store = RunStore::OpenForRead(run);
    const auto ms = store->Measurements();
    ASSERT_EQ(ms.size(), 4u);
    for (const auto& m : ms) {
      // Self-consistency runs its samples together whatever --batch says.
      EXPECT_EQ(m.batch, m.strategy == "zero-shot" ? std::stoi(batch) : 3)
          << m.strategy;
      EXPECT_GT(m.kv_cache_bytes, 0);
    }
    for (const auto& row : store->Rows()) {
      EXPECT_GT(row.latency_ms, 0.0);
    }
  }
  EXPECT_EQ(rows[0], rows[1]);
  // Outputs differ between examples and between samples, so rows stored
  // under the wrong key would show.
  std::set<std::string> greedy, sampled;
  auto store = RunStore::OpenForRead(tmp + "/b4");
  for (const auto& row : store->Rows()) {
    (row.key.strategy == "zero-shot" ? greedy : sampled).insert(row.raw_output);
  }
  EXPECT_GE(greedy.size(), 8u);
  EXPECT_GE(sampled.size(), 25u);
}

TEST(BatchCli, EvalRefusesBatchBelowOne) {
  const std::string tmp = testing::TempDir("evalbatch0");
  auto r = RunBioquant(EvalArgs(tmp + "/run", "0"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--batch"), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(tmp + "/run/store.sqlite"));
}

TEST(BatchCli, BenchDecodesBatchTogether) {
  auto r = RunBioquant({"bench", "--model", TinyModel(), "-p", "8", "-n", "6",
                        "-r", "1", "-b", "3", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["test"], "pp8");
  EXPECT_EQ(j["results"][0]["batch"], 1);
  EXPECT_EQ(j["results"][1]["test"], "tg6");
  EXPECT_EQ(j["results"][1]["batch"], 3);
  EXPECT_GT(j["results"][1]["tokens_per_s"].get<double>(), 0.0);
  auto bad = RunBioquant({"bench", "--model", TinyModel(), "-b", "0"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("-b 0"), std::string::npos) << bad.err;
}

TEST(BatchCli, BenchReportsComputePerTest) {
  auto r =
      RunBioquant({"bench", "--model", TinyModel(), "-p", "32", "-n", "2", "-r",
                   "1", "--compute", "f32,bf16", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 4u);
  EXPECT_EQ(j["results"][0]["compute"], "f32");
  EXPECT_EQ(j["results"][2]["test"], "pp32");
  EXPECT_EQ(j["results"][2]["compute"], "bf16");
  EXPECT_EQ(j["results"][3]["compute"], "f32");  // decode is always f32
  auto bad = RunBioquant({"bench", "--model", TinyModel(), "--compute", "fp8"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--compute"), std::string::npos) << bad.err;
  auto gen = RunBioquant({"generate", "--model", TinyModel(), "--prompt-ids",
                          "1,2,3", "--compute", "bf17"});
  EXPECT_NE(gen.exit_code, 0);
  EXPECT_NE(gen.err.find("--compute"), std::string::npos) << gen.err;
}

// --interleave loads every precision first and runs them in turn; the report
// has the same shape as without it, in the order the precisions were given.
TEST(BatchCli, BenchInterleavesPrecisions) {
  for (const bool interleave : {false, true}) {
    std::vector<std::string> args = {
        "bench", "--model",   TinyModel(), "--precision", "bf16,nf4",
        "-p",    "8",         "-n",        "3",           "-r",
        "2",     "--threads", "1",         "--json"};
    if (interleave) args.push_back("--interleave");
    auto r = RunBioquant(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["results"].size(), 4u) << r.out;
    const char* want[4][2] = {
        {"bf16", "pp8"}, {"bf16", "tg3"}, {"nf4", "pp8"}, {"nf4", "tg3"}};
    for (size_t i = 0; i < 4; ++i) {
      const auto& res = j["results"][i];
      EXPECT_EQ(res["precision"], want[i][0]) << i << " " << interleave;
      EXPECT_EQ(res["test"], want[i][1]) << i << " " << interleave;
      ASSERT_EQ(res["runs"].size(), 2u);  // the warm-up is not recorded
      const double a = res["runs"][0].get<double>();
      const double b = res["runs"][1].get<double>();
      EXPECT_GT(a, 0.0);
      EXPECT_DOUBLE_EQ(res["best"].get<double>(), std::max(a, b));
      EXPECT_DOUBLE_EQ(res["tokens_per_s"].get<double>(), (a + b) / 2);
    }
  }
  auto bad = RunBioquant({"bench", "--model", TinyModel(), "-r", "0"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("-r 0"), std::string::npos) << bad.err;
  auto neg = RunBioquant({"bench", "--model", TinyModel(), "-n", "-3"});
  EXPECT_NE(neg.exit_code, 0);
  EXPECT_NE(neg.err.find("-p/-n"), std::string::npos) << neg.err;
}

}  // namespace
}  // namespace bioquant
