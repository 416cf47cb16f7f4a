#include "tasks/loaders.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "tasks/csv.h"
#include "tasks/pyliteral.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant {
namespace {

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// Strict membership check: gold labels must be spelled as in the label set.
void CheckLabel(const TaskInfo& task, const std::string& label,
                const std::string& path, int line) {
  if (std::find(task.labels.begin(), task.labels.end(), label) ==
      task.labels.end()) {
    Fail("{}:{}: unknown label '{}' for task {} (known: {})", path, line, label,
         task.id, Join(task.labels, ", "));
  }
}

std::string Truncate(const std::string& s) {
  return s.size() > 60 ? s.substr(0, 60) + "..." : s;
}

// NER: token<TAB>tag per line, sentences separated by blank lines (or by a
// line holding only a tab, as the 200-sentence subsets have). Tags are IOB2
// without a type; "B-Chemical"-style tags are accepted and reduced to B/I.
std::vector<Example> LoadNer(const TaskInfo& task, const std::string& path,
                             const std::string& text) {
  std::vector<Example> out;
  Example cur;
  auto flush = [&] {
    if (cur.tokens.empty()) return;
    cur.id = std::to_string(out.size());
    cur.text = Join(cur.tokens, " ");
    out.push_back(std::move(cur));
    cur = Example();
  };
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (IsBlank(line)) {
      flush();
      continue;
    }
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos ||
        line.find('\t', tab + 1) != line.npos) {
      Fail("{}:{}: expected 'token<TAB>tag', found '{}'", path, line_no,
           Truncate(std::string(line)));
    }
    std::string token(line.substr(0, tab));
    std::string tag(line.substr(tab + 1));
    if (tag.size() > 2 && (tag[0] == 'B' || tag[0] == 'I') && tag[1] == '-') {
      tag.resize(1);
    }
    if (tag != "B" && tag != "I" && tag != "O") {
      Fail("{}:{}: unknown tag '{}' (expected IOB2: B, I or O)", path, line_no,
           tag);
    }
    if (token.empty()) Fail("{}:{}: empty token", path, line_no);
    cur.tokens.push_back(std::move(token));
    cur.tags.push_back(std::move(tag));
  }
  flush();
  if (out.empty()) Fail("{}:1: file is empty (no sentences)", path);
  return out;
}

// Parses a TSV file and checks the header; returns the data rows.
std::vector<CsvRow> ReadTable(const std::string& path, const std::string& text,
                              const std::vector<std::string>& header) {
  std::vector<CsvRow> rows = ParseDelimited(text, '\t', path);
  if (rows.empty()) Fail("{}:1: file is empty", path);
  if (rows[0].fields != header) {
    Fail("{}:1: expected header '{}', found '{}'", path, Join(header, "<TAB>"),
         Truncate(Join(rows[0].fields, "<TAB>")));
  }
  for (const CsvRow& r : rows) {
    if (r.fields.size() != header.size()) {
      Fail("{}:{}: expected {} tab-separated fields, found {}", path, r.line,
           header.size(), r.fields.size());
    }
  }
  if (rows.size() == 1) Fail("{}:2: no examples after the header", path);
  rows.erase(rows.begin());
  return rows;
}

// A header found by column names (PubMedQA, MedQA-5 carry extra columns).
struct NamedTable {
  std::vector<CsvRow> rows;
  std::vector<std::string> header;
  size_t Col(const std::string& name) const {
    return std::find(header.begin(), header.end(), name) - header.begin();
  }
};

NamedTable ReadNamedTable(const std::string& path, const std::string& text,
                          const std::vector<std::string>& required) {
  NamedTable t;
  t.rows = ParseDelimited(text, '\t', path);
  if (t.rows.empty()) Fail("{}:1: file is empty", path);
  t.header = t.rows[0].fields;
  for (const std::string& name : required) {
    if (t.Col(name) == t.header.size()) {
      Fail("{}:1: header lacks column '{}' (found '{}')", path, name,
           Truncate(Join(t.header, "<TAB>")));
    }
  }
  for (const CsvRow& r : t.rows) {
    if (r.fields.size() != t.header.size()) {
      Fail("{}:{}: expected {} tab-separated fields, found {}", path, r.line,
           t.header.size(), r.fields.size());
    }
  }
  if (t.rows.size() == 1) Fail("{}:2: no examples after the header", path);
  t.rows.erase(t.rows.begin());
  return t;
}

std::vector<Example> LoadRelation(const TaskInfo& task, const std::string& path,
                                  const std::string& text) {
  std::vector<Example> out;
  for (const CsvRow& r :
       ReadTable(path, text, {"index", "sentence", "label"})) {
    CheckLabel(task, r.fields[2], path, r.line);
    Example ex;
    ex.id = r.fields[0];
    ex.text = r.fields[1];
    ex.gold = {r.fields[2]};
    out.push_back(std::move(ex));
  }
  return out;
}

std::vector<Example> LoadMultiLabel(const TaskInfo& task,
                                    const std::string& path,
                                    const std::string& text) {
  std::vector<Example> out;
  for (const CsvRow& r : ReadTable(path, text, {"pmid", "text", "labels"})) {
    Example ex;
    ex.id = r.fields[0];
    ex.text = r.fields[1];
    size_t start = 0;
    const std::string& labels = r.fields[2];
    while (start <= labels.size()) {
      size_t end = labels.find(';', start);
      if (end == std::string::npos) end = labels.size();
      std::string label = labels.substr(start, end - start);
      start = end + 1;
      if (label.empty()) continue;  // tolerate "a;;b" and a trailing ';'
      CheckLabel(task, label, path, r.line);
      if (std::find(ex.gold.begin(), ex.gold.end(), label) == ex.gold.end())
        ex.gold.push_back(std::move(label));
    }
    if (ex.gold.empty()) Fail("{}:{}: document has no label", path, r.line);
    out.push_back(std::move(ex));
  }
  return out;
}

// Checks the QA answer key against the options and the stated answer text.
void CheckAnswer(const TaskInfo& task, const Example& ex,
                 const std::string& answer_text, const std::string& path,
                 int line) {
  CheckLabel(task, ex.gold[0], path, line);
  for (const auto& [letter, unused] : ex.options)
    CheckLabel(task, letter, path, line);
  const auto it = ex.options.find(ex.gold[0]);
  if (it == ex.options.end()) {
    Fail("{}:{}: answer '{}' is not one of the options", path, line,
         ex.gold[0]);
  }
  if (it->second != answer_text) {
    Fail("{}:{}: answer text '{}' differs from option {} '{}'", path, line,
         Truncate(answer_text), ex.gold[0], Truncate(it->second));
  }
}

std::vector<Example> LoadMedQaJsonl(const TaskInfo& task,
                                    const std::string& path,
                                    const std::string& text) {
  std::vector<Example> out;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (IsBlank(line)) continue;
    nlohmann::json j;
    try {
      j = ParseJson(line);
    } catch (const nlohmann::json::exception& e) {
      Fail("{}:{}: invalid JSON ({})", path, line_no, e.what());
    }
    for (const char* key : {"question", "options", "answer_idx", "answer"}) {
      if (!j.is_object() || !j.contains(key)) {
        Fail("{}:{}: missing field '{}'", path, line_no, key);
      }
    }
    if (!j["options"].is_object() || !j["question"].is_string() ||
        !j["answer_idx"].is_string() || !j["answer"].is_string()) {
      Fail(
          "{}:{}: 'question', 'answer_idx', 'answer' must be strings and "
          "'options' an object",
          path, line_no);
    }
    Example ex;
    ex.id = std::to_string(out.size());
    ex.text = j["question"].get<std::string>();
    for (const auto& [k, v] : j["options"].items()) {
      if (!v.is_string())
        Fail("{}:{}: option {} is not a string", path, line_no, k);
      ex.options[k] = v.get<std::string>();
    }
    ex.gold = {j["answer_idx"].get<std::string>()};
    CheckAnswer(task, ex, j["answer"].get<std::string>(), path, line_no);
    out.push_back(std::move(ex));
  }
  if (out.empty()) Fail("{}:1: file is empty", path);
  return out;
}

std::vector<Example> LoadMedQaTsv(const TaskInfo& task, const std::string& path,
                                  const std::string& text) {
  const NamedTable t = ReadNamedTable(
      path, text, {"question", "answer_idx", "answer", "options"});
  // pandas writes its row index as an unnamed first column; use it as the id
  // (the similarity rank files refer to it).
  const bool has_index = !t.header.empty() && t.header[0].empty();
  std::vector<Example> out;
  for (const CsvRow& r : t.rows) {
    Example ex;
    ex.id = has_index ? r.fields[0] : std::to_string(out.size());
    ex.text = r.fields[t.Col("question")];
    nlohmann::json opts;
    try {
      opts = ParsePyLiteral(r.fields[t.Col("options")]);
    } catch (const Error& e) {
      Fail("{}:{}: options: {}", path, r.line, e.what());
    }
    if (!opts.is_array()) Fail("{}:{}: options is not a list", path, r.line);
    for (const auto& o : opts) {
      if (!o.is_object() || !o.contains("key") || !o.contains("value") ||
          !o["key"].is_string() || !o["value"].is_string()) {
        Fail("{}:{}: each option must be {{'key': ..., 'value': ...}}", path,
             r.line);
      }
      ex.options[o["key"].get<std::string>()] = o["value"].get<std::string>();
    }
    ex.gold = {r.fields[t.Col("answer_idx")]};
    CheckAnswer(task, ex, r.fields[t.Col("answer")], path, r.line);
    out.push_back(std::move(ex));
  }
  return out;
}

std::vector<Example> LoadPubMedQa(const TaskInfo& task, const std::string& path,
                                  const std::string& text) {
  const NamedTable t = ReadNamedTable(
      path, text, {"QUESTION", "CONTEXTS", "final_decision", "pmid"});
  std::vector<Example> out;
  for (const CsvRow& r : t.rows) {
    Example ex;
    ex.id = r.fields[t.Col("pmid")];
    ex.text = r.fields[t.Col("QUESTION")];
    nlohmann::json ctx;
    try {
      ctx = ParsePyLiteral(r.fields[t.Col("CONTEXTS")]);
    } catch (const Error& e) {
      Fail("{}:{}: CONTEXTS: {}", path, r.line, e.what());
    }
    if (!ctx.is_array()) Fail("{}:{}: CONTEXTS is not a list", path, r.line);
    std::vector<std::string> paragraphs;
    for (const auto& p : ctx) {
      if (!p.is_string())
        Fail("{}:{}: CONTEXTS holds a non-string", path, r.line);
      paragraphs.push_back(p.get<std::string>());
    }
    ex.context = Join(paragraphs, "\n");
    ex.gold = {r.fields[t.Col("final_decision")]};
    CheckLabel(task, ex.gold[0], path, r.line);
    out.push_back(std::move(ex));
  }
  return out;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<Example> LoadTaskFile(const TaskInfo& task,
                                  const std::string& path) {
  if (!FileExists(path)) Fail("{}: no such file", path);
  const std::string text = ReadFile(path);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    Fail("{}:1: file is empty", path);
  }
  switch (task.type) {
    case TaskType::kNer:
      return LoadNer(task, path, text);
    case TaskType::kRelation:
      return LoadRelation(task, path, text);
    case TaskType::kMultiLabel:
      return LoadMultiLabel(task, path, text);
    case TaskType::kQa:
      if (task.id == "pubmedqa") return LoadPubMedQa(task, path, text);
      if (EndsWith(path, ".jsonl")) return LoadMedQaJsonl(task, path, text);
      return LoadMedQaTsv(task, path, text);
  }
  Fail("{}: task {} has no loader", path, task.id);
}

std::string SplitPath(const std::string& data_dir, const TaskInfo& task,
                      const std::string& split) {
  if (task.id == "medqa") return data_dir + "/medqa/" + split + "_4opt.jsonl";
  if (task.id == "medqa_5opt")
    return data_dir + "/medqa/" + split + "_5opt.tsv";
  return data_dir + "/" + task.id + "/" + split + ".tsv";
}

std::string RankFilePath(const std::string& data_dir, const TaskInfo& task) {
  if (task.id == "medqa")
    return data_dir + "/medqa/fewshot_similarity_rank_4opt.json";
  if (task.id == "medqa_5opt")
    return data_dir + "/medqa/fewshot_similarity_rank_5opt.json";
  return data_dir + "/" + task.id + "/fewshot_similarity_rank.json";
}

int CountEntities(const Example& example) {
  return static_cast<int>(
      std::count(example.tags.begin(), example.tags.end(), "B"));
}

std::vector<std::string> GoldMentions(const Example& example) {
  std::vector<std::string> out;
  for (size_t i = 0; i < example.tags.size(); ++i) {
    if (example.tags[i] != "B") continue;
    std::string m = example.tokens[i];
    for (size_t j = i + 1; j < example.tags.size() && example.tags[j] == "I";
         ++j)
      m += " " + example.tokens[j];
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace bioquant
