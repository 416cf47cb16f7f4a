// The report's breakdown tables (study/breakdowns.h): NER hallucination,
// rare concepts and a sample of answer flips, as Markdown or HTML tables.
#include <fmt/format.h>

#include "study/report.h"
#include "study/svg.h"

namespace bioquant {
namespace report {
namespace {

constexpr size_t kFlipSample = 3;  // flips shown per comparison

std::string ValueCi(const nlohmann::json& v, const char* value = "value") {
  if (!v.is_object() || !v.contains(value) || v[value].is_null()) return "–";
  return fmt::format("{} [{}, {}]", Num(v[value]),
                     Num(v.value("ci_low", v[value])),
                     Num(v.value("ci_high", v[value])));
}

std::string Cut(std::string s, size_t n = 60) {
  if (s.size() > n) s = s.substr(0, n - 1) + "…";
  return s.empty() ? "(unparsed)" : s;
}

}  // namespace

std::vector<Table> BreakdownTables(const nlohmann::json& s) {
  std::vector<Table> out;
  const std::string ref = s.value("reference_precision", "");
  Table h{"NER hallucination: predicted mentions not in the input sentence",
          {"task", "strategy", "precision", "per 100 mentions [95% CI]",
           "mentions", "examples with ≥1", "Δ vs " + ref + " [95% CI]"},
          {},
          "Case- and whitespace-insensitive match against the sentence; "
          "paired bootstrap over examples."};
  Table r{"Rare concepts: NER recall / RE macro-F1 by train-split frequency",
          {"task", "strategy", "precision", "metric", "unseen", "1–2", "≥3",
           "rel. drop unseen", "rel. drop 1–2", "rel. drop ≥3"},
          {},
          "Buckets by how often the gold entity (RE: entity pair) occurs in "
          "the task's train split; value [95% CI] (gold entities or "
          "examples); relative drop vs " +
              ref + " [paired 95% CI]."};
  Table f{"Answer flips vs " + ref + " (sample)",
          {"task", "strategy", "precision", "flips / paired", "example",
           ref + " answer", "answer", "gold"},
          {},
          "All flips are listed in the JSON report (comparisons[].flips)."};
  for (const auto& c : s["cells"]) {
    const std::string p = Str(c["precision"]), t = Str(c["task"]),
                      st = Str(c["strategy"]);
    const nlohmann::json* cmp = FindComparison(s, p, t, st);
    if (c.contains("hallucination")) {
      const auto& hj = c["hallucination"];
      std::string delta = "(reference)";
      if (cmp && cmp->contains("hallucination")) {
        const auto& d = (*cmp)["hallucination"];
        delta =
            fmt::format("{} [{}, {}]", Num(d["delta"], 2),
                        Num(d["delta_ci_low"], 2), Num(d["delta_ci_high"], 2));
      }
      h.rows.push_back(
          {t, st, p,
           fmt::format("{} [{}, {}]", Num(hj["per_100_mentions"], 1),
                       Num(hj["ci_low"], 1), Num(hj["ci_high"], 1)),
           Str(hj["mentions"]),
           fmt::format("{} / {}", Str(hj["examples_with_any"]),
                       Str(hj["examples"])),
           delta});
    }
    if (c.contains("rare_concepts")) {
      const auto& rc = c["rare_concepts"];
      if (!rc.value("available", false)) {
        r.rows.push_back({t, st, p, "–",
                          "not available: " + rc.value("reason", std::string()),
                          "", "", "", "", ""});
      } else {
        std::vector<std::string> row = {t, st, p, Str(rc["metric"])};
        for (const char* b : {"unseen", "1-2", ">=3"}) {
          const auto& bj = rc["buckets"][b];
          const std::string n =
              bj.contains("gold") ? Str(bj["gold"]) : Str(bj["examples"]);
          row.push_back(ValueCi(bj) + " (" + n + ")");
        }
        for (const char* b : {"unseen", "1-2", ">=3"}) {
          std::string drop = p == ref ? "(reference)" : "–";
          if (cmp && cmp->contains("rare_concepts") &&
              (*cmp)["rare_concepts"].value("available", false)) {
            const auto& pj = (*cmp)["rare_concepts"]["buckets"][b];
            if (pj.contains("relative_drop") &&
                !pj["relative_drop"].is_null()) {
              drop = fmt::format("{} [{}, {}]", Pct(pj["relative_drop"]),
                                 Pct(pj["relative_drop_ci_low"]),
                                 Pct(pj["relative_drop_ci_high"]));
            }
          }
          row.push_back(drop);
        }
        r.rows.push_back(row);
      }
    }
    if (cmp && cmp->contains("flips")) {
      const auto& fl = (*cmp)["flips"];
      const std::string count =
          fmt::format("{} / {}", Str((*cmp)["flips_total"]),
                      Str((*cmp)["paired_examples"]));
      if (fl.empty()) {
        f.rows.push_back({t, st, p, count, "–", "", "", ""});
      }
      for (size_t i = 0; i < fl.size() && i < kFlipSample; ++i) {
        std::string gold;
        for (const auto& g : fl[i]["gold"])
          gold += (gold.empty() ? "" : "; ") + Str(g);
        f.rows.push_back({t, st, p, i == 0 ? count : "", Str(fl[i]["id"]),
                          Cut(Str(fl[i]["reference_answer"])),
                          Cut(Str(fl[i]["answer"])),
                          gold.empty() ? "(none)" : Cut(gold)});
      }
    }
  }
  for (Table* t : {&h, &r, &f}) {
    if (!t->rows.empty()) out.push_back(std::move(*t));
  }
  return out;
}

std::string TableMarkdown(const Table& t) {
  auto cell = [](std::string v) {
    std::string o;
    for (char c : v) o += c == '|' ? std::string("\\|") : std::string(1, c);
    return o;
  };
  std::string md = "### " + t.title + "\n\n|";
  for (const auto& c : t.header) md += " " + cell(c) + " |";
  md += "\n|";
  for (size_t i = 0; i < t.header.size(); ++i) md += "---|";
  md += "\n";
  for (const auto& row : t.rows) {
    md += "|";
    for (const auto& v : row) md += " " + cell(v) + " |";
    md += "\n";
  }
  if (!t.note.empty()) md += "\n" + t.note + "\n";
  return md + "\n";
}

std::string TableHtml(const Table& t) {
  std::string h = "<h3>" + svg::Escape(t.title) + "</h3>\n<table><thead><tr>";
  for (const auto& c : t.header) h += "<th>" + svg::Escape(c) + "</th>";
  h += "</tr></thead><tbody>\n";
  for (const auto& row : t.rows) {
    h += "<tr>";
    for (size_t i = 0; i < row.size(); ++i)
      h += std::string(i < 3 ? "<td class=\"l\">" : "<td>") +
           svg::Escape(row[i]) + "</td>";
    h += "</tr>\n";
  }
  h += "</tbody></table>\n";
  if (!t.note.empty())
    h += "<p class=\"note\">" + svg::Escape(t.note) + "</p>\n";
  return h;
}

}  // namespace report
}  // namespace bioquant
