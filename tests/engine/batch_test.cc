// Engine::GenerateBatch: a request gives the same ids, text and finish
// reason alone (prefix reuse off) as in batches of 3, 8 and 12 (more than
// Decoder::kMaxBatchRows: two decode groups) with prefix reuse on, greedy
// and sampled, stopping on length, stop strings, a callback and eos; prefix
// reuse computes fewer prompt tokens and counts them; the stories260K golden
// greedy ids come out of one batch of all five prompts.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <set>

#include "engine/engine.h"
#include "engine/synth.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

const std::string& SynthDir() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("batchmodel") + "/m";
    o.seed = 11;
    o.init_std = 0.08;  // peakier logits than the default: varied text
    WriteSyntheticCheckpoint(o);
    return o.out_dir;
  }();
  return dir;
}

std::unique_ptr<Engine> LoadEngine(const std::string& dir,
                                   const std::string& precision,
                                   uint64_t prefix_cache_bytes) {
  EngineOptions o;
  o.model_dir = dir;
  o.precision.name = precision;
  o.threads = 2;
  o.prefix_cache_bytes = prefix_cache_bytes;
  return Engine::Load(o);
}

// Same requests every call (fresh callback state): prompts of different
// lengths, two pairs sharing a prefix and three identical prompts
// (self-consistency), token limits from 0 to 40, greedy and sampled,
// `stops[i]` as request i's stop string, request 7 stopped by its callback
// after 3 pieces of text, request 11 sampled near-uniformly with
// `eos_seed` (chosen so that it ends on eos).
std::vector<GenerateRequest> MakeRequests(int64_t vocab,
                                          const std::vector<std::string>& stops,
                                          int32_t first_id, uint64_t eos_seed) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tok(first_id,
                                             static_cast<int32_t>(vocab - 1));
  const int lengths[] = {1, 5, 17, 9, 33, 2, 12, 40, 17, 17, 7, 3};
  const int max_new[] = {0, 1, 24, 15, 30, 8, 20, 30, 24, 24, 12, 40};
  std::vector<GenerateRequest> reqs(12);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto& r = reqs[i];
    r.prompt_ids.resize(lengths[i]);
    for (auto& t : r.prompt_ids) t = tok(rng);
    r.max_new_tokens = max_new[i];
    if (i % 3 == 1 || i >= 8) {
      r.sampling.temperature = 0.9f;
      r.sampling.top_k = 40;
      r.sampling.seed = 100 + i;
    }
    if (i < stops.size() && !stops[i].empty()) r.stop = {stops[i]};
  }
  // 8 and 9 repeat 2's prompt (samples of one question); 10 and 6 share
  // 4's first tokens.
  reqs[8].prompt_ids = reqs[9].prompt_ids = reqs[2].prompt_ids;
  std::copy_n(reqs[4].prompt_ids.begin(), 5, reqs[10].prompt_ids.begin());
  std::copy_n(reqs[4].prompt_ids.begin(), 10, reqs[6].prompt_ids.begin());
  reqs[11].sampling.temperature = 50.0f;
  reqs[11].sampling.top_k = 0;
  reqs[11].sampling.seed = eos_seed;
  auto pieces = std::make_shared<int>(0);
  reqs[7].on_text = [pieces](const std::string&) { return ++*pieces < 3; };
  return reqs;
}

void ExpectSame(const GenerateResult& got, const GenerateResult& want,
                const std::string& what) {
  EXPECT_EQ(got.output_ids, want.output_ids) << what;
  EXPECT_EQ(got.text, want.text) << what;
  EXPECT_EQ(got.finish_reason, want.finish_reason) << what;
  EXPECT_EQ(got.timings.prefill_tokens + got.timings.reused_tokens,
            want.timings.prefill_tokens)
      << what;
  EXPECT_EQ(got.timings.decode_tokens, want.timings.decode_tokens) << what;
}

// Runs the requests one by one without a prefix cache (the reference), then
// in batches of 3, 8 and all 12 with one, and compares.
void CheckBatchesMatchSingles(const std::string& dir,
                              const std::string& precision, int32_t first_id) {
  auto ref = LoadEngine(dir, precision, 0);
  auto batched = LoadEngine(dir, precision, 64ull << 20);
  const int64_t V = ref->config().vocab_size;
  // Stop strings from the reference's own text, so they do fire: two
  // characters from the middle of requests 3's and 5's greedy output.
  std::vector<std::string> stops(12);
  uint64_t eos_seed = 0;
  {
    auto probe = MakeRequests(V, stops, first_id, 0);
    for (int i : {3, 5}) {
      const std::string text = ref->Generate(probe[i]).text;
      if (text.size() >= 4) stops[i] = text.substr(text.size() / 2, 2);
    }
    for (; eos_seed < 300; ++eos_seed) {
      probe[11].sampling.seed = eos_seed;
      if (ref->Generate(probe[11]).finish_reason == "eos") break;
    }
  }
  std::vector<GenerateResult> want;
  for (const auto& r : MakeRequests(V, stops, first_id, eos_seed))
    want.push_back(ref->Generate(r));
  std::set<std::string> reasons;
  for (const auto& w : want) reasons.insert(w.finish_reason);
  EXPECT_TRUE(reasons.count("length")) << precision;
  EXPECT_TRUE(reasons.count("stop")) << precision;
  EXPECT_TRUE(reasons.count("callback")) << precision;
  EXPECT_TRUE(reasons.count("eos")) << precision;
  for (size_t batch : {3, 8, 12}) {
    const auto reqs = MakeRequests(V, stops, first_id, eos_seed);
    for (size_t b0 = 0; b0 < reqs.size(); b0 += batch) {
      const std::vector<GenerateRequest> part(
          reqs.begin() + b0, reqs.begin() + std::min(reqs.size(), b0 + batch));
      const auto got = batched->GenerateBatch(part);
      ASSERT_EQ(got.size(), part.size());
      for (size_t k = 0; k < got.size(); ++k) {
        ExpectSame(got[k], want[b0 + k],
                   precision + " batch " + std::to_string(batch) + " request " +
                       std::to_string(b0 + k));
      }
    }
  }
}

class BatchSynth : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchSynth, BatchesGiveTheIdsOfSingleRequests) {
  CheckBatchesMatchSingles(SynthDir(), GetParam(), 0);
}

INSTANTIATE_TEST_SUITE_P(Precisions, BatchSynth,
                         ::testing::Values("bf16", "int8", "llm-int8", "nf4"),
                         [](const auto& p) {
                           std::string s = p.param;
                           for (char& c : s) {
                             if (c == '-') c = '_';
                           }
                           return s;
                         });

TEST(BatchStories260k, BatchesGiveTheIdsOfSingleRequests) {
  BIOQUANT_REQUIRE_SHARED();
  // Ids from 3 on: no bos/eos/unk inside the prompts.
  CheckBatchesMatchSingles(testing::OracleDir() + "/stories260k/hf", "", 3);
}

TEST(BatchStories260k, GoldenGreedyIdsFromOneBatch) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string root = testing::OracleDir() + "/stories260k";
  const auto cases = ReadJsonFile(root + "/golden/golden_runc.json");
  ASSERT_EQ(cases.size(), 5u);
  for (const std::string variant : {"hf", "hf-untied"}) {
    auto engine = LoadEngine(root + "/" + variant, "", 64ull << 20);
    std::vector<GenerateRequest> reqs;
    for (const auto& c : cases) {
      GenerateRequest r;
      r.prompt_ids = c["prompt_ids_runc"].get<std::vector<int32_t>>();
      r.max_new_tokens = static_cast<int>(c["generated_ids"].size());
      r.ignore_eos = true;
      reqs.push_back(r);
    }
    // Twice: the second batch reuses every prompt but its last token.
    for (int round = 0; round < 2; ++round) {
      const auto got = engine->GenerateBatch(reqs);
      ASSERT_EQ(got.size(), cases.size());
      for (size_t i = 0; i < cases.size(); ++i) {
        EXPECT_EQ(got[i].output_ids,
                  cases[i]["generated_ids"].get<std::vector<int32_t>>())
            << variant << " " << cases[i]["name"] << " round " << round;
        // Round 0 computes a prompt but its BOS (shared with the prompt
        // before) unless an earlier one of the batch is the same (empty_256
        // repeats empty's); round 1 only the last token.
        bool repeated = false;
        for (size_t j = 0; j < i; ++j)
          repeated |= reqs[j].prompt_ids == reqs[i].prompt_ids;
        const int64_t n = static_cast<int64_t>(reqs[i].prompt_ids.size());
        const auto& t = got[i].timings;
        EXPECT_EQ(t.prefill_tokens + t.reused_tokens, n);
        if (repeated) {
          EXPECT_EQ(t.prefill_tokens, 0) << cases[i]["name"];
        } else if (round == 0) {
          EXPECT_EQ(t.prefill_tokens, i == 0 ? n : n - 1) << cases[i]["name"];
        } else {
          EXPECT_EQ(t.prefill_tokens, 1) << cases[i]["name"];
        }
      }
    }
  }
}

TEST(PrefixReuse, ComputesOnlyNewTokensAndChangesNothing) {
  auto off = LoadEngine(SynthDir(), "nf4", 0);
  auto on = LoadEngine(SynthDir(), "nf4", 64ull << 20);
  const int64_t V = on->config().vocab_size;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  std::vector<int32_t> shared(30);
  for (auto& t : shared) t = tok(rng);
  auto request = [&](int32_t suffix_first, float temperature) {
    GenerateRequest r;
    r.prompt_ids = shared;
    for (int i = 0; i < 5; ++i) r.prompt_ids.push_back(suffix_first + i);
    r.max_new_tokens = 16;
    r.ignore_eos = true;
    r.sampling.temperature = temperature;
    r.sampling.seed = 3;
    return r;
  };
  struct Step {
    std::vector<GenerateRequest> batch;
    std::vector<int64_t> want_computed;  // prompt tokens computed per request
  };
  const std::vector<Step> steps = {
      {{request(100, 0)}, {35}},    // nothing cached yet
      {{request(200, 0)}, {5}},     // the shared 30 reused
      {{request(200, 0.8f)}, {1}},  // all but the last prompt token
      {{request(300, 0.8f), request(300, 0.8f), request(300, 0.8f)},
       {5, 0, 0}},  // one prefill for three samples
  };
  for (size_t s = 0; s < steps.size(); ++s) {
    const auto got = on->GenerateBatch(steps[s].batch);
    const auto want = off->GenerateBatch(steps[s].batch);
    ASSERT_EQ(got.size(), steps[s].want_computed.size());
    for (size_t k = 0; k < got.size(); ++k) {
      const std::string what =
          "step " + std::to_string(s) + " request " + std::to_string(k);
      EXPECT_EQ(got[k].output_ids, want[k].output_ids) << what;
      EXPECT_EQ(got[k].timings.prefill_tokens, steps[s].want_computed[k])
          << what;
      EXPECT_EQ(got[k].timings.reused_tokens, 35 - steps[s].want_computed[k])
          << what;
      // Without a prefix cache only the repeats within a batch are shared.
      EXPECT_EQ(want[k].timings.prefill_tokens, k == 0 ? 35 : 0) << what;
    }
  }
  const MemoryLedger m_on = on->Memory(), m_off = off->Memory();
  EXPECT_EQ(m_off.prefix_cache_bytes, 0u);
  EXPECT_GT(m_on.prefix_cache_bytes, 0u);
  EXPECT_LE(m_on.prefix_cache_bytes, 64ull << 20);
  EXPECT_EQ(m_on.kv_cache_bytes, m_off.kv_cache_bytes + m_on.prefix_cache_bytes)
      << "same sequence caches, plus the prefix cache";
  EXPECT_EQ(m_on.ToJson()["prefix_cache_bytes"], m_on.prefix_cache_bytes);
}

TEST(PrefixReuse, LedgerStaysWithinASmallBudget) {
  // Room for one 40-token prompt, not two (4 layers x 64 kv_dim, keys and
  // values in f32, a cache holds at least 64 positions).
  const uint64_t budget = 3 * (64 * 2 * 4 * 64 * 4) / 2;
  auto engine = LoadEngine(SynthDir(), "bf16", budget);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, 511);
  for (int i = 0; i < 6; ++i) {
    GenerateRequest r;
    r.prompt_ids.resize(40 + i);
    for (auto& t : r.prompt_ids) t = tok(rng);
    r.max_new_tokens = 2;
    engine->Generate(r);
    const uint64_t b = engine->Memory().prefix_cache_bytes;
    EXPECT_LE(b, budget) << i;
    EXPECT_GT(b, 0u) << i;
  }
}

TEST(GenerateBatch, RejectsBadRequestsBeforeComputing) {
  auto engine = LoadEngine(SynthDir(), "bf16", 0);
  std::vector<GenerateRequest> reqs(2);
  reqs[0].prompt_ids = {1, 2, 3};
  try {
    engine->GenerateBatch(reqs);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("request 1"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(engine->GenerateBatch({}).empty());
}

}  // namespace
}  // namespace bioquant
