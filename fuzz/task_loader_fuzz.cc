// The eight benchmarks' file formats (BIO/CoNLL, TSV, HoC/LitCovid,
// MedQA JSONL and TSV, PubMedQA JSON): the first byte picks the task, the
// rest is the file.
#include "fuzz_target.h"
#include "tasks/loaders.h"
#include "tasks/task.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(task_loader) {
  if (size < 1) return 0;
  const auto& tasks = AllTasks();
  const TaskInfo& task = tasks[data[0] % tasks.size()];
  const std::string split = SplitPath("d", task, "test");
  const std::string base = split.substr(split.find_last_of('/') + 1);
  const std::string path = fuzz::WriteScratch(
      base,
      std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  fuzz::Rejects([&] {
    for (const Example& ex : LoadTaskFile(task, path)) {
      if (task.type == TaskType::kNer) {
        (void)CountEntities(ex);
        (void)GoldMentions(ex);
      }
    }
  });
  return 0;
}
