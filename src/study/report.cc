#include "study/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace bioquant {

namespace report {

std::string Str(const nlohmann::json& j) {
  return j.is_string() ? j.get<std::string>() : j.dump();
}

std::string Bytes(int64_t b) {
  if (b <= 0) return "–";
  const double gib = 1024.0 * 1024 * 1024, mib = 1024.0 * 1024, kib = 1024.0;
  if (b >= gib) return fmt::format("{:.2f} GiB", b / gib);
  if (b >= mib) return fmt::format("{:.1f} MiB", b / mib);
  if (b >= kib) return fmt::format("{:.1f} KiB", b / kib);
  return fmt::format("{} B", b);
}

std::string Num(const nlohmann::json& v, int digits) {
  if (!v.is_number()) return "–";
  return fmt::format("{:.{}f}", v.get<double>(), digits);
}

std::string Pct(const nlohmann::json& v, int digits) {
  if (!v.is_number()) return "–";
  return fmt::format("{:+.{}f}%", v.get<double>() * 100, digits);
}

const nlohmann::json* FindCell(const nlohmann::json& scores,
                               const std::string& precision,
                               const std::string& task,
                               const std::string& strategy) {
  for (const auto& c : scores["cells"]) {
    if (c["precision"] == precision && c["task"] == task &&
        c["strategy"] == strategy) {
      return &c;
    }
  }
  return nullptr;
}

const nlohmann::json* FindComparison(const nlohmann::json& scores,
                                     const std::string& precision,
                                     const std::string& task,
                                     const std::string& strategy) {
  for (const auto& c : scores["comparisons"]) {
    if (c["precision"] == precision && c["task"] == task &&
        c["strategy"] == strategy) {
      return &c;
    }
  }
  return nullptr;
}

std::vector<std::string> TasksFor(const nlohmann::json& scores,
                                  const std::string& strategy) {
  std::vector<std::string> out;
  for (const auto& t : scores["tasks"]) {
    for (const auto& c : scores["cells"]) {
      if (c["task"] == t && c["strategy"] == strategy) {
        out.push_back(t);
        break;
      }
    }
  }
  return out;
}

std::string MetricLabel(const std::string& m) {
  if (m == "ner_strict_entity_f1") return "strict entity F1";
  if (m == "macro_f1_all_classes") return "macro-F1";
  if (m == "label_macro_f1") return "label macro-F1";
  if (m == "accuracy") return "accuracy";
  if (m == "micro_f1") return "micro-F1";
  if (m == "macro_f1_gold_classes") return "macro-F1";
  return m;
}

double MeanLatency(const nlohmann::json& scores, const std::string& precision,
                   const std::string& strategy) {
  double sum = 0;
  int n = 0;
  for (const auto& c : scores["cells"]) {
    if (c["precision"] != precision) continue;
    if (!strategy.empty() && c["strategy"] != strategy) continue;
    sum += c["latency_ms"]["mean"].get<double>();
    ++n;
  }
  return n ? sum / n : 0.0;
}

int64_t MaxMemory(const nlohmann::json& scores, const std::string& precision,
                  const char* field) {
  int64_t m = 0;
  for (const auto& c : scores["cells"]) {
    if (c["precision"] == precision && c["memory"].is_object()) {
      m = std::max<int64_t>(m, c["memory"][field].get<int64_t>());
    }
  }
  return m;
}

std::string MemoryText(const nlohmann::json& scores,
                       const std::string& precision, const char* field) {
  bool any = false, measured = false;
  for (const auto& c : scores["cells"]) {
    if (c["precision"] != precision || !c["memory"].is_object()) continue;
    any = true;
    measured = measured || c["memory"].value("measured", true);
  }
  if (any && !measured) return "not measured";
  return Bytes(MaxMemory(scores, precision, field));
}

std::string MemorySourceLabel(const std::string& source) {
  if (source == "cpu-rss") return "CPU RSS";
  if (source == "gpu-allocated") return "GPU allocated";
  if (source == "gpu-reserved") return "GPU reserved";
  return source;
}

std::string PeakMemoryText(const nlohmann::json& scores,
                           const std::string& precision) {
  const std::string text = MemoryText(scores, precision, "peak_rss_bytes");
  if (text == "not measured" || text == "–") return text;
  std::string source;
  for (const auto& c : scores["cells"]) {
    if (c["precision"] == precision && c["memory"].is_object() &&
        c["memory"].value("measured", true)) {
      source = c["memory"].value("source", "cpu-rss");
    }
  }
  return source.empty() ? text : text + " (" + MemorySourceLabel(source) + ")";
}

std::string PredictedMemoryNote(const nlohmann::json& scores) {
  const auto& meta = scores["meta"];
  if (!meta.is_object() || !meta.contains("predicted_memory")) return "";
  const auto& pm = meta["predicted_memory"];
  std::vector<std::string> parts;
  const nlohmann::json totals =
      pm.value("total_bytes", nlohmann::json::object());
  for (const auto& [label, bytes] : totals.items()) {
    parts.push_back(label + " " + Bytes(bytes.get<int64_t>()));
  }
  return fmt::format(
      "memory was not measured by this backend; `bioquant plan --device {}` "
      "predicts (context {}, batch {}, {}): {}",
      Str(pm.value("device", nlohmann::json("gpu"))),
      Str(pm.value("context", nlohmann::json(0))),
      Str(pm.value("batch", nlohmann::json(1))),
      Str(pm.value("model", nlohmann::json(""))), fmt::join(parts, ", "));
}

std::string SummaryBytes(const nlohmann::json& entry, const char* field) {
  if (!entry.value("memory_measured", true)) return "not measured";
  return Bytes(entry[field].get<int64_t>());
}

}  // namespace report

namespace {

using namespace report;

// Main metric of a cell: "0.812 [0.780, 0.841]".
std::string MetricWithCi(const nlohmann::json& cell) {
  const auto& m = cell["metrics"][cell["primary_metric"].get<std::string>()];
  return fmt::format("{} [{}, {}]", Num(m["value"]), Num(m["ci_low"]),
                     Num(m["ci_high"]));
}

std::string Verdict(const nlohmann::json& cmp) {
  const std::string c = cmp.value("criterion", "undefined");
  if (c == "supported") return "✔ supported";
  if (c == "violated") return "✘ violated";
  if (c == "not established") return "? not established";
  return "–";
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string r = "\"";
  for (char c : s) r += c == '"' ? std::string("\"\"") : std::string(1, c);
  return r + "\"";
}

std::string CsvNum(const nlohmann::json& v) {
  if (!v.is_number()) return "";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return fmt::format("{:.6g}", v.get<double>());
}

}  // namespace

ReportFormat ReportFormatFromName(const std::string& name) {
  if (name == "md" || name == "markdown") return ReportFormat::kMarkdown;
  if (name == "html") return ReportFormat::kHtml;
  if (name == "csv") return ReportFormat::kCsv;
  if (name == "json") return ReportFormat::kJson;
  Fail("--format: unknown format '{}' (md|html|csv|json)", name);
}

const char* ReportExtension(ReportFormat f) {
  switch (f) {
    case ReportFormat::kMarkdown:
      return "md";
    case ReportFormat::kHtml:
      return "html";
    case ReportFormat::kCsv:
      return "csv";
    case ReportFormat::kJson:
      return "json";
  }
  return "txt";
}

std::string RenderReport(const nlohmann::json& scores, ReportFormat f) {
  switch (f) {
    case ReportFormat::kMarkdown:
      return RenderMarkdown(scores);
    case ReportFormat::kHtml:
      return RenderHtml(scores);
    case ReportFormat::kCsv:
      return RenderCsv(scores);
    case ReportFormat::kJson:
      return scores.dump(2, ' ', false,
                         nlohmann::json::error_handler_t::replace) +
             "\n";
  }
  return "";
}

std::string RenderMarkdown(const nlohmann::json& s) {
  const std::string ref = s.value("reference_precision", "");
  std::string md = "# bioquant study report\n\n";
  const auto& meta = s["meta"];
  md += fmt::format("- store: `{}`\n- model fingerprint: `{}`\n- created: {}\n",
                    s.value("store", ""),
                    Str(meta.value("model_fingerprint", "")),
                    Str(meta.value("created_at", "")));
  md += fmt::format(
      "- reference precision: **{}**; criterion: {} (\"supported\" when the "
      "upper "
      "95% CI bound of the relative drop is within it)\n",
      ref, s.value("criterion", ""));
  md += fmt::format(
      "- bootstrap: {} resamples, seed {}, percentile 95% intervals\n",
      Str(s["bootstrap"]["resamples"]), Str(s["bootstrap"]["seed"]));
  if (const std::string note = PredictedMemoryNote(s); !note.empty()) {
    md += "- " + note + "\n";
  }
  md += "\n";

  for (const auto& st : s["strategies"]) {
    const std::string strategy = st;
    md += fmt::format("## Table 1 — {}\n\n", strategy);
    md +=
        "| precision | compute | weights | peak memory | latency / example "
        "(ms) |";
    std::string sep = "|---|---|---:|---:|---:|";
    const auto tasks = TasksFor(s, strategy);
    for (const auto& t : tasks) {
      std::string metric;
      for (const auto& p : s["precisions"]) {
        if (const auto* c = FindCell(s, p, t, strategy)) {
          metric = MetricLabel(c->at("primary_metric"));
          break;
        }
      }
      md += fmt::format(" {} ({}) |", Str(t), metric);
      sep += "---:|";
    }
    md += "\n" + sep + "\n";
    for (const auto& p : s["precisions"]) {
      std::string compute;
      for (const auto& c : s["cells"]) {
        if (c["precision"] == p && c["strategy"] == strategy)
          compute = c["compute"];
      }
      md += fmt::format("| {} | {} | {} | {} | {:.1f} |", Str(p), compute,
                        MemoryText(s, p, "weights_bytes"), PeakMemoryText(s, p),
                        MeanLatency(s, p, strategy));
      for (const auto& t : tasks) {
        const auto* c = FindCell(s, p, t, strategy);
        md += " " + (c ? MetricWithCi(*c) : std::string("–")) + " |";
      }
      md += "\n";
    }
    md += "\n";
  }

  md += "## Comparison with " + ref + " per task\n\n";
  md +=
      "Δ = precision − reference on the same examples (paired bootstrap 95% "
      "CI); "
      "relative drop = (reference − precision) / reference; McNemar: exact "
      "test on "
      "per-example correctness; flip rate: share of examples whose answer "
      "changed.\n\n";
  for (const auto& t : s["tasks"]) {
    bool any = false;
    std::string table =
        "| strategy | precision | reference | value | Δ [95% CI] | relative "
        "drop [95% "
        "CI] | ≤ 5%? | McNemar p | flip rate | unparsed (ref → this) | n |\n"
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n";
    std::string metric;
    for (const auto& st : s["strategies"]) {
      for (const auto& p : s["precisions"]) {
        const auto* c = FindComparison(s, p, t, st);
        if (!c || !c->contains("metric")) continue;
        any = true;
        metric = MetricLabel((*c)["metric"]);
        table += fmt::format(
            "| {} | {} | {} | {} | {} [{}, {}] | {} [{}, {}] | {} | {} | {} | "
            "{} → {} | {} "
            "|\n",
            Str(st), Str(p), Num((*c)["reference_value"]), Num((*c)["value"]),
            Num((*c)["delta"]), Num((*c)["delta_ci_low"]),
            Num((*c)["delta_ci_high"]), Pct((*c)["relative_drop"]),
            Pct((*c)["relative_drop_ci_low"]),
            Pct((*c)["relative_drop_ci_high"]), Verdict(*c),
            Num((*c)["mcnemar"]["p_value"]), Pct((*c)["flip_rate"]).substr(1),
            Pct((*c)["unparsed_rate_reference"]).substr(1),
            Pct((*c)["unparsed_rate"]).substr(1), Str((*c)["paired_examples"]));
      }
    }
    if (!any) continue;
    md += fmt::format("### {} ({})\n\n", Str(t), metric) + table + "\n";
  }

  md += "## Throughput and parsing per cell\n\n";
  md +=
      "| precision | task | strategy | template | examples | unparsed | "
      "latency mean / "
      "p50 / p95 (ms) | prefill tok/s | decode tok/s | tokens in / out (mean) "
      "|\n"
      "|---|---|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& c : s["cells"]) {
    md += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {:.1f} / {:.1f} / {:.1f} | {:.1f} | "
        "{:.1f} | "
        "{:.1f} / {:.1f} |\n",
        Str(c["precision"]), Str(c["task"]), Str(c["strategy"]),
        Str(c["template"]), Str(c["examples"]),
        Pct(c["unparsed_rate"]).substr(1),
        c["latency_ms"]["mean"].get<double>(),
        c["latency_ms"]["p50"].get<double>(),
        c["latency_ms"]["p95"].get<double>(),
        c["prefill_tokens_per_s"].get<double>(),
        c["decode_tokens_per_s"].get<double>(),
        c["tokens_in"]["mean"].get<double>(),
        c["tokens_out"]["mean"].get<double>());
  }
  const auto tables = BreakdownTables(s);
  if (!tables.empty()) {
    md += "\n## Hallucination, rare concepts, answer flips\n\n";
    for (const auto& t : tables) md += TableMarkdown(t);
  }
  return md;
}

std::string RenderCsv(const nlohmann::json& s) {
  static const char* kHeader[] = {"precision",
                                  "compute",
                                  "task",
                                  "strategy",
                                  "template",
                                  "examples",
                                  "primary_metric",
                                  "value",
                                  "ci_low",
                                  "ci_high",
                                  "unparsed_rate",
                                  "latency_mean_ms",
                                  "latency_p50_ms",
                                  "latency_p95_ms",
                                  "prefill_tokens_per_s",
                                  "decode_tokens_per_s",
                                  "tokens_in_mean",
                                  "tokens_out_mean",
                                  "weights_bytes",
                                  "kv_cache_bytes",
                                  "scratch_bytes",
                                  "peak_rss_bytes",
                                  "memory_source",
                                  "load_ms",
                                  "reference",
                                  "paired_examples",
                                  "delta",
                                  "delta_ci_low",
                                  "delta_ci_high",
                                  "relative_drop",
                                  "relative_drop_ci_low",
                                  "relative_drop_ci_high",
                                  "criterion",
                                  "mcnemar_p",
                                  "flip_rate",
                                  "unparsed_rate_reference"};
  std::string out;
  for (size_t i = 0; i < std::size(kHeader); ++i)
    out += (i ? "," : "") + std::string(kHeader[i]);
  out += "\n";
  for (const auto& c : s["cells"]) {
    const auto& m = c["metrics"][c["primary_metric"].get<std::string>()];
    const nlohmann::json mem =
        c["memory"].is_object() ? c["memory"] : nlohmann::json::object();
    auto memf = [&](const char* k) {
      return mem.contains(k) ? CsvNum(mem[k]) : "";
    };
    std::vector<std::string> f = {
        CsvField(c["precision"]),
        CsvField(c["compute"]),
        CsvField(c["task"]),
        CsvField(c["strategy"]),
        CsvField(c["template"]),
        CsvNum(c["examples"]),
        CsvField(c["primary_metric"]),
        CsvNum(m["value"]),
        CsvNum(m["ci_low"]),
        CsvNum(m["ci_high"]),
        CsvNum(c["unparsed_rate"]),
        CsvNum(c["latency_ms"]["mean"]),
        CsvNum(c["latency_ms"]["p50"]),
        CsvNum(c["latency_ms"]["p95"]),
        CsvNum(c["prefill_tokens_per_s"]),
        CsvNum(c["decode_tokens_per_s"]),
        CsvNum(c["tokens_in"]["mean"]),
        CsvNum(c["tokens_out"]["mean"]),
        memf("weights_bytes"),
        memf("kv_cache_bytes"),
        memf("scratch_bytes"),
        memf("peak_rss_bytes"),
        mem.contains("source") ? CsvField(mem["source"]) : std::string(),
        memf("load_ms")};
    const auto* cmp =
        FindComparison(s, c["precision"], c["task"], c["strategy"]);
    if (cmp && cmp->contains("metric")) {
      const auto& x = *cmp;
      for (auto v :
           {CsvField(x["reference"]), CsvNum(x["paired_examples"]),
            CsvNum(x["delta"]), CsvNum(x["delta_ci_low"]),
            CsvNum(x["delta_ci_high"]), CsvNum(x["relative_drop"]),
            CsvNum(x["relative_drop_ci_low"]),
            CsvNum(x["relative_drop_ci_high"]), CsvField(x["criterion"]),
            CsvNum(x["mcnemar"]["p_value"]), CsvNum(x["flip_rate"]),
            CsvNum(x["unparsed_rate_reference"])}) {
        f.push_back(v);
      }
    } else {
      f.resize(std::size(kHeader));
      f[24] = CsvField(s.value("reference_precision", ""));
    }
    for (size_t i = 0; i < f.size(); ++i) out += (i ? "," : "") + f[i];
    out += "\n";
  }
  return out;
}

std::string SummaryText(const nlohmann::json& s) {
  std::string out =
      fmt::format("{:<10} {:>12} {:>12} {:>14} {:>10} {:>12}  {}\n",
                  "precision", "weights", "peak memory", "latency (ms)",
                  "main mean", "rel. drop", "within 5% (CI)");
  for (const auto& p : s["summary"]["precisions"]) {
    const bool is_ref = p["precision"] == s["summary"]["reference_precision"];
    out += fmt::format(
        "{:<10} {:>12} {:>12} {:>14.1f} {:>10.3f} {:>12}  {}\n",
        Str(p["precision"]), SummaryBytes(p, "weights_bytes"),
        SummaryBytes(p, "peak_rss_bytes") +
            (p.value("memory_measured", true) && p.contains("memory_source")
                 ? " " + MemorySourceLabel(p["memory_source"])
                 : std::string()),
        p["latency_ms_mean"].get<double>(), p["main_metric_mean"].get<double>(),
        is_ref ? std::string("reference") : Pct(p["relative_drop"]),
        is_ref ? ""
               : (p["ci_supports_within_5pct"].get<bool>() ? "yes" : "no"));
  }
  return out;
}

}  // namespace bioquant
