#include "tasks/score_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "tasks/csv.h"
#include "tasks/ner_align.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant {
namespace {

std::string Lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string JoinList(const std::vector<std::string>& v) {
  std::string r;
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + v[i];
  return r;
}

std::string FormatFromExtension(const std::string& path) {
  const size_t dot = path.rfind('.');
  const std::string ext =
      dot == std::string::npos ? "" : Lower(path.substr(dot + 1));
  if (ext == "bio" || ext == "conll" || ext == "conll3" || ext == "iob")
    return "conll3";
  if (ext == "tsv" || ext == "txt") return "tsv";
  if (ext == "jsonl") return "jsonl";
  Fail(
      "{}: cannot infer the format from the extension '.{}'; pass --format "
      "conll3|tsv|jsonl",
      path, ext);
}

// One example as read from any format, before parsing.
struct Row {
  int line = 0;
  std::vector<std::string> gold;  // RE/QA: one label; multi: labels; NER: tags
  std::optional<std::string> pred;     // raw output; nullopt = none given
  std::vector<std::string> pred_tags;  // conll3 only
  std::vector<std::string> tokens;     // NER
  std::map<std::string, std::string> options;
};

// Canonical spelling of a gold label (case-insensitive match).
std::string CanonicalGold(const TaskInfo& task, const std::string& raw,
                          const std::string& path, int line) {
  const std::string t = Lower(Trim(raw));
  for (const auto& l : task.labels) {
    if (Lower(l) == t) return l;
  }
  Fail("{}:{}: unknown gold label '{}' for task {} (labels: {})", path, line,
       raw, task.id, JoinList(task.labels));
}

std::vector<std::string> SplitGoldLabels(const TaskInfo& task,
                                         const std::string& raw,
                                         const std::string& path, int line) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t e = raw.find(';', pos);
    const std::string item =
        Trim(raw.substr(pos, e == std::string::npos ? e : e - pos));
    if (!item.empty()) {
      std::string l = CanonicalGold(task, item, path, line);
      if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
    }
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  if (out.empty()) Fail("{}:{}: empty gold label set", path, line);
  return out;
}

void CheckTag(const std::string& tag, const char* column,
              const std::string& path, int line) {
  if (!IsIob2Tag(tag)) {
    Fail("{}:{}: {} tag '{}' is not an IOB2 tag (O, B, I, B-<type>, I-<type>)",
         path, line, column, tag);
  }
}

// ------------------------------------------------------------------ conll3

struct Conll {
  std::vector<std::vector<std::string>> gold, pred;
  size_t tokens = 0;
  bool split_by_rule = false;
};

Conll ReadConll3(const std::string& path, const std::string& content) {
  Conll c;
  std::vector<std::string> g, p;
  auto flush = [&]() {
    if (g.empty()) return;
    c.gold.push_back(std::move(g));
    c.pred.push_back(std::move(p));
    g.clear();
    p.clear();
  };
  // Sentences by blank lines first; see below for files without them.
  std::vector<std::string> all_toks;
  int line = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t e = content.find('\n', pos);
    std::string l = content.substr(pos, e == std::string::npos ? e : e - pos);
    pos = e == std::string::npos ? content.size() : e + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (Trim(l).empty()) {
      flush();
      continue;
    }
    std::vector<std::string> f;
    size_t s = 0;
    while (true) {
      size_t t = l.find('\t', s);
      f.push_back(l.substr(s, t == std::string::npos ? t : t - s));
      if (t == std::string::npos) break;
      s = t + 1;
    }
    if (f.size() != 3) {
      Fail(
          "{}:{}: expected 3 tab-separated fields (token, gold tag, predicted "
          "tag), "
          "found {}",
          path, line, f.size());
    }
    f[1] = Trim(f[1]);
    f[2] = Trim(f[2]);
    CheckTag(f[1], "gold", path, line);
    CheckTag(f[2], "predicted", path, line);
    g.push_back(f[1]);
    p.push_back(f[2]);
    all_toks.push_back(f[0]);
    ++c.tokens;
  }
  flush();
  if (c.tokens == 0)
    Fail("{}:{}: empty file (no token lines)", path, line == 0 ? 1 : line);
  if (c.gold.size() == 1) {
    // No sentence breaks: cut after sentence-final punctuation tagged O on
    // both sides, which leaves every entity of either side intact.
    Conll cut;
    cut.tokens = c.tokens;
    cut.split_by_rule = true;
    const auto& G = c.gold[0];
    const auto& P = c.pred[0];
    for (size_t i = 0; i < G.size(); ++i) {
      g.push_back(G[i]);
      p.push_back(P[i]);
      const std::string& t = all_toks[i];
      if ((t == "." || t == "!" || t == "?") && G[i] == "O" && P[i] == "O") {
        cut.gold.push_back(std::move(g));
        cut.pred.push_back(std::move(p));
        g.clear();
        p.clear();
      }
    }
    if (!g.empty()) {
      cut.gold.push_back(std::move(g));
      cut.pred.push_back(std::move(p));
    }
    return cut;
  }
  return c;
}

// --------------------------------------------------------------------- tsv

std::vector<std::string> SplitSpaces(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

int FindColumn(const std::vector<std::string>& header,
               const std::string& wanted,
               const std::vector<const char*>& defaults, const char* what,
               const char* flag, const std::string& path, int line) {
  std::vector<std::string> lower;
  for (const auto& h : header) lower.push_back(Lower(Trim(h)));
  if (!wanted.empty()) {
    for (size_t i = 0; i < lower.size(); ++i) {
      if (lower[i] == Lower(wanted)) return static_cast<int>(i);
    }
    Fail("{}:{}: no column '{}' for {} (columns: {})", path, line, wanted, what,
         JoinList(header));
  }
  for (const char* d : defaults) {
    for (size_t i = 0; i < lower.size(); ++i) {
      if (lower[i] == d) return static_cast<int>(i);
    }
  }
  std::vector<std::string> tried(defaults.begin(), defaults.end());
  Fail("{}:{}: no {} column (looked for {}; pass {}); columns: {}", path, line,
       what, JoinList(tried), flag, JoinList(header));
}

std::vector<Row> ReadTsvRows(const TaskInfo& task, const std::string& path,
                             const std::string& content,
                             const ScoreOptions& opts, std::string* gold_name,
                             std::string* pred_name) {
  const auto records = ParseDelimited(content, '\t', path);
  if (records.empty()) Fail("{}:1: empty file (no header)", path);
  const auto& header = records[0].fields;
  const int gi = FindColumn(
      header, opts.gold_col,
      {"gold", "label", "labels", "answer", "answer_idx", "final_decision"},
      "gold", "--gold-col", path, records[0].line);
  const int pi =
      FindColumn(header, opts.pred_col,
                 {"pred", "prediction", "predicted", "predicted_processed",
                  "predicted_raw", "output", "response"},
                 "prediction", "--pred-col", path, records[0].line);
  *gold_name = header[gi];
  *pred_name = header[pi];
  // NER: a "tokens" column of space-separated tokens; gold is the
  // space-separated IOB2 tags.
  int tokens_col = -1;
  if (task.type == TaskType::kNer) {
    tokens_col = FindColumn(header, "", {"tokens"}, "tokens", "a tokens column",
                            path, records[0].line);
  }
  // MedQA option texts from columns named A..E, when present.
  std::map<std::string, int> option_cols;
  if (IsLetterQa(task)) {
    for (const auto& l : task.labels) {
      for (size_t i = 0; i < header.size(); ++i) {
        if (Trim(header[i]) == l) option_cols[l] = static_cast<int>(i);
      }
    }
  }
  std::vector<Row> rows;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    if (rec.fields.size() != header.size()) {
      Fail("{}:{}: row has {} fields but the header has {}", path, rec.line,
           rec.fields.size(), header.size());
    }
    Row row;
    row.line = rec.line;
    if (task.type == TaskType::kNer) {
      row.tokens = SplitSpaces(rec.fields[tokens_col]);
      row.gold = SplitSpaces(rec.fields[gi]);
      if (row.gold.size() != row.tokens.size()) {
        Fail("{}:{}: {} gold tags for {} tokens", path, rec.line,
             row.gold.size(), row.tokens.size());
      }
      for (const auto& t : row.gold) CheckTag(t, "gold", path, rec.line);
    } else if (task.type == TaskType::kMultiLabel) {
      row.gold = SplitGoldLabels(task, rec.fields[gi], path, rec.line);
    } else {
      row.gold = {CanonicalGold(task, rec.fields[gi], path, rec.line)};
    }
    row.pred = rec.fields[pi];
    for (const auto& [l, c] : option_cols) row.options[l] = rec.fields[c];
    rows.push_back(std::move(row));
  }
  if (rows.empty())
    Fail("{}:{}: no data rows after the header", path, records[0].line + 1);
  return rows;
}

// ------------------------------------------------------------------- jsonl

std::vector<std::string> JsonStrings(const nlohmann::json& v, const char* key,
                                     const std::string& path, int line) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
    return out;
  }
  if (!v.is_array())
    Fail("{}:{}: \"{}\" must be a string or a list of strings", path, line,
         key);
  for (const auto& x : v) {
    if (!x.is_string())
      Fail("{}:{}: \"{}\" must hold strings only", path, line, key);
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::vector<Row> ReadJsonlRows(const TaskInfo& task, const std::string& path,
                               const std::string& content) {
  std::vector<Row> rows;
  int line = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t e = content.find('\n', pos);
    const std::string l =
        content.substr(pos, e == std::string::npos ? e : e - pos);
    pos = e == std::string::npos ? content.size() : e + 1;
    ++line;
    if (Trim(l).empty()) continue;
    nlohmann::json j = ParseJson(l, false);
    if (j.is_discarded() || !j.is_object())
      Fail("{}:{}: not a JSON object", path, line);
    if (!j.contains("gold")) Fail("{}:{}: missing \"gold\"", path, line);
    if (!j.contains("pred")) Fail("{}:{}: missing \"pred\"", path, line);
    Row row;
    row.line = line;
    const auto gold = JsonStrings(j["gold"], "gold", path, line);
    switch (task.type) {
      case TaskType::kNer: {
        if (!j.contains("tokens"))
          Fail("{}:{}: NER rows need \"tokens\"", path, line);
        row.tokens = JsonStrings(j["tokens"], "tokens", path, line);
        row.gold = gold;
        if (row.gold.size() != row.tokens.size()) {
          Fail("{}:{}: {} gold tags for {} tokens", path, line, row.gold.size(),
               row.tokens.size());
        }
        for (auto& t : row.gold) CheckTag(t, "gold", path, line);
        break;
      }
      case TaskType::kMultiLabel:
        for (const auto& g : gold) {
          for (auto& l : SplitGoldLabels(task, g, path, line)) {
            if (std::find(row.gold.begin(), row.gold.end(), l) ==
                row.gold.end()) {
              row.gold.push_back(l);
            }
          }
        }
        if (row.gold.empty()) Fail("{}:{}: empty gold label set", path, line);
        break;
      default:
        if (gold.size() != 1)
          Fail("{}:{}: \"gold\" must be one label", path, line);
        row.gold = {CanonicalGold(task, gold[0], path, line)};
    }
    const auto& p = j["pred"];
    if (p.is_string()) {
      row.pred = p.get<std::string>();
    } else if (p.is_array()) {
      std::string joined;
      for (const auto& s : JsonStrings(p, "pred", path, line)) {
        joined += (joined.empty() ? "" : "\n") + s;
      }
      row.pred = joined;
    } else if (!p.is_null()) {
      Fail("{}:{}: \"pred\" must be the raw model output (a string)", path,
           line);
    }
    if (j.contains("options")) {
      if (!j["options"].is_object())
        Fail("{}:{}: \"options\" must be an object", path, line);
      for (auto it = j["options"].begin(); it != j["options"].end(); ++it) {
        if (!it.value().is_string()) {
          Fail("{}:{}: option '{}' must be a string", path, line, it.key());
        }
        row.options[it.key()] = it.value().get<std::string>();
      }
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) Fail("{}:1: empty file (no JSON lines)", path);
  return rows;
}

// Reason without its details: "several answers (A, B)" -> "several answers".
std::string ReasonKey(const std::string& r) {
  const size_t p = r.find(" (");
  return p == std::string::npos ? r : r.substr(0, p);
}

nlohmann::json MetricsJson(const MetricSet& set, const BootstrapOptions& opts) {
  nlohmann::json m = nlohmann::json::object();
  for (const auto& v : set.Evaluate(opts)) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [k, c] : v.counts) {
      // Counts are whole numbers; print them as such.
      counts[k] = static_cast<int64_t>(c);
    }
    m[v.name] = {{"value", v.value},
                 {"ci_low", v.ci_low},
                 {"ci_high", v.ci_high},
                 {"counts", counts}};
  }
  return m;
}

}  // namespace

nlohmann::json ScoreFile(const TaskInfo& task, const std::string& path,
                         const ScoreOptions& opts) {
  if (opts.bootstrap.resamples < 0) Fail("--resamples must be >= 0");
  const std::string format =
      opts.format.empty() ? FormatFromExtension(path) : opts.format;
  if (format != "conll3" && format != "tsv" && format != "jsonl") {
    Fail("--format: unknown format '{}' (conll3|tsv|jsonl)", format);
  }
  const std::string content = ReadFile(path);
  if (Trim(content).empty()) Fail("{}:1: empty file", path);

  nlohmann::json out;
  out["task"] = task.id;
  out["type"] = TaskTypeName(task.type);
  out["file"] = path;
  out["format"] = format;
  out["parse_mode"] =
      opts.parse_mode == ParseMode::kStrict ? "strict" : "flexible";

  std::optional<MetricSet> set;
  size_t examples = 0, unparsed = 0;
  std::map<std::string, int> reasons;
  auto note_unparsed = [&](const Parsed& p) {
    ++unparsed;
    ++reasons[ReasonKey(p.reason)];
  };

  if (format == "conll3") {
    if (task.type != TaskType::kNer) {
      Fail("{}: conll3 holds NER tags but task {} is {}", path, task.id,
           TaskTypeName(task.type));
    }
    const Conll c = ReadConll3(path, content);
    set = MakeNerMetrics(c.gold, c.pred);
    examples = c.gold.size();
    out["tokens"] = c.tokens;
    out["units_from"] =
        c.split_by_rule ? "sentence-final punctuation" : "blank lines";
  } else {
    std::vector<Row> rows;
    if (format == "tsv") {
      std::string gname, pname;
      rows = ReadTsvRows(task, path, content, opts, &gname, &pname);
      out["gold_column"] = gname;
      out["pred_column"] = pname;
    } else {
      rows = ReadJsonlRows(task, path, content);
    }
    examples = rows.size();
    auto parse = [&](const Row& r) {
      if (!r.pred) {
        Parsed p;
        p.reason = "no output";
        return p;
      }
      return ParseOutput(task, *r.pred, r.options, opts.parse_mode,
                         opts.ner_style);
    };
    switch (task.type) {
      case TaskType::kNer: {
        std::vector<std::vector<std::string>> gold, pred;
        for (const auto& r : rows) {
          const Parsed p = parse(r);
          if (!p.ok) note_unparsed(p);
          gold.push_back(r.gold);
          pred.push_back(MentionsToIob2(
              r.tokens, p.ok ? p.labels : std::vector<std::string>{}));
        }
        set = MakeNerMetrics(gold, pred);
        out["ner_alignment"] =
            "every whitespace-free, case-insensitive token-sequence occurrence "
            "of "
            "each mention, longest first, no overlaps";
        break;
      }
      case TaskType::kMultiLabel: {
        std::vector<std::vector<std::string>> gold;
        std::vector<std::optional<std::vector<std::string>>> pred;
        for (const auto& r : rows) {
          const Parsed p = parse(r);
          if (!p.ok) note_unparsed(p);
          gold.push_back(r.gold);
          pred.push_back(p.ok ? std::optional(p.labels) : std::nullopt);
        }
        set = MakeMultiLabelMetrics(gold, pred, task.labels);
        break;
      }
      case TaskType::kRelation:
      case TaskType::kQa: {
        std::vector<std::string> gold;
        std::vector<std::optional<std::string>> pred;
        for (const auto& r : rows) {
          const Parsed p = parse(r);
          if (!p.ok) note_unparsed(p);
          gold.push_back(r.gold[0]);
          pred.push_back(p.ok ? std::optional(p.labels[0]) : std::nullopt);
        }
        set = task.type == TaskType::kRelation
                  ? MakeRelationMetrics(gold, pred, task.labels,
                                        task.negative_label)
                  : MakeQaMetrics(gold, pred, task.labels);
        break;
      }
    }
  }
  out["examples"] = examples;
  out["units"] = set->units();
  out["unparsed"] = unparsed;
  out["unparsed_rate"] =
      examples ? static_cast<double>(unparsed) / examples : 0.0;
  nlohmann::json rj = nlohmann::json::object();
  for (const auto& [k, v] : reasons) rj[k] = v;
  out["unparsed_reasons"] = rj;
  out["primary_metric"] = set->primary();
  out["metrics"] = MetricsJson(*set, opts.bootstrap);
  const auto per_class = set->PerClass();
  if (!per_class.empty()) {
    nlohmann::json pc = nlohmann::json::object();
    for (const auto& c : per_class) {
      pc[c.label] = {{"tp", static_cast<int64_t>(c.tp)},
                     {"fp", static_cast<int64_t>(c.fp)},
                     {"fn", static_cast<int64_t>(c.fn)},
                     {"support", static_cast<int64_t>(c.tp + c.fn)},
                     {"precision", c.Precision()},
                     {"recall", c.Recall()},
                     {"f1", c.F1()}};
    }
    out["per_class"] = pc;
  }
  out["bootstrap"] = {
      {"seed", opts.bootstrap.seed},
      {"resamples", opts.bootstrap.resamples},
      {"level", opts.bootstrap.level},
      {"method", "percentile"},
      {"unit", task.type == TaskType::kNer ? "sentence" : "example"}};
  return out;
}

std::string FormatScoreText(const nlohmann::json& r) {
  std::string s =
      fmt::format("{} ({}), {} examples, format {}\n",
                  r["task"].get<std::string>(), r["file"].get<std::string>(),
                  r["examples"].get<size_t>(), r["format"].get<std::string>());
  const std::string primary = r["primary_metric"].get<std::string>();
  for (auto it = r["metrics"].begin(); it != r["metrics"].end(); ++it) {
    const auto& m = it.value();
    s += fmt::format("  {:<24} {:.4f}  [{:.4f}, {:.4f}]{}\n", it.key(),
                     m["value"].get<double>(), m["ci_low"].get<double>(),
                     m["ci_high"].get<double>(),
                     it.key() == primary ? "  (primary)" : "");
  }
  s += fmt::format("  {:<24} {} ({:.2f}%)\n", "unparsed",
                   r["unparsed"].get<size_t>(),
                   100 * r["unparsed_rate"].get<double>());
  s +=
      fmt::format("  {:.0f}% CI: percentile bootstrap, {} resamples, seed {}\n",
                  100 * r["bootstrap"]["level"].get<double>(),
                  r["bootstrap"]["resamples"].get<int>(),
                  r["bootstrap"]["seed"].get<uint64_t>());
  return s;
}

}  // namespace bioquant
