// `bioquant report`: renders a scored run (study/study.h ScoreRun output)
// as Markdown, CSV, JSON or a self-contained HTML page with inline SVG
// figures (no network, no scripts).
//
//  md    Table 1 per strategy (per precision: memory, latency, every task's
//        main metric with its 95% CI), then one comparison table per task
//        against the reference precision.
//  csv   one row per cell (precision, task, strategy, template) with its
//        main metric, CI, unparsed rate, latency, throughput, memory and,
//        for non-reference precisions, the comparison columns.
//  json  the ScoreRun object itself.
//  html  the Markdown content as HTML tables plus figures: memory vs score,
//        main metric by precision per task with CI whiskers (one per
//        strategy), relative drop vs the reference with CIs and the 5% line,
//        latency by precision, strategy comparison.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bioquant {

enum class ReportFormat { kMarkdown, kHtml, kCsv, kJson };

// "md" | "html" | "csv" | "json"; throws Error naming --format.
ReportFormat ReportFormatFromName(const std::string& name);
const char* ReportExtension(ReportFormat format);

std::string RenderReport(const nlohmann::json& scores, ReportFormat format);

std::string RenderMarkdown(const nlohmann::json& scores);
std::string RenderCsv(const nlohmann::json& scores);
std::string RenderHtml(const nlohmann::json& scores);

// Plain-text summary table for the terminal: per precision, memory, latency,
// mean relative drop and the criterion verdict.
std::string SummaryText(const nlohmann::json& scores);

// Shared formatting helpers (report.cc), also used by report_html.cc.
namespace report {
// A JSON string's text, any other value as JSON.
std::string Str(const nlohmann::json& j);
// "1.23 GiB", "512.0 MiB", "900 B"; "–" for <= 0 (not measured).
std::string Bytes(int64_t bytes);
// Metric value with 3 decimals; "–" for null.
std::string Num(const nlohmann::json& v, int digits = 3);
// "+1.2%" style percentage of a fraction; "–" for null.
std::string Pct(const nlohmann::json& v, int digits = 1);
// The cell of (precision, task, strategy) in scores["cells"], or nullptr.
const nlohmann::json* FindCell(const nlohmann::json& scores,
                               const std::string& precision,
                               const std::string& task,
                               const std::string& strategy);
const nlohmann::json* FindComparison(const nlohmann::json& scores,
                                     const std::string& precision,
                                     const std::string& task,
                                     const std::string& strategy);
// Tasks (in scores["tasks"] order) with at least one cell for `strategy`.
std::vector<std::string> TasksFor(const nlohmann::json& scores,
                                  const std::string& strategy);
// Human name of a metric ("ner_strict_entity_f1" -> "strict entity F1").
std::string MetricLabel(const std::string& metric);
// Mean per-example latency (ms) and max memory of a precision over its cells.
double MeanLatency(const nlohmann::json& scores, const std::string& precision,
                   const std::string& strategy = "");
int64_t MaxMemory(const nlohmann::json& scores, const std::string& precision,
                  const char* field);
// Bytes(MaxMemory(...)), or "not measured" when the precision's backend
// could not measure memory (a remote server).
std::string MemoryText(const nlohmann::json& scores,
                       const std::string& precision, const char* field);
// What a memory source measured, for people: "CPU RSS", "GPU allocated",
// "GPU reserved" ("cpu-rss", "gpu-allocated", "gpu-reserved").
std::string MemorySourceLabel(const std::string& source);
// The peak memory of a precision with what it measured: "765.0 MiB (CPU
// RSS)", "1.20 GiB (GPU allocated)", or "not measured".
std::string PeakMemoryText(const nlohmann::json& scores,
                           const std::string& precision);
// When the store holds `bioquant plan`'s prediction (eval --model-config,
// for backends that cannot measure memory): one sentence saying so and
// listing the predicted totals; "" otherwise.
std::string PredictedMemoryNote(const nlohmann::json& scores);
// A summary entry's bytes (SummaryFromScores), or "not measured".
std::string SummaryBytes(const nlohmann::json& entry, const char* field);

// The breakdown tables (report_breakdowns.cc): NER hallucination, rare
// concepts, a sample of answer flips; tables with no rows are left out.
struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::string note;
};
std::vector<Table> BreakdownTables(const nlohmann::json& scores);
std::string TableMarkdown(const Table& t);
std::string TableHtml(const Table& t);
}  // namespace report

}  // namespace bioquant
