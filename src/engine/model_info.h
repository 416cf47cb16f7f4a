// What the layers above the engine (the planner, the study's backends) may
// read of a checkpoint without loading its weights: its configuration — the
// architecture and shapes as data (ModelConfig, part of the engine's API) —
// and the facts its safetensors headers state. Cheap: no tensor is read.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"
#include "quant/formats.h"

namespace bioquant {

struct ModelInfo {
  ModelConfig config;
  // Storage format of model.embed_tokens.weight in the files (f32, bf16 or
  // f16) when has_weights; otherwise the format torch_dtype names.
  WeightFormat file_format = WeightFormat::kBF16;
  // The safetensors headers were read: a float checkpoint whose files are at
  // hand. A pre-quantized bitsandbytes checkpoint (quantization_config) and a
  // bare config.json report their config only.
  bool has_weights = false;
  uint64_t checkpoint_bytes = 0;  // sum of the safetensors files, when read
  bool has_tokenizer = false;     // tokenizer.json or tokenizer.model
};

// `path` is a checkpoint directory or a config.json file. Throws Error naming
// `flag` (and the file) when it is missing, unreadable or malformed.
ModelInfo ReadModelInfo(const std::string& path,
                        const std::string& flag = "--model");

// The storage format a torch_dtype name denotes ("bfloat16" -> bf16,
// "float16" -> f16, anything else f32), and back.
WeightFormat FormatOfTorchDtype(const std::string& torch_dtype);
const char* TorchDtypeOfFormat(WeightFormat f);

}  // namespace bioquant
