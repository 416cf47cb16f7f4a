// `bioquant score` input files (predictions made by any system): first byte
// picks the task, second the format, the rest is the file.
#include "fuzz_target.h"
#include "tasks/score_file.h"
#include "tasks/task.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(score_file) {
  if (size < 2) return 0;
  const auto& tasks = AllTasks();
  const TaskInfo& task = tasks[data[0] % tasks.size()];
  static const char* kFormats[] = {"tsv", "jsonl", "conll3", ""};
  ScoreOptions o;
  o.format = kFormats[data[1] % 4];
  o.bootstrap.resamples = 20;  // the metric code, not the bootstrap, is fuzzed
  const std::string path = fuzz::WriteScratch(
      o.format.empty() ? "pred.tsv" : "pred." + o.format,
      std::string_view(reinterpret_cast<const char*>(data + 2), size - 2));
  fuzz::Rejects([&] { (void)ScoreFile(task, path, o); });
  return 0;
}
