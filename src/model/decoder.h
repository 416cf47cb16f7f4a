// The one decoder for Llama, Mistral and Qwen2 (differences are in
// ModelConfig). Reads like llama2.c's forward(): embeddings, then per layer
// RMSNorm -> q/k/v -> RoPE -> causal GQA attention (optionally windowed) ->
// o_proj -> residual -> RMSNorm -> SwiGLU MLP -> residual; final norm; lm_head.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "util/thread_pool.h"

namespace bioquant {

// Keys (after RoPE) and values of one sequence.
struct KVCache {
  int64_t num_layers = 0, kv_dim = 0;
  int64_t length = 0;    // positions filled
  int64_t capacity = 0;  // positions allocated
  // [num_layers][capacity, kv_dim] f32 each.
  std::vector<std::vector<float>> k, v;

  void Init(int64_t layers, int64_t dim);
  void Reserve(int64_t positions);
  void Clear() { length = 0; }
  // Keeps the first n positions (prefix reuse).
  void Truncate(int64_t n) { length = std::min(length, n); }
  uint64_t Bytes() const { return 2ull * num_layers * capacity * kv_dim * 4; }
};

class Decoder {
 public:
  Decoder(const ModelConfig& cfg, const ModelWeights& w, ThreadPool* pool);

  // Feeds tokens[0..n) at positions cache.length.. and appends to the cache.
  // If `logits` is non-null it receives [n, vocab] (all_logits) or [vocab]
  // for the last position only.
  void Forward(const int32_t* tokens, int64_t n, KVCache& cache, float* logits,
               bool all_logits);

  KVCache NewCache() const;
  // Bytes of the scratch buffers currently allocated.
  uint64_t ScratchBytes() const;

 private:
  void EnsureScratch(int64_t n);
  void Attention(int64_t layer, int64_t n, KVCache& cache);
  void Linear(const bioquant::Linear& l, const float* x, int64_t n, float* y);
  void Rope(float* x, int64_t n, int64_t heads, int64_t pos0) const;

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  ThreadPool* pool_;
  // RoPE inverse frequencies [head_dim / 2], after llama3 scaling.
  std::vector<double> inv_freq_;
  // Scratch, sized for the largest n seen ([n, dim] f32 each).
  int64_t scratch_n_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, att_, gate_, up_, hidden_;
  std::vector<std::vector<float>> scores_;  // per thread [context]
};

}  // namespace bioquant
