// Hugging Face config.json (+ generation_config.json) for the decoder-only
// architectures bioquant runs. Architecture differences are data (STYLE
// habit 9): one ModelConfig drives one decoder.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bioquant {

struct RopeScaling {
  enum class Type { kNone, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // "LlamaForCausalLM", "MistralForCausalLM", ...
  std::string model_type;    // "llama", "mistral", "qwen2"
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // explicit, or hidden_size / num_heads
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 always; Llama with attention_bias
  bool o_bias = false;    // Llama with attention_bias
  bool mlp_bias = false;  // Llama with mlp_bias
  // Per layer: sliding attention window in tokens (a query at p sees keys
  // p-window+1..p), or 0 for full causal attention.
  std::vector<int64_t> layer_window;
  std::string torch_dtype;  // "bfloat16", "float16", "float32"
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;  // config.json and generation_config
  bool synthetic = false;              // written by `bioquant synth`
  nlohmann::json quantization_config;  // null when not a quantized checkpoint
  nlohmann::json raw;                  // the config.json as read

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Parameters of the decoder, from the shapes this config implies.
  int64_t ParameterCount() const;
};

// Parses config.json from a JSON object; `where` names the file in errors.
ModelConfig ParseModelConfig(const nlohmann::json& j, const std::string& where);
// Reads DIR/config.json and, if present, DIR/generation_config.json.
ModelConfig LoadModelConfig(const std::string& dir);

}  // namespace bioquant
