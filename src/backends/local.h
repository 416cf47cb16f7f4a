// LocalBackend: bioquant's own engine behind the Backend seam. One Engine per
// precision, loaded when the study first needs it; prompts are tokenized with
// the checkpoint's tokenizer and generated with Engine::GenerateBatch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "model/precision_map.h"
#include "quant/formats.h"

namespace bioquant {

struct LocalBackendOptions {
  std::string model_dir;
  // Every label the study will open: checked when the set is made, so an
  // unknown precision fails before any data is read.
  std::vector<std::string> precisions;
  QuantParams quant;
  std::vector<std::string> skip_modules;
  // The label "mixed" loads the model with this per-module precision map
  // (model/precision_map.h); empty: "mixed" is not a valid label.
  PrecisionMap precision_map;
  int threads = 0;  // 0 = all cores
  // The engine's prefix cache (engine/engine.h EngineOptions): prompts of a
  // task share instructions and templates. Results do not depend on it.
  uint64_t prefix_cache_bytes = 1ull << 30;
  // Quantized-weights cache (engine/weight_cache.h); "" = none.
  std::string weight_cache_dir;
};

// A checkpoint directory at the precisions of the options. Throws Error
// naming --model or --precisions when either is unusable.
std::unique_ptr<BackendSet> MakeLocalBackendSet(const LocalBackendOptions& o);

// Hash of config.json and every safetensors header of the checkpoint: the
// local set's fingerprint (what the run store has always recorded).
std::string ModelFingerprint(const std::string& model_dir);

}  // namespace bioquant
