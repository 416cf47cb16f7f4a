// The study runner behind `bioquant eval`: every precision's backend is opened
// once and runs every task x strategy on it; each completion is stored as it
// finishes (RUN/store.sqlite), so a killed run resumes where it stopped and
// ends with the same store as an uninterrupted one. Text comes only through
// the Backend seam (backends/backend.h): the local engine or a server.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace bioquant {

struct EvalOptions {
  // Backend labels, each opened from the BackendSet: {"bf16", "int8", "nf4"}.
  std::vector<std::string> precisions;
  std::vector<std::string> tasks;  // task ids
  std::vector<std::string>
      strategies;  // e.g. {"zero-shot", "few-shot:5", "cot", "sc:5"}
  std::string split = "test";
  std::string data_dir;
  std::string out_dir;
  int64_t limit = 0;  // first N examples of the split (0 = all)
  // Examples generated together (one Backend::Generate call); the
  // self-consistency samples of one example always form one call of their
  // own. Results do not depend on it (tested); rows are stored after each
  // call, so a kill loses at most one call's rows.
  int batch = 4;
  uint64_t seed = 0;
  int max_new_tokens = 128;      // direct answers
  int max_new_tokens_cot = 384;  // chain-of-thought and self-consistency
  bool chat = true;           // use the model's chat template when it has one
  std::string date;           // strftime_now in templates (default: fixed)
  std::string template_file;  // user prompt template ({Input} slot)
  std::string
      demos_file;  // few-shot demonstrations for tasks without train/dev
  std::string ner_style = "list";
  // Memory `bioquant plan` predicts for the backends, kept in the store's
  // meta for the report (eval --model-config with a remote backend); null:
  // none.
  nlohmann::json predicted_memory;
};

// Progress events for the CLI's bar / plain lines.
struct EvalProgress {
  std::string precision, task, strategy;
  int64_t done = 0;     // completions finished in this call (not resumed ones)
  int64_t skipped = 0;  // already in the store
  int64_t total = 0;    // completions this call has to consider
  double elapsed_s = 0;
};

// The configuration that must match for a store to be resumed (everything
// that changes what a completion is): the study's settings merged with the
// backends' (BackendSet::Config). Threads and batch are not in it: they do
// not change results (tested).
nlohmann::json EvalConfigJson(const EvalOptions& o,
                              const nlohmann::json& backend_config);

struct EvalSummary {
  int64_t generated = 0;
  int64_t resumed = 0;
  bool interrupted = false;
  std::vector<std::string> warnings;  // e.g. a task with no demonstrations
};

// Runs the study against `backends`, one Backend per label of o.precisions.
// `stop` is polled between batches (Ctrl-C); `progress` is called after each
// example. Throws Error on bad input before touching the store.
EvalSummary RunEval(const EvalOptions& o, BackendSet& backends,
                    const std::atomic<bool>& stop,
                    const std::function<void(const EvalProgress&)>& progress);

}  // namespace bioquant
