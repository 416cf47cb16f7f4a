// bioquant report RUN: scores a run store (study/study.h) and renders it
// (study/report.h); also writes RUN/summary.json for `bioquant plan --run`.
#include <cstdio>
#include <filesystem>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "study/report.h"
#include "study/store.h"
#include "study/study.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant::cli {
namespace {

// The run's task data and splits from RUN/manifest.json (eval records them);
// an explicit --data-dir wins. A missing or older manifest leaves them.
void ReadRunDataDir(const std::string& run, StudyOptions* opts) {
  const std::string path = run + "/manifest.json";
  if (!FileExists(path)) return;
  nlohmann::json m;
  try {
    m = ParseJson(ReadFile(path));
  } catch (const nlohmann::json::exception&) {
    Fail("{}: not valid JSON", path);
  }
  if (!m.is_object() || !m.contains("run") || !m["run"].is_object()) return;
  const auto& r = m["run"];
  if (opts->data_dir.empty() && r.contains("data_dir") &&
      r["data_dir"].is_string()) {
    opts->data_dir = r["data_dir"];
    if (!IsDirectory(opts->data_dir)) opts->data_dir.clear();
  }
  if (r.contains("split_per_task") && r["split_per_task"].is_object()) {
    for (const auto& [t, sp] : r["split_per_task"].items()) {
      if (sp.is_string()) opts->splits[t] = sp.get<std::string>();
    }
  }
}

int RunReport(int argc, char** argv) {
  CLI::App app{"Tables and figures from a run store", "report"};
  std::string run, format = "md", out;
  StudyOptions opts;
  bool json = false;
  app.add_option("run", run, "run directory (holds store.sqlite)")->required();
  app.add_option("--format", format, "md|html|csv|json")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "html", "csv", "json"}));
  app.add_option("--out", out, "output file (default: RUN/report.<format>)");
  app.add_option("--seed", opts.seed, "bootstrap seed")->capture_default_str();
  app.add_option("--resamples", opts.resamples,
                 "bootstrap resamples (0: no intervals)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--data-dir", opts.data_dir,
                 "task data for the rare-concept breakdown (default: the "
                 "run's --data-dir from RUN/manifest.json)");
  app.add_flag(
      "--json", json,
      "print one JSON object {report, format, summary} instead of the table");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;

  const ReportFormat f = ReportFormatFromName(format);
  ReadRunDataDir(run, &opts);
  const auto store = RunStore::OpenForRead(run);
  const nlohmann::json scores = ScoreRun(*store, opts);
  if (scores["cells"].empty())
    Fail("{}: the store holds no generations yet", store->path());
  if (out.empty()) {
    out = (std::filesystem::path(run) /
           (std::string("report.") + ReportExtension(f)))
              .string();
  }
  WriteFile(out, RenderReport(scores, f));
  const std::string summary_path =
      (std::filesystem::path(run) / "summary.json").string();
  WriteSummary(scores, summary_path);
  if (json) {
    PrintJson({{"report", out},
               {"format", format},
               {"summary_file", summary_path},
               {"summary", scores["summary"]}});
  } else {
    std::printf(
        "wrote %s (and %s)\nreference precision: %s; criterion: %s\n\n%s",
        out.c_str(), summary_path.c_str(),
        scores["reference_precision"].get<std::string>().c_str(),
        scores["criterion"].get<std::string>().c_str(),
        SummaryText(scores).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace bioquant::cli

BIOQUANT_COMMAND(
    "report", "tables and figures (md, html+svg, csv, json) from a run store",
    bioquant::cli::RunReport);
