// End-to-end: the bioquant binary on the real stories260K checkpoint (issue 2
// "done when" a) and the synthetic checkpoints it writes itself.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

std::string Stories(const std::string& variant = "hf") {
  return testing::OracleDir() + "/stories260k/" + variant;
}

std::string Join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i)
    s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

TEST(EngineCli, Stories260kGoldenPromptsGreedyAndLogits) {
  BIOQUANT_REQUIRE_SHARED();
  const auto cases = ReadJsonFile(testing::OracleDir() +
                                  "/stories260k/golden/golden_runc.json");
  const std::string tmp = testing::TempDir("cli");
  for (const std::string variant : {"hf", "hf-untied"}) {
    for (const auto& c : cases) {
      const auto prompt_ids = c["prompt_ids_runc"].get<std::vector<int32_t>>();
      const auto gen = c["generated_ids"].get<std::vector<int32_t>>();
      // Tokenizer: the prompt text gives the golden prompt ids.
      auto r = RunBioquant({"generate", "--model", Stories(variant), "--prompt",
                            c["prompt"].get<std::string>(), "--max-new-tokens",
                            std::to_string(gen.size()), "--temperature", "0",
                            "--ignore-eos", "--threads", "2", "--json"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const auto j = nlohmann::json::parse(r.out);
      EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), prompt_ids)
          << c["name"];
      EXPECT_EQ(j["output_ids"].get<std::vector<int32_t>>(), gen) << c["name"];
      for (const char* k : {"load_ms", "prefill_ms", "decode_ms",
                            "prefill_tokens_per_s", "decode_tokens_per_s"}) {
        EXPECT_TRUE(j["timings"].contains(k)) << k;
      }
      for (const char* k : {"weights_bytes", "kv_cache_bytes", "scratch_bytes",
                            "peak_rss_bytes"}) {
        EXPECT_GT(j["memory"][k].get<uint64_t>(), 0u) << k;
      }
      // Logits through the CLI, whole and chunked.
      const auto ids = c["input_ids_per_position"].get<std::vector<int32_t>>();
      const auto want =
          ReadNpyF32(testing::OracleDir() + "/stories260k/golden/" +
                     c["logits_file"].get<std::string>());
      for (const char* chunk : {"0", "7"}) {
        const std::string out = tmp + "/l.npy";
        auto lr = RunBioquant({"logits", "--model", Stories(variant), "--ids",
                               Join(ids), "--out", out, "--chunk", chunk});
        ASSERT_EQ(lr.exit_code, 0) << lr.err;
        const auto got = ReadNpyF32(out);
        ASSERT_EQ(got.shape, want.shape);
        float maxdiff = 0;
        for (size_t i = 0; i < got.data.size(); ++i) {
          maxdiff = std::max(maxdiff, std::fabs(got.data[i] - want.data[i]));
        }
        EXPECT_LE(maxdiff, 1e-4f) << c["name"] << " chunk " << chunk;
      }
    }
  }
}

TEST(EngineCli, PromptIdsAreVerbatimAndSeedsReproduce) {
  BIOQUANT_REQUIRE_SHARED();
  auto run = [&](const std::string& seed) {
    auto r = RunBioquant({"generate", "--model", Stories(), "--prompt-ids",
                          "1,403,407", "--max-new-tokens", "20",
                          "--temperature", "0.9", "--top-k", "40", "--top-p",
                          "0.95", "--seed", seed, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto a = run("7"), b = run("7"), c = run("8");
  EXPECT_EQ(a["prompt_ids"], nlohmann::json({1, 403, 407}));
  EXPECT_EQ(a["output_ids"], b["output_ids"]);
  EXPECT_EQ(a["text"], b["text"]);
  EXPECT_NE(a["output_ids"], c["output_ids"]);
}

TEST(EngineCli, StopStringsAndMaxTokens) {
  BIOQUANT_REQUIRE_SHARED();
  auto r = RunBioquant({"generate", "--model", Stories(), "--prompt",
                        "Once upon a time", "--max-new-tokens", "60",
                        "--temperature", "0", "--stop", "Lily", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["finish_reason"], "stop");
  EXPECT_EQ(j["text"], ", there was a little girl named ");
  auto r2 = RunBioquant({"generate", "--model", Stories(), "--prompt", "Once",
                         "--max-new-tokens", "5", "--json"});
  EXPECT_EQ(nlohmann::json::parse(r2.out)["output_ids"].size(), 5u);
}

TEST(EngineCli, SyntheticCheckpointRunsAndInspects) {
  const std::string dir = testing::TempDir("synth") + "/m";
  auto s =
      RunBioquant({"synth", "--preset", "tiny", "--out", dir, "--seed", "3"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  auto i = RunBioquant({"inspect", "--model", dir, "--json"});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  const auto j = nlohmann::json::parse(i.out);
  EXPECT_EQ(j["architecture"], "LlamaForCausalLM");
  EXPECT_TRUE(j["synthetic"].get<bool>());
  EXPECT_EQ(j["parameters"], j["parameters_from_config"]);
  EXPECT_LT(j["bytes_per_precision"]["nf4"].get<uint64_t>(),
            j["bytes_per_precision"]["bf16"].get<uint64_t>());
  auto g = RunBioquant({"generate", "--model", dir, "--prompt", "The patient",
                        "--chat", "--max-new-tokens", "8", "--date",
                        "2025-01-01", "--json"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const auto gj = nlohmann::json::parse(g.out);
  EXPECT_LE(gj["output_ids"].size(), 8u);
  // The chat template wraps the prompt: more ids than the bare text.
  auto t = RunBioquant(
      {"tokenize", "--model", dir, "--text", "The patient", "--json"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_GT(gj["prompt_ids"].size(),
            nlohmann::json::parse(t.out)["ids"].size());
  // Same seed, same weights.
  const std::string dir2 = testing::TempDir("synth") + "/m";
  ASSERT_EQ(
      RunBioquant({"synth", "--preset", "tiny", "--out", dir2, "--seed", "3"})
          .exit_code,
      0);
  EXPECT_EQ(ReadFile(dir + "/model.safetensors"),
            ReadFile(dir2 + "/model.safetensors"));
}

// Generation stays inside the model's context unless told otherwise: a
// prompt over it is a one-line error; a huge --max-new-tokens stops at it
// with a warning and context_limited in the JSON.
TEST(EngineCli, TheContextBoundsGeneration) {
  const std::string dir = testing::TempDir("ctxcli") + "/m";
  ASSERT_EQ(RunBioquant({"synth", "--preset", "tiny", "--out", dir}).exit_code,
            0);
  nlohmann::json cfg = nlohmann::json::parse(ReadFile(dir + "/config.json"));
  cfg["max_position_embeddings"] = 16;
  WriteFile(dir + "/config.json", cfg.dump());

  auto r = RunBioquant({"generate", "--model", dir, "--prompt-ids",
                        "1,2,3,4,5,6,7,8,9,10", "--max-new-tokens", "100000000",
                        "--ignore-eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["output_ids"].size(), 6u);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["context_limited"], true);
  EXPECT_NE(r.err.find("warning: stopped at the model's context of 16"),
            std::string::npos)
      << r.err;

  std::string ids = "1";
  for (int i = 2; i <= 20; ++i) ids += "," + std::to_string(i);
  r = RunBioquant({"generate", "--model", dir, "--prompt-ids", ids,
                   "--max-new-tokens", "2", "--json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("20 tokens, more than the model's context of 16"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  r = RunBioquant({"generate", "--model", dir, "--prompt-ids", ids,
                   "--max-new-tokens", "2", "--ignore-eos",
                   "--allow-context-overflow", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["output_ids"].size(), 2u);
}

TEST(EngineCli, BadInputIsOneLineAndNonZero) {
  const std::string tmp = testing::TempDir("badcli");
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  WriteFile(tmp + "/config.json",
            R"({"architectures": ["FalconForCausalLM"]})");
  // Nesting deep enough to overflow a recursive walker's stack.
  const std::string deep = tmp + "/deep";
  std::filesystem::create_directories(deep);
  WriteFile(deep + "/config.json",
            std::string(200000, '[') + std::string(200000, ']'));
  const std::vector<Case> cases = {
      {{"inspect", "--model", deep},
       "config.json: malformed JSON at byte 513 (JSON nested deeper than 512 "
       "levels)"},
      {{"generate", "--model", tmp + "/none", "--prompt", "x"},
       "model directory not found"},
      {{"generate", "--model", tmp, "--prompt", "x"},
       "unknown architecture 'FalconForCausalLM'"},
      {{"generate", "--model", tmp}, "--prompt"},
      {{"logits", "--model", tmp, "--ids", "1,x,3", "--out", tmp + "/o.npy"},
       "--ids: 'x'"},
      {{"frobnicate"}, "unknown command"},
      {{"synth", "--preset", "huge", "--out", tmp + "/s"},
       "unknown preset 'huge'"},
  };
  for (const auto& c : cases) {
    auto r = RunBioquant(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args[0];
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace bioquant
