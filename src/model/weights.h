// The decoder's weights by role, loaded from a TensorStore by HF tensor name
// and stored at the requested precision. Linear weights either point into
// the mmap (when the file dtype is the storage format) or into owned buffers
// (converted or quantized at load time, one tensor at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/precision_map.h"
#include "quant/formats.h"
#include "util/thread_pool.h"

namespace bioquant {

// What the user asked for with --precision (a user contract, see README).
struct PrecisionSpec {
  std::string name;  // "f32" "bf16" "f16" "int8" "llm-int8" "nf4" "fp4"; "" =
                     // checkpoint dtype
  QuantParams quant;
  std::vector<std::string> skip_modules;  // like llm_int8_skip_modules
  float llm_int8_threshold = 6.0f;
  // Per-module overrides (model/precision_map.h): a Linear a rule matches is
  // stored in that rule's precision, the others in `name`'s. skip_modules
  // still wins over both.
  PrecisionMap module_map;
};

// A Linear layer: W [out, in] in its storage format plus optional f32 bias.
struct Linear {
  std::string
      name;  // HF name without ".weight", e.g. model.layers.0.mlp.up_proj
  WeightMatrix w;
  std::vector<float> bias;              // [out] or empty
  std::shared_ptr<const void> storage;  // keeps owned buffers alive
  uint64_t resident_bytes = 0;          // owned bytes (0 when in the mmap)
  uint64_t bytes = 0;                   // PackedBytes of w
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden] input_layernorm
  std::vector<float> mlp_norm;   // [hidden] post_attention_layernorm
  Linear q, k, v, o;  // [q_dim, hidden] [kv_dim, hidden] x2, [hidden, q_dim]
  Linear gate, up, down;  // [inter, hidden] x2, [hidden, inter]
};

struct ModelWeights {
  // Token embeddings [vocab, hidden] in their storage format (rows looked up
  // and widened to f32 on demand).
  WeightMatrix embed;
  std::shared_ptr<const void> embed_storage;
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  Linear lm_head;                 // [vocab, hidden]; shares embed when tied
  // Resolved storage format of the decoder's Linear layers.
  WeightFormat linear_format = WeightFormat::kF32;
  std::string precision;  // resolved name, e.g. "nf4"; "mixed" with a map
  bool llm_int8 = false;
  float llm_int8_threshold = 6.0f;
  uint64_t weights_bytes = 0;   // every weight the model uses, exact
  uint64_t resident_bytes = 0;  // of those, bytes in owned memory (not mmap)
  std::unique_ptr<TensorStore> store;  // the mmap, when anything points in it
};

// Loads and converts/quantizes (quantization split across `pool` when
// given; same bytes). Throws Error naming the tensor and file.
ModelWeights LoadWeights(const std::string& dir, const ModelConfig& cfg,
                         const PrecisionSpec& precision,
                         ThreadPool* pool = nullptr);

// Copies one row of a float-format matrix (f32/bf16/f16) to f32.
void RowToF32(const WeightMatrix& w, int64_t row, float* out);

}  // namespace bioquant
