// Answer parsers: map a model's raw output onto a task's label set (or, for
// NER, onto a list of entity mentions). A formatting quirk must not count as
// a medical error, so the flexible mode accepts what models really write
// (markdown, JSON followed by prose, chain-of-thought with a final answer
// line, wrong case, label synonyms); anything it cannot map unambiguously is
// "unparsed" with a reason, and the unparsed rate is reported next to every
// metric.
//
// Rules shared by all parsers (flexible mode):
//  1. A "<think>...</think>" block is dropped.
//  2. The answer segment is, in order of preference: the value of an
//     answer-like key of the first JSON object/array in the output
//     ("answer", "label(s)", "relation", "prediction", "entities", ...); the
//     text after the LAST answer marker ("Answer:", "Final answer:", "the
//     answer is", "Label:", "Relation:", "A:" at a line start, ...); the
//     whole output.
//  3. Labels are matched on lower-cased alphanumeric word sequences, so
//     "CPR:4", "cpr-4", "CPR 4" and "**cpr4**" are the same label, and
//     "DDI-mechanism", "DDI mechanism" and "mechanism" are too.
//  4. A segment that mentions several different labels is ambiguous unless
//     it starts with one of them ("DDI-effect. The mechanism is ..." is
//     DDI-effect); ambiguous answers are unparsed ("several answers").
//  5. A refusal ("I'm sorry, I cannot ...") without an answer is unparsed.
// Strict mode accepts only the bare label (case-insensitive, surrounding
// whitespace, quotes, markdown emphasis and trailing '.' removed).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace bioquant {

struct Parsed {
  bool ok = false;
  // Canonical labels (as spelled in the task's label set; one for RE/QA,
  // label-set order for multi-label) or, for NER, the entity mentions in
  // first-seen order.
  std::vector<std::string> labels;
  std::string reason;  // why unparsed; empty when ok
};

enum class ParseMode { kStrict, kFlexible };

// "strict" / "flexible"; throws Error naming the bad value.
ParseMode ParseModeFromName(const std::string& name);

// How an NER model was asked to answer: a list of mentions, or the sentence
// with mentions marked <e>...</e>; Chen et al.'s "@@...##" and HTML
// highlighting (<span ...>...</span>, <mark>, <b>, <strong>, <em>) are
// accepted too. kAuto picks inline when the output contains a marker pair.
enum class NerStyle { kAuto, kList, kInline };
NerStyle NerStyleFromName(const std::string& name);

// One label out of `labels` (RE, yes/no/maybe QA, any single-label task).
// `negative_label` (may be empty) also matches "none", "no relation", ...
Parsed ParseSingleLabel(const std::string& output,
                        const std::vector<std::string>& labels,
                        const std::string& negative_label, ParseMode mode);

// A subset of `labels`, returned in label-set order. A JSON object keyed by
// label names with 0/1 values (Chen et al. 2025's format) gives the labels
// marked 1, possibly none; otherwise at least one label must be named.
Parsed ParseMultiLabel(const std::string& output,
                       const std::vector<std::string>& labels, ParseMode mode);

// An option letter out of `options` (letter -> option text; the text may be
// empty when unknown). Accepts "(B)", "B)", "B.", "Answer: B", "option B",
// "the answer is B. Aspirin" and, when no letter is given, the text of
// exactly one option.
Parsed ParseChoice(const std::string& output,
                   const std::map<std::string, std::string>& options,
                   ParseMode mode);

// Entity mentions from an NER answer. "None"/"no entities"/"[]" parse to an
// empty list (ok); a refusal is unparsed.
Parsed ParseNerMentions(const std::string& output, NerStyle style,
                        ParseMode mode);

// Dispatches on the task type. `options` is used by letter-answer QA tasks
// (may be empty: the letters are then the task's labels, no option text).
Parsed ParseOutput(const TaskInfo& task, const std::string& output,
                   const std::map<std::string, std::string>& options,
                   ParseMode mode, NerStyle ner_style = NerStyle::kAuto);

// True for QA tasks answered by an option letter (MedQA), false for
// label-answered QA (PubMedQA).
bool IsLetterQa(const TaskInfo& task);

}  // namespace bioquant
