// Generation stays inside the model's context (max_position_embeddings):
// a prompt longer than it is a one-line error, max_new_tokens is cut so that
// prompt + output fit (context_limited, finish_reason "length"), and the
// tokens produced before the cut are the ones an unbounded run produces;
// allow_context_overflow lifts both bounds.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/synth.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

constexpr int64_t kContext = 24;

// The tiny synthetic model with a 24-position context.
const std::string& SmallContextDir() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("contextmodel") + "/m";
    o.seed = 3;
    WriteSyntheticCheckpoint(o);
    const std::string path = o.out_dir + "/config.json";
    nlohmann::json cfg = nlohmann::json::parse(ReadFile(path));
    cfg["max_position_embeddings"] = kContext;
    WriteFile(path, cfg.dump(2));
    return o.out_dir;
  }();
  return dir;
}

std::unique_ptr<Engine> Load(bool allow_overflow) {
  EngineOptions o;
  o.model_dir = SmallContextDir();
  o.precision.name = "f32";
  o.threads = 2;
  o.allow_context_overflow = allow_overflow;
  return Engine::Load(o);
}

GenerateRequest Request(int prompt_len, int max_new) {
  GenerateRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt_ids.push_back(5 + i % 50);
  r.max_new_tokens = max_new;
  r.ignore_eos = true;
  return r;
}

TEST(ContextTest, APromptLongerThanTheContextIsAnError) {
  auto e = Load(false);
  EXPECT_EQ(e->context_length(), kContext);
  EXPECT_TRUE(e->PromptFits(kContext));
  EXPECT_FALSE(e->PromptFits(kContext + 1));
  try {
    e->Generate(Request(kContext + 6, 4));
    FAIL() << "expected an error";
  } catch (const Error& ex) {
    const std::string m = ex.what();
    EXPECT_NE(m.find("30 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("context of 24"), std::string::npos) << m;
    EXPECT_NE(m.find("--allow-context-overflow"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  DecodeBatch batch(*e);
  EXPECT_THROW(batch.Add(Request(kContext + 1, 1)), Error);
  EXPECT_EQ(batch.live(), 0);
}

TEST(ContextTest, OutputIsCutAtTheContextWithTheSameTokens) {
  auto bounded = Load(false);
  auto unbounded = Load(true);
  const GenerateResult full = unbounded->Generate(Request(20, 10));
  ASSERT_EQ(full.output_ids.size(), 10u);
  EXPECT_FALSE(full.context_limited);

  const GenerateResult cut = bounded->Generate(Request(20, 10));
  EXPECT_EQ(cut.output_ids.size(), 4u);  // 20 + 4 = 24 positions
  EXPECT_EQ(cut.finish_reason, "length");
  EXPECT_TRUE(cut.context_limited);
  EXPECT_EQ(cut.output_ids, std::vector<int32_t>(full.output_ids.begin(),
                                                 full.output_ids.begin() + 4));

  // A limit that fits is not cut; a prompt that fills the context exactly
  // leaves no room.
  const GenerateResult fits = bounded->Generate(Request(20, 3));
  EXPECT_EQ(fits.output_ids.size(), 3u);
  EXPECT_FALSE(fits.context_limited);
  const GenerateResult full_ctx = bounded->Generate(Request(kContext, 5));
  EXPECT_TRUE(full_ctx.output_ids.empty());
  EXPECT_TRUE(full_ctx.context_limited);

  // Past the context only when asked.
  const GenerateResult over = unbounded->Generate(Request(kContext + 6, 3));
  EXPECT_EQ(over.output_ids.size(), 3u);
  EXPECT_FALSE(over.context_limited);
}

TEST(ContextTest, ABatchCutsEachSequenceAtItsOwnRoom) {
  auto e = Load(false);
  std::vector<GenerateRequest> reqs = {Request(22, 8), Request(5, 8),
                                       Request(18, 8)};
  const auto got = e->GenerateBatch(reqs);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].output_ids.size(), 2u);
  EXPECT_TRUE(got[0].context_limited);
  EXPECT_EQ(got[1].output_ids.size(), 8u);
  EXPECT_FALSE(got[1].context_limited);
  EXPECT_EQ(got[2].output_ids.size(), 6u);
  EXPECT_TRUE(got[2].context_limited);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].output_ids, e->Generate(reqs[i]).output_ids) << i;
  }
}

// A sequence that ends for another reason before the cut was not limited
// by the context.
TEST(ContextTest, ASequenceEndedEarlyIsNotContextLimited) {
  auto e = Load(false);
  DecodeBatch batch(*e);
  const int id = batch.Add(Request(20, 10));  // cut to 4
  batch.Step();
  batch.Cancel(id);
  auto done = batch.TakeFinished();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].second.finish_reason, "cancelled");
  EXPECT_FALSE(done[0].second.context_limited);
}

}  // namespace
}  // namespace bioquant
