// bioquant tasks: the task registry and what a data dir holds for each task.
#include <map>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "tasks/loaders.h"
#include "tasks/task.h"
#include "util/error.h"

namespace bioquant::cli {
namespace {

nlohmann::json SplitSummary(const TaskInfo& task,
                            const std::vector<Example>& examples) {
  nlohmann::json s = {{"examples", examples.size()}};
  if (task.type == TaskType::kNer) {
    int entities = 0;
    for (const auto& e : examples) entities += CountEntities(e);
    s["entities"] = entities;
    return s;
  }
  // Every label of the task appears, with 0 when unused, so tables line up.
  std::map<std::string, int> counts;
  for (const auto& l : task.labels) counts[l] = 0;
  int positives = 0;
  for (const auto& e : examples) {
    for (const auto& g : e.gold) ++counts[g];
    if (task.type == TaskType::kRelation && e.gold[0] != task.negative_label)
      ++positives;
  }
  if (task.type == TaskType::kRelation) s["positives"] = positives;
  nlohmann::json lc = nlohmann::json::object();
  for (const auto& l : task.labels) lc[l] = counts[l];
  s["label_counts"] = lc;
  return s;
}

int RunTasks(int argc, char** argv) {
  CLI::App app(
      "List the tasks, their labels and the splits found in a data dir",
      "tasks");
  std::string data_dir;
  std::vector<std::string> only;
  bool json = false;
  app.add_option("--data-dir", data_dir,
                 "folder laid out like examples/data (see its README)")
      ->required();
  app.add_option("--task", only, "only these task ids (repeatable)");
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  for (const auto& id : only) FindTask(id);  // unknown ids fail up front

  nlohmann::json tasks = nlohmann::json::array();
  for (const TaskInfo& t : AllTasks()) {
    if (!only.empty() &&
        std::find(only.begin(), only.end(), t.id) == only.end())
      continue;
    nlohmann::json splits = nlohmann::json::object();
    for (const auto& split : AvailableSplits(data_dir, t.id)) {
      splits[split] = SplitSummary(t, LoadSplit(data_dir, t.id, split));
    }
    nlohmann::json j = {{"id", t.id},
                        {"type", TaskTypeName(t.type)},
                        {"description", t.description},
                        {"labels", t.labels},
                        {"splits", splits}};
    if (!t.negative_label.empty()) j["negative_label"] = t.negative_label;
    tasks.push_back(j);
  }
  if (json) {
    PrintJson({{"data_dir", data_dir}, {"tasks", tasks}});
    return 0;
  }
  std::printf("%-13s %-10s %-15s %9s  %s\n", "task", "type", "split",
              "examples", "details");
  for (const auto& t : tasks) {
    if (t["splits"].empty()) {
      std::printf("%-13s %-10s %-15s %9s  %s\n",
                  t["id"].get<std::string>().c_str(),
                  t["type"].get<std::string>().c_str(), "-", "-", "no files");
    }
    for (const auto& [split, s] : t["splits"].items()) {
      std::string details;
      if (s.contains("entities"))
        details = fmt::format("{} entities", s["entities"].get<int>());
      if (s.contains("positives"))
        details = fmt::format("{} positive pairs", s["positives"].get<int>());
      if (t["type"] == "multilabel") {
        int assigned = 0;
        for (const auto& [label, n] : s["label_counts"].items())
          assigned += n.get<int>();
        details = fmt::format("{} labels assigned", assigned);
      }
      if (t["type"] == "qa") {
        for (const auto& [label, n] : s["label_counts"].items())
          details += fmt::format("{}{}={}", details.empty() ? "" : " ", label,
                                 n.get<int>());
      }
      std::printf("%-13s %-10s %-15s %9zu  %s\n",
                  t["id"].get<std::string>().c_str(),
                  t["type"].get<std::string>().c_str(), split.c_str(),
                  s["examples"].get<size_t>(), details.c_str());
    }
  }
  return 0;
}

}  // namespace

BIOQUANT_COMMAND("tasks", "list tasks, labels and the splits in a data dir",
                 RunTasks);

}  // namespace bioquant::cli
