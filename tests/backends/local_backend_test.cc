// LocalBackend: the engine behind the Backend seam gives exactly what the
// engine gives, renders with the checkpoint's template, and rejects unusable
// options before anything is loaded.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backends/local.h"
#include "engine/engine.h"
#include "engine/synth.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

const std::string& SynthDir() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("localbackend") + "/m";
    o.seed = 4;
    o.init_std = 0.08;  // peakier logits: varied text
    WriteSyntheticCheckpoint(o);
    return o.out_dir;
  }();
  return dir;
}

LocalBackendOptions Options() {
  LocalBackendOptions o;
  o.model_dir = SynthDir();
  o.precisions = {"bf16", "nf4"};
  o.threads = 2;
  return o;
}

TEST(LocalBackendTest, GeneratesWhatTheEngineGenerates) {
  auto set = MakeLocalBackendSet(Options());
  EXPECT_EQ(set->Fingerprint(), ModelFingerprint(SynthDir()));
  for (const std::string precision : {"bf16", "nf4"}) {
    auto backend = set->Open(precision);
    EXPECT_EQ(backend->Compute(), precision == "nf4" ? "w4a32" : "f32");
    EXPECT_FALSE(backend->AppliesChatTemplate());
    std::vector<BackendRequest> reqs(4);
    reqs[0].text = "The patient was given";
    reqs[1].text = "Aspirin";
    reqs[1].stop = {"e"};
    reqs[2].text = reqs[3].text = "Does a low-salt diet reduce headaches?";
    reqs[2].temperature = reqs[3].temperature = 0.8f;
    reqs[2].seed = 1;
    reqs[3].seed = 2;
    reqs[3].top_p = 0.9f;
    reqs[3].add_special_tokens = false;
    for (auto& r : reqs) r.max_new_tokens = 12;
    const auto got = backend->Generate(reqs);
    ASSERT_EQ(got.size(), reqs.size());

    EngineOptions eo;
    eo.model_dir = SynthDir();
    eo.precision.name = precision;
    eo.threads = 2;
    auto engine = Engine::Load(eo);
    for (size_t i = 0; i < reqs.size(); ++i) {
      GenerateRequest g;
      g.prompt_ids = engine->RequireTokenizer().Encode(
          reqs[i].text, reqs[i].add_special_tokens);
      g.max_new_tokens = reqs[i].max_new_tokens;
      g.sampling.temperature = reqs[i].temperature;
      g.sampling.top_p = reqs[i].top_p;
      g.sampling.seed = reqs[i].seed;
      g.stop = reqs[i].stop;
      const GenerateResult want = engine->Generate(g);
      EXPECT_EQ(got[i].text, want.text) << precision << " request " << i;
      EXPECT_EQ(got[i].finish_reason, want.finish_reason);
      EXPECT_EQ(got[i].tokens_in, static_cast<int64_t>(g.prompt_ids.size()));
      EXPECT_EQ(got[i].tokens_out,
                static_cast<int64_t>(want.output_ids.size()));
      EXPECT_GT(got[i].latency_ms, 0);
    }
    const auto mem = backend->Memory();
    ASSERT_TRUE(mem.has_value());
    EXPECT_EQ(mem->weights_bytes, engine->Memory().weights_bytes);
    EXPECT_GT(mem->peak_rss_bytes, 0u);
    EXPECT_EQ(backend->threads(), 2);
  }
}

TEST(LocalBackendTest, RendersWithTheCheckpointsTemplate) {
  auto backend = MakeLocalBackendSet(Options())->Open("bf16");
  EngineOptions eo;
  eo.model_dir = SynthDir();
  auto engine = Engine::Load(eo);
  const nlohmann::json messages = {
      {{"role", "system"}, {"content", "Be brief."}},
      {{"role", "user"}, {"content", "Hi"}}};
  std::string want, got;
  const bool has = engine->RenderChat(messages, true, "2025-01-01", "", &want);
  EXPECT_EQ(backend->RenderChat(messages, "2025-01-01", &got), has);
  EXPECT_EQ(got, want);
}

TEST(LocalBackendTest, ConfigAndManifestNameTheLocalSettings) {
  LocalBackendOptions o = Options();
  o.quant.blocksize = 128;
  o.skip_modules = {"down_proj"};
  auto set = MakeLocalBackendSet(o);
  EXPECT_EQ(set->Config(), nlohmann::json({{"blocksize", 128},
                                           {"double_quant", true},
                                           {"skip_modules", {"down_proj"}}}));
  EXPECT_EQ(set->Manifest()["model"], SynthDir());
  EXPECT_EQ(set->Manifest()["run"]["threads"], 2);
}

TEST(LocalBackendTest, RejectsBadOptionsNamingTheFlag) {
  LocalBackendOptions o = Options();
  o.precisions = {"bf16", "int3"};
  try {
    MakeLocalBackendSet(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int3"), std::string::npos);
  }
  o = Options();
  o.model_dir = "/nonexistent/model";
  try {
    MakeLocalBackendSet(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--model"), std::string::npos);
  }
}

// A prompt longer than the model's context is answered without generating
// (finish_reason "prompt_too_long", as a server's 400), and the other
// requests of the call are generated as they would be alone.
TEST(LocalBackendTest, APromptOverTheContextIsAnsweredNotFatal) {
  const std::string dir = testing::TempDir("localbackendctx") + "/m";
  SynthOptions so;
  so.preset = "tiny";
  so.out_dir = dir;
  so.seed = 4;
  WriteSyntheticCheckpoint(so);
  nlohmann::json cfg = nlohmann::json::parse(ReadFile(dir + "/config.json"));
  cfg["max_position_embeddings"] = 32;
  WriteFile(dir + "/config.json", cfg.dump());
  LocalBackendOptions o = Options();
  o.model_dir = dir;
  auto backend = MakeLocalBackendSet(o)->Open("bf16");
  std::vector<BackendRequest> reqs(3);
  reqs[0].text = "Aspirin";
  reqs[1].text = std::string(400, 'x') + " a very long prompt";
  reqs[2].text = "The patient";
  for (auto& r : reqs) r.max_new_tokens = 4;
  std::vector<size_t> seen;
  const auto got = backend->Generate(
      reqs, [&](size_t i, const BackendResult&) { seen.push_back(i); });
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(got[1].finish_reason, "prompt_too_long");
  EXPECT_GT(got[1].tokens_in, 32);
  EXPECT_EQ(got[1].tokens_out, 0);
  EXPECT_TRUE(got[1].text.empty());
  for (size_t i : {0u, 2u}) {
    const auto alone = backend->Generate({reqs[i]});
    EXPECT_EQ(got[i].text, alone[0].text) << i;
    EXPECT_EQ(got[i].finish_reason, alone[0].finish_reason) << i;
    EXPECT_NE(got[i].finish_reason, "prompt_too_long");
  }
}

}  // namespace
}  // namespace bioquant
