// `bioquant score`: metrics of a predictions file made by any system.
//
// Formats (inferred from the extension when not given: .bio/.conll/.conll3/
// .iob -> conll3, .tsv/.txt -> tsv, .jsonl -> jsonl):
//  conll3  token<TAB>gold<TAB>pred per line, IOB2 tags with or without a
//          type suffix; blank lines between sentences are optional. Scoring
//          units for the bootstrap are sentences; a file without blank lines
//          is cut after each ".", "!" or "?" token tagged O in both columns
//          (a cut between two O tags changes no entity, so point estimates
//          are unaffected).
//  tsv     header row (names matched case-insensitively), quoted fields may
//          span lines ("" is a quote); gold column of labels (multi-label:
//          ';'-separated), pred column of raw model outputs. NER: a
//          "tokens" column (space-separated) and space-separated gold tags.
//  jsonl   one object per line: {"id", "gold": label | [labels] | [IOB2
//          tags], "pred": raw model output, "tokens": [...] (NER),
//          "options": {"A": text, ...} (MedQA, optional)}.
// Predictions in tsv/jsonl are raw outputs and always go through the task's
// parser (parse.h); NER mentions are mapped onto the tokens (ner_align.h).
// Malformed input throws Error "file:line: what is wrong".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tasks/metrics.h"
#include "tasks/parse.h"
#include "tasks/task.h"

namespace bioquant {

struct ScoreOptions {
  std::string format;    // "conll3", "tsv", "jsonl"; empty: from extension
  std::string gold_col;  // tsv only; empty: gold, label, labels, answer, ...
  std::string pred_col;  // tsv only; empty: pred, prediction, predicted, ...
  BootstrapOptions bootstrap;
  ParseMode parse_mode = ParseMode::kFlexible;
  NerStyle ner_style = NerStyle::kAuto;
};

// The object `bioquant score --json` prints: task, file, format, examples,
// units, unparsed, unparsed_rate, unparsed_reasons, primary_metric,
// metrics{name: {value, ci_low, ci_high, counts}}, per_class (class tasks),
// bootstrap{seed, resamples, level, method}.
nlohmann::json ScoreFile(const TaskInfo& task, const std::string& path,
                         const ScoreOptions& opts);

// Human-readable summary of a ScoreFile result (a few lines).
std::string FormatScoreText(const nlohmann::json& result);

}  // namespace bioquant
