// Synthetic checkpoints: random weights in a real HF layout with a small
// valid byte-level BPE tokenizer and a chat template, for tests, demos and
// benchmarks. Marked "bioquant_synthetic" in config.json: their outputs mean
// nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bioquant {

struct SynthOptions {
  std::string preset =
      "tiny";  // tiny | tinyllama-1.1b | llama3-8b | qwen2-tiny | mistral-tiny
  std::string out_dir;
  std::string dtype = "bf16";  // bf16 | f16 | f32
  uint64_t seed = 0;
  double init_std = 0.02;             // N(0, std) for matrices
  uint64_t shard_bytes = 4ull << 30;  // shard above this size
  // One decoder block whose seven Linear weights get deliberate outliers
  // (-1 = none): the input columns c with c % stride == 13 % stride,
  // stride = min(128, in_features / 2), are scaled by outlier_scale — the
  // outlier features LLM.int8 describes, in every 4-bit block of a row.
  // `bioquant analyze` must rank this block first.
  int64_t outlier_block = -1;
  double outlier_scale = 20.0;
};

std::vector<std::string> SynthPresets();
// Writes the checkpoint; returns the number of parameters.
int64_t WriteSyntheticCheckpoint(const SynthOptions& o);

}  // namespace bioquant
