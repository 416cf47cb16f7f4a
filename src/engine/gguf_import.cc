#include "engine/gguf_import.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "quant/ggml.h"
#include "quant/half.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"

namespace bioquant {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Bumped when the checkpoint an import writes changes (invalidates caches).
constexpr int kImportVersion = 1;

// Per-architecture data (STYLE habit 9): HF class, whether llama.cpp's
// converter permuted Q/K rows for its interleaved rope, and biases.
struct ArchInfo {
  const char* gguf;
  const char* hf_class;
  const char* model_type;
  bool permuted_qk;
  bool qkv_bias;
};

constexpr ArchInfo kArchs[] = {
    {"llama", "LlamaForCausalLM", "llama", true, false},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", false, true},
};

const ArchInfo& FindArch(const GgufFile& f) {
  const std::string arch = f.GetString("general.architecture");
  for (const auto& a : kArchs) {
    if (arch == a.gguf) return a;
  }
  Fail("{}: architecture '{}' is not supported for import (llama, qwen2)",
       f.path(), arch);
}

// GGUF tensor name (after "blk.N.") -> HF module name.
const std::map<std::string, std::string>& LayerNames() {
  static const std::map<std::string, std::string> m = {
      {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"},
      {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  return m;
}

// HF name of a GGUF tensor; throws for tensors we cannot place.
std::string HfName(const std::string& g, const std::string& path) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  if (g == "rope_freqs.weight") {
    // Llama 3.1-style rope scaling, stored as per-frequency factors: the
    // HF config needs its parameters, which the file does not state.
    Fail(
        "{}: rope_freqs.weight (llama3 rope scaling) is not supported for "
        "import",
        path);
  }
  if (g.rfind("blk.", 0) == 0) {
    const size_t dot = g.find('.', 4);
    const size_t last = g.rfind('.');
    if (dot != std::string::npos && last > dot) {
      const std::string layer = g.substr(4, dot - 4);
      const std::string mod = g.substr(dot + 1, last - dot - 1);
      const std::string kind = g.substr(last + 1);
      auto it = LayerNames().find(mod);
      if (it != LayerNames().end() && !layer.empty() &&
          layer.find_first_not_of("0123456789") == std::string::npos) {
        return "model.layers." + layer + "." + it->second + "." + kind;
      }
    }
  }
  Fail("{}: tensor {} has no Hugging Face counterpart", path, g);
}

// llama.cpp's converter reorders each head's rows [r0..r(d/2-1), i0..] of
// HF's rotate-half layout into interleaved pairs: GGUF row h*d + 2i + p
// holds HF row h*d + p*(d/2) + i. Undo it (transformers'
// reverse_permute_weights). Works for weights [rows, cols] and biases.
void UnpermuteRows(std::vector<float>& w, int64_t rows, int64_t cols,
                   int64_t n_heads, const std::string& name) {
  if (n_heads <= 0 || rows % (2 * n_heads) != 0) {
    Fail("{}: {} rows cannot be split into {} heads of rotary pairs", name,
         rows, n_heads);
  }
  const int64_t d = rows / n_heads, half = d / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t p = 0; p < 2; ++p) {
        const float* src = &w[(h * d + 2 * i + p) * cols];
        std::copy(src, src + cols, &out[(h * d + p * half + i) * cols]);
      }
    }
  }
  w.swap(out);
}

std::string TokenAt(const std::vector<std::string>& tokens, const GgufFile& f,
                    const std::string& key) {
  if (!f.Has(key)) return "";
  const int64_t id = f.GetInt(key);
  if (id < 0 || id >= static_cast<int64_t>(tokens.size())) {
    Fail("{}: {} = {} is not a token id (vocabulary of {})", f.path(), key, id,
         tokens.size());
  }
  return tokens[id];
}

// HF pre-tokenizers for llama.cpp's `tokenizer.ggml.pre` names (the regexes
// of llama-vocab.cpp, as the models' own tokenizer.json files state them).
json PreTokenizerFor(const std::string& pre, const std::string& path) {
  const json byte_level_regex = {{"type", "ByteLevel"},
                                 {"add_prefix_space", false},
                                 {"trim_offsets", true},
                                 {"use_regex", true}};
  auto split_then_bytes = [](const char* regex) {
    return json{{"type", "Sequence"},
                {"pretokenizers", json::array({{{"type", "Split"},
                                                {"pattern", {{"Regex", regex}}},
                                                {"behavior", "Isolated"},
                                                {"invert", false}},
                                               {{"type", "ByteLevel"},
                                                {"add_prefix_space", false},
                                                {"trim_offsets", false},
                                                {"use_regex", false}}})}};
  };
  if (pre == "default" || pre == "gpt-2" || pre.empty()) {
    return byte_level_regex;
  }
  if (pre == "smollm") {  // SmolLM's cosmo2 tokenizer: digits one by one
    return {{"type", "Sequence"},
            {"pretokenizers",
             json::array({{{"type", "Digits"}, {"individual_digits", true}},
                          byte_level_regex})}};
  }
  if (pre == "qwen2") {
    return split_then_bytes(
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  }
  if (pre == "llama-bpe" || pre == "llama3") {
    return split_then_bytes(
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  }
  Fail(
      "{}: tokenizer.ggml.pre '{}' is not supported (default, gpt-2, "
      "smollm, qwen2, llama-bpe)",
      path, pre);
}

// Protocol-buffer encoding, just what a sentencepiece ModelProto needs.
void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void PutTag(std::string& out, int field, int wire) {
  PutVarint(out, (static_cast<uint64_t>(field) << 3) | wire);
}
void PutBytes(std::string& out, int field, const std::string& bytes) {
  PutTag(out, field, 2);
  PutVarint(out, bytes.size());
  out += bytes;
}
void PutInt(std::string& out, int field, int64_t v) {
  PutTag(out, field, 0);
  PutVarint(out, static_cast<uint64_t>(v));  // negative: 10-byte varint
}

// tokenizer.model for a llama (SentencePiece) vocab, the file llama.cpp's
// converter read: ModelProto { pieces = 1 {piece = 1, score = 2, type = 3};
// trainer_spec = 2 {model_type = 3 (BPE = 2), byte_fallback = 35, unk_id =
// 40, bos_id = 41, eos_id = 42, pad_id = 43}; normalizer_spec = 3 {name = 1,
// add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces =
// 5} }. GGUF token types are sentencepiece's piece types (1 normal, 2
// unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
std::string SentencePieceModel(const GgufFile& f,
                               const std::vector<std::string>& tokens,
                               const std::vector<int64_t>& types) {
  std::vector<double> scores(tokens.size(), 0.0);
  if (f.Has("tokenizer.ggml.scores")) {
    scores = f.GetFloatArray("tokenizer.ggml.scores");
    if (scores.size() != tokens.size()) {
      Fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", f.path(),
           scores.size(), tokens.size());
    }
  }
  std::string proto;
  bool byte_fallback = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] < 1 || types[i] > 6) {
      Fail("{}: token {} has type {} (sentencepiece knows 1..6)", f.path(), i,
           types[i]);
    }
    byte_fallback |= types[i] == 6;
    std::string piece;
    PutBytes(piece, 1, tokens[i]);
    PutTag(piece, 2, 5);
    const float score = static_cast<float>(scores[i]);
    piece.append(reinterpret_cast<const char*>(&score), 4);
    PutInt(piece, 3, types[i]);
    PutBytes(proto, 1, piece);
  }
  auto id_of = [&](const char* key, int64_t fallback) {
    return f.Has(key) ? f.GetInt(key) : fallback;
  };
  std::string trainer;
  PutInt(trainer, 3, 2);  // BPE
  PutInt(trainer, 35, byte_fallback ? 1 : 0);
  PutInt(trainer, 40, id_of("tokenizer.ggml.unknown_token_id", 0));
  PutInt(trainer, 41, id_of("tokenizer.ggml.bos_token_id", -1));
  PutInt(trainer, 42, id_of("tokenizer.ggml.eos_token_id", -1));
  PutInt(trainer, 43, id_of("tokenizer.ggml.padding_token_id", -1));
  PutBytes(proto, 2, trainer);
  std::string norm;
  PutBytes(norm, 1, "identity");
  const bool dummy = f.Has("tokenizer.ggml.add_space_prefix")
                         ? f.GetBool("tokenizer.ggml.add_space_prefix")
                         : true;
  PutInt(norm, 3, dummy ? 1 : 0);
  PutInt(norm, 4, 0);
  PutInt(norm, 5, 1);
  PutBytes(proto, 3, norm);
  return proto;
}

void WriteBpeTokenizerJson(const GgufFile& f, const std::string& dir,
                           const std::vector<std::string>& tokens,
                           const ordered_json& added);
void WriteTokenizerConfig(const GgufFile& f, const std::string& dir,
                          const std::vector<std::string>& tokens,
                          const ordered_json& added_decoder, bool spm,
                          int64_t context_length);

// tokenizer.json + tokenizer_config.json (gpt2 byte-level BPE) or
// tokenizer.model (llama SentencePiece) + tokenizer_config.json.
void WriteTokenizer(const GgufFile& f, const std::string& dir,
                    int64_t context_length) {
  const std::string model = f.GetString("tokenizer.ggml.model");
  if (model != "gpt2" && model != "llama") {
    Fail(
        "{}: tokenizer.ggml.model '{}' is not supported for import (gpt2, "
        "llama)",
        f.path(), model);
  }
  const bool spm = model == "llama";
  const auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), 1);
  if (f.Has("tokenizer.ggml.token_type")) {
    types = f.GetIntArray("tokenizer.ggml.token_type");
    if (types.size() != tokens.size()) {
      Fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens",
           f.path(), types.size(), tokens.size());
    }
  }
  // Control (3) and user-defined (4) tokens are added tokens: matched
  // before the model sees the text; control ones are special (skipped when
  // decoding with skip_special_tokens).
  ordered_json added = ordered_json::array();
  ordered_json added_decoder = ordered_json::object();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] != 3 && types[i] != 4 && !(spm && types[i] == 2)) continue;
    const bool special = types[i] != 4;
    ordered_json t = {
        {"id", i},           {"content", tokens[i]}, {"single_word", false},
        {"lstrip", false},   {"rstrip", false},      {"normalized", !special},
        {"special", special}};
    added.push_back(t);
    t.erase("id");
    added_decoder[std::to_string(i)] = t;
  }
  if (spm) {
    WriteFile(dir + "/tokenizer.model", SentencePieceModel(f, tokens, types));
  } else {
    WriteBpeTokenizerJson(f, dir, tokens, added);
  }
  WriteTokenizerConfig(f, dir, tokens, added_decoder, spm, context_length);
}

void WriteBpeTokenizerJson(const GgufFile& f, const std::string& dir,
                           const std::vector<std::string>& tokens,
                           const ordered_json& added) {
  const auto merges = f.GetStringArray("tokenizer.ggml.merges");
  const std::string pre = f.Has("tokenizer.ggml.pre")
                              ? f.GetString("tokenizer.ggml.pre")
                              : std::string();

  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (vocab.contains(tokens[i])) {
      Fail("{}: token {:?} appears twice in tokenizer.ggml.tokens", f.path(),
           tokens[i]);
    }
    vocab[tokens[i]] = i;
  }
  ordered_json tok = ordered_json::object();
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  tok["added_tokens"] = added;
  tok["normalizer"] =
      pre == "qwen2" ? ordered_json{{"type", "NFC"}} : ordered_json(nullptr);
  tok["pre_tokenizer"] = PreTokenizerFor(pre, f.path());
  tok["post_processor"] = {{"type", "ByteLevel"},
                           {"add_prefix_space", true},
                           {"trim_offsets", false},
                           {"use_regex", true}};
  tok["decoder"] = {{"type", "ByteLevel"},
                    {"add_prefix_space", true},
                    {"trim_offsets", true},
                    {"use_regex", true}};
  tok["model"] = {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"ignore_merges", false},
                  {"vocab", vocab},
                  {"merges", merges}};
  WriteFile(dir + "/tokenizer.json", tok.dump(2));
}

void WriteTokenizerConfig(const GgufFile& f, const std::string& dir,
                          const std::vector<std::string>& tokens,
                          const ordered_json& added_decoder, bool spm,
                          int64_t context_length) {
  ordered_json cfg = ordered_json::object();
  // llama.cpp's defaults when the key is absent: BOS for SentencePiece
  // vocabularies, none for byte-level BPE.
  const bool add_bos = f.Has("tokenizer.ggml.add_bos_token")
                           ? f.GetBool("tokenizer.ggml.add_bos_token")
                           : spm;
  const bool add_eos = f.Has("tokenizer.ggml.add_eos_token")
                           ? f.GetBool("tokenizer.ggml.add_eos_token")
                           : false;
  cfg["add_bos_token"] = add_bos;
  cfg["add_eos_token"] = add_eos;
  cfg["added_tokens_decoder"] = added_decoder;
  auto put_token = [&](const char* name, const std::string& key) {
    const std::string t = TokenAt(tokens, f, key);
    cfg[name] = t.empty() ? ordered_json(nullptr) : ordered_json(t);
  };
  put_token("bos_token", "tokenizer.ggml.bos_token_id");
  put_token("eos_token", "tokenizer.ggml.eos_token_id");
  put_token("unk_token", "tokenizer.ggml.unknown_token_id");
  put_token("pad_token", "tokenizer.ggml.padding_token_id");
  if (f.Has("tokenizer.chat_template")) {
    cfg["chat_template"] = f.GetString("tokenizer.chat_template");
  }
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["model_max_length"] = context_length;
  cfg["tokenizer_class"] = spm ? "LlamaTokenizer" : "PreTrainedTokenizerFast";
  if (spm) cfg["legacy"] = true;
  WriteFile(dir + "/tokenizer_config.json", cfg.dump(2));
}

struct Hyper {
  int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0,
          context = 0, head_dim = 0;
  double eps = 1e-6, theta = 10000.0;
};

Hyper ReadHyper(const GgufFile& f, const ArchInfo& a) {
  const std::string p = std::string(a.gguf) + ".";
  Hyper h;
  h.hidden = f.GetInt(p + "embedding_length");
  h.layers = f.GetInt(p + "block_count");
  h.heads = f.GetInt(p + "attention.head_count");
  h.kv_heads = f.Has(p + "attention.head_count_kv")
                   ? f.GetInt(p + "attention.head_count_kv")
                   : h.heads;
  h.ffn = f.GetInt(p + "feed_forward_length");
  h.context =
      f.Has(p + "context_length") ? f.GetInt(p + "context_length") : 2048;
  h.eps = f.GetFloat(p + "attention.layer_norm_rms_epsilon");
  if (f.Has(p + "rope.freq_base")) h.theta = f.GetFloat(p + "rope.freq_base");
  if (h.hidden <= 0 || h.layers <= 0 || h.heads <= 0 || h.kv_heads <= 0 ||
      h.ffn <= 0 || h.heads % h.kv_heads != 0) {
    Fail(
        "{}: inconsistent hyper-parameters (hidden {}, layers {}, heads {}, "
        "kv heads {}, ffn {})",
        f.path(), h.hidden, h.layers, h.heads, h.kv_heads, h.ffn);
  }
  h.head_dim = f.Has(p + "attention.key_length")
                   ? f.GetInt(p + "attention.key_length")
                   : h.hidden / h.heads;
  const GgufTensor& emb = f.GetTensor("token_embd.weight");
  if (emb.shape.size() != 2 || emb.shape[1] != h.hidden) {
    Fail("{}: token_embd.weight is {}, expected [vocab, {}]", f.path(),
         emb.ShapeString(), h.hidden);
  }
  h.vocab = emb.shape[0];
  if (f.Has(p + "rope.scaling.type") &&
      f.GetString(p + "rope.scaling.type") != "none") {
    Fail("{}: rope scaling '{}' is not supported for import", f.path(),
         f.GetString(p + "rope.scaling.type"));
  }
  return h;
}

ordered_json ConfigJson(const GgufFile& f, const ArchInfo& a, const Hyper& h,
                        bool tied, const std::string& dtype) {
  ordered_json c = ordered_json::object();
  c["architectures"] = {a.hf_class};
  c["model_type"] = a.model_type;
  c["hidden_size"] = h.hidden;
  c["intermediate_size"] = h.ffn;
  c["num_hidden_layers"] = h.layers;
  c["num_attention_heads"] = h.heads;
  c["num_key_value_heads"] = h.kv_heads;
  if (h.head_dim != h.hidden / h.heads) c["head_dim"] = h.head_dim;
  c["vocab_size"] = h.vocab;
  c["max_position_embeddings"] = h.context;
  c["rms_norm_eps"] = h.eps;
  c["rope_theta"] = h.theta;
  c["hidden_act"] = "silu";
  c["tie_word_embeddings"] = tied;
  if (a.qkv_bias) {
    c["use_sliding_window"] = false;
  } else {
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
  }
  if (f.Has("tokenizer.ggml.bos_token_id")) {
    c["bos_token_id"] = f.GetInt("tokenizer.ggml.bos_token_id");
  }
  if (f.Has("tokenizer.ggml.eos_token_id")) {
    c["eos_token_id"] = f.GetInt("tokenizer.ggml.eos_token_id");
  }
  c["torch_dtype"] = dtype == "bf16" ? "bfloat16" : "float32";
  c["bioquant_imported_from"] = {
      {"file", fs::path(f.path()).filename().string()},
      {"gguf_version", f.version()},
      {"import_version", kImportVersion}};
  return c;
}

}  // namespace

void ImportGguf(const GgufImportOptions& o) {
  if (o.dtype != "f32" && o.dtype != "bf16") {
    Fail("--dtype '{}' is not supported (f32, bf16)", o.dtype);
  }
  GgufFile f(o.gguf_path);
  const ArchInfo& arch = FindArch(f);
  const Hyper h = ReadHyper(f, arch);
  const bool tied = f.FindTensor("output.weight") == nullptr;

  if (fs::exists(o.out_dir) && !fs::is_empty(o.out_dir)) {
    Fail("{}: output directory exists and is not empty", o.out_dir);
  }
  const fs::path out(o.out_dir);
  const fs::path parent =
      out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) Fail("{}: cannot create ({})", parent.string(), ec.message());
  const std::string tmp = (parent / (".tmp-" + out.filename().string() + "-" +
                                     std::to_string(::getpid())))
                              .string();
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec) {
    Fail("{}: cannot create ({})", tmp, ec.message());
  }
  try {
    // Declare every tensor first (the stream writer fixes the header).
    struct Item {
      const GgufTensor* t;
      std::string hf;
    };
    std::vector<Item> items;
    std::vector<SafetensorsStreamWriter::Decl> decls;
    const DType dt = o.dtype == "bf16" ? DType::kBF16 : DType::kF32;
    for (const auto& t : f.tensors()) {
      const std::string hf = HfName(t.name, f.path());
      if (!CanDequantizeGgml(t.type)) {
        Fail("{}: tensor {} has type {}, which import cannot dequantize",
             f.path(), t.name, GgmlTypeName(t.type));
      }
      items.push_back({&t, hf});
      decls.push_back({hf, dt, t.shape});
    }
    SafetensorsStreamWriter w(tmp + "/model.safetensors", decls,
                              {{"format", "pt"}});
    std::vector<float> buf;
    std::vector<uint16_t> half;
    for (const auto& [t, hf] : items) {
      buf.resize(t->numel());
      DequantizeGgml(t->type, t->data, buf.size(), buf.data());
      const int64_t rows = t->shape[0];
      const int64_t cols = t->shape.size() > 1 ? t->shape[1] : 1;
      if (arch.permuted_qk) {
        if (t->name.find(".attn_q.") != std::string::npos) {
          UnpermuteRows(buf, rows, cols, h.heads, t->name);
        } else if (t->name.find(".attn_k.") != std::string::npos) {
          UnpermuteRows(buf, rows, cols, h.kv_heads, t->name);
        }
      }
      if (dt == DType::kF32) {
        w.Append(hf, buf.data(), buf.size() * 4);
      } else {
        half.resize(buf.size());
        for (size_t i = 0; i < buf.size(); ++i) half[i] = F32ToBf16(buf[i]);
        w.Append(hf, half.data(), half.size() * 2);
      }
      if (!o.quiet) {
        std::fprintf(stderr, "  %-40s %-5s %s\n", hf.c_str(),
                     GgmlTypeName(t->type), t->ShapeString().c_str());
      }
    }
    w.Finish();
    WriteFile(tmp + "/config.json",
              ConfigJson(f, arch, h, tied, o.dtype).dump(2) + "\n");
    ordered_json gen = ordered_json::object();
    if (f.Has("tokenizer.ggml.bos_token_id")) {
      gen["bos_token_id"] = f.GetInt("tokenizer.ggml.bos_token_id");
    }
    if (f.Has("tokenizer.ggml.eos_token_id")) {
      gen["eos_token_id"] = f.GetInt("tokenizer.ggml.eos_token_id");
    }
    WriteFile(tmp + "/generation_config.json", gen.dump(2) + "\n");
    if (f.Has("tokenizer.ggml.model")) WriteTokenizer(f, tmp, h.context);
    std::error_code ec;
    if (fs::exists(out)) fs::remove(out, ec);  // empty (checked above)
    fs::rename(tmp, out, ec);
    if (ec)
      Fail("{}: cannot rename {} into place ({})", o.out_dir, tmp,
           ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::string GgufFingerprint(const std::string& gguf_path) {
  MappedFile m(gguf_path);
  const GgufFile f(gguf_path);
  uint64_t hash =
      Fnv1a(std::to_string(m.size()) + "/" + std::to_string(kImportVersion));
  // The header: metadata and tensor table.
  const size_t header = std::min<size_t>(f.data_offset(), m.size());
  hash =
      Fnv1a(std::string(reinterpret_cast<const char*>(m.data()), header), hash);
  // 64 samples of 4 KiB spread over the file: a re-quantized or fine-tuned
  // file with the same metadata still gets a new key.
  const size_t kSample = 4096;
  for (int i = 0; i < 64 && m.size() > kSample; ++i) {
    const size_t at = (m.size() - kSample) / 63 * i;
    hash = Fnv1a(
        std::string(reinterpret_cast<const char*>(m.data() + at), kSample),
        hash);
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(hash));
  return buf;
}

std::string ResolveModelPath(const std::string& model) {
  const bool gguf =
      model.size() > 5 && model.compare(model.size() - 5, 5, ".gguf") == 0;
  if (!gguf || IsDirectory(model)) return model;
  if (!FileExists(model)) Fail("{}: no such file", model);
  std::string cache;
  if (const char* c = std::getenv("BIOQUANT_CACHE_DIR"); c && *c) {
    cache = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    cache = std::string(x) + "/bioquant";
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    cache = std::string(home) + "/.cache/bioquant";
  } else {
    Fail("{}: no cache directory (set BIOQUANT_CACHE_DIR or HOME)", model);
  }
  const std::string dir = cache + "/gguf/" + GgufFingerprint(model);
  if (FileExists(dir + "/config.json")) return dir;
  GgufImportOptions o;
  o.gguf_path = model;
  o.out_dir = dir;
  o.dtype = "f32";
  try {
    ImportGguf(o);
  } catch (const std::exception&) {
    // Another process may have imported it meanwhile (its rename won).
    if (FileExists(dir + "/config.json")) return dir;
    throw;
  }
  return dir;
}

}  // namespace bioquant
