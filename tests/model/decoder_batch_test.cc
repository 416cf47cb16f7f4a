// Multi-sequence Forward and prefix reuse at the decoder level, on the arch
// oracles' checkpoints (real Llama / Qwen2 / Mistral layouts) at several
// precisions: every row of a call must get exactly the bits it gets when its
// sequence runs alone, and a copied KV prefix must give exactly the logits a
// full prefill gives. Bitwise (EXPECT_EQ), not within a tolerance: the
// per-row arithmetic is the same, so any difference is a bug.
#include <gtest/gtest.h>

#include <vector>

#include "model/config.h"
#include "model/decoder.h"
#include "model/weights.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

struct Model {
  ModelConfig cfg;
  ModelWeights w;
  std::vector<int32_t> ids;  // the oracle's input ids
};

std::unique_ptr<Model> Load(const std::string& arch,
                            const std::string& precision) {
  const std::string dir = testing::OracleDir() + "/arch/" + arch;
  auto m = std::make_unique<Model>();
  m->cfg = LoadModelConfig(dir);
  PrecisionSpec p;
  p.name = precision;
  m->w = LoadWeights(dir, m->cfg, p);
  m->ids = ReadJsonFile(dir + "/golden.json")["input_ids"]
               .get<std::vector<int32_t>>();
  return m;
}

std::vector<float> Rows(const std::vector<float>& all, int64_t first,
                        int64_t count, int64_t vocab) {
  return std::vector<float>(all.begin() + first * vocab,
                            all.begin() + (first + count) * vocab);
}

void ExpectSameCache(const KVCache& a, const KVCache& b) {
  ASSERT_EQ(a.length, b.length);
  for (int64_t l = 0; l < a.num_layers; ++l) {
    const size_t n = a.length * a.kv_dim;
    EXPECT_TRUE(std::equal(a.k[l].begin(), a.k[l].begin() + n, b.k[l].begin()))
        << "keys of layer " << l;
    EXPECT_TRUE(std::equal(a.v[l].begin(), a.v[l].begin() + n, b.v[l].begin()))
        << "values of layer " << l;
  }
}

using Param = std::tuple<std::string, std::string>;  // arch, precision

class DecoderBatch : public ::testing::TestWithParam<Param> {};

TEST_P(DecoderBatch, EachSequenceGetsItsAloneBits) {
  BIOQUANT_REQUIRE_SHARED();
  const auto& [arch, precision] = GetParam();
  auto m = Load(arch, precision);
  const int64_t V = m->cfg.vocab_size;
  ASSERT_GE(m->ids.size(), 8u);
  ThreadPool pool(2);
  Decoder dec(m->cfg, m->w, &pool);
  // Three sequences at different positions: one fresh, two with history of
  // different lengths. 3 + 1 + 4 = kMaxBatchRows rows in the batched call.
  const std::vector<std::vector<int32_t>> history = {
      {}, {m->ids[5], m->ids[6]}, {m->ids[1]}};
  const std::vector<std::vector<int32_t>> feed = {
      {m->ids[0], m->ids[1], m->ids[2]},
      {m->ids[3]},
      {m->ids[7], m->ids[4], m->ids[2], m->ids[6]}};
  std::vector<KVCache> alone(3), together(3);
  std::vector<std::vector<float>> want(3);
  for (int s = 0; s < 3; ++s) {
    alone[s] = dec.NewCache();
    together[s] = dec.NewCache();
    if (!history[s].empty()) {
      dec.Forward(history[s].data(), history[s].size(), alone[s], nullptr,
                  false);
      dec.Forward(history[s].data(), history[s].size(), together[s], nullptr,
                  false);
    }
    want[s].resize(feed[s].size() * V);
    dec.Forward(feed[s].data(), feed[s].size(), alone[s], want[s].data(), true);
  }
  std::vector<int32_t> tokens;
  std::vector<SeqSlice> slices;
  for (int s = 0; s < 3; ++s) {
    tokens.insert(tokens.end(), feed[s].begin(), feed[s].end());
    slices.push_back({&together[s], static_cast<int64_t>(feed[s].size())});
  }
  ASSERT_EQ(static_cast<int64_t>(tokens.size()), Decoder::kMaxBatchRows);
  std::vector<float> got(tokens.size() * V);
  dec.Forward(tokens.data(), slices, got.data(), LogitsMode::kAll);
  int64_t row = 0;
  for (int s = 0; s < 3; ++s) {
    const int64_t n = static_cast<int64_t>(feed[s].size());
    EXPECT_EQ(Rows(got, row, n, V), want[s]) << arch << " sequence " << s;
    ExpectSameCache(together[s], alone[s]);
    row += n;
  }
  // A decode round (one token each, last-position logits) on top.
  const std::vector<int32_t> next = {m->ids[4], m->ids[0], m->ids[3]};
  std::vector<float> step(3 * V);
  for (auto& s : slices) s.n = 1;
  dec.Forward(next.data(), slices, step.data(), LogitsMode::kLast);
  for (int s = 0; s < 3; ++s) {
    std::vector<float> one(V);
    dec.Forward(&next[s], 1, alone[s], one.data(), false);
    EXPECT_EQ(Rows(step, s, 1, V), one) << arch << " decode, sequence " << s;
    ExpectSameCache(together[s], alone[s]);
  }
}

// Not at llm-int8: LLM.int8 picks outlier columns over all rows of a call,
// so a prompt's logits depend on how it is split, and the engine does not
// reuse prefixes at that precision.
class DecoderPrefix : public ::testing::TestWithParam<Param> {};

TEST_P(DecoderPrefix, CopiedPrefixGivesFullPrefillLogits) {
  BIOQUANT_REQUIRE_SHARED();
  const auto& [arch, precision] = GetParam();
  auto m = Load(arch, precision);
  const int64_t V = m->cfg.vocab_size;
  const int64_t n = static_cast<int64_t>(m->ids.size());
  ThreadPool pool(2);
  Decoder dec(m->cfg, m->w, &pool);
  KVCache full = dec.NewCache();
  std::vector<float> want(n * V);
  dec.Forward(m->ids.data(), n, full, want.data(), true);
  for (int64_t reuse : {int64_t{1}, n / 2, n - 1}) {
    KVCache c = dec.NewCache();
    c.AssignPrefix(full, reuse);
    EXPECT_EQ(c.length, reuse);
    std::vector<float> got((n - reuse) * V);
    dec.Forward(m->ids.data() + reuse, n - reuse, c, got.data(), true);
    EXPECT_EQ(got, Rows(want, reuse, n - reuse, V))
        << arch << " reusing " << reuse << " of " << n;
    ExpectSameCache(c, full);
  }
}

std::string ParamName(const ::testing::TestParamInfo<Param>& p) {
  std::string name = std::get<0>(p.param) + "_" +
                     (std::get<1>(p.param).empty() ? std::string("f32")
                                                   : std::get<1>(p.param));
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

const auto kArchs = ::testing::Values(
    "llama-gqa", "qwen2", "mistral-sliding-window", "llama3-rope-scaling");

INSTANTIATE_TEST_SUITE_P(Oracles, DecoderBatch,
                         ::testing::Combine(kArchs,
                                            ::testing::Values("", "nf4", "int8",
                                                              "llm-int8")),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Oracles, DecoderPrefix,
                         ::testing::Combine(kArchs, ::testing::Values("", "nf4",
                                                                      "int8")),
                         ParamName);

TEST(DecoderBatchErrors, RejectsSharedCacheAndEmptySlices) {
  BIOQUANT_REQUIRE_SHARED();
  auto m = Load("llama-gqa", "");
  Decoder dec(m->cfg, m->w, nullptr);
  KVCache a = dec.NewCache(), b = dec.NewCache();
  const int32_t tokens[2] = {m->ids[0], m->ids[1]};
  const SeqSlice shared[2] = {{&a, 1}, {&a, 1}};
  EXPECT_THROW(dec.Forward(tokens, shared, nullptr, LogitsMode::kLast), Error);
  const SeqSlice empty[2] = {{&a, 2}, {&b, 0}};
  EXPECT_THROW(dec.Forward(tokens, empty, nullptr, LogitsMode::kLast), Error);
  KVCache other;
  other.Init(m->cfg.num_layers + 1, m->cfg.kv_dim());
  EXPECT_THROW(other.AssignPrefix(a, 0), Error);
  EXPECT_THROW(b.AssignPrefix(a, 1), Error);  // a holds no positions yet
}

}  // namespace
}  // namespace bioquant
