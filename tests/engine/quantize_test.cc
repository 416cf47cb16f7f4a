// `bioquant quantize`: the written checkpoint has exactly the tensors, dtypes,
// shapes, quant-state JSON and config block of SPEC §3 (read back from disk
// and checked against values derived independently of the writer), and
// loading it gives the same logits, bit for bit, as quantizing in memory.
#include "engine/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "engine/engine.h"
#include "engine/synth.h"
#include "io/safetensors.h"
#include "quant/bnb.h"
#include "quant/half.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;

std::string Stories() { return testing::OracleDir() + "/stories260k/hf"; }

// A tiny synthetic Llama with bf16 N(0, 0.02) weights, made once.
const std::string& SynthTiny() {
  static const std::string dir = [] {
    SynthOptions s;
    s.preset = "tiny";
    s.out_dir = testing::TempDir("qsynth") + "/tiny";
    s.dtype = "bf16";
    s.seed = 7;
    WriteSyntheticCheckpoint(s);
    return s.out_dir;
  }();
  return dir;
}

std::string Quantize(const std::string& model, const std::string& precision,
                     QuantParams qp = {}, std::vector<std::string> skip = {},
                     uint64_t shard = 5'000'000'000) {
  QuantizeOptions o;
  o.model_dir = model;
  o.out_dir = testing::TempDir("quant") + "/out";
  o.precision.name = precision;
  o.precision.quant = qp;
  o.precision.skip_modules = std::move(skip);
  o.max_shard_bytes = shard;
  QuantizeCheckpoint(o);
  return o.out_dir;
}

// f32 values of tables.json's "<key>_hex" list.
std::vector<float> TableF32(const std::string& key) {
  const nlohmann::json t =
      ReadJsonFile(testing::OracleDir() + "/bnb/golden/tables.json");
  std::vector<float> out;
  for (const auto& h : t.at(key + "_hex")) {
    const uint32_t bits = std::stoul(h.get<std::string>(), nullptr, 16);
    float f;
    std::memcpy(&f, &bits, 4);
    out.push_back(f);
  }
  return out;
}

std::vector<float> F32Of(const TensorView& t) {
  EXPECT_EQ(t.dtype, DType::kF32) << t.name;
  std::vector<float> v(t.numel());
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

// Widens an F32/BF16 tensor without going through the library under test.
std::vector<float> Widen(const TensorView& t) {
  std::vector<float> v(t.numel());
  if (t.dtype == DType::kF32) {
    std::memcpy(v.data(), t.data, v.size() * 4);
  } else {
    EXPECT_EQ(t.dtype, DType::kBF16) << t.name;
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      const uint32_t bits = static_cast<uint32_t>(h) << 16;
      std::memcpy(&v[i], &bits, 4);
    }
  }
  return v;
}

const char* kLinears[] = {"self_attn.q_proj", "self_attn.k_proj",
                          "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj",    "mlp.up_proj",
                          "mlp.down_proj"};

struct LayoutCase {
  std::string model;
  std::string precision;
  QuantParams qp;
  std::vector<std::string> skip;
};

// Reads the written directory back and checks it against SPEC §3 and the
// original checkpoint.
void ExpectLayout(const LayoutCase& c, const std::string& out) {
  auto orig = TensorStore::Open(c.model);
  auto got = TensorStore::Open(out);
  const nlohmann::json ocfg = ReadJsonFile(c.model + "/config.json");
  const nlohmann::json cfg = ReadJsonFile(out + "/config.json");
  const bool int8 = c.precision == "int8";
  const bool nf4 = c.precision == "nf4";
  const bool dq = !int8 && c.qp.double_quant;
  const std::string torch_dtype = ocfg.at("torch_dtype");

  // config.json: the original keys unchanged plus the exact block that
  // BitsAndBytesConfig.to_dict() gives (SPEC §3.3).
  nlohmann::json want_q = {
      {"_load_in_4bit", !int8},
      {"_load_in_8bit", int8},
      {"bnb_4bit_compute_dtype", int8 ? "float32" : torch_dtype},
      {"bnb_4bit_quant_storage", "uint8"},
      {"bnb_4bit_quant_type", int8 ? "fp4" : c.precision},
      {"bnb_4bit_use_double_quant", dq},
      {"llm_int8_enable_fp32_cpu_offload", false},
      {"llm_int8_has_fp16_weight", false},
      {"llm_int8_skip_modules",
       c.skip.empty() ? nlohmann::json() : nlohmann::json(c.skip)},
      {"llm_int8_threshold", 6.0},
      {"load_in_4bit", !int8},
      {"load_in_8bit", int8},
      {"quant_method", "bitsandbytes"}};
  EXPECT_EQ(cfg.at("quantization_config"), want_q)
      << cfg.at("quantization_config").dump();
  nlohmann::json rest = cfg;
  rest.erase("quantization_config");
  EXPECT_EQ(rest, ocfg);

  const int64_t L = ocfg.at("num_hidden_layers");
  std::set<std::string> want_names;
  for (const std::string& n : orig->Names()) want_names.insert(n);
  const std::vector<float> nf4_map = TableF32("nf4_code");
  const std::vector<float> fp4_map = TableF32("fp4_quant_map");
  const std::vector<float> dyn = TableF32("dynamic_map_signed");
  for (int64_t l = 0; l < L; ++l) {
    for (const char* lin : kLinears) {
      const std::string P = "model.layers." + std::to_string(l) + "." + lin;
      SCOPED_TRACE(P);
      bool skipped = false;
      for (const auto& s : c.skip) skipped |= P.ends_with("." + s);
      const TensorView& ow = orig->Get(P + ".weight");
      if (skipped) {
        const TensorView& w = got->Get(P + ".weight");
        EXPECT_EQ(w.dtype, ow.dtype);
        EXPECT_EQ(w.shape, ow.shape);
        ASSERT_EQ(w.nbytes, ow.nbytes);
        EXPECT_EQ(0, std::memcmp(w.data, ow.data, ow.nbytes));
        continue;
      }
      const int64_t out = ow.shape[0], in = ow.shape[1], n = out * in;
      const std::vector<float> x = Widen(ow);
      if (int8) {
        want_names.insert(P + ".SCB");
        want_names.insert(P + ".weight_format");
        const TensorView& w = got->Get(P + ".weight");
        EXPECT_EQ(w.dtype, DType::kI8);
        EXPECT_EQ(w.shape, (std::vector<int64_t>{out, in}));
        const TensorView& scb = got->Get(P + ".SCB");
        EXPECT_EQ(scb.dtype, DType::kF32);
        EXPECT_EQ(scb.shape, (std::vector<int64_t>{out}));
        // SCB = max |fp16(w)| per row (SPEC §4.1), derived here directly.
        const std::vector<float> s = F32Of(scb);
        for (int64_t r = 0; r < out; ++r) {
          float m = 0;
          for (int64_t k = 0; k < in; ++k) {
            m = std::max(m, std::fabs(F16ToF32(F32ToF16(x[r * in + k]))));
          }
          ASSERT_EQ(s[r], m) << "row " << r;
        }
        const TensorView& fmt = got->Get(P + ".weight_format");
        EXPECT_EQ(fmt.dtype, DType::kU8);
        EXPECT_TRUE(fmt.shape.empty());
        ASSERT_EQ(fmt.nbytes, 1u);
        EXPECT_EQ(fmt.data[0], 0);
        continue;
      }
      const int bs = c.qp.blocksize;
      const int64_t nb = (n + bs - 1) / bs;
      const std::string W = P + ".weight";
      const std::string qs_name =
          W + ".quant_state.bitsandbytes__" + c.precision;
      for (const char* suffix : {".absmax", ".quant_map"}) {
        want_names.insert(W + suffix);
      }
      want_names.insert(qs_name);
      if (dq) {
        want_names.insert(W + ".nested_absmax");
        want_names.insert(W + ".nested_quant_map");
      }
      const TensorView& w = got->Get(W);
      EXPECT_EQ(w.dtype, DType::kU8);
      EXPECT_EQ(w.shape, (std::vector<int64_t>{(n + 1) / 2, 1}));
      // The packed bytes are what in-memory quantization produces.
      const Quantized4bit mem = Quantize4bit(
          x.data(), {out, in}, ParseFormat(c.precision), c.qp, ow.dtype);
      ASSERT_EQ(w.nbytes, mem.packed.size());
      EXPECT_EQ(0, std::memcmp(w.data, mem.packed.data(), w.nbytes));

      // First-level absmax, recomputed here: max |x| per block.
      std::vector<float> am(nb, 0.0f);
      for (int64_t i = 0; i < n; ++i) {
        am[i / bs] = std::max(am[i / bs], std::fabs(x[i]));
      }
      const TensorView& absmax = got->Get(W + ".absmax");
      EXPECT_EQ(absmax.shape, (std::vector<int64_t>{nb}));
      const TensorView& qmap = got->Get(W + ".quant_map");
      EXPECT_EQ(qmap.shape, (std::vector<int64_t>{16}));
      const std::vector<float> qm = F32Of(qmap);
      const std::vector<float>& want_map = nf4 ? nf4_map : fp4_map;
      for (int i = 0; i < 16; ++i) {
        EXPECT_EQ(0, std::memcmp(&qm[i], &want_map[i], 4)) << "quant_map " << i;
      }
      const TensorView& qs = got->Get(qs_name);
      EXPECT_EQ(qs.dtype, DType::kU8);
      const std::string json(reinterpret_cast<const char*>(qs.data), qs.nbytes);
      EXPECT_EQ(qs.shape,
                (std::vector<int64_t>{static_cast<int64_t>(json.size())}));
      std::string want_json = "{\"quant_type\": \"" + c.precision +
                              "\", \"blocksize\": " + std::to_string(bs) +
                              ", \"dtype\": \"" + torch_dtype +
                              "\", \"shape\": [" + std::to_string(out) + ", " +
                              std::to_string(in) + "]";
      if (!dq) {
        EXPECT_EQ(absmax.dtype, DType::kF32);
        EXPECT_EQ(F32Of(absmax), am);
        EXPECT_EQ(json, want_json + "}");
        continue;
      }
      EXPECT_EQ(absmax.dtype, DType::kU8);
      const TensorView& na = got->Get(W + ".nested_absmax");
      EXPECT_EQ(na.dtype, DType::kF32);
      EXPECT_EQ(na.shape, (std::vector<int64_t>{(nb + 255) / 256}));
      const std::vector<float> nqm = F32Of(got->Get(W + ".nested_quant_map"));
      ASSERT_EQ(nqm.size(), 256u);
      EXPECT_EQ(0, std::memcmp(nqm.data(), dyn.data(), 256 * 4));
      // nested_offset: repr() of the f32 mean of absmax (last ulp free,
      // SPEC §9-U2); the rest of the JSON is fixed text.
      const std::string head =
          want_json +
          ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", "
          "\"nested_offset\": ";
      ASSERT_EQ(json.substr(0, head.size()), head) << json;
      ASSERT_EQ(json.back(), '}');
      const std::string off_text =
          json.substr(head.size(), json.size() - head.size() - 1);
      const double off = std::stod(off_text);
      EXPECT_EQ(off, static_cast<double>(static_cast<float>(off)))
          << "nested_offset " << off_text << " is not an f32 value";
      double mean = 0;
      for (float a : am) mean += a;
      const float want_off = static_cast<float>(mean / nb);
      EXPECT_LE(std::fabs(static_cast<float>(off) - want_off),
                std::nextafter(want_off, 1.0f) - want_off)
          << off_text;
      // Reconstructed absmax (SPEC §2.4) is within one DYN step of the true
      // one: checks qabsmax/nested_absmax/offset fit together.
      const std::vector<float> nested = F32Of(na);
      for (int64_t b = 0; b < nb; ++b) {
        const float rec =
            dyn[absmax.data[b]] * nested[b / 256] + static_cast<float>(off);
        EXPECT_NEAR(rec, am[b], 0.02f * nested[b / 256] + 1e-7f)
            << "block " << b;
      }
    }
  }
  std::set<std::string> got_names;
  for (const std::string& n : got->Names()) got_names.insert(n);
  EXPECT_EQ(got_names, want_names);
  // Every tensor that is not a quantized Linear's is copied byte for byte.
  for (const std::string& n : orig->Names()) {
    const std::string m =
        n.ends_with(".weight") ? n.substr(0, n.size() - 7) : "";
    if (!m.empty() && (got->Has(n + ".quant_map") || got->Has(m + ".SCB"))) {
      continue;  // a quantized Linear (checked above)
    }
    const TensorView& a = orig->Get(n);
    const TensorView& b = got->Get(n);
    EXPECT_EQ(b.dtype, a.dtype) << n;
    EXPECT_EQ(b.shape, a.shape) << n;
    ASSERT_EQ(b.nbytes, a.nbytes) << n;
    EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes)) << n;
  }
  EXPECT_EQ(got->metadata().at("format"), "pt");
  // Tokenizer and generation files come along unchanged.
  for (const char* f :
       {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
        "special_tokens_map.json", "tokenizer.model"}) {
    if (!FileExists(c.model + "/" + f)) continue;
    EXPECT_EQ(ReadFile(out + "/" + f), ReadFile(c.model + "/" + f)) << f;
  }
}

TEST(Quantize, ParseShardSize) {
  EXPECT_EQ(ParseShardSize("5GB", "--x"), 5000000000u);
  EXPECT_EQ(ParseShardSize("500MB", "--x"), 500000000u);
  EXPECT_EQ(ParseShardSize("2GiB", "--x"), 2ull << 30);
  EXPECT_EQ(ParseShardSize("10kb", "--x"), 10000u);
  EXPECT_EQ(ParseShardSize("12345", "--x"), 12345u);
  EXPECT_THROW(ParseShardSize("", "--x"), Error);
  EXPECT_THROW(ParseShardSize("GB", "--x"), Error);
  EXPECT_THROW(ParseShardSize("5XB", "--x"), Error);
  EXPECT_THROW(ParseShardSize("-5GB", "--x"), Error);
}

TEST(Quantize, SkipModulesFollowTransformers) {
  const std::string m = "model.layers.1.mlp.down_proj";
  EXPECT_TRUE(IsSkippedModule(m, {"down_proj"}));
  EXPECT_TRUE(IsSkippedModule(m, {"mlp"}));
  EXPECT_TRUE(IsSkippedModule(m, {"layers.1"}));
  EXPECT_TRUE(IsSkippedModule(m, {m}));
  EXPECT_FALSE(IsSkippedModule("model.layers.10.mlp.down_proj", {"layers.1"}));
  EXPECT_FALSE(IsSkippedModule(m, {"up_proj", "proj"}));
  EXPECT_FALSE(IsSkippedModule(m, {}));
}

TEST(Quantize, StoriesLayoutPerSpec) {
  BIOQUANT_REQUIRE_SHARED();
  QuantParams nodq128{128, false};
  for (const LayoutCase& c :
       {LayoutCase{Stories(), "nf4", {}, {}},
        LayoutCase{Stories(), "fp4", nodq128, {}},
        LayoutCase{Stories(), "nf4", {64, false}, {"down_proj"}},
        LayoutCase{Stories(), "int8", {}, {}}}) {
    SCOPED_TRACE(c.precision + " bs" + std::to_string(c.qp.blocksize) +
                 (c.qp.double_quant ? " dq" : " nodq"));
    const std::string out = Quantize(c.model, c.precision, c.qp, c.skip);
    ExpectLayout(c, out);
    EXPECT_TRUE(FileExists(out + "/model.safetensors"));
    EXPECT_FALSE(FileExists(out + "/model.safetensors.index.json"));
  }
}

TEST(Quantize, SyntheticBf16LayoutPerSpec) {
  BIOQUANT_REQUIRE_SHARED();  // ExpectLayout reads oracles/bnb tables
  for (const char* p : {"nf4", "fp4", "int8"}) {
    SCOPED_TRACE(p);
    LayoutCase c{SynthTiny(), p, {}, {}};
    ExpectLayout(c, Quantize(c.model, c.precision, c.qp));
  }
}

TEST(Quantize, ShardsWithIndex) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string one = Quantize(Stories(), "nf4");
  const std::string many = Quantize(Stories(), "nf4", {}, {}, 60'000);
  const nlohmann::json index =
      ReadJsonFile(many + "/model.safetensors.index.json");
  auto a = TensorStore::Open(one);
  auto b =
      TensorStore::Open(many);  // checks every tensor is where the index says
  std::set<std::string> files;
  uint64_t total = 0;
  for (const auto& [name, file] : index.at("weight_map").items()) {
    files.insert(file.get<std::string>());
    total += b->Get(name).nbytes;
  }
  ASSERT_GT(files.size(), 2u);
  const size_t n = files.size();
  for (size_t i = 1; i <= n; ++i) {
    char want[64];
    std::snprintf(want, sizeof(want), "model-%05zu-of-%05zu.safetensors", i, n);
    EXPECT_TRUE(files.count(want)) << want;
    // Greedy filling: no shard exceeds the limit unless it holds one module.
    const auto size = fs::file_size(many + "/" + want);
    auto shard = TensorStore::OpenFile(many + "/" + want);
    if (shard->Names().size() > 6) {
      EXPECT_LE(size, 60'000u + 16'384u) << want;
    }
  }
  EXPECT_FALSE(FileExists(many + "/model.safetensors"));
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), total);
  ASSERT_EQ(a->Names(), b->Names());
  for (const std::string& name : a->Names()) {
    const TensorView& x = a->Get(name);
    const TensorView& y = b->Get(name);
    EXPECT_EQ(x.dtype, y.dtype);
    EXPECT_EQ(x.shape, y.shape);
    ASSERT_EQ(x.nbytes, y.nbytes);
    EXPECT_EQ(0, std::memcmp(x.data, y.data, x.nbytes)) << name;
  }
  for (const auto& e : fs::directory_iterator(many)) {
    EXPECT_EQ(e.path().filename().string().find(".bioquant-shard"),
              std::string::npos)
        << "temporary shard left behind";
  }
}

// ---- done-when (c): loading the written checkpoint == quantizing in memory --

void ExpectRoundTrip(const std::string& model, const std::string& precision,
                     QuantParams qp, std::vector<std::string> skip,
                     const std::vector<int32_t>& ids) {
  SCOPED_TRACE(model + " " + precision);
  const std::string out = Quantize(model, precision, qp, skip);
  std::unique_ptr<Engine> loaded;
  try {
    loaded = Engine::Load({out, PrecisionSpec{}, 1});
  } catch (const Error& e) {
    FAIL() << "loading the bnb checkpoint written by `quantize` failed; "
              "done-when (c) needs the pre-quantized loader in "
              "src/model/weights.cc: "
           << e.what();
  }
  // Which 8-bit compute a load_in_8bit checkpoint gets is the loader's
  // choice; the in-memory side must then use the same.
  std::string mem_precision = precision;
  if (precision == "int8") {
    mem_precision = loaded->weights().precision;
    ASSERT_TRUE(mem_precision == "int8" || mem_precision == "llm-int8")
        << mem_precision;
  } else {
    EXPECT_EQ(loaded->weights().precision, precision);
  }
  PrecisionSpec spec;
  spec.name = mem_precision;
  spec.quant = qp;
  spec.skip_modules = skip;
  auto mem = Engine::Load({model, spec, 1});
  EXPECT_EQ(loaded->weights().linear_format, mem->weights().linear_format);
  EXPECT_EQ(loaded->weights().weights_bytes, mem->weights().weights_bytes);
  const std::vector<float> a = mem->Logits(ids);
  const std::vector<float> b = loaded->Logits(ids);
  ASSERT_EQ(a.size(), b.size());
  size_t diff = 0, first = a.size();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], 4) != 0) {
      ++diff;
      first = std::min(first, i);
    }
  }
  EXPECT_EQ(diff, 0u) << "logits differ at " << diff << " of " << a.size()
                      << " entries, first at " << first << ": "
                      << (first < a.size() ? a[first] : 0) << " vs "
                      << (first < a.size() ? b[first] : 0);
}

const std::vector<int32_t> kIds = {1,   403, 407, 261, 378, 420, 1,   87,
                                   260, 333, 270, 289, 511, 0,   2,   300,
                                   45,  46,  47,  270, 401, 402, 403, 404};

TEST(QuantizeRoundTrip, StoriesLogitsBitExact) {
  BIOQUANT_REQUIRE_SHARED();
  ExpectRoundTrip(Stories(), "nf4", {}, {}, kIds);
  ExpectRoundTrip(Stories(), "fp4", {64, false}, {}, kIds);
  ExpectRoundTrip(Stories(), "nf4", {128, false}, {"down_proj"}, kIds);
  ExpectRoundTrip(Stories(), "int8", {}, {}, kIds);
}

TEST(QuantizeRoundTrip, SyntheticLogitsBitExact) {
  ExpectRoundTrip(SynthTiny(), "nf4", {}, {}, kIds);
  ExpectRoundTrip(SynthTiny(), "fp4", {}, {}, kIds);
  ExpectRoundTrip(SynthTiny(), "int8", {}, {}, kIds);
}

// ---- the command line
// ---------------------------------------------------------

TEST(QuantizeCli, WritesCheckpointAndJson) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string out = testing::TempDir("qcli") + "/q";
  auto r = testing::RunBioquant({"quantize", "--model", Stories(),
                                 "--precision", "fp4", "--no-double-quant",
                                 "--blocksize", "128", "--out", out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("precision"), "fp4");
  EXPECT_EQ(j.at("quantized_modules"), 35);
  EXPECT_EQ(j.at("shards"), nlohmann::json({"model.safetensors"}));
  ExpectLayout({Stories(), "fp4", {128, false}, {}}, out);
}

TEST(QuantizeCli, ErrorsNameTheFlagOrFile) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string tmp = testing::TempDir("qerr");
  struct Bad {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::string done = Quantize(Stories(), "nf4");
  for (const Bad& b : std::vector<Bad>{
           {{"--precision", "bf16", "--out", tmp + "/a"}, "--precision"},
           {{"--precision", "nf4", "--blocksize", "48", "--out", tmp + "/b"},
            "--blocksize"},
           {{"--precision", "nf4", "--max-shard-size", "lots", "--out",
             tmp + "/c"},
            "--max-shard-size"},
           {{"--precision", "nf4", "--out", done}, "--out"},
           {{"--out", tmp + "/d"}, "--precision"}}) {
    std::vector<std::string> args = {"quantize", "--model", Stories()};
    args.insert(args.end(), b.args.begin(), b.args.end());
    auto r = testing::RunBioquant(args);
    EXPECT_NE(r.exit_code, 0) << b.needle;
    EXPECT_NE(r.err.find(b.needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // Quantizing a quantized checkpoint names its config.json.
  auto r = testing::RunBioquant(
      {"quantize", "--model", done, "--precision", "nf4", "--out", tmp + "/e"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(done + "/config.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace bioquant
