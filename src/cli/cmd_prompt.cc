// bioquant prompt: the exact prompt (plain text and chat form) that an
// evaluation would send for one example.
#include "cli/cli_util.h"
#include "cli/command.h"
#include "tasks/loaders.h"
#include "tasks/prompt.h"
#include "tasks/strategy.h"
#include "tasks/task.h"
#include "util/error.h"

namespace bioquant::cli {
namespace {

int RunPrompt(int argc, char** argv) {
  CLI::App app("Show the exact prompt for one example of a task", "prompt");
  std::string task_id, strategy_text, data_dir,
      split = "test", template_file, demos_file, rank_file, ner_style = "list";
  int k = 0;
  size_t index = 0;
  uint64_t seed = 0;
  bool json = false;
  app.add_option("--task", task_id, "task id (see bioquant tasks)")->required();
  app.add_option("--strategy", strategy_text,
                 "zero-shot | few-shot:K[:random|bm25|rank] | cot | sc:N[:T]")
      ->required();
  app.add_option("--k", k, "number of few-shot demonstrations (overrides K)");
  app.add_option("--index", index,
                 "0-based position of the example in the split")
      ->required();
  app.add_option("--data-dir", data_dir, "folder laid out like examples/data")
      ->required();
  app.add_option("--split", split, "test | test_sample200 | train | dev")
      ->default_val("test");
  app.add_option("--seed", seed, "seed for random demos and sample seeds")
      ->default_val(0);
  app.add_option(
      "--template", template_file,
      "template file with an {Input} slot instead of the built-in one");
  app.add_option("--demos", demos_file,
                 "file in the task's format to draw demonstrations from");
  app.add_option("--rank", rank_file,
                 "similarity rank file for few-shot:K:rank (default: the "
                 "task's fewshot_similarity_rank*.json)");
  app.add_option("--ner-style", ner_style, "NER answer style: list | inline")
      ->default_val("list");
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;

  const TaskInfo& task = FindTask(task_id);
  if (app.count("--k")) {
    if (k <= 0) Fail("--k must be positive (got {})", k);
    if (strategy_text == "few-shot") {
      strategy_text += ":" + std::to_string(k);
    } else if (strategy_text.rfind("few-shot:", 0) != 0) {
      Fail("--k applies to few-shot strategies, not '{}'", strategy_text);
    }
  }
  StrategySpec spec = ParseStrategy(strategy_text);
  if (app.count("--k")) spec.k = k;
  spec.ner_style = ner_style;

  const std::vector<Example> examples = LoadSplit(data_dir, task.id, split);
  if (index >= examples.size()) {
    Fail("--index {} is out of range: split {} of task {} has {} examples",
         index, split, task.id, examples.size());
  }
  const Example& ex = examples[index];

  std::vector<Example> demos;
  std::string demo_source;
  if (spec.kind == StrategyKind::kFewShot) {
    const DemoPool pool = LoadDemoPool(data_dir, task, demos_file, spec);
    demo_source = pool.source;
    RankFile rank;
    if (spec.selection == DemoSelection::kRank) {
      // Rank files are keyed by ids of the full test split.
      if (split != "test") {
        Fail(
            "few-shot rank selection needs --split test (rank files index "
            "the full test set), not '{}'",
            split);
      }
      rank = RankFile::Load(rank_file.empty() ? RankFilePath(data_dir, task)
                                              : rank_file);
    }
    demos = SelectDemos(task, spec, ex, pool, seed, &rank);
  } else if (!demos_file.empty()) {
    Fail("--demos applies to few-shot strategies, not '{}'",
         StrategyName(spec));
  }

  Prompt p;
  if (!template_file.empty()) {
    p = BuildPromptFromTemplate(LoadUserTemplate(template_file), task, ex,
                                demos);
  } else {
    p = BuildPrompt(task, ex, spec, demos);
  }

  nlohmann::json chat = nlohmann::json::array();
  if (!p.system.empty())
    chat.push_back({{"role", "system"}, {"content", p.system}});
  chat.push_back({{"role", "user"}, {"content", p.user}});
  if (json) {
    nlohmann::json demo_ids = nlohmann::json::array();
    for (const auto& d : demos) demo_ids.push_back(d.id);
    nlohmann::json samples = nlohmann::json::array();
    for (const auto& s : Samples(spec, seed)) {
      samples.push_back({{"index", s.index},
                         {"seed", s.seed},
                         {"temperature", s.temperature}});
    }
    nlohmann::json out = {{"task", task.id},
                          {"split", split},
                          {"index", index},
                          {"example_id", ex.id},
                          {"strategy", StrategyName(spec)},
                          {"template_id", p.template_id},
                          {"seed", seed},
                          {"samples", samples},
                          {"demo_ids", demo_ids},
                          {"text", p.text},
                          {"chat", chat}};
    if (task.type == TaskType::kNer) out["ner_style"] = spec.ner_style;
    if (!demo_source.empty()) out["demo_source"] = demo_source;
    PrintJson(out);
    return 0;
  }
  std::printf(
      "# task %s, split %s, index %zu (id %s), strategy %s, template %s\n",
      task.id.c_str(), split.c_str(), index, ex.id.c_str(),
      StrategyName(spec).c_str(), p.template_id.c_str());
  for (const auto& m : chat) {
    std::printf("\n=== %s ===\n%s\n", m["role"].get<std::string>().c_str(),
                m["content"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace

BIOQUANT_COMMAND("prompt", "show the exact prompt for one example", RunPrompt);

}  // namespace bioquant::cli
