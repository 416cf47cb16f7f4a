// `bioquant plan` end to end: the JSON contract, CPU predictions against the
// peak RSS `bioquant generate` measures, --run, and one-line errors.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "quant/half.h"
#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

// A Llama checkpoint big enough that weights dominate the process (~80 MB
// bf16): hidden 512, 12 layers, GQA 8/4, intermediate 1536, vocab 2000,
// untied. Random weights (no tokenizer: prompts are given as ids).
std::string WriteModel() {
  static std::string dir;
  if (!dir.empty()) return dir;
  dir = testing::TempDir("plan_model");
  const int64_t H = 512, L = 12, NH = 8, KV = 4, D = 64, I = 1536, V = 2000;
  std::vector<SafetensorsStreamWriter::Decl> decls;
  decls.push_back({"model.embed_tokens.weight", DType::kBF16, {V, H}});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    decls.push_back({p + "input_layernorm.weight", DType::kBF16, {H}});
    decls.push_back({p + "self_attn.q_proj.weight", DType::kBF16, {NH * D, H}});
    decls.push_back({p + "self_attn.k_proj.weight", DType::kBF16, {KV * D, H}});
    decls.push_back({p + "self_attn.v_proj.weight", DType::kBF16, {KV * D, H}});
    decls.push_back({p + "self_attn.o_proj.weight", DType::kBF16, {H, NH * D}});
    decls.push_back({p + "post_attention_layernorm.weight", DType::kBF16, {H}});
    decls.push_back({p + "mlp.gate_proj.weight", DType::kBF16, {I, H}});
    decls.push_back({p + "mlp.up_proj.weight", DType::kBF16, {I, H}});
    decls.push_back({p + "mlp.down_proj.weight", DType::kBF16, {H, I}});
  }
  decls.push_back({"model.norm.weight", DType::kBF16, {H}});
  decls.push_back({"lm_head.weight", DType::kBF16, {V, H}});
  SafetensorsStreamWriter w(dir + "/model.safetensors", decls,
                            {{"format", "pt"}});
  uint64_t state = 12345;
  std::vector<uint16_t> buf;
  for (const auto& d : decls) {
    size_t n = 1;
    for (int64_t s : d.shape) n *= s;
    buf.resize(n);
    const bool norm = d.shape.size() == 1;
    for (size_t i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const float u =
          static_cast<float>((state >> 40) & 0xffffff) / 16777216.0f - 0.5f;
      buf[i] = F32ToBf16(norm ? 1.0f + 0.1f * u : 0.04f * u);
    }
    w.Append(d.name, buf.data(), n * 2);
  }
  w.Finish();
  const nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                              {"model_type", "llama"},
                              {"hidden_size", H},
                              {"intermediate_size", I},
                              {"num_hidden_layers", L},
                              {"num_attention_heads", NH},
                              {"num_key_value_heads", KV},
                              {"vocab_size", V},
                              {"max_position_embeddings", 4096},
                              {"rms_norm_eps", 1e-5},
                              {"rope_theta", 10000.0},
                              {"tie_word_embeddings", false},
                              {"bos_token_id", 1},
                              {"eos_token_id", 2},
                              {"torch_dtype", "bfloat16"}};
  WriteFile(dir + "/config.json", cfg.dump(2));
  return dir;
}

nlohmann::json PlanJson(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"plan", "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = RunBioquant(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

const nlohmann::json& Entry(const nlohmann::json& plan,
                            const std::string& prec) {
  for (const auto& e : plan["precisions"]) {
    if (e["precision"] == prec) return e;
  }
  static const nlohmann::json kNull;
  ADD_FAILURE() << "no entry for " << prec;
  return kNull;
}

TEST(PlanCliTest, JsonContract) {
  const std::string dir = WriteModel();
  const auto j = PlanJson({"--model", dir, "--memory", "40GiB"});
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["memory_bytes"], 40ull << 30);
  ASSERT_EQ(j["precisions"].size(), 7u);
  for (const auto& e : j["precisions"]) {
    const auto& c = e["components"];
    const uint64_t sum =
        c["weights"].get<uint64_t>() + c["kv_cache"].get<uint64_t>() +
        c["activations"].get<uint64_t>() + c["overhead"].get<uint64_t>();
    EXPECT_EQ(e["total_bytes"].get<uint64_t>(), sum) << e["precision"];
    EXPECT_TRUE(e["fits"].get<bool>());
  }
  EXPECT_EQ(j["recommendation"], "bf16");
  EXPECT_FALSE(j["reason"].get<std::string>().empty());

  // A config.json alone plans the same weights (torch_dtype says bf16).
  const auto c = PlanJson({"--model", dir + "/config.json", "--memory", "40GB",
                           "--device", "gpu", "--precisions", "nf4,bf16"});
  EXPECT_EQ(c["device"], "gpu");
  EXPECT_EQ(c["memory_bytes"], 40000000000ull);
  ASSERT_EQ(c["precisions"].size(), 2u);
  EXPECT_EQ(c["precisions"][0]["precision"], "nf4");

  // The readable table names every component.
  const auto t = RunBioquant({"plan", "--model", dir, "--memory", "1G"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  for (const char* s : {"weights", "kv cache", "activations", "overhead", "nf4",
                        "recommendation: bf16"}) {
    EXPECT_NE(t.out.find(s), std::string::npos) << s << "\n" << t.out;
  }
}

// The CPU model against what the engine measures: the ledger exactly, and
// the process peak RSS within 10%. Quantize-on-load (--no-cache): a load
// that builds the weights cache also holds a shard being written.
TEST(PlanCliTest, CpuPredictionMatchesMeasuredPeakRss) {
  if (testing::kUnderAsan) {
    GTEST_SKIP() << "peak RSS under AddressSanitizer includes its shadow "
                    "memory; the normal build checks the model";
  }
  const std::string dir = WriteModel();
  std::string ids;
  for (int i = 0; i < 64; ++i)
    ids += (i ? "," : "") + std::to_string(3 + i * 7);
  const int max_new = 8;  // positions: 64 + 7 (no forward for the last token)
  for (const std::string prec : {"bf16", "f32", "int8", "nf4"}) {
    const auto g = RunBioquant({"generate", "--model", dir, "--precision", prec,
                                "--prompt-ids", ids, "--max-new-tokens",
                                std::to_string(max_new), "--ignore-eos",
                                "--threads", "2", "--json", "--no-cache"});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    const auto mem = nlohmann::json::parse(g.out)["memory"];
    const auto plan =
        PlanJson({"--model", dir, "--memory", "16GiB", "--context", "71",
                  "--prefill", "64", "--threads", "2", "--precisions", prec});
    const auto& e = Entry(plan, prec);
    const auto& c = e["components"];
    EXPECT_EQ(c["weights"], mem["weights_bytes"]) << prec;
    EXPECT_EQ(c["kv_cache"], mem["kv_cache_bytes"]) << prec;
    EXPECT_EQ(e["detail"]["scratch"].get<uint64_t>(),
              mem["scratch_bytes"].get<uint64_t>())
        << prec;
    const double measured = mem["peak_rss_bytes"].get<double>();
    const double predicted = e["predicted_peak_rss_bytes"].get<double>();
    EXPECT_NEAR(predicted / measured, 1.0, 0.10)
        << prec << ": predicted " << predicted << " measured " << measured;
    std::printf("%-5s predicted %.1f MiB, measured %.1f MiB (%+.1f%%)\n",
                prec.c_str(), predicted / (1 << 20), measured / (1 << 20),
                100.0 * (predicted / measured - 1.0));
  }
}

// A fresh `plan` process measures the tokenizer by loading it.
TEST(PlanCliTest, TokenizerCountsInCpuOverhead) {
  const std::string dir = testing::TempDir("plan_synth");
  ASSERT_EQ(RunBioquant({"synth", "--preset", "tiny", "--out", dir}).exit_code,
            0);
  const auto j =
      PlanJson({"--model", dir, "--memory", "1GiB", "--precisions", "bf16"});
  const auto& e = j["precisions"][0];
  const uint64_t tok = e["detail"]["tokenizer"].get<uint64_t>();
  EXPECT_GT(tok, 0u);
  EXPECT_LT(tok, 64ull << 20);
  EXPECT_EQ(e["components"]["overhead"].get<uint64_t>(),
            tok + e["detail"]["process_baseline"].get<uint64_t>() +
                e["detail"]["load_transient"].get<uint64_t>());
}

// --run compares the prediction with what the run measured, when the two
// are the same quantity: the gpu plan with transformers' CUDA peak (without
// the CUDA context, which torch does not see), the cpu plan with bioquant's
// process RSS; transformers on the CPU is listed as not comparable.
TEST(PlanCliTest, RunMemoryIsComparedWithThePrediction) {
  const std::string dir = WriteModel();
  const std::string run = testing::TempDir("plan_run_mem");
  WriteFile(run + "/summary.json",
            R"({"backend": "transformers", "precisions": [
                {"precision": "bf16", "relative_drop": 0.0,
                 "peak_rss_bytes": 3000000000, "memory_source": "gpu-allocated"},
                {"precision": "nf4", "relative_drop": 0.01,
                 "peak_rss_bytes": 1000000000, "memory_source": "gpu-allocated"},
                {"precision": "int8", "relative_drop": 0.01,
                 "memory_measured": false, "peak_rss_bytes": 0}]})");
  const auto j = PlanJson(
      {"--model", dir, "--memory", "8GiB", "--device", "gpu", "--run", run});
  ASSERT_TRUE(j.contains("measured_memory")) << j.dump();
  ASSERT_EQ(j["measured_memory"].size(), 2u);  // int8 measured nothing
  for (const auto& m : j["measured_memory"]) {
    EXPECT_TRUE(m["comparable"].get<bool>());
    EXPECT_EQ(m["source"], "gpu-allocated");
    for (const auto& p : j["precisions"]) {
      if (p["precision"] != m["precision"]) continue;
      const auto& c = p["components"];
      EXPECT_EQ(m["predicted_bytes"].get<uint64_t>(),
                c["weights"].get<uint64_t>() + c["kv_cache"].get<uint64_t>() +
                    c["activations"].get<uint64_t>());
    }
    EXPECT_NEAR(
        m["measured_over_predicted"].get<double>(),
        m["measured_bytes"].get<double>() / m["predicted_bytes"].get<double>(),
        1e-9);
  }
  const auto r = RunBioquant({"plan", "--model", dir, "--memory", "8GiB",
                              "--device", "cpu", "--run", run});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("measured by the run (transformers backend)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("not comparable"), std::string::npos) << r.out;
}

TEST(PlanCliTest, RunSummaryDecides) {
  const std::string dir = WriteModel();
  const std::string run = testing::TempDir("plan_run");
  WriteFile(run + "/summary.json",
            R"({"precisions": [{"precision": "bf16", "relative_drop": 0.0},
                {"precision": "int8", "relative_drop": 0.004, "ci_supports_within_5pct": true},
                {"precision": "nf4", "relative_drop": 0.021, "ci_supports_within_5pct": true},
                {"precision": "fp4", "relative_drop": 0.12, "ci_supports_within_5pct": false}]})");
  const auto j = PlanJson({"--model", dir, "--memory", "8GiB", "--run", run});
  EXPECT_EQ(j["recommendation"], "nf4");
  EXPECT_NE(j["reason"].get<std::string>().find("2.1%"), std::string::npos)
      << j["reason"];

  // Missing or malformed summaries are errors naming the flag or file.
  const std::string empty = testing::TempDir("plan_run_empty");
  auto r = RunBioquant(
      {"plan", "--model", dir, "--memory", "8GiB", "--run", empty, "--json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--run"), std::string::npos) << r.err;
  WriteFile(empty + "/summary.json",
            R"({"precisions": [{"precision": "nf4"}]})");
  r = RunBioquant(
      {"plan", "--model", dir, "--memory", "8GiB", "--run", empty, "--json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("summary.json"), std::string::npos) << r.err;
}

TEST(PlanCliTest, NothingFitsIsStillAnAnswer) {
  const std::string dir = WriteModel();
  const auto r =
      RunBioquant({"plan", "--model", dir, "--memory", "1MiB", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["recommendation"], "none");
  EXPECT_NE(j["reason"].get<std::string>().find("smallest requirement"),
            std::string::npos);
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(PlanCliTest, BadInputIsOneLineAndNonZero) {
  const std::string dir = WriteModel();
  struct Case {
    std::vector<std::string> args;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {{"--model", "/nonexistent/model", "--memory", "8GiB"}, "--model"},
      {{"--model", dir, "--memory", "lots"}, "--memory"},
      {{"--model", dir, "--memory", "8 XB"}, "--memory"},
      {{"--model", dir, "--memory", "8GiB", "--precisions", "int4"}, "int4"},
      {{"--model", dir, "--memory", "8GiB", "--device", "tpu"}, "--device"},
      {{"--model", dir, "--memory", "8GiB", "--context", "0"}, "--context"},
      {{"--model", dir}, "--memory"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"plan"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.push_back("--json");
    const auto r = RunBioquant(args);
    EXPECT_NE(r.exit_code, 0) << c.mentions;
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_NE(r.err.find(c.mentions), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace bioquant
