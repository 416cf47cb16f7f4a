// `bioquant quantize`: a full-precision HF checkpoint in, a bitsandbytes
// checkpoint out, laid out exactly as transformers' save_pretrained writes a
// model loaded with BitsAndBytesConfig (oracles/bnb/SPEC.md §3), so that
// transformers and bioquant's own loader both read it.
//
// Output directory:
//   config.json                     the input's, plus "quantization_config"
//   model.safetensors               one shard, or
//   model-0000k-of-0000N.safetensors + model.safetensors.index.json
//   tokenizer / generation files    copied unchanged
// Quantized: the 7 Linear layers of every decoder block (q/k/v/o, gate/up/
// down) that no --skip-modules entry names; everything else (embeddings,
// lm_head, norms, biases) is copied in the checkpoint's dtype.
//
// Streaming: one tensor is widened and quantized at a time; shards are
// written and dropped as they fill, so peak memory is about one shard of
// output (--max-shard-size) plus one tensor in f32, never the whole model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"

namespace bioquant {

struct QuantizeOptions {
  std::string model_dir;
  std::string out_dir;
  // name: "nf4", "fp4", "int8" or "llm-int8" (the last two write the same
  // int8 checkpoint); quant: blocksize / double quant; skip_modules.
  PrecisionSpec precision;
  uint64_t max_shard_bytes = 5'000'000'000;  // transformers' "5GB"
  // Splits each tensor's quantization across threads (same bytes); null =
  // the calling thread only.
  ThreadPool* pool = nullptr;
};

struct QuantizeSummary {
  std::string precision;            // written (a precision map's, if given)
  int64_t quantized_modules = 0;    // Linear layers written bnb-quantized
  int64_t skipped_modules = 0;      // decoder Linear layers kept in float
  int64_t tensors = 0;              // tensors written, all shards
  uint64_t total_bytes = 0;         // tensor data bytes (index "total_size")
  std::vector<std::string> shards;  // file names inside out_dir
  std::vector<std::string> copied;  // tokenizer/generation files copied
};

// Writes the checkpoint. Errors name the flag or file ("--out DIR: ...",
// "DIR/config.json: ...", "<file>: <tensor>: ...").
QuantizeSummary QuantizeCheckpoint(const QuantizeOptions& o);

// "5GB" -> 5e9, "500MB", "2GiB" -> 2^31, "1000" (bytes): the units
// transformers' convert_file_size_to_int accepts. Throws naming `flag`.
uint64_t ParseShardSize(const std::string& s, const char* flag);

// transformers' rule for llm_int8_skip_modules: module `name` (full dotted
// name, e.g. model.layers.0.mlp.down_proj) is kept in float when an entry
// equals its last component or the full name, or when the full name contains
// entry + ".". ("layers.1" skips layer 1 only, not layers 10-19.)
bool IsSkippedModule(const std::string& name,
                     const std::vector<std::string>& skip_modules);

}  // namespace bioquant
