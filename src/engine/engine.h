// Engine: a model loaded at one precision, with its tokenizer. The local
// backend (backends/local.h) and the CLI talk only to this API (generate,
// logits, memory, timings).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/decoder.h"
#include "model/sampler.h"
#include "model/weights.h"
#include "util/thread_pool.h"

namespace bioquant {

class Tokenizer;
class PrefixCache;
class DecodeBatch;

struct EngineOptions {
  std::string model_dir;
  PrecisionSpec precision;
  int threads = 0;  // 0 = all cores
  // Activation precision of prefill matmuls (kernels/matmul.h): f32 keeps
  // the goldens; bf16 is the opt-in speed mode.
  ComputeType compute = ComputeType::kF32;
  // Budget of the prefix cache (KV of recent prompts, reused by prompts that
  // start the same way; see engine/prefix_cache.h), counted in the ledger's
  // kv_cache_bytes. 0 (the default: a one-shot generate gains nothing from
  // it) keeps none. The study runner turns it on. Never at llm-int8 (see
  // Engine::Load). Identical prompts within one GenerateBatch share their
  // prefill either way: exact, and nothing is kept.
  uint64_t prefix_cache_bytes = 0;
  // Generation stays inside the model's context (max_position_embeddings):
  // a prompt longer than it is an error, and max_new_tokens is cut so that
  // prompt + output fit (GenerateResult::context_limited). true lifts both
  // (positions past the context are what the model never saw in training).
  bool allow_context_overflow = false;
  // Quantized-weights cache directory (engine/weight_cache.h); "" = none
  // (the library default: the CLI passes the user's cache directory).
  std::string weight_cache_dir;
};

struct GenerateRequest {
  std::vector<int32_t> prompt_ids;
  int max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (cut from the text)
  bool ignore_eos = false;
  // Called with each new piece of text (UTF-8 complete); return false to stop.
  std::function<bool(const std::string&)> on_text;
};

// Per request. In a batch, prefill_ms is the request's own prefill (prompts
// are prefilled one after another) and decode_ms the wall time of the shared
// decode loop from its start until this request finished: the time its user
// waited, not a share of the work.
struct Timings {
  double load_ms = 0;
  double prefill_ms = 0;
  double decode_ms = 0;
  int64_t prefill_tokens = 0;  // prompt tokens computed
  int64_t reused_tokens = 0;   // prompt positions whose KV was reused
  int64_t decode_tokens = 0;   // forward steps after the prefill
  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;
};

struct GenerateResult {
  std::vector<int32_t>
      output_ids;    // generated only (an EOS that ended it included)
  std::string text;  // generated only, special tokens skipped
  // "eos", "stop", "length", "callback" (on_text returned false),
  // "cancelled" (DecodeBatch::Cancel)
  std::string finish_reason;
  // max_new_tokens was cut so that prompt + output fit the model's context
  // (finish_reason "length" then means the context was reached).
  bool context_limited = false;
  Timings timings;
};

struct MemoryLedger {
  uint64_t weights_bytes = 0;           // every weight, exact (formats.h)
  uint64_t weights_resident_bytes = 0;  // converted/quantized, owned
  uint64_t weights_mapped_bytes = 0;    // used in place from the mmap
  // Every KV cache the engine holds: the sequences' (kept between calls) and
  // the prefix cache, of which prefix_cache_bytes.
  uint64_t kv_cache_bytes = 0;
  uint64_t prefix_cache_bytes = 0;
  uint64_t scratch_bytes = 0;
  uint64_t peak_rss_bytes = 0;
  nlohmann::json ToJson() const;
};

class Engine {
 public:
  static std::unique_ptr<Engine> Load(const EngineOptions& opts);
  ~Engine();

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return weights_; }
  // Null when the model directory has no tokenizer files.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const Tokenizer& RequireTokenizer() const;
  int threads() const { return pool_->size(); }
  double load_ms() const { return load_ms_; }
  // "off" (no cache for this load), "hit" (mapped from the cache) or
  // "built" (quantized and written to it now).
  const std::string& weight_cache_status() const { return weight_cache_; }
  // The end-of-sequence ids generation stops on (config, generation_config,
  // tokenizer).
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

  // Renders messages with the checkpoint's chat template (or `template_text`
  // when non-empty). Returns false (and leaves *out alone) when there is no
  // template. `date` fixes strftime_now (YYYY-MM-DD, "" = today).
  bool RenderChat(const nlohmann::json& messages, bool add_generation_prompt,
                  const std::string& date, const std::string& template_text,
                  std::string* out) const;

  // One request: GenerateBatch of one.
  GenerateResult Generate(const GenerateRequest& req);
  // Checks a request before it is generated: a non-empty prompt that fits
  // the model's context (unless allow_context_overflow) and a non-negative
  // token limit. Throws Error (`which` names the request).
  void CheckRequest(const GenerateRequest& req,
                    const std::string& which = "") const;
  // Whether a prompt of n tokens may be generated from (see CheckRequest).
  bool PromptFits(int64_t n) const;
  // Several independent requests, each with its own KV cache, sampler
  // (seed), stop strings, eos handling, token limit and callback; results in
  // request order. Prompts are prefilled one at a time (reusing cached
  // prefixes; identical prompts in the batch are computed once), then all
  // live sequences decode together, one token each per forward call in
  // groups of at most Decoder::kMaxBatchRows, dropping out as they finish:
  // a DecodeBatch run to completion. Each result is bit-identical to what
  // the request gives alone.
  std::vector<GenerateResult> GenerateBatch(
      const std::vector<GenerateRequest>& reqs);
  // Logits at every position [ids.size(), vocab], feeding `chunk` tokens per
  // forward call (0 = all at once).
  std::vector<float> Logits(const std::vector<int32_t>& ids, int64_t chunk = 0);
  MemoryLedger Memory() const;
  // The model's context: positions a sequence may hold
  // (max_position_embeddings; 0 when the config does not say).
  int64_t context_length() const { return cfg_.max_position_embeddings; }

  // Low-level access for benchmarks: append ids to the engine's KV cache
  // (logits of the last position into `last_logits` when non-null).
  void ResetCache() { cache_.Clear(); }
  void Forward(const int32_t* ids, int64_t n, float* last_logits);
  // Bytes of weights read to decode one token: every Linear and lm_head
  // (the embedding row is negligible).
  uint64_t WeightBytesPerToken() const;

 private:
  friend class DecodeBatch;
  Engine() = default;
  // KV caches for generation, kept between calls (their memory is reused).
  KVCache* AcquireCache();
  void ReleaseCache(KVCache* cache);

  ModelConfig cfg_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Decoder> decoder_;
  KVCache cache_;  // Logits and the low-level Forward
  std::vector<std::unique_ptr<KVCache>> seq_caches_;  // every one made
  std::vector<KVCache*> free_caches_;                 // of those, unused
  std::unique_ptr<PrefixCache> prefix_cache_;  // null: no cross-request reuse
  std::vector<int32_t> eos_ids_;
  bool allow_context_overflow_ = false;
  double load_ms_ = 0;
  std::string weight_cache_ = "off";
};

// Continuous batching: sequences join between steps (Add: prefill) and leave
// when they finish or are cancelled; each Step samples one token for every
// live sequence and computes the next forward step of those that go on, all
// together (Decoder::kMaxBatchRows rows per forward call). GenerateBatch is
// one DecodeBatch run to completion; `bioquant serve` keeps one running.
// Each sequence's result is bit-identical to what its request gives alone
// (the kernels' rows do not depend on each other). Not thread-safe: one
// thread drives an engine and its batches.
class DecodeBatch {
 public:
  explicit DecodeBatch(Engine& engine);
  ~DecodeBatch();
  DecodeBatch(const DecodeBatch&) = delete;
  DecodeBatch& operator=(const DecodeBatch&) = delete;

  // Prefills the request's prompt — from a cached prefix when the engine
  // has a prefix cache, or from an identical prompt added since the last
  // Step — and returns the sequence's id (0, 1, ... in order of Add). Throws
  // Error (Engine::CheckRequest) without adding anything.
  int Add(GenerateRequest req);
  // One token for every live sequence; see above. Finished sequences move
  // to TakeFinished.
  void Step();
  // Ends a live sequence now with finish_reason "cancelled" (a client that
  // went away); unknown or finished ids are ignored.
  void Cancel(int id);
  // Sequences added and not yet finished.
  int live() const { return static_cast<int>(seqs_.size()); }
  // Sequences finished since the last call, in the order they finished.
  std::vector<std::pair<int, GenerateResult>> TakeFinished();

 private:
  struct Seq;
  void Finish(Seq& s, double decode_ms);

  Engine& e_;
  std::vector<std::unique_ptr<Seq>> seqs_;  // live, in order of Add
  std::vector<std::pair<int, GenerateResult>> finished_;
  std::vector<float> group_logits_;  // [kMaxBatchRows, vocab] f32
  int next_id_ = 0;
};

}  // namespace bioquant
