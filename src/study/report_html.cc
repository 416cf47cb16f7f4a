// The HTML report: one self-contained page (inline CSS and SVG, no scripts,
// no network) built from the same scored-run JSON as the other formats.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "study/report.h"
#include "study/study.h"
#include "study/svg.h"

namespace bioquant {
namespace {

using namespace report;
using svg::Escape;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Colours follow fidelity rank, so a precision keeps its colour across runs.
std::string PrecisionColor(const std::string& p) {
  static const std::map<std::string, std::string> kColors = {
      {"f32", "#333333"},  {"bf16", "#0072B2"},     {"f16", "#56B4E9"},
      {"int8", "#009E73"}, {"llm-int8", "#E69F00"}, {"nf4", "#D55E00"},
      {"fp4", "#CC79A7"}};
  auto it = kColors.find(p);
  return it != kColors.end() ? it->second : svg::PaletteColor(PrecisionRank(p));
}

const char* kCss = R"css(
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;
 margin:0;background:#f4f5f7;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:24px 32px 64px;background:#fff;
 box-shadow:0 0 0 1px #e4e6ea}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:36px 0 10px;
 border-bottom:2px solid #e4e6ea;padding-bottom:4px}h3{font-size:16px;margin:22px 0 6px}
.meta{color:#555;font-size:13px}.meta code{background:#f0f1f3;padding:1px 4px;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{flex:1 1 200px;border:1px solid #e4e6ea;border-radius:8px;padding:10px 14px;
 border-top:5px solid var(--c)}
.card .p{font-weight:700;font-size:17px}.card .k{color:#666;font-size:12px}
.card .v{font-size:15px;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.supported{background:#e3f4ea;color:#17663a}.violated{background:#fde7e4;color:#a4261b}
.notest{background:#fff4d6;color:#7a5800}.ref{background:#e8eefc;color:#1f4aa8}
table{border-collapse:collapse;font-size:13px;margin:8px 0 4px;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid #e7e8eb;text-align:right;
 font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f7f8fa;font-weight:600}th:first-child,td:first-child,.l{text-align:left}
tbody tr:hover{background:#fafbfc}
.ci{color:#777;font-size:11px}
figure{margin:18px 0 26px}figcaption{font-size:13px;color:#555;margin-top:4px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.note{font-size:13px;color:#555}
)css";

std::string Badge(const std::string& criterion) {
  if (criterion == "supported")
    return "<span class=\"badge supported\">supported</span>";
  if (criterion == "violated")
    return "<span class=\"badge violated\">violated</span>";
  if (criterion == "not established")
    return "<span class=\"badge notest\">not established</span>";
  if (criterion == "reference")
    return "<span class=\"badge ref\">reference</span>";
  return "<span class=\"badge\">–</span>";
}

std::string Swatch(const std::string& p) {
  return fmt::format("<span class=\"swatch\" style=\"background:{}\"></span>{}",
                     PrecisionColor(p), Escape(p));
}

std::string PrimaryMetricName(const nlohmann::json& s,
                              const std::string& task) {
  for (const auto& c : s["cells"]) {
    if (c["task"] == task) return MetricLabel(c["primary_metric"]);
  }
  return "";
}

// ------------------------------------------------------------------ figures

std::string MemoryFigure(const nlohmann::json& s) {
  const auto& sum = s["summary"]["precisions"];
  bool weights = false, rss = false;
  for (const auto& p : sum) {
    weights = weights || p["weights_bytes"].get<int64_t>() > 0;
    rss = rss || p["peak_rss_bytes"].get<int64_t>() > 0;
  }
  if (!weights && !rss) {
    return "<p class=\"note\">No memory measurements in this store (a "
           "remote backend cannot measure a server's memory).</p>";
  }
  const char* field = weights ? "weights_bytes" : "peak_rss_bytes";
  int64_t max_b = 0;
  for (const auto& p : sum) max_b = std::max(max_b, p[field].get<int64_t>());
  const bool gib = max_b >= (int64_t{1} << 30);
  const double unit = gib ? double(int64_t{1} << 30) : double(int64_t{1} << 20);
  svg::ScatterChart ch;
  ch.title = "Memory vs. score per precision";
  ch.x_label =
      fmt::format("{} ({})", weights ? "weights in memory" : "process peak RSS",
                  gib ? "GiB" : "MiB");
  ch.y_label = "mean main metric over tasks and strategies";
  for (const auto& p : sum) {
    svg::Point pt;
    pt.label = p["precision"];
    pt.color = PrecisionColor(pt.label);
    pt.x = p[field].get<int64_t>() / unit;
    pt.y = p["main_metric_mean"];
    ch.points.push_back(pt);
  }
  ch.note = "Up and to the left is better: a faithful score in less memory.";
  return svg::RenderScatter(ch);
}

std::string MetricFigure(const nlohmann::json& s, const std::string& strategy) {
  svg::BarChart ch;
  ch.title = fmt::format("Main metric by precision — {}", strategy);
  ch.y_label = "main metric (95% CI)";
  ch.x_label = "task (metric)";
  ch.y_min = 0;
  ch.y_max = 1;
  const auto tasks = TasksFor(s, strategy);
  for (const auto& t : tasks) {
    ch.groups.push_back(fmt::format("{} ({})", t, PrimaryMetricName(s, t)));
  }
  for (const auto& pj : s["precisions"]) {
    const std::string p = pj;
    svg::Series se;
    se.name = p;
    se.color = PrecisionColor(p);
    for (const auto& t : tasks) {
      const auto* c = FindCell(s, p, t, strategy);
      if (!c) {
        se.values.push_back(kNaN);
        se.lo.push_back(kNaN);
        se.hi.push_back(kNaN);
        continue;
      }
      const auto& m =
          (*c)["metrics"][(*c)["primary_metric"].get<std::string>()];
      se.values.push_back(m["value"]);
      se.lo.push_back(m["ci_low"]);
      se.hi.push_back(m["ci_high"]);
    }
    ch.series.push_back(se);
  }
  ch.note =
      "Bars: point estimate; whiskers: percentile-bootstrap 95% CI over "
      "examples.";
  return svg::RenderBarChart(ch);
}

std::string DropFigure(const nlohmann::json& s) {
  svg::ForestChart ch;
  ch.title = fmt::format("Relative drop vs. {} (95% CI)",
                         Str(s["reference_precision"]));
  ch.x_label =
      "relative drop of the main metric, (reference − precision) / reference";
  ch.threshold = 0.05;
  ch.threshold_label = "5% criterion";
  ch.percent = true;
  // Gains (negative drops) can have very wide intervals on small sets; the
  // axis stops at -50% and longer intervals end in an arrow.
  double lo = 0, hi = 0.1;
  for (const auto& t : s["tasks"]) {
    bool heading = false;
    for (const auto& st : s["strategies"]) {
      for (const auto& p : s["precisions"]) {
        const auto* c = FindComparison(s, p, t, st);
        if (!c || !(*c)["relative_drop"].is_number()) continue;
        if (!heading) {
          ch.rows.push_back({Str(t), "", 0, 0, 0, ""});
          heading = true;
        }
        svg::ForestRow r;
        r.label = fmt::format("{} · {}", Str(p), Str(st));
        r.color = PrecisionColor(p);
        r.value = (*c)["relative_drop"];
        r.lo = (*c)["relative_drop_ci_low"];
        r.hi = (*c)["relative_drop_ci_high"];
        r.annotation = (*c)["criterion"];
        r.annotation_color = r.annotation == "supported"  ? "#17663a"
                             : r.annotation == "violated" ? "#a4261b"
                                                          : "#7a5800";
        lo = std::min(lo, r.lo);
        hi = std::max(hi, r.hi);
        ch.rows.push_back(r);
      }
    }
  }
  if (ch.rows.empty()) return "";
  ch.x_min = std::max(lo, -0.5);
  ch.x_max = std::min(hi, 1.0);
  ch.note =
      "Left of the dashed line: within 5%. A CI entirely left of it supports "
      "the "
      "criterion; negative values are gains.";
  return svg::RenderForest(ch);
}

std::string LatencyFigure(const nlohmann::json& s) {
  svg::BarChart ch;
  ch.title = "Latency per example by precision";
  ch.y_label = "latency per example (ms)";
  ch.x_label = "strategy";
  ch.value_digits = 0;
  double maxv = 0;
  for (const auto& st : s["strategies"]) ch.groups.push_back(st);
  for (const auto& pj : s["precisions"]) {
    const std::string p = pj;
    svg::Series se;
    se.name = p;
    se.color = PrecisionColor(p);
    for (const auto& st : s["strategies"]) {
      // Median of per-example latency over the strategy's tasks: whiskers
      // span the mean p50 to the mean p95.
      double mean = 0, p50 = 0, p95 = 0;
      int n = 0;
      for (const auto& c : s["cells"]) {
        if (c["precision"] != p || c["strategy"] != st) continue;
        mean += c["latency_ms"]["mean"].get<double>();
        p50 += c["latency_ms"]["p50"].get<double>();
        p95 += c["latency_ms"]["p95"].get<double>();
        ++n;
      }
      se.values.push_back(n ? mean / n : kNaN);
      se.lo.push_back(n ? p50 / n : kNaN);
      se.hi.push_back(n ? p95 / n : kNaN);
      maxv = std::max(maxv, n ? p95 / n : 0.0);
    }
    ch.series.push_back(se);
  }
  if (maxv < 10) ch.value_digits = 1;
  ch.note =
      "Bars: mean over tasks of the mean latency per example "
      "(self-consistency: all "
      "samples); whiskers: p50 to p95.";
  return svg::RenderBarChart(ch);
}

std::string ThroughputFigure(const nlohmann::json& s) {
  svg::BarChart ch;
  ch.title = "Prefill and decode throughput by precision";
  ch.y_label = "tokens per second";
  ch.x_label = "phase";
  ch.groups = {"prefill", "decode"};
  ch.value_digits = 0;
  bool any = false;
  for (const auto& pj : s["precisions"]) {
    const std::string p = pj;
    svg::Series se;
    se.name = p;
    se.color = PrecisionColor(p);
    double pre = 0, dec = 0;
    int n = 0;
    for (const auto& c : s["cells"]) {
      if (c["precision"] != p) continue;
      pre += c["prefill_tokens_per_s"].get<double>();
      dec += c["decode_tokens_per_s"].get<double>();
      ++n;
    }
    se.values = {n ? pre / n : kNaN, n ? dec / n : kNaN};
    any = any || pre > 0 || dec > 0;
    ch.series.push_back(se);
  }
  if (!any) return "";
  ch.note = "Mean over cells of tokens / time spent in that phase.";
  ch.height = 360;
  return svg::RenderBarChart(ch);
}

std::string StrategyFigure(const nlohmann::json& s) {
  if (s["strategies"].size() < 2) return "";
  svg::BarChart ch;
  ch.title = "Strategy comparison — mean main metric over tasks";
  ch.y_label = "mean main metric";
  ch.x_label = "precision";
  ch.y_min = 0;
  ch.y_max = 1;
  for (const auto& p : s["precisions"]) ch.groups.push_back(p);
  size_t k = 0;
  static const char* kStrategyColors[] = {"#4C72B0", "#55A868", "#C44E52",
                                          "#8172B2", "#CCB974", "#64B5CD"};
  for (const auto& st : s["strategies"]) {
    svg::Series se;
    se.name = st;
    se.color = kStrategyColors[k++ % 6];
    for (const auto& p : s["precisions"]) {
      double sum = 0;
      int n = 0;
      for (const auto& c : s["cells"]) {
        if (c["precision"] != p || c["strategy"] != st) continue;
        sum += c["metrics"][c["primary_metric"].get<std::string>()]["value"]
                   .get<double>();
        ++n;
      }
      se.values.push_back(n ? sum / n : kNaN);
    }
    ch.series.push_back(se);
  }
  ch.note = "Unweighted mean over the tasks each strategy ran on.";
  return svg::RenderBarChart(ch);
}

std::string Figure(const std::string& svg_markup, const std::string& caption) {
  if (svg_markup.empty()) return "";
  return "<figure>\n" + svg_markup + "<figcaption>" + caption +
         "</figcaption>\n</figure>\n";
}

// ------------------------------------------------------------------- tables

std::string Table1(const nlohmann::json& s, const std::string& strategy) {
  std::string h =
      "<table>\n<thead><tr><th>precision</th><th class=\"l\">compute</th>"
      "<th>weights</th><th>KV cache</th><th>peak memory</th>"
      "<th>latency / ex. (ms)</th>";
  const auto tasks = TasksFor(s, strategy);
  for (const auto& t : tasks) {
    h += fmt::format("<th>{}<br><span class=\"ci\">{}</span></th>",
                     Escape(Str(t)), Escape(PrimaryMetricName(s, t)));
  }
  h += "</tr></thead>\n<tbody>\n";
  for (const auto& pj : s["precisions"]) {
    const std::string p = pj;
    std::string compute;
    for (const auto& c : s["cells"]) {
      if (c["precision"] == p && c["strategy"] == strategy)
        compute = c["compute"];
    }
    h += fmt::format(
        "<tr><td>{}</td><td "
        "class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{:.1f}</td>",
        Swatch(p), Escape(compute), MemoryText(s, p, "weights_bytes"),
        MemoryText(s, p, "kv_cache_bytes"), Escape(PeakMemoryText(s, p)),
        MeanLatency(s, p, strategy));
    for (const auto& t : tasks) {
      const auto* c = FindCell(s, p, t, strategy);
      if (!c) {
        h += "<td>–</td>";
        continue;
      }
      const auto& m =
          (*c)["metrics"][(*c)["primary_metric"].get<std::string>()];
      h += fmt::format("<td>{}<br><span class=\"ci\">[{}, {}]</span></td>",
                       Num(m["value"]), Num(m["ci_low"]), Num(m["ci_high"]));
    }
    h += "</tr>\n";
  }
  return h + "</tbody></table>\n";
}

std::string ComparisonTable(const nlohmann::json& s, const std::string& task) {
  std::string rows;
  for (const auto& st : s["strategies"]) {
    for (const auto& p : s["precisions"]) {
      const auto* c = FindComparison(s, p, task, st);
      if (!c || !c->contains("metric")) continue;
      const auto& x = *c;
      rows += fmt::format(
          "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td>"
          "<td>{} <span class=\"ci\">[{}, {}]</span></td>"
          "<td>{} <span class=\"ci\">[{}, {}]</span></td><td "
          "class=\"l\">{}</td>"
          "<td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>\n",
          Swatch(p), Escape(Str(st)), Num(x["reference_value"]),
          Num(x["value"]), Num(x["delta"]), Num(x["delta_ci_low"]),
          Num(x["delta_ci_high"]), Pct(x["relative_drop"]),
          Pct(x["relative_drop_ci_low"]), Pct(x["relative_drop_ci_high"]),
          Badge(x["criterion"]), Num(x["mcnemar"]["p_value"]),
          Pct(x["flip_rate"]).substr(1),
          Pct(x["unparsed_rate_reference"]).substr(1),
          Pct(x["unparsed_rate"]).substr(1), Str(x["paired_examples"]));
    }
  }
  if (rows.empty()) return "";
  return fmt::format("<h3>{} <span class=\"ci\">({})</span></h3>\n",
                     Escape(task), Escape(PrimaryMetricName(s, task))) +
         "<table>\n<thead><tr><th>precision</th><th class=\"l\">strategy</th>"
         "<th>reference</th><th>value</th><th>Δ [95% CI]</th>"
         "<th>relative drop [95% CI]</th><th class=\"l\">≤ 5%?</th><th>McNemar "
         "p</th>"
         "<th>flip rate</th><th>unparsed (ref → "
         "this)</th><th>n</th></tr></thead>\n"
         "<tbody>\n" +
         rows + "</tbody></table>\n";
}

std::string CellTable(const nlohmann::json& s) {
  std::string h =
      "<table>\n<thead><tr><th>precision</th><th class=\"l\">task</th>"
      "<th class=\"l\">strategy</th><th "
      "class=\"l\">template</th><th>examples</th>"
      "<th>unparsed</th><th>latency mean / p50 / p95 (ms)</th><th>prefill "
      "tok/s</th>"
      "<th>decode tok/s</th><th>tokens in / out</th></tr></thead>\n<tbody>\n";
  for (const auto& c : s["cells"]) {
    h += fmt::format(
        "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>"
        "<td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.1f} / {:.1f} / "
        "{:.1f}</td>"
        "<td>{:.1f}</td><td>{:.1f}</td><td>{:.1f} / {:.1f}</td></tr>\n",
        Swatch(c["precision"]), Escape(Str(c["task"])),
        Escape(Str(c["strategy"])), Escape(Str(c["template"])),
        Str(c["examples"]), Pct(c["unparsed_rate"]).substr(1),
        c["latency_ms"]["mean"].get<double>(),
        c["latency_ms"]["p50"].get<double>(),
        c["latency_ms"]["p95"].get<double>(),
        c["prefill_tokens_per_s"].get<double>(),
        c["decode_tokens_per_s"].get<double>(),
        c["tokens_in"]["mean"].get<double>(),
        c["tokens_out"]["mean"].get<double>());
  }
  return h + "</tbody></table>\n";
}

std::string Cards(const nlohmann::json& s) {
  std::string h = "<div class=\"cards\">\n";
  const std::string ref = s["summary"]["reference_precision"];
  for (const auto& p : s["summary"]["precisions"]) {
    const std::string name = p["precision"];
    const bool is_ref = name == ref;
    std::string verdict =
        is_ref                                     ? "reference"
        : p["ci_supports_within_5pct"].get<bool>() ? "supported"
        : p["relative_drop"].get<double>() > 0.05  ? "violated"
                                                   : "not established";
    h += fmt::format(
        "<div class=\"card\" style=\"--c:{}\"><div class=\"p\">{}</div>"
        "<div class=\"k\">weights · peak memory</div><div class=\"v\">{} · "
        "{}</div>"
        "<div class=\"k\">latency / example · mean main metric</div>"
        "<div class=\"v\">{:.1f} ms · {:.3f}</div>"
        "<div class=\"k\">mean relative drop · within 5% (CI)</div>"
        "<div class=\"v\">{} {}</div></div>\n",
        PrecisionColor(name), Escape(name), SummaryBytes(p, "weights_bytes"),
        SummaryBytes(p, "peak_rss_bytes"), p["latency_ms_mean"].get<double>(),
        p["main_metric_mean"].get<double>(),
        is_ref ? "" : Pct(p["relative_drop"]), Badge(verdict));
  }
  return h + "</div>\n";
}

}  // namespace

std::string RenderHtml(const nlohmann::json& s) {
  const auto& meta = s["meta"];
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\">\n"
      "<title>bioquant report</title>\n<style>" +
      std::string(kCss) + "</style></head>\n<body><main>\n";
  h += "<h1>bioquant study report</h1>\n";
  h += fmt::format(
      "<p class=\"meta\">store <code>{}</code> · model fingerprint "
      "<code>{}</code> · "
      "created {} · reference precision <b>{}</b> · {} bootstrap resamples "
      "(seed {}), "
      "95% percentile intervals</p>\n",
      Escape(s.value("store", "")),
      Escape(Str(meta.value("model_fingerprint", ""))),
      Escape(Str(meta.value("created_at", ""))),
      Escape(Str(s["reference_precision"])), Str(s["bootstrap"]["resamples"]),
      Str(s["bootstrap"]["seed"]));
  h += Cards(s);
  if (const std::string note = PredictedMemoryNote(s); !note.empty()) {
    h += "<p class=\"note\">" + Escape(note) + "</p>\n";
  }
  h += fmt::format(
      "<p class=\"note\">Criterion: {} relative to the reference, judged per "
      "task. "
      "<b>supported</b>: the upper 95% CI bound of the drop is within 5%; "
      "<b>not "
      "established</b>: the point estimate is within 5% but the CI crosses it; "
      "<b>violated</b>: the point estimate exceeds 5%.</p>\n",
      Escape(s.value("criterion", "")));

  h += "<h2>Memory vs. score</h2>\n";
  h += Figure(
      MemoryFigure(s),
      "Each point is one precision; x is the largest memory measured for it.");
  for (const auto& st : s["strategies"]) {
    h += fmt::format("<h2>Table 1 — {}</h2>\n", Escape(Str(st)));
    h += Table1(s, st);
    h += Figure(
        MetricFigure(s, st),
        fmt::format("Per-task main metric with 95% bootstrap CIs, strategy {}.",
                    Escape(Str(st))));
  }
  h += "<h2>Faithfulness to " + Escape(Str(s["reference_precision"])) +
       "</h2>\n";
  h += Figure(DropFigure(s),
              "Relative drop per task, precision and strategy, with "
              "paired-bootstrap 95% "
              "CIs.");
  for (const auto& t : s["tasks"]) h += ComparisonTable(s, t);
  h += "<h2>Speed</h2>\n";
  h += Figure(LatencyFigure(s),
              "Latency per example, by strategy and precision.");
  h += Figure(ThroughputFigure(s), "Prefill and decode throughput.");
  if (s["strategies"].size() > 1) {
    h += "<h2>Strategies</h2>\n";
    h += Figure(StrategyFigure(s),
                "Mean main metric per strategy and precision.");
  }
  const auto tables = BreakdownTables(s);
  if (!tables.empty()) {
    h += "<h2>Hallucination, rare concepts, answer flips</h2>\n";
    for (const auto& t : tables) h += TableHtml(t);
  }
  h += "<h2>All cells</h2>\n" + CellTable(s);
  h += "</main></body></html>\n";
  return h;
}

}  // namespace bioquant
