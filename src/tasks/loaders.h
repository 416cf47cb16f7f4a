// Readers for the published file formats of the eight benchmarks (layout in
// examples/data/README.md). Every error names "file:line: what is wrong".
#pragma once

#include <string>
#include <vector>

#include "tasks/task.h"

namespace bioquant {

// Loads a whole file of the task's format. MedQA files are told apart by
// extension: ".jsonl" = 4-option JSON lines, anything else = 5-option TSV.
std::vector<Example> LoadTaskFile(const TaskInfo& task,
                                  const std::string& path);

// Where a split of a task lives under data_dir (the file need not exist).
std::string SplitPath(const std::string& data_dir, const TaskInfo& task,
                      const std::string& split);

// The few-shot similarity rank file (Chen et al. 2025 layout) of a task.
std::string RankFilePath(const std::string& data_dir, const TaskInfo& task);

// Number of gold entities of a NER example: strict IOB2, so one per "B".
int CountEntities(const Example& example);

// The gold mentions of a NER example, tokens joined by single spaces.
std::vector<std::string> GoldMentions(const Example& example);

}  // namespace bioquant
