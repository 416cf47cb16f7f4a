// The one seam between the study (src/study) and whatever generates text.
//
// The study builds prompts, stores completions and scores them; a Backend
// turns prompts into completions. LocalBackend (backends/local.h) is
// bioquant's own engine; a remote backend speaks to a server. A study runs
// one Backend per precision label ("bf16", "nf4", or a deployment's label),
// all opened from one BackendSet, whose fingerprint the run store keeps.
//
// Prompts reach the model in one of two ways:
//   - rendered here: the study asks RenderChat for the exact text the model
//     sees (its chat template applied), or sends the plain prompt when the
//     model has no template, and puts that text in BackendRequest::text;
//   - rendered by the backend: when AppliesChatTemplate() is true (an
//     OpenAI-style chat server) the study sends BackendRequest::messages and
//     leaves text empty.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bioquant {

struct BackendRequest {
  // The conversation: [{"role": "system"|"user", "content": ...}, ...].
  // Always set; what a backend that applies its own template sends.
  nlohmann::json messages = nlohmann::json::array();
  // The prompt exactly as the model sees it (a rendered chat template or the
  // plain prompt text); empty when the backend applies its own template.
  std::string text;
  // Whether tokenizing `text` adds the tokenizer's special tokens (BOS):
  // true for plain text, false for a rendered template (it writes them).
  bool add_special_tokens = true;
  int max_new_tokens = 128;
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;
  uint64_t seed = 0;
  std::vector<std::string> stop;  // stop strings, cut from the text
};

struct BackendResult {
  std::string text;       // the completion (generated text only)
  std::string reasoning;  // a server's separate reasoning text, if any
  // "eos" | "stop" | "length" | ...; "prompt_too_long": the prompt (or,
  // for a server, prompt + max_tokens) does not fit the model's context and
  // nothing was generated.
  std::string finish_reason;
  int64_t tokens_in = 0;   // prompt tokens
  int64_t tokens_out = 0;  // generated tokens
  // What the request cost its caller, end to end. A backend that generates
  // a call's requests together reports the call's wall time divided by its
  // requests (the study's per-row latency).
  double latency_ms = 0;
  double prefill_ms = 0;  // time to the first generated token
  double decode_ms = 0;   // from the first generated token to the last
};

// Memory a backend measured, when it can (a remote server cannot).
struct BackendMemory {
  uint64_t weights_bytes = 0;
  uint64_t kv_cache_bytes = 0;
  uint64_t scratch_bytes = 0;
  // The peak: the process's resident set, or on a GPU what `source` says.
  uint64_t peak_rss_bytes = 0;
  // What the peak measured, a stable name written to the run store:
  // "cpu-rss" (peak resident set of the process that generates: bioquant
  // itself, or the transformers worker on the CPU), "gpu-allocated"
  // (torch.cuda.max_memory_allocated, the paper's figure), "gpu-reserved"
  // (torch.cuda.max_memory_reserved).
  std::string source = "cpu-rss";
};

// Text generation at one precision.
class Backend {
 public:
  virtual ~Backend() = default;

  // Renders `messages` with the model's chat template and a generation
  // prompt; `date` (YYYY-MM-DD) fixes strftime_now. Returns false, leaving
  // *out alone, when there is no template to render with (the model has none,
  // or the backend applies its own). Throws Error when the template rejects
  // the messages (e.g. one that forbids a system turn).
  virtual bool RenderChat(const nlohmann::json& messages,
                          const std::string& date, std::string* out) const = 0;
  // True when requests go out as messages and the backend applies the chat
  // template itself.
  virtual bool AppliesChatTemplate() const { return false; }

  // Called with (request index, result) as each request finishes, on the
  // thread that called Generate, so a caller can keep every result the
  // moment it exists.
  using OnResult = std::function<void(size_t, const BackendResult&)>;

  // Generates every request; results in request order. A result does not
  // depend on the other requests of the call. Throws Error when generation
  // cannot go on, after `on_result` has seen every request that did finish.
  virtual std::vector<BackendResult> Generate(
      const std::vector<BackendRequest>& requests,
      const OnResult& on_result = nullptr) = 0;

  // How results are computed, stored with every row (STYLE habit 7): the
  // local engine's "f32", "w8a32", "llm-int8", "w4a32"; a server's label.
  virtual std::string Compute() const = 0;
  // Memory as measured so far; nullopt when the backend cannot measure it.
  virtual std::optional<BackendMemory> Memory() const { return std::nullopt; }
  virtual int threads() const { return 0; }  // 0 = not known
};

// What a study runs against: one model (or one deployment of it) at several
// precision labels.
class BackendSet {
 public:
  virtual ~BackendSet() = default;

  // Identity of what generates, kept by the run store: a store made for
  // another identity is refused. Called once, before the store is opened.
  virtual std::string Fingerprint() = 0;
  // Settings that change completions and so must match for a store to be
  // resumed (merged into the study's configuration).
  virtual nlohmann::json Config() const = 0;
  // What RUN/manifest.json records of the backend: "model" (what was run)
  // and "run" (extra settings such as threads, merged into the run object).
  virtual nlohmann::json Manifest() const = 0;
  // The backend of one label, made ready (a model loaded, a server reached).
  // Called only when that label has work left, once per label.
  virtual std::unique_ptr<Backend> Open(const std::string& label) = 0;
};

}  // namespace bioquant
