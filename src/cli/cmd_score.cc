// bioquant score --task T FILE: metrics of a predictions file (see
// tasks/score_file.h for the formats and tasks/metrics.h for the
// conventions).
#include <cstdio>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "tasks/score_file.h"
#include "tasks/task.h"

namespace bioquant::cli {
namespace {

int RunScore(int argc, char** argv) {
  CLI::App app{"Scores a predictions file against its gold labels", "score"};
  std::string task_id, file, parse_mode = "flexible", ner_style = "auto";
  ScoreOptions opts;
  bool json = false;
  app.add_option("--task", task_id, "task id (bioquant tasks lists them)")
      ->required();
  app.add_option("file", file, "predictions file (conll3, tsv or jsonl)")
      ->required();
  app.add_option("--format", opts.format,
                 "conll3|tsv|jsonl (default: from the file extension)")
      ->check(CLI::IsMember({"conll3", "tsv", "jsonl"}));
  app.add_option("--gold-col", opts.gold_col,
                 "tsv: gold column (case-insensitive)");
  app.add_option(
      "--pred-col", opts.pred_col,
      "tsv: prediction column of raw model outputs (case-insensitive)");
  app.add_option("--seed", opts.bootstrap.seed, "bootstrap seed")
      ->capture_default_str();
  app.add_option("--resamples", opts.bootstrap.resamples,
                 "bootstrap resamples (0: no intervals)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--parse", parse_mode, "answer parser: strict|flexible")
      ->capture_default_str()
      ->check(CLI::IsMember({"strict", "flexible"}));
  app.add_option("--ner-style", ner_style, "NER raw outputs: auto|list|inline")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "list", "inline"}));
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;

  opts.parse_mode = ParseModeFromName(parse_mode);
  opts.ner_style = NerStyleFromName(ner_style);
  const TaskInfo& task = FindTask(task_id);
  const nlohmann::json result = ScoreFile(task, file, opts);
  if (json) {
    std::printf("%s\n", result.dump(1).c_str());
  } else {
    std::printf("%s", FormatScoreText(result).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace bioquant::cli

BIOQUANT_COMMAND("score", "metrics (with bootstrap CIs) of a predictions file",
                 bioquant::cli::RunScore);
