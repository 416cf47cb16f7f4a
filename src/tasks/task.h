// Task registry: the eight biomedical benchmarks (plus the 5-option MedQA
// variant), their label sets, and the loaders for their published file
// formats (see examples/data/README.md for the data-dir layout).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace bioquant {

enum class TaskType { kNer, kRelation, kMultiLabel, kQa };

// Stable lower-case name written to JSON and stores: "ner", "re", "multilabel",
// "qa".
const char* TaskTypeName(TaskType type);

struct TaskInfo {
  std::string id;
  TaskType type;
  // NER: the entity type name, e.g. {"Chemical"}; RE: all classes including
  // the negative one; multi-label: the label set; QA: {"A","B","C","D"} (or
  // A..E) or {"yes","no","maybe"}.
  std::vector<std::string> labels;
  std::string negative_label;  // RE only ("false", "DDI-false").
  std::string description;
};

// bc5cdr_chem, ncbi_disease, chemprot, ddi2013, hoc, litcovid, medqa,
// medqa_5opt, pubmedqa — in that order.
const std::vector<TaskInfo>& AllTasks();

// Throws Error("unknown task 'x' (known: ...)").
const TaskInfo& FindTask(const std::string& id);

struct Example {
  std::string id;
  std::string text;  // NER: tokens joined by spaces; RE: masked sentence;
                     // multi-label: abstract; QA: question.
  std::vector<std::string> tokens;  // NER only.
  std::vector<std::string> tags;    // NER gold IOB2 ("B", "I", "O").
  std::vector<std::string> gold;    // RE/QA: one label; multi-label: labels.
  std::map<std::string, std::string> options;  // QA: letter -> option text.
  std::string context;  // PubMedQA: the abstract's paragraphs joined by "\n".
};

// Loads one split ("test", "test_sample200", "train", "dev") of a task from a
// folder laid out like shared/data/bionlp. Malformed input throws Error
// "file:line: what is wrong".
std::vector<Example> LoadSplit(const std::string& data_dir,
                               const std::string& task_id,
                               const std::string& split);

// The splits whose files exist under data_dir, in the order test,
// test_sample200, train, dev.
std::vector<std::string> AvailableSplits(const std::string& data_dir,
                                         const std::string& task_id);

}  // namespace bioquant
