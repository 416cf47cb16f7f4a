// The one decoder for Llama, Mistral and Qwen2 (differences are in
// ModelConfig). Reads like llama2.c's forward(): embeddings, then per layer
// RMSNorm -> q/k/v -> RoPE -> causal GQA attention (optionally windowed) ->
// o_proj -> residual -> RMSNorm -> SwiGLU MLP -> residual; final norm; lm_head.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kernels/matmul.h"
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
  // Makes this cache (same layers and kv_dim) hold exactly the first n
  // positions of src: a sequence that starts with the same n tokens.
  void AssignPrefix(const KVCache& src, int64_t n);
  uint64_t Bytes() const { return 2ull * num_layers * capacity * kv_dim * 4; }
};

// One sequence's share of a multi-sequence Forward call: the next n tokens
// of the sequence whose keys and values are in *cache (positions continue at
// cache->length).
struct SeqSlice {
  KVCache* cache = nullptr;
  int64_t n = 0;  // >= 1
};

enum class LogitsMode {
  kLast,  // [num_seqs, vocab]: the last position of each sequence
  kAll,   // [total tokens, vocab]: every position, in token order
};

class Decoder {
 public:
  // Rows (tokens of all sequences) one call may hold and still give every
  // row the bits it would get alone: MatMul's per-output arithmetic does not
  // depend on m for m <= 8 (kernels/matmul.h). Batched decode (one token per
  // sequence) therefore calls Forward with at most this many sequences.
  static constexpr int64_t kMaxBatchRows = 8;

  Decoder(const ModelConfig& cfg, const ModelWeights& w, ThreadPool* pool,
          ComputeType compute = ComputeType::kF32);
  ComputeType compute() const { return compute_; }

  // Several sequences in one call: tokens are the slices' tokens
  // concatenated in slice order. Linear layers run once over all rows; RoPE
  // uses each row's own position, keys/values go to each slice's own cache
  // and each row attends over its own cache only, so a row's result never
  // depends on the other sequences in the call (up to kMaxBatchRows rows;
  // LLM.int8 quantizes activations per sequence for the same reason). Every
  // slice needs n >= 1 and its own cache. If `logits` is non-null it
  // receives the rows `mode` names.
  void Forward(const int32_t* tokens, std::span<const SeqSlice> seqs,
               float* logits, LogitsMode mode);
  // One sequence: feeds tokens[0..n) at positions cache.length.. and appends
  // to the cache. If `logits` is non-null it receives [n, vocab]
  // (all_logits) or [vocab] for the last position only.
  void Forward(const int32_t* tokens, int64_t n, KVCache& cache, float* logits,
               bool all_logits);

  // Called with every Linear's input rows before it runs (x: [n, l.w.cols]
  // f32): how `bioquant analyze` sees activations. Empty = none.
  using LinearHook =
      std::function<void(const bioquant::Linear& l, const float* x, int64_t n)>;
  void SetLinearHook(LinearHook hook) { linear_hook_ = std::move(hook); }

  KVCache NewCache() const;
  // Bytes of the scratch buffers currently allocated.
  uint64_t ScratchBytes() const;

 private:
  // Where row r of the current call belongs: its sequence's cache and its
  // position in that sequence.
  struct RowInfo {
    const KVCache* cache;
    int64_t pos;
  };

  void EnsureScratch(int64_t n);
  void Attention(int64_t layer, int64_t n);
  // y = x W^T (+ bias) for all rows of the call; `seqs` gives the row ranges
  // LLM.int8 quantizes separately.
  void Linear(const bioquant::Linear& l, const float* x,
              std::span<const SeqSlice> seqs, int64_t n, float* y);
  void Rope(float* x, int64_t n, int64_t heads, int64_t pos0) const;

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  ThreadPool* pool_;
  ComputeType compute_;
  // RoPE inverse frequencies [head_dim / 2], after llama3 scaling.
  std::vector<double> inv_freq_;
  // Scratch, sized for the largest n seen ([n, dim] f32 each).
  int64_t scratch_n_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, att_, gate_, up_, hidden_;
  // Attention jobs of the current layer: rows row0 + [t0, t1) of one
  // sequence's run, KV head g (kept to avoid a per-layer allocation).
  struct AttnJob {
    int64_t row0, t0, t1, g;
  };
  std::vector<AttnJob> attn_jobs_;
  std::vector<RowInfo> rows_;  // [n] of the current call
  LinearHook linear_hook_;
};

}  // namespace bioquant
