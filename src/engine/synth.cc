#include "engine/synth.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "quant/half.h"
#include "tokenizer/text.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

struct Preset {
  const char* name;
  const char* architecture;
  const char* model_type;
  int64_t hidden, layers, heads, kv_heads, inter, vocab, max_pos;
  double rope_theta;
  bool llama3_rope;
  bool tied;
  int64_t sliding_window;  // Mistral
};

constexpr Preset kPresets[] = {
    {"tiny", "LlamaForCausalLM", "llama", 128, 4, 4, 2, 344, 512, 4096, 10000.0,
     false, false, 0},
    {"qwen2-tiny", "Qwen2ForCausalLM", "qwen2", 128, 3, 4, 2, 320, 512, 4096,
     1000000.0, false, true, 0},
    {"mistral-tiny", "MistralForCausalLM", "mistral", 128, 3, 4, 2, 320, 512,
     4096, 10000.0, false, false, 64},
    {"tinyllama-1.1b", "LlamaForCausalLM", "llama", 2048, 22, 32, 4, 5632,
     32000, 2048, 10000.0, false, false, 0},
    {"llama3-8b", "LlamaForCausalLM", "llama", 4096, 32, 32, 8, 14336, 128256,
     131072, 500000.0, true, false, 0},
};

const Preset& FindPreset(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name == p.name) return p;
  }
  std::string known;
  for (const auto& p : kPresets)
    known += std::string(known.empty() ? "" : ", ") + p.name;
  Fail("--preset: unknown preset '{}' (known: {})", name, known);
}

// splitmix64: a tiny, fast, well-mixed generator; one stream per tensor so
// the weights do not depend on the order tensors are written in.
struct SplitMix {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * (1.0 / 9007199254740992.0); }
};

uint64_t HashName(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

void FillNormal(std::vector<float>& v, const std::string& name, uint64_t seed,
                double mean, double std) {
  SplitMix rng{HashName(name, seed)};
  for (size_t i = 0; i < v.size(); i += 2) {
    // Box-Muller: two normals per pair of uniforms.
    const double u1 = std::max(rng.Uniform(), 1e-300), u2 = rng.Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    v[i] = static_cast<float>(mean + std * r * std::cos(2 * M_PI * u2));
    if (i + 1 < v.size()) {
      v[i + 1] = static_cast<float>(mean + std * r * std::sin(2 * M_PI * u2));
    }
  }
}

// A few paragraphs in the register of the project's domain; the tokenizer's
// merges are learned from them so common words become single tokens.
constexpr const char* kCorpus =
    "The patient was treated with aspirin and developed no adverse reaction. "
    "Chemical induced disease relations were annotated in the abstracts. "
    "The drug inhibits the enzyme and increases the risk of bleeding. "
    "Question: Does the treatment reduce mortality in patients with cancer? "
    "Answer: yes. The answer is B. The study found that the protein binds "
    "to the receptor and activates the pathway in the cells of the tumor. "
    "Mutations in the gene cause a hereditary disease of the heart and the "
    "kidney. The trial reported the effect of the vaccine on the infection. "
    "Diagnosis, treatment, prevention, mechanism and transmission of the "
    "virus were discussed in the article about the epidemic of the disease.";

struct BpeTokenizer {
  std::vector<std::string> vocab;   // id -> token string (byte-level chars)
  std::vector<std::string> merges;  // "a b"
};

// Learns `num_merges` byte-level BPE merges from kCorpus (GPT-2 style: words
// carry their leading space as "Ġ").
BpeTokenizer TrainTokenizer(int num_merges) {
  BpeTokenizer t;
  for (int b = 0; b < 256; ++b) t.vocab.push_back(tok::ByteToUnicode(b));
  // Words -> frequency, each word a sequence of byte-level symbols.
  std::map<std::vector<std::string>, int> words;
  std::string text(kCorpus);
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i + 1;
    while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j])))
      ++j;
    std::vector<std::string> w;
    for (size_t k = i; k < j; ++k) w.push_back(tok::ByteToUnicode(text[k]));
    words[w]++;
    i = j;
  }
  for (int m = 0; m < num_merges; ++m) {
    std::map<std::pair<std::string, std::string>, int> pairs;
    for (const auto& [w, n] : words) {
      for (size_t k = 0; k + 1 < w.size(); ++k) pairs[{w[k], w[k + 1]}] += n;
    }
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    if (best->second < 2) break;
    const auto [a, b] = best->first;
    t.merges.push_back(a + " " + b);
    t.vocab.push_back(a + b);
    std::map<std::vector<std::string>, int> next;
    for (const auto& [w, n] : words) {
      std::vector<std::string> nw;
      for (size_t k = 0; k < w.size(); ++k) {
        if (k + 1 < w.size() && w[k] == a && w[k + 1] == b) {
          nw.push_back(a + b);
          ++k;
        } else {
          nw.push_back(w[k]);
        }
      }
      next[nw] += n;
    }
    words = std::move(next);
  }
  return t;
}

constexpr const char* kChatTemplate =
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

void WriteTokenizer(const std::string& dir, int64_t vocab_size, int32_t* bos,
                    std::vector<int32_t>* eos) {
  const int kSpecials = 5;
  const int max_merges =
      static_cast<int>(std::min<int64_t>(vocab_size - 256 - kSpecials, 400));
  if (max_merges < 0)
    Fail("synth: vocab_size {} is too small for a byte-level tokenizer",
         vocab_size);
  BpeTokenizer t = TrainTokenizer(max_merges);
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t id = 0; id < t.vocab.size(); ++id) {
    if (!vocab.contains(t.vocab[id])) vocab[t.vocab[id]] = id;
  }
  const char* specials[kSpecials] = {"<|begin_of_text|>", "<|end_of_text|>",
                                     "<|start_header_id|>", "<|end_header_id|>",
                                     "<|eot_id|>"};
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  // Special tokens take the top ids of the vocabulary, as Llama-3 does.
  const int32_t first_special = static_cast<int32_t>(vocab_size - kSpecials);
  // The ids between the BPE vocabulary and the specials are reserved special
  // tokens, as Llama-3's <|reserved_special_token_N|>: every id the model can
  // emit is then a token, and transformers and bioquant decode (skip) it
  // alike. Without them an id in the gap has no token at all, which HF's
  // tokenizers and bioquant's decoder treat differently.
  for (int32_t id = static_cast<int32_t>(t.vocab.size()); id < first_special;
       ++id) {
    added.push_back(
        {{"id", id},
         {"content", fmt::format("<|reserved_special_token_{}|>",
                                 id - static_cast<int32_t>(t.vocab.size()))},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}});
  }
  for (int k = 0; k < kSpecials; ++k) {
    added.push_back({{"id", first_special + k},
                     {"content", specials[k]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  *bos = first_special;
  *eos = {first_special + 1, first_special + 4};
  nlohmann::ordered_json tj = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", specials[0]}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", specials[0]}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens",
         {{specials[0],
           {{"id", specials[0]},
            {"ids", {first_special}},
            {"tokens", {specials[0]}}}}}}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", t.merges}}}};
  WriteFile(dir + "/tokenizer.json", tj.dump(2));
  nlohmann::ordered_json cfg = {{"add_bos_token", true},
                                {"add_eos_token", false},
                                {"bos_token", specials[0]},
                                {"eos_token", specials[4]},
                                {"chat_template", kChatTemplate},
                                {"model_max_length", 4096},
                                {"tokenizer_class", "PreTrainedTokenizerFast"},
                                {"clean_up_tokenization_spaces", false}};
  WriteFile(dir + "/tokenizer_config.json", cfg.dump(2));
}

}  // namespace

std::vector<std::string> SynthPresets() {
  std::vector<std::string> out;
  for (const auto& p : kPresets) out.push_back(p.name);
  return out;
}

int64_t WriteSyntheticCheckpoint(const SynthOptions& o) {
  const Preset& p = FindPreset(o.preset);
  DType dtype;
  std::string torch_dtype;
  if (o.dtype == "bf16") {
    dtype = DType::kBF16;
    torch_dtype = "bfloat16";
  } else if (o.dtype == "f16") {
    dtype = DType::kF16;
    torch_dtype = "float16";
  } else if (o.dtype == "f32") {
    dtype = DType::kF32;
    torch_dtype = "float32";
  } else {
    Fail("--dtype: '{}' is not one of bf16, f16, f32", o.dtype);
  }
  if (o.out_dir.empty()) Fail("--out: an output directory is required");
  if (o.outlier_block < -1 || o.outlier_block >= p.layers) {
    Fail("--outlier-block: {} is not a block of {} (0..{})", o.outlier_block,
         p.name, p.layers - 1);
  }
  const std::string outlier_prefix =
      fmt::format("model.layers.{}.", o.outlier_block);
  ::mkdir(o.out_dir.c_str(), 0755);
  if (!IsDirectory(o.out_dir)) Fail("{}: cannot create directory", o.out_dir);

  int32_t bos = 0;
  std::vector<int32_t> eos;
  WriteTokenizer(o.out_dir, p.vocab, &bos, &eos);

  const int64_t H = p.hidden, D = p.hidden / p.heads, I = p.inter, V = p.vocab;
  const bool qwen = std::string(p.model_type) == "qwen2";
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    double mean, std;
  };
  std::vector<T> tensors;
  tensors.push_back({"model.embed_tokens.weight", {V, H}, 0, o.init_std});
  for (int64_t l = 0; l < p.layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({pre + "input_layernorm.weight", {H}, 1.0, 0.1});
    tensors.push_back(
        {pre + "self_attn.q_proj.weight", {p.heads * D, H}, 0, o.init_std});
    tensors.push_back(
        {pre + "self_attn.k_proj.weight", {p.kv_heads * D, H}, 0, o.init_std});
    tensors.push_back(
        {pre + "self_attn.v_proj.weight", {p.kv_heads * D, H}, 0, o.init_std});
    if (qwen) {
      tensors.push_back(
          {pre + "self_attn.q_proj.bias", {p.heads * D}, 0, o.init_std});
      tensors.push_back(
          {pre + "self_attn.k_proj.bias", {p.kv_heads * D}, 0, o.init_std});
      tensors.push_back(
          {pre + "self_attn.v_proj.bias", {p.kv_heads * D}, 0, o.init_std});
    }
    tensors.push_back(
        {pre + "self_attn.o_proj.weight", {H, p.heads * D}, 0, o.init_std});
    tensors.push_back({pre + "post_attention_layernorm.weight", {H}, 1.0, 0.1});
    tensors.push_back({pre + "mlp.gate_proj.weight", {I, H}, 0, o.init_std});
    tensors.push_back({pre + "mlp.up_proj.weight", {I, H}, 0, o.init_std});
    tensors.push_back({pre + "mlp.down_proj.weight", {H, I}, 0, o.init_std});
  }
  tensors.push_back({"model.norm.weight", {H}, 1.0, 0.1});
  if (!p.tied) tensors.push_back({"lm_head.weight", {V, H}, 0, o.init_std});

  // Split into shards of at most shard_bytes.
  const size_t esize = DTypeSize(dtype);
  std::vector<std::vector<const T*>> shards(1);
  uint64_t cur = 0, total_bytes = 0;
  int64_t params = 0;
  for (const auto& t : tensors) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    params += n;
    if (cur > 0 && cur + n * esize > o.shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(&t);
    cur += n * esize;
    total_bytes += n * esize;
  }
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file =
        shards.size() == 1 ? "model.safetensors"
                           : fmt::format("model-{:05d}-of-{:05d}.safetensors",
                                         s + 1, shards.size());
    std::vector<SafetensorsStreamWriter::Decl> decls;
    for (const T* t : shards[s]) {
      decls.push_back({t->name, dtype, t->shape});
      weight_map[t->name] = file;
    }
    SafetensorsStreamWriter w(o.out_dir + "/" + file, decls,
                              {{"format", "pt"}});
    std::vector<float> f;
    std::vector<uint16_t> h;
    for (const T* t : shards[s]) {
      size_t n = 1;
      for (int64_t d : t->shape) n *= d;
      f.resize(n);
      FillNormal(f, t->name, o.seed, t->mean, t->std);
      if (o.outlier_block >= 0 && t->shape.size() == 2 &&
          t->name.rfind(outlier_prefix, 0) == 0) {
        // About one weight in 64, scattered (a hash of the position): most
        // 4-bit blocks of the block's matrices hold one.
        const uint64_t salt = HashName(t->name, o.seed ^ 0x5bd1e995ull);
        for (size_t i = 0; i < n; ++i) {
          SplitMix h{salt + i * 0x9e3779b97f4a7c15ull};
          if (h.Next() % 64 == 0) f[i] *= static_cast<float>(o.outlier_scale);
        }
      }
      if (dtype == DType::kF32) {
        w.Append(t->name, f.data(), n * 4);
        continue;
      }
      h.resize(n);
      for (size_t i = 0; i < n; ++i) {
        h[i] = dtype == DType::kBF16 ? F32ToBf16(f[i]) : F32ToF16(f[i]);
      }
      w.Append(t->name, h.data(), n * 2);
    }
    w.Finish();
  }
  if (shards.size() > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes}}},
                                    {"weight_map", weight_map}};
    WriteFile(o.out_dir + "/model.safetensors.index.json", index.dump(2));
  }

  nlohmann::ordered_json cfg = {
      {"architectures", {p.architecture}},
      {"model_type", p.model_type},
      {"hidden_size", H},
      {"intermediate_size", I},
      {"num_hidden_layers", p.layers},
      {"num_attention_heads", p.heads},
      {"num_key_value_heads", p.kv_heads},
      {"head_dim", D},
      {"vocab_size", V},
      {"max_position_embeddings", p.max_pos},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", p.rope_theta},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", p.tied},
      {"bos_token_id", bos},
      {"eos_token_id", eos},
      {"torch_dtype", torch_dtype},
      {"bioquant_synthetic",
       {{"preset", p.name},
        {"seed", o.seed},
        {"note",
         "random weights written by `bioquant synth`; outputs mean nothing"}}}};
  if (o.outlier_block >= 0) {
    cfg["bioquant_synthetic"]["outlier_block"] = o.outlier_block;
    cfg["bioquant_synthetic"]["outlier_scale"] = o.outlier_scale;
  }
  if (p.llama3_rope) {
    cfg["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", 8.0},
                           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 8192}};
  } else {
    cfg["rope_scaling"] = nullptr;
  }
  if (p.sliding_window > 0) cfg["sliding_window"] = p.sliding_window;
  if (qwen) cfg["use_sliding_window"] = false;
  WriteFile(o.out_dir + "/config.json", cfg.dump(2));
  nlohmann::ordered_json gen = {
      {"bos_token_id", bos}, {"eos_token_id", eos}, {"do_sample", false}};
  WriteFile(o.out_dir + "/generation_config.json", gen.dump(2));
  return params;
}

}  // namespace bioquant
