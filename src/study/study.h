// Scoring and comparison of a run store (the repeatable step after `eval`).
//
// A cell is (precision, task, strategy, template). For each cell the stored
// raw outputs are re-parsed with the task's parser (so parser fixes apply to
// old runs); an example with self-consistency samples (sample > 0) gets the
// majority vote of its parsed samples (tasks/vote.h), otherwise its sample
// 0. Metrics and bootstrap CIs come from tasks/metrics.h.
//
// Comparisons: every cell against the same (task, strategy, template) cell of
// the reference precision = the most faithful precision present, in the order
// f32 > bf16 = f16 > int8 > llm-int8 > nf4 > fp4 (bf16 before f16 when both
// are present). Pairing is by example id over the examples both cells have.
//   delta          x - ref of the primary metric, paired-bootstrap CI
//   relative_drop  (ref - x) / ref, CI from the same paired resamples
//   criterion      the paper's "relative drop <= 5%":
//                    "supported"       CI upper bound of the drop <= 5%
//                    "not established" point estimate <= 5%, CI crosses 5%
//                    "violated"        point estimate > 5%
//                    "undefined"       reference metric is 0
//   mcnemar        exact test on per-example correctness (NER: a sentence is
//                  correct when its entity set matches gold exactly;
//                  multi-label: exact set match)
//   flip_rate      share of examples whose canonical prediction changed
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "study/store.h"

namespace bioquant {

// Fidelity rank of a precision name: 0 for f32, 1 bf16, 2 f16, 3 int8,
// 4 llm-int8, 5 nf4, 6 fp4; unknown names rank after all of these.
int PrecisionRank(const std::string& precision);

struct StudyOptions {
  uint64_t seed = 1;
  int resamples = 1000;  // 0: point estimates only (CIs equal the point)
  double max_relative_drop = 0.05;
  // Task data (the run's --data-dir): the train split gives the rarity
  // buckets (study/breakdowns.h), the scored split the RE sentences. ""
  // leaves the rare-concept breakdown out ("available": false).
  std::string data_dir;
  std::map<std::string, std::string> splits;  // task -> split ("test")
  // Answer flips listed per comparison in the JSON (all of them: 0 = none).
  size_t max_flips = SIZE_MAX;
};

// The scored run:
// {"store", "meta", "bootstrap": {seed, resamples, level},
//  "reference_precision", "precisions": [...] (by rank), "tasks": [...]
//  (registry order), "strategies": [...],
//  "cells": [{precision, task, strategy, template, type, compute, examples,
//     rows, primary_metric, metrics: {name: {value, ci_low, ci_high}},
//     unparsed, unparsed_rate, unparsed_reasons,
//     latency_ms: {mean, p50, p95} (per example, SC samples summed),
//     prefill_tokens_per_s, decode_tokens_per_s,
//     tokens_in: {mean, total}, tokens_out: {mean, total},
//     memory: {measured, source ("cpu-rss" | "gpu-allocated" |
//              "gpu-reserved" | "not measured": what peak_rss_bytes is),
//              load_ms, peak_rss_bytes, weights_bytes, kv_cache_bytes,
//              scratch_bytes, threads, batch} | null}],
//  "comparisons": [{precision, reference, task, strategy, template, metric,
//     paired_examples, reference_value, value, delta, delta_ci_low,
//     delta_ci_high, relative_drop, relative_drop_ci_low,
//     relative_drop_ci_high, criterion, mcnemar: {only_reference,
//     only_precision, p_value}, flip_rate, unparsed_rate_reference,
//     unparsed_rate,
//     flips: [{id, reference_answer, answer, gold}] (examples whose
//       canonical prediction changed; "" = unparsed),
//     hallucination (NER) and rare_concepts (NER, RE): paired breakdowns of
//       study/breakdowns.h}],
//  cells also carry "hallucination" (NER) and "rare_concepts" (NER, RE),
//  "summary": the object WriteSummary writes}
// Throws Error naming the store when a row names an unknown task or holds an
// unreadable gold.
nlohmann::json ScoreRun(const RunStore& store, const StudyOptions& opts);
inline nlohmann::json ScoreRun(const RunStore& store, uint64_t seed,
                               int resamples) {
  StudyOptions o;
  o.seed = seed;
  o.resamples = resamples;
  return ScoreRun(store, o);
}

// summary.json (read by `bioquant plan --run`):
// {"reference_precision": "bf16", "criterion": "relative drop <= 5%",
//  "precisions": [{"precision": "nf4", "relative_drop": mean over the
//     compared (task, strategy) cells, "ci_supports_within_5pct": every
//     compared cell "supported", "weights_bytes": max over measurements,
//     "peak_rss_bytes": max, "memory_source": what it measured (cells'
//     memory.source), "latency_ms_mean": mean over cells,
//     "main_metric_mean": mean primary metric over cells,
//     "tasks": {task: {"relative_drop", "criterion"}} (first strategy)}]}
// The reference precision has relative_drop 0 and ci_supports true.
// Top level also: "backend": "local" | "transformers" | "openai" (from the
// store's configuration), which `plan --run` needs to know what the
// measured memory is comparable with.
nlohmann::json SummaryFromScores(const nlohmann::json& scores);

// Writes scores["summary"] to path (pretty JSON).
void WriteSummary(const nlohmann::json& scores, const std::string& path);

}  // namespace bioquant
