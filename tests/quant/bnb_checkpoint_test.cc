// bnb-serialized checkpoints: the tiny transformers-style checkpoints of
// ../shared/oracles/bnb/golden load and dequantize exactly, our writer
// reproduces their tensors and quant-state JSON byte for byte, and broken
// inputs fail with one line naming the tensor or file.
#include "quant/bnb_checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "io/safetensors.h"
#include "quant/half.h"
#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

std::string GoldenDir() { return testing::OracleDir() + "/bnb/golden"; }

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

const char* kModules[] = {"model.layers.0.mlp.up_proj",
                          "model.layers.0.mlp.down_proj"};

void ExpectSameTensor(const TensorView& got, const TensorView& want) {
  EXPECT_EQ(got.dtype, want.dtype) << want.name;
  EXPECT_EQ(got.shape, want.shape) << want.name;
  ASSERT_EQ(got.nbytes, want.nbytes) << want.name;
  EXPECT_EQ(0, std::memcmp(got.data, want.data, want.nbytes)) << want.name;
}

TEST(BnbCheckpoint, Tiny4bitCheckpointsDequantizeExactly) {
  BIOQUANT_REQUIRE_SHARED();
  for (const char* dir :
       {"tiny_checkpoint_nf4_dq", "tiny_checkpoint_fp4_nodq"}) {
    SCOPED_TRACE(dir);
    const std::string path = GoldenDir() + "/" + dir;
    auto store = TensorStore::Open(path);
    auto ref = TensorStore::OpenFile(path + "/reference_dequant.safetensors");
    const bool nf4 = std::string(dir).find("nf4") != std::string::npos;
    const auto cfg = ParseBnbQuantizationConfig(ReadJson(path + "/config.json"),
                                                path + "/config.json");
    ASSERT_TRUE(cfg.has_value());
    EXPECT_TRUE(cfg->load_in_4bit);
    EXPECT_EQ(cfg->quant_type, nf4 ? WeightFormat::kNF4 : WeightFormat::kFP4);
    EXPECT_EQ(cfg->double_quant, nf4);
    EXPECT_EQ(cfg->compute_dtype, "bfloat16");
    for (const char* m : kModules) {
      SCOPED_TRACE(m);
      ASSERT_EQ(DetectBnbWeight(*store, m),
                nf4 ? WeightFormat::kNF4 : WeightFormat::kFP4);
      const Quantized4bit q = ReadBnb4bit(*store, m);
      EXPECT_EQ(q.double_quant, nf4);
      EXPECT_EQ(q.dtype, DType::kBF16);
      EXPECT_EQ(q.blocksize, 64);
      const WeightMatrix w = q.View();
      const TensorView& want32 = ref->Get(std::string(m) + ".dequant_fp32");
      const TensorView& want16 = ref->Get(std::string(m) + ".dequant_bf16");
      ASSERT_EQ(want32.shape, q.shape);
      ASSERT_EQ(w.rows * w.cols, want32.numel());
      std::vector<float> deq(q.numel);
      Dequantize4bit(w, deq.data());
      EXPECT_EQ(0, std::memcmp(deq.data(), want32.data, want32.nbytes));
      std::vector<uint16_t> h(q.numel);
      for (int64_t i = 0; i < q.numel; ++i) h[i] = F32ToBf16(deq[i]);
      EXPECT_EQ(0, std::memcmp(h.data(), want16.data, want16.nbytes));
    }
    EXPECT_FALSE(DetectBnbWeight(*store, "lm_head").has_value());
    EXPECT_FALSE(DetectBnbWeight(*store, "model.embed_tokens").has_value());
  }
}

TEST(BnbCheckpoint, TinyInt8Checkpoint) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string path = GoldenDir() + "/tiny_checkpoint_int8";
  auto store = TensorStore::Open(path);
  const auto cfg = ParseBnbQuantizationConfig(ReadJson(path + "/config.json"),
                                              path + "/config.json");
  ASSERT_TRUE(cfg.has_value());
  EXPECT_TRUE(cfg->load_in_8bit);
  EXPECT_FALSE(cfg->load_in_4bit);
  EXPECT_EQ(cfg->threshold, 6.0);
  // Same model weights as the nf4 checkpoint: the int8 dequantization must
  // sit much closer to them than nf4's error.
  auto nf4_ref = TensorStore::OpenFile(
      GoldenDir() + "/tiny_checkpoint_nf4_dq/reference_dequant.safetensors");
  for (const char* m : kModules) {
    SCOPED_TRACE(m);
    ASSERT_EQ(DetectBnbWeight(*store, m), WeightFormat::kInt8Row);
    const QuantizedInt8 q = ReadBnbInt8(*store, m);
    const WeightMatrix w = q.View();
    std::vector<float> row(q.cols);
    for (int64_t r = 0; r < q.rows; ++r) {
      int amax = 0;
      for (int64_t c = 0; c < q.cols; ++c) {
        amax = std::max(amax, std::abs(int{q.q[r * q.cols + c]}));
      }
      EXPECT_EQ(amax, q.scb[r] == 0.0f ? 0 : 127) << r;
    }
    const TensorView& ref = nf4_ref->Get(std::string(m) + ".dequant_fp32");
    ASSERT_EQ(ref.numel(), q.rows * q.cols);
    double max_rel = 0;
    for (int64_t r = 0; r < q.rows; ++r) {
      DequantizeRow(w, r, row.data());
      for (int64_t c = 0; c < q.cols; ++c) {
        float v;
        std::memcpy(&v, ref.data + 4 * (r * q.cols + c), 4);
        max_rel = std::max(max_rel, std::fabs(double{v} - row[c]) / q.scb[r]);
      }
    }
    EXPECT_LT(max_rel, 0.2);  // nf4's worst case is ~1/6 of absmax
  }
}

// Reading then writing a module reproduces every tensor byte for byte,
// including the quant-state JSON string.
TEST(BnbCheckpoint, WriterReproducesTinyCheckpoints) {
  BIOQUANT_REQUIRE_SHARED();
  const nlohmann::json manifest = ReadJson(GoldenDir() + "/manifest.json");
  const std::string tmp = testing::TempDir("bnbw");
  for (const char* dir : {"tiny_checkpoint_nf4_dq", "tiny_checkpoint_fp4_nodq",
                          "tiny_checkpoint_int8"}) {
    SCOPED_TRACE(dir);
    auto store = TensorStore::Open(GoldenDir() + "/" + dir);
    SafetensorsWriter writer;
    for (const char* m : kModules) {
      if (DetectBnbWeight(*store, m) == WeightFormat::kInt8Row) {
        WriteBnbTensors(writer, m, ReadBnbInt8(*store, m));
      } else {
        WriteBnbTensors(writer, m, ReadBnb4bit(*store, m));
      }
    }
    const std::string out = tmp + "/" + dir + ".safetensors";
    writer.Write(out);
    auto again = TensorStore::OpenFile(out);
    int quantized_tensors = 0;
    for (const std::string& name : store->Names()) {
      if (name.find(".mlp.") == std::string::npos ||
          name.find(".bias") != std::string::npos) {
        continue;
      }
      ++quantized_tensors;
      ASSERT_TRUE(again->Has(name)) << name;
      ExpectSameTensor(again->Get(name), store->Get(name));
    }
    EXPECT_EQ(quantized_tensors, static_cast<int>(again->Names().size()));
    for (const auto& c : manifest.at("cases")) {
      if (c.at("case") != dir || !c.contains("quant_state_json")) continue;
      for (const auto& [name, text] : c.at("quant_state_json").items()) {
        const TensorView& t = again->Get(name);
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.data), t.nbytes),
                  text.get<std::string>());
      }
    }
  }
}

TEST(BnbCheckpoint, QuantizeWriteReadRoundTrip) {
  std::vector<float> x(37 * 29);  // odd numel, partial last block
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (float& v : x) v = RoundToBf16(nd(rng));
  const std::string tmp = testing::TempDir("bnbrt");
  for (WeightFormat f : {WeightFormat::kNF4, WeightFormat::kFP4}) {
    for (bool dq : {false, true}) {
      const Quantized4bit q =
          Quantize4bit(x.data(), {37, 29}, f, {32, dq}, DType::kBF16);
      SafetensorsWriter writer;
      WriteBnbTensors(writer, "layer", q);
      writer.Write(tmp + "/m.safetensors");
      auto store = TensorStore::OpenFile(tmp + "/m.safetensors");
      ASSERT_EQ(DetectBnbWeight(*store, "layer"), f);
      const Quantized4bit r = ReadBnb4bit(*store, "layer");
      EXPECT_EQ(r.packed, q.packed);
      EXPECT_EQ(r.shape, q.shape);
      EXPECT_EQ(r.blocksize, 32);
      EXPECT_EQ(F32Bits(r.nested_offset), F32Bits(q.nested_offset));
      std::vector<float> a(x.size()), b(x.size());
      Dequantize4bit(q.View(), a.data());
      Dequantize4bit(r.View(), b.data());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), 4 * a.size()));
    }
  }
  const QuantizedInt8 q8 = QuantizeInt8Rows(x.data(), 37, 29);
  SafetensorsWriter writer;
  WriteBnbTensors(writer, "layer", q8);
  writer.Write(tmp + "/i8.safetensors");
  auto store = TensorStore::OpenFile(tmp + "/i8.safetensors");
  ASSERT_EQ(DetectBnbWeight(*store, "layer"), WeightFormat::kInt8Row);
  const QuantizedInt8 r8 = ReadBnbInt8(*store, "layer");
  EXPECT_EQ(r8.q, q8.q);
  EXPECT_EQ(r8.scb, q8.scb);
  EXPECT_EQ(store->Get("layer.weight_format").shape.size(), 0u);
}

TEST(BnbCheckpoint, PythonReprOfOffset) {
  Quantized4bit q;
  q.format = WeightFormat::kNF4;
  q.shape = {2, 3};
  q.numel = 6;
  q.dtype = DType::kF16;
  q.double_quant = true;
  q.nested_offset = 1.0f;
  EXPECT_EQ(QuantStateJson(q),
            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": "
            "\"float16\", \"shape\": [2, 3], \"nested_blocksize\": 256, "
            "\"nested_dtype\": \"float32\", \"nested_offset\": 1.0}");
  q.nested_offset = 1e-5f;  // repr: 9.999999747378752e-06
  EXPECT_NE(QuantStateJson(q).find("\"nested_offset\": 9.999999747378752e-06}"),
            std::string::npos)
      << QuantStateJson(q);
}

// ---- bad input
// ----------------------------------------------------------------

// Copies every tensor of the golden nf4 checkpoint into a new file, letting
// `edit` drop or replace tensors, and returns the new file's path.
using Edit = std::function<bool(const TensorView& t, SafetensorsWriter& w)>;

std::string RewriteCheckpoint(const std::string& golden_dir, const Edit& edit) {
  auto store = TensorStore::Open(GoldenDir() + "/" + golden_dir);
  SafetensorsWriter w;
  for (const std::string& name : store->Names()) {
    const TensorView& t = store->Get(name);
    if (!edit(t, w)) w.Add(name, t.dtype, t.shape, t.data, t.nbytes);
  }
  const std::string path = testing::TempDir("bnbbad") + "/model.safetensors";
  w.Write(path);
  return path;
}

// Runs fn, expects an Error whose one-line message contains every needle.
void ExpectError(const std::function<void()>& fn,
                 const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos)
          << "'" << n << "' not in: " << msg;
    }
  }
}

const std::string kUp = "model.layers.0.mlp.up_proj";
const std::string kUpQs = kUp + ".weight.quant_state.bitsandbytes__nf4";

std::string ReplaceQuantState(const std::string& from, const std::string& to) {
  return RewriteCheckpoint(
      "tiny_checkpoint_nf4_dq", [&](const TensorView& t, SafetensorsWriter& w) {
        if (t.name != kUpQs) return false;
        std::string s(reinterpret_cast<const char*>(t.data), t.nbytes);
        const size_t at = s.find(from);
        EXPECT_NE(at, std::string::npos) << s;
        s.replace(at, from.size(), to);
        w.Add(t.name, DType::kU8, {static_cast<int64_t>(s.size())}, s.data(),
              s.size());
        return true;
      });
}

TEST(BnbCheckpointErrors, CorruptQuantState) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string path =
      ReplaceQuantState("\"shape\": [96, 64]", "\"shape\": [96, 64");
  auto store = TensorStore::OpenFile(path);
  ExpectError([&] { ReadBnb4bit(*store, kUp); },
              {path, kUpQs, "corrupt quant_state JSON"});
  const std::string no_shape = ReplaceQuantState("\"shape\": [96, 64], ", "");
  auto store2 = TensorStore::OpenFile(no_shape);
  ExpectError([&] { ReadBnb4bit(*store2, kUp); }, {kUpQs, "lacks \"shape\""});
  const std::string wrong_shape =
      ReplaceQuantState("\"shape\": [96, 64]", "\"shape\": [96, 66]");
  auto store3 = TensorStore::OpenFile(wrong_shape);
  ExpectError([&] { ReadBnb4bit(*store3, kUp); },
              {kUp + ".weight", "needs 3168 packed bytes"});
  const std::string negative =
      ReplaceQuantState("\"shape\": [96, 64]", "\"shape\": [96, -64]");
  auto store4 = TensorStore::OpenFile(negative);
  ExpectError([&] { ReadBnb4bit(*store4, kUp); },
              {kUpQs, "bad shape [96, -64]"});
  const std::string not_nf4 =
      ReplaceQuantState("\"quant_type\": \"nf4\"", "\"quant_type\": \"fp4\"");
  auto store5 = TensorStore::OpenFile(not_nf4);
  ExpectError([&] { ReadBnb4bit(*store5, kUp); },
              {kUpQs, "quant_type \"fp4\" does not match"});
}

TEST(BnbCheckpointErrors, MissingQuantState) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string path = RewriteCheckpoint(
      "tiny_checkpoint_nf4_dq",
      [](const TensorView& t, SafetensorsWriter&) { return t.name == kUpQs; });
  auto store = TensorStore::OpenFile(path);
  ExpectError([&] { DetectBnbWeight(*store, kUp); },
              {path, kUp + ".weight.quant_state", "missing"});
  ExpectError([&] { ReadBnb4bit(*store, kUp); },
              {path, kUp + ".weight.quant_state", "missing"});
  // The other module is untouched and still loads.
  EXPECT_NO_THROW(ReadBnb4bit(*store, "model.layers.0.mlp.down_proj"));
}

TEST(BnbCheckpointErrors, AbsmaxOfWrongLength) {
  BIOQUANT_REQUIRE_SHARED();
  for (const char* dir :
       {"tiny_checkpoint_nf4_dq", "tiny_checkpoint_fp4_nodq"}) {
    const std::string name = kUp + ".weight.absmax";
    const std::string path =
        RewriteCheckpoint(dir, [&](const TensorView& t, SafetensorsWriter& w) {
          if (t.name != name) return false;
          const size_t elem = DTypeSize(t.dtype);
          w.Add(t.name, t.dtype, {t.shape[0] - 1}, t.data, t.nbytes - elem);
          return true;
        });
    auto store = TensorStore::OpenFile(path);
    ExpectError([&] { ReadBnb4bit(*store, kUp); },
                {path, name, "95 elements", "expected 96"});
  }
}

TEST(BnbCheckpointErrors, UnsupportedBlocksize) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string path =
      ReplaceQuantState("\"blocksize\": 64", "\"blocksize\": 48");
  auto store = TensorStore::OpenFile(path);
  ExpectError([&] { ReadBnb4bit(*store, kUp); },
              {path, kUpQs, "unsupported blocksize 48"});
}

TEST(BnbCheckpointErrors, QuantMapAndInt8Layout) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string qmap = kUp + ".weight.quant_map";
  const std::string path = RewriteCheckpoint(
      "tiny_checkpoint_nf4_dq", [&](const TensorView& t, SafetensorsWriter& w) {
        if (t.name != qmap) return false;
        std::vector<float> v(16);
        std::memcpy(v.data(), t.data, 64);
        v[3] += 0.01f;
        w.Add(t.name, t.dtype, t.shape, v.data(), 64);
        return true;
      });
  auto store = TensorStore::OpenFile(path);
  ExpectError([&] { ReadBnb4bit(*store, kUp); }, {path, qmap, "entry 3"});

  const std::string fmt_name = kUp + ".weight_format";
  const std::string path8 = RewriteCheckpoint(
      "tiny_checkpoint_int8", [&](const TensorView& t, SafetensorsWriter& w) {
        if (t.name != fmt_name) return false;
        const uint8_t tiled = 2;
        w.Add(t.name, DType::kU8, {}, &tiled, 1);
        return true;
      });
  auto store8 = TensorStore::OpenFile(path8);
  ExpectError([&] { ReadBnbInt8(*store8, kUp); },
              {path8, fmt_name, "weight_format 2"});
  const std::string path_noscb = RewriteCheckpoint(
      "tiny_checkpoint_int8", [&](const TensorView& t, SafetensorsWriter&) {
        return t.name == kUp + ".SCB";
      });
  auto store_noscb = TensorStore::OpenFile(path_noscb);
  EXPECT_FALSE(DetectBnbWeight(*store_noscb, kUp).has_value());
  ExpectError([&] { ReadBnbInt8(*store_noscb, kUp); },
              {path_noscb, kUp + ".SCB", "missing"});
}

TEST(BnbCheckpointErrors, OtherQuantizationMethods) {
  for (const char* method : {"gptq", "awq", "aqlm"}) {
    nlohmann::json cfg = {
        {"quantization_config", {{"quant_method", method}, {"bits", 4}}}};
    ExpectError(
        [&] { ParseBnbQuantizationConfig(cfg, "/m/config.json"); },
        {"/m/config.json", std::string("\"") + method + "\"", "not supported"});
  }
  nlohmann::json both = {{"quantization_config",
                          {{"quant_method", "bitsandbytes"},
                           {"load_in_4bit", true},
                           {"load_in_8bit", true}}}};
  ExpectError([&] { ParseBnbQuantizationConfig(both, "c.json"); },
              {"c.json", "exactly one"});
  nlohmann::json bad_type = {
      {"quantization_config",
       {{"load_in_4bit", true}, {"bnb_4bit_quant_type", "int4"}}}};
  ExpectError([&] { ParseBnbQuantizationConfig(bad_type, "c.json"); },
              {"c.json", "\"int4\""});
  EXPECT_FALSE(ParseBnbQuantizationConfig(nlohmann::json::object(), "c.json"));
}

TEST(BnbCheckpoint, ConfigRoundTrip) {
  BnbConfig c;
  c.load_in_4bit = true;
  c.quant_type = WeightFormat::kNF4;
  c.double_quant = true;
  c.compute_dtype = "bfloat16";
  const nlohmann::json j = MakeBnbQuantizationConfig(c);
  if (std::filesystem::exists(GoldenDir())) {
    // Exactly the block of the golden nf4 checkpoint (SPEC §3.3).
    EXPECT_EQ(j, ReadJson(GoldenDir() + "/tiny_checkpoint_nf4_dq/config.json")
                     .at("quantization_config"));
  }
  const auto back =
      ParseBnbQuantizationConfig({{"quantization_config", j}}, "c.json");
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->load_in_4bit);
  EXPECT_FALSE(back->load_in_8bit);
  EXPECT_TRUE(back->double_quant);
  EXPECT_FALSE(back->skip_modules.has_value());
}

}  // namespace
}  // namespace bioquant
