// The answer parsers on arbitrary model output, for every task, parse mode
// and NER style.
#include "fuzz_target.h"
#include "tasks/parse.h"
#include "tasks/task.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(answer_parser) {
  if (size < 1) return 0;
  const auto& tasks = AllTasks();
  const TaskInfo& task = tasks[data[0] % tasks.size()];
  const std::string out(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::map<std::string, std::string> options = {
      {"A", "Aspirin"},
      {"B", "Ibuprofen"},
      {"C", "Metformin"},
      {"D", "Insulin"},
      {"E", "None of the above"}};
  for (ParseMode mode : {ParseMode::kStrict, ParseMode::kFlexible}) {
    for (NerStyle style :
         {NerStyle::kAuto, NerStyle::kList, NerStyle::kInline}) {
      fuzz::Rejects(
          [&] { (void)ParseOutput(task, out, options, mode, style); });
    }
  }
  return 0;
}
