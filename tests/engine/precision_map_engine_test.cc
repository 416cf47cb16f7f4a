// The engine with a per-module precision map: every Linear is stored in the
// format its rule names, the memory ledger counts exactly those bytes, and
// the logits equal those of an independent route to the same weights
// (--precision nf4 with --skip-modules).
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/synth.h"
#include "quant/formats.h"
#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

std::string TinyModel() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("pmap_engine");
    WriteSyntheticCheckpoint(o);
    return o.out_dir;
  }();
  return dir;
}

std::unique_ptr<Engine> Load(const std::string& precision,
                             const std::string& map,
                             std::vector<std::string> skip = {}) {
  EngineOptions o;
  o.model_dir = TinyModel();
  o.threads = 2;
  o.precision.name = precision;
  o.precision.skip_modules = std::move(skip);
  if (!map.empty()) o.precision.module_map = ParsePrecisionMap(map, "test");
  return Engine::Load(o);
}

TEST(PrecisionMapEngine, FormatsAndLedgerFollowTheMap) {
  auto e = Load("", "model.layers.1.*=f32,model.layers.0.*=int8,*=nf4");
  const ModelWeights& w = e->weights();
  EXPECT_EQ(w.precision, "mixed");
  const ModelConfig& c = e->config();
  uint64_t want = 0;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const WeightFormat f = l == 1   ? WeightFormat::kF32
                           : l == 0 ? WeightFormat::kInt8Row
                                    : WeightFormat::kNF4;
    const LayerWeights& L = w.layers[l];
    for (const Linear* lin :
         {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      EXPECT_EQ(lin->w.format, f) << lin->name;
      want += PackedBytes(f, lin->w.rows, lin->w.cols);
    }
    want += 2 * c.hidden_size * 4;  // norms
  }
  // Embeddings and lm_head stay bf16 (the file's dtype); final norm f32.
  want += 2 * PackedBytes(WeightFormat::kBF16, c.vocab_size, c.hidden_size);
  want += c.hidden_size * 4;
  EXPECT_EQ(e->Memory().weights_bytes, want);
  // Less than all-f32 blocks, more than all-nf4.
  EXPECT_LT(want, Load("", "*=f32")->Memory().weights_bytes);
  EXPECT_GT(want, Load("nf4", "")->Memory().weights_bytes);
}

TEST(PrecisionMapEngine, LogitsMatchAnIndependentRouteToTheSameWeights) {
  const std::vector<int32_t> ids = {1, 17, 42, 300, 5, 99, 256, 7};
  // mlp at nf4, attention kept in the file's bf16: the map route and the
  // --skip-modules route store identical weights.
  const auto mapped = Load("bf16", "*.mlp.*=nf4")->Logits(ids);
  const auto skipped =
      Load("nf4", "", {"q_proj", "k_proj", "v_proj", "o_proj"})->Logits(ids);
  EXPECT_EQ(mapped, skipped);
  // A map that sends everything to nf4 is --precision nf4, bit for bit.
  EXPECT_EQ(Load("", "*=nf4")->Logits(ids), Load("nf4", "")->Logits(ids));
  // ... and a map that differs gives different logits.
  EXPECT_NE(Load("", "model.layers.0.*=int8,*=nf4")->Logits(ids),
            Load("nf4", "")->Logits(ids));
}

TEST(PrecisionMapEngine, UnmatchedModulesTakePrecision) {
  auto e = Load("int8", "model.layers.2.mlp.down_proj=nf4");
  EXPECT_EQ(e->weights().layers[2].down.w.format, WeightFormat::kNF4);
  EXPECT_EQ(e->weights().layers[2].up.w.format, WeightFormat::kInt8Row);
  EXPECT_EQ(e->weights().layers[0].q.w.format, WeightFormat::kInt8Row);
}

}  // namespace
}  // namespace bioquant
