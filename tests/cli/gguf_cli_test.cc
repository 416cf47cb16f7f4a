// import-gguf and --model FILE.gguf end to end: a synthetic checkpoint is
// written as a GGUF the way llama.cpp's converter writes it (Q/K rows
// permuted for Llama, ggml dimension order, tied embeddings dropped), then
// imported back. f32 tensors survive exactly, so the imported checkpoint's
// tensors and logits must equal the original's bit for bit.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "quant/half.h"
#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

// llama.cpp convert_hf_to_gguf.py's permute: HF row h*d + p*(d/2) + i goes
// to GGUF row h*d + 2i + p.
std::vector<float> Permute(const std::vector<float>& w, int64_t rows,
                           int64_t cols, int64_t heads) {
  const int64_t d = rows / heads, half = d / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(&out[(h * d + 2 * i + p) * cols],
                    &w[(h * d + p * half + i) * cols], cols * 4);
  return out;
}

std::vector<float> ToF32(const TensorView& t) {
  std::vector<float> v(t.numel());
  if (t.dtype == DType::kF32) {
    std::memcpy(v.data(), t.data, v.size() * 4);
  } else {
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      v[i] = Bf16ToF32(h);
    }
  }
  return v;
}

// HF name -> GGUF name (the inverse of the importer's table).
std::string GgufName(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::vector<std::pair<std::string, std::string>> m = {
      {"input_layernorm", "attn_norm"},
      {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  const std::string rest = hf.substr(std::string("model.layers.").size());
  const std::string layer = rest.substr(0, rest.find('.'));
  for (const auto& [h, g] : m) {
    const std::string key = "." + h + ".";
    if (const size_t p = rest.find(key); p != std::string::npos) {
      return "blk." + layer + "." + g + rest.substr(p + key.size() - 1);
    }
  }
  ADD_FAILURE() << "no GGUF name for " << hf;
  return hf;
}

// Writes dir's checkpoint as GGUF like llama.cpp would; returns the path.
std::string WriteGguf(const std::string& dir, const std::string& out) {
  const auto cfg = ReadJsonFile(dir + "/config.json");
  const std::string arch = cfg["model_type"];
  const bool llama = arch == "llama";
  const int64_t heads = cfg["num_attention_heads"];
  const int64_t kv = cfg["num_key_value_heads"];
  GgufWriter w;
  w.SetString("general.architecture", arch);
  w.SetU32(arch + ".block_count", cfg["num_hidden_layers"].get<uint32_t>());
  w.SetU32(arch + ".context_length",
           cfg["max_position_embeddings"].get<uint32_t>());
  w.SetU32(arch + ".embedding_length", cfg["hidden_size"].get<uint32_t>());
  w.SetU32(arch + ".feed_forward_length",
           cfg["intermediate_size"].get<uint32_t>());
  w.SetU32(arch + ".attention.head_count", heads);
  w.SetU32(arch + ".attention.head_count_kv", kv);
  w.SetF32(arch + ".rope.freq_base", cfg["rope_theta"].get<float>());
  w.SetF32(arch + ".attention.layer_norm_rms_epsilon",
           cfg["rms_norm_eps"].get<float>());
  auto store = TensorStore::Open(dir);
  for (const auto& name : store->Names()) {
    const TensorView& t = store->Get(name);
    std::vector<float> v = ToF32(t);
    const int64_t rows = t.shape[0];
    const int64_t cols = t.shape.size() > 1 ? t.shape[1] : 1;
    if (llama && name.find("q_proj") != std::string::npos)
      v = Permute(v, rows, cols, heads);
    if (llama && name.find("k_proj") != std::string::npos)
      v = Permute(v, rows, cols, kv);
    std::vector<uint64_t> ne(t.shape.rbegin(), t.shape.rend());
    w.AddTensor(GgufName(name), GgmlType::kF32, ne, v.data(), v.size() * 4);
  }
  w.Write(out);
  return out;
}

void ExpectSameTensors(const std::string& a, const std::string& b) {
  auto sa = TensorStore::Open(a);
  auto sb = TensorStore::Open(b);
  ASSERT_EQ(sa->Names(), sb->Names());
  for (const auto& name : sa->Names()) {
    const auto va = ToF32(sa->Get(name)), vb = ToF32(sb->Get(name));
    ASSERT_EQ(sa->Get(name).shape, sb->Get(name).shape) << name;
    EXPECT_EQ(std::memcmp(va.data(), vb.data(), va.size() * 4), 0) << name;
  }
}

class GgufImport : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufImport, RoundTripIsExactAndLogitsMatch) {
  const std::string tmp = testing::TempDir("gguf_cli");
  const std::string orig = tmp + "/orig", imported = tmp + "/imported";
  auto r = RunBioquant({"synth", "--preset", GetParam(), "--out", orig,
                        "--dtype", "f32", "--seed", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string gguf = WriteGguf(orig, tmp + "/m.gguf");
  r = RunBioquant({"import-gguf", gguf, "--out", imported});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectSameTensors(orig, imported);
  const auto ca = ReadJsonFile(orig + "/config.json");
  const auto cb = ReadJsonFile(imported + "/config.json");
  for (const char* k :
       {"architectures", "hidden_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "intermediate_size",
        "vocab_size", "tie_word_embeddings"}) {
    EXPECT_EQ(ca[k], cb[k]) << k;
  }
  // Logits: original checkpoint vs --model FILE.gguf (imported on the fly
  // into the cache). Same f32 weights, same engine: identical bits.
  const std::string ids = "1,5,9,2,77,300,12,4,8,100";
  r = RunBioquant({"logits", "--model", orig, "--ids", ids, "--out",
                   tmp + "/a.npy", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  setenv("BIOQUANT_CACHE_DIR", (tmp + "/cache").c_str(), 1);
  r = RunBioquant({"logits", "--model", gguf, "--ids", ids, "--out",
                   tmp + "/b.npy", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A second run finds the cached import (no second directory).
  r = RunBioquant({"logits", "--model=" + gguf, "--ids", ids, "--out",
                   tmp + "/c.npy", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  unsetenv("BIOQUANT_CACHE_DIR");
  const auto a = ReadNpyF32(tmp + "/a.npy").data,
             b = ReadNpyF32(tmp + "/b.npy").data,
             c = ReadNpyF32(tmp + "/c.npy").data;
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  float max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
  EXPECT_EQ(max_diff, 0.0f);
  EXPECT_EQ(b, c);
  int entries = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(tmp + "/cache/gguf")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

INSTANTIATE_TEST_SUITE_P(Archs, GgufImport,
                         ::testing::Values("tiny", "qwen2-tiny"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

TEST(GgufImportCli, QuantizedTensorsAreDequantized) {
  // One Q8_0 matrix inside an otherwise f32 file: the import holds exactly
  // d * q (the reference dequantization) at bf16 rounding.
  const std::string tmp = testing::TempDir("gguf_q");
  auto r = RunBioquant(
      {"synth", "--preset", "tiny", "--out", tmp + "/o", "--dtype", "f32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string gguf = WriteGguf(tmp + "/o", tmp + "/m.gguf");
  GgufFile f(gguf);
  GgufWriter w;
  for (const auto& [k, v] : f.metadata()) w.Set(k, v);
  std::vector<float> want;
  for (const auto& t : f.tensors()) {
    if (t.name == "blk.0.ffn_up.weight") {
      // Q8_0 blocks: d = 1/64 (f16 0x2400), q = -128..127 cycling.
      const uint64_t blocks = t.numel() / 32;
      std::string q(blocks * 34, '\0');
      for (uint64_t b = 0; b < blocks; ++b) {
        q[b * 34] = 0x00;
        q[b * 34 + 1] = 0x24;
        for (int j = 0; j < 32; ++j) {
          const int8_t v = static_cast<int8_t>((b * 32 + j) % 256 - 128);
          q[b * 34 + 2 + j] = static_cast<char>(v);
          want.push_back(v / 64.0f);
        }
      }
      w.AddTensor(t.name, GgmlType::kQ8_0, t.ne, q.data(), q.size());
    } else {
      w.AddTensor(t.name, t.type, t.ne, t.data, t.nbytes);
    }
  }
  w.Write(tmp + "/q.gguf");
  r = RunBioquant({"import-gguf", tmp + "/q.gguf", "--out", tmp + "/imp",
                   "--dtype", "bf16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto store = TensorStore::Open(tmp + "/imp");
  const TensorView& up = store->Get("model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(up.dtype, DType::kBF16);
  EXPECT_EQ(ToF32(up), want);  // multiples of 1/64 in [-2, 2): exact in bf16
  EXPECT_EQ(ReadJsonFile(tmp + "/imp/config.json")["torch_dtype"], "bfloat16");
}

// Copies a GGUF, adding metadata.
void CopyGgufWith(const std::string& src, const std::string& dst,
                  const std::function<void(GgufWriter&)>& add) {
  GgufFile f(src);
  GgufWriter w;
  for (const auto& [k, v] : f.metadata()) w.Set(k, v);
  add(w);
  for (const auto& t : f.tensors())
    w.AddTensor(t.name, t.type, t.ne, t.data, t.nbytes);
  w.Write(dst);
}

TEST(GgufImportCli, LlamaSentencePieceVocabTokenizesLikeTheOriginal) {
  // Llama 2's tokenizer.model, stored in a GGUF the way llama.cpp's converter
  // stores it (pieces, scores, piece types as tokenizer.ggml.*), imported
  // back into a tokenizer.model: the same ids as the original on every text.
  BIOQUANT_REQUIRE_SHARED();
  const std::string orig = testing::OracleDir() + "/tokenizers/llama-2";
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(orig + "/tokenizer.model").ok());
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    tokens.push_back(sp.IdToPiece(i));
    scores.push_back(sp.GetScore(i));
    types.push_back(sp.IsUnknown(i)   ? 2
                    : sp.IsControl(i) ? 3
                    : sp.IsUnused(i)  ? 5
                    : sp.IsByte(i)    ? 6
                                      : 1);
  }
  const std::string tmp = testing::TempDir("gguf_spm");
  auto r = RunBioquant(
      {"synth", "--preset", "tiny", "--out", tmp + "/o", "--dtype", "f32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  WriteGguf(tmp + "/o", tmp + "/plain.gguf");
  CopyGgufWith(tmp + "/plain.gguf", tmp + "/m.gguf", [&](GgufWriter& w) {
    w.SetString("tokenizer.ggml.model", "llama");
    w.SetStringArray("tokenizer.ggml.tokens", tokens);
    w.SetF32Array("tokenizer.ggml.scores", scores);
    w.SetI32Array("tokenizer.ggml.token_type", types);
    w.SetU32("tokenizer.ggml.bos_token_id", 1);
    w.SetU32("tokenizer.ggml.eos_token_id", 2);
    w.SetU32("tokenizer.ggml.unknown_token_id", 0);
    w.SetBool("tokenizer.ggml.add_bos_token", true);
    w.SetBool("tokenizer.ggml.add_space_prefix", true);
  });
  r = RunBioquant({"import-gguf", tmp + "/m.gguf", "--out", tmp + "/imp"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(FileExists(tmp + "/imp/tokenizer.model"));
  EXPECT_EQ(ReadJsonFile(tmp + "/imp/tokenizer_config.json")["bos_token"],
            "<s>");
  for (const std::string text :
       {"Hello world", "  two leading spaces and a tab\there",
        "BRCA1 raises risk 5-fold (p<0.001).", "naïve café 東京 🧬",
        "<s>control</s> tokens", "line\n\nbreaks\n"}) {
    auto a =
        RunBioquant({"tokenize", "--model", orig, "--text", text, "--json"});
    auto b = RunBioquant(
        {"tokenize", "--model", tmp + "/imp", "--text", text, "--json"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const auto ja = nlohmann::json::parse(a.out),
               jb = nlohmann::json::parse(b.out);
    EXPECT_EQ(ja["ids"], jb["ids"]) << text;
    EXPECT_EQ(ja["decoded"], jb["decoded"]) << text;
  }
}

TEST(GgufImportCli, BadFilesGiveOneLineErrors) {
  const std::string tmp = testing::TempDir("gguf_bad");
  WriteFile(tmp + "/bad.gguf", "GGUX and some more bytes here....");
  auto r = RunBioquant({"import-gguf", tmp + "/bad.gguf", "--out", tmp + "/o"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.gguf: bad magic"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp + "/o"));
  // Through --model of another command, too.
  setenv("BIOQUANT_CACHE_DIR", (tmp + "/cache").c_str(), 1);
  r = RunBioquant({"logits", "--model", tmp + "/bad.gguf", "--ids", "1",
                   "--out", tmp + "/x.npy"});
  unsetenv("BIOQUANT_CACHE_DIR");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.gguf: bad magic"), std::string::npos) << r.err;
  // An architecture the importer does not know.
  GgufWriter w;
  w.SetString("general.architecture", "mamba");
  w.Write(tmp + "/mamba.gguf");
  r = RunBioquant({"import-gguf", tmp + "/mamba.gguf", "--out", tmp + "/o2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("architecture 'mamba' is not supported"),
            std::string::npos)
      << r.err;
  // An output directory that already holds something is left alone.
  std::filesystem::create_directories(tmp + "/full");
  WriteFile(tmp + "/full/keep.txt", "x");
  GgufWriter wl;
  wl.SetString("general.architecture", "llama");
  wl.Write(tmp + "/nohyper.gguf");
  r = RunBioquant({"import-gguf", tmp + "/nohyper.gguf", "--out", tmp + "/o4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nohyper.gguf: missing metadata key llama."),
            std::string::npos)
      << r.err;
  r = RunBioquant(
      {"synth", "--preset", "tiny", "--out", tmp + "/ck", "--dtype", "f32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  WriteGguf(tmp + "/ck", tmp + "/good.gguf");
  r = RunBioquant({"import-gguf", tmp + "/good.gguf", "--out", tmp + "/full"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("full: output directory exists and is not empty"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(FileExists(tmp + "/full/keep.txt"));
  // Llama 3.1's rope scaling as a rope_freqs tensor: refused, not dropped.
  CopyGgufWith(tmp + "/good.gguf", tmp + "/rope.gguf", [](GgufWriter& w) {
    const std::vector<float> freqs(16, 1.0f);
    w.AddTensor("rope_freqs.weight", GgmlType::kF32, {16}, freqs.data(), 64);
  });
  r = RunBioquant({"import-gguf", tmp + "/rope.gguf", "--out", tmp + "/o5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("rope.gguf: rope_freqs.weight (llama3 rope scaling) is "
                       "not supported"),
            std::string::npos)
      << r.err;
  // Missing file.
  r = RunBioquant({"import-gguf", tmp + "/none.gguf", "--out", tmp + "/o3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("none.gguf"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace bioquant
