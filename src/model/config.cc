#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

// The per-architecture table: what differs between the decoders we run.
struct ArchInfo {
  const char* architecture;
  const char* model_type;
  bool qkv_bias;                // always present
  bool honours_attention_bias;  // config.attention_bias adds q/k/v/o biases
  bool mistral_window;          // sliding_window applies to every layer
  bool qwen2_window;            // use_sliding_window + max_window_layers
};

constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama", false, true, false, false},
    {"MistralForCausalLM", "mistral", false, false, true, false},
    {"Qwen2ForCausalLM", "qwen2", true, false, false, true},
};

// j.get<T>() of an integer type from a float outside T's range is undefined
// behaviour in nlohmann::json: integers must be integral and in range.
template <typename T>
T GetChecked(const nlohmann::json& v, const char* key,
             const std::string& where) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (!(d >= static_cast<double>(std::numeric_limits<T>::min()) &&
            d <= static_cast<double>(std::numeric_limits<T>::max())) ||
          d != std::trunc(d)) {
        Fail("{}: \"{}\" must be an integer in range", where, key);
      }
      return static_cast<T>(d);
    }
  }
  return v.get<T>();
}

template <typename T>
T Require(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null())
    Fail("{}: missing \"{}\"", where, key);
  try {
    return GetChecked<T>(j[key], key, where);
  } catch (const nlohmann::json::exception&) {
    Fail("{}: \"{}\" has the wrong type", where, key);
  }
}

template <typename T>
T Optional(const nlohmann::json& j, const char* key, T fallback,
           const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return GetChecked<T>(j[key], key, where);
  } catch (const nlohmann::json::exception&) {
    Fail("{}: \"{}\" has the wrong type", where, key);
  }
}

void AddEos(const nlohmann::json& v, std::vector<int32_t>& out) {
  auto add = [&](int32_t id) {
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  if (v.is_number_integer()) add(v.get<int32_t>());
  if (v.is_array()) {
    for (const auto& e : v) {
      if (e.is_number_integer()) add(e.get<int32_t>());
    }
  }
}

}  // namespace

int64_t ModelConfig::ParameterCount() const {
  const int64_t attn = hidden_size * q_dim() * 2 + hidden_size * kv_dim() * 2 +
                       (qkv_bias ? q_dim() + 2 * kv_dim() : 0) +
                       (o_bias ? hidden_size : 0);
  const int64_t mlp = 3 * hidden_size * intermediate_size +
                      (mlp_bias ? 2 * intermediate_size + hidden_size : 0);
  const int64_t layer = attn + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size;
  return num_layers * layer + embed + hidden_size +
         (tie_word_embeddings ? 0 : embed);
}

ModelConfig ParseModelConfig(const nlohmann::json& j,
                             const std::string& where) {
  if (!j.is_object()) Fail("{}: not a JSON object", where);
  ModelConfig c;
  c.raw = j;
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() &&
      !j["architectures"].empty() && j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
  }
  const std::string model_type =
      Optional<std::string>(j, "model_type", "", where);
  const ArchInfo* info = nullptr;
  for (const auto& a : kArchs) {
    if (arch == a.architecture ||
        (arch.empty() && model_type == a.model_type)) {
      info = &a;
    }
  }
  if (!info) {
    Fail(
        "{}: unknown architecture '{}' (model_type '{}'); supported: "
        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM",
        where, arch, model_type);
  }
  c.architecture = info->architecture;
  c.model_type = info->model_type;
  c.hidden_size = Require<int64_t>(j, "hidden_size", where);
  c.num_layers = Require<int64_t>(j, "num_hidden_layers", where);
  c.num_heads = Require<int64_t>(j, "num_attention_heads", where);
  c.num_kv_heads =
      Optional<int64_t>(j, "num_key_value_heads", c.num_heads, where);
  c.intermediate_size = Require<int64_t>(j, "intermediate_size", where);
  c.vocab_size = Require<int64_t>(j, "vocab_size", where);
  if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.intermediate_size <= 0 || c.vocab_size <= 0) {
    Fail("{}: sizes must be positive", where);
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    Fail(
        "{}: num_attention_heads {} is not a multiple of num_key_value_heads "
        "{}",
        where, c.num_heads, c.num_kv_heads);
  }
  c.head_dim = Optional<int64_t>(j, "head_dim", 0, where);
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_heads != 0) {
      Fail("{}: hidden_size {} not divisible by num_attention_heads {}", where,
           c.hidden_size, c.num_heads);
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0)
    Fail("{}: head_dim {} must be even", where, c.head_dim);
  c.max_position_embeddings =
      Optional<int64_t>(j, "max_position_embeddings", 4096, where);
  c.rms_norm_eps = Optional<double>(j, "rms_norm_eps", 1e-6, where);
  c.rope_theta = Optional<double>(j, "rope_theta", 10000.0, where);
  const std::string act = Optional<std::string>(j, "hidden_act", "silu", where);
  if (act != "silu")
    Fail("{}: hidden_act '{}' is not supported (only silu)", where, act);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    std::string type = Optional<std::string>(rs, "rope_type", "", where);
    if (type.empty()) type = Optional<std::string>(rs, "type", "", where);
    if (type == "llama3") {
      c.rope_scaling.type = RopeScaling::Type::kLlama3;
      c.rope_scaling.factor =
          Require<double>(rs, "factor", where + ": rope_scaling");
      c.rope_scaling.low_freq_factor =
          Require<double>(rs, "low_freq_factor", where + ": rope_scaling");
      c.rope_scaling.high_freq_factor =
          Require<double>(rs, "high_freq_factor", where + ": rope_scaling");
      c.rope_scaling.original_max_position_embeddings = Require<double>(
          rs, "original_max_position_embeddings", where + ": rope_scaling");
    } else if (type != "default") {
      Fail("{}: rope_scaling type '{}' is not supported (only llama3)", where,
           type);
    }
  }
  c.tie_word_embeddings =
      Optional<bool>(j, "tie_word_embeddings", false, where);
  const bool attention_bias = Optional<bool>(j, "attention_bias", false, where);
  c.qkv_bias =
      info->qkv_bias || (info->honours_attention_bias && attention_bias);
  c.o_bias = info->honours_attention_bias && attention_bias;
  c.mlp_bias = info->honours_attention_bias &&
               Optional<bool>(j, "mlp_bias", false, where);
  c.layer_window.assign(c.num_layers, 0);
  const int64_t window = Optional<int64_t>(j, "sliding_window", 0, where);
  if (info->mistral_window && window > 0) {
    c.layer_window.assign(c.num_layers, window);
  }
  if (info->qwen2_window &&
      Optional<bool>(j, "use_sliding_window", false, where) && window > 0) {
    const int64_t first =
        Optional<int64_t>(j, "max_window_layers", c.num_layers, where);
    for (int64_t l = first; l < c.num_layers; ++l) c.layer_window[l] = window;
  }
  c.torch_dtype = Optional<std::string>(j, "torch_dtype", "", where);
  if (c.torch_dtype.empty())
    c.torch_dtype = Optional<std::string>(j, "dtype", "", where);
  c.bos_token_id = Optional<int32_t>(j, "bos_token_id", -1, where);
  if (j.contains("eos_token_id")) AddEos(j["eos_token_id"], c.eos_token_ids);
  c.synthetic = j.contains("bioquant_synthetic");
  if (j.contains("quantization_config"))
    c.quantization_config = j["quantization_config"];
  return c;
}

ModelConfig LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!IsDirectory(dir)) Fail("{}: model directory not found", dir);
  if (!FileExists(path)) Fail("{}: missing config.json", dir);
  ModelConfig c = ParseModelConfig(ReadJsonFile(path), path);
  const std::string gen = dir + "/generation_config.json";
  if (FileExists(gen)) {
    const auto g = ReadJsonFile(gen);
    if (g.is_object() && g.contains("eos_token_id")) {
      // generation_config's eos list is what generate() stops on in HF.
      std::vector<int32_t> eos;
      AddEos(g["eos_token_id"], eos);
      for (int32_t id : c.eos_token_ids) {
        if (std::find(eos.begin(), eos.end(), id) == eos.end())
          eos.push_back(id);
      }
      c.eos_token_ids = eos;
    }
    if (g.is_object() && c.bos_token_id < 0 && g.contains("bos_token_id") &&
        g["bos_token_id"].is_number_integer()) {
      c.bos_token_id = g["bos_token_id"].get<int32_t>();
    }
  }
  return c;
}

}  // namespace bioquant
