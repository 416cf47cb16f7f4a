#include "tasks/parse.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>

#include "util/error.h"
#include "util/json.h"

namespace bioquant {
namespace {

// ---------------------------------------------------------------- text utils

bool IsWordByte(unsigned char c) {
  // Bytes >= 0x80 are UTF-8 pieces of non-ASCII letters; keep them in words.
  return std::isalnum(c) || c >= 0x80;
}

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

bool StartsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Removes decoration a model puts around a bare answer: whitespace, quotes,
// backticks, markdown emphasis, brackets, trailing '.', ',' and ';'.
std::string CleanBare(std::string_view s) {
  std::string r = Trim(s);
  const std::string_view kWrap = "\"'`*_[](){}<>";
  bool changed = true;
  while (changed && !r.empty()) {
    changed = false;
    if (kWrap.find(r.front()) != std::string_view::npos) {
      r.erase(0, 1);
      changed = true;
    }
    if (!r.empty() && (kWrap.find(r.back()) != std::string_view::npos ||
                       r.back() == '.' || r.back() == ',' || r.back() == ';')) {
      r.pop_back();
      changed = true;
    }
    std::string t = Trim(r);
    if (t != r) {
      r = t;
      changed = true;
    }
  }
  return r;
}

// A lower-cased alphanumeric word with its byte range in the source text.
struct Word {
  std::string text;
  size_t begin = 0;
  size_t end = 0;
};

std::vector<Word> SplitWords(std::string_view s) {
  std::vector<Word> words;
  size_t i = 0;
  while (i < s.size()) {
    if (!IsWordByte(static_cast<unsigned char>(s[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && IsWordByte(static_cast<unsigned char>(s[j]))) ++j;
    words.push_back({Lower(s.substr(i, j - i)), i, j});
    i = j;
  }
  return words;
}

std::vector<std::string> WordTexts(std::string_view s) {
  std::vector<std::string> r;
  for (auto& w : SplitWords(s)) r.push_back(std::move(w.text));
  return r;
}

std::string JoinWords(const std::vector<std::string>& w) {
  std::string r;
  for (const auto& x : w) r += x;
  return r;
}

// Drops a reasoning model's "<think>...</think>" preamble.
std::string StripThink(const std::string& s) {
  const std::string lower = Lower(s);
  const size_t p = lower.rfind("</think>");
  if (p == std::string::npos) return s;
  return s.substr(p + 8);
}

bool IsRefusal(const std::string& text) {
  static const char* kPhrases[] = {
      "i'm sorry",          "i am sorry",       "i apologize",
      "i cannot",           "i can't",          "i can not",
      "as an ai",           "i'm unable",       "i am unable",
      "i'm not able",       "i am not able",    "i won't",
      "i will not",         "unable to answer", "i do not have enough",
      "i don't have enough"};
  // Refusals open the answer; the same words deep inside a verbose answer
  // ("... the study cannot ...") are not one.
  constexpr size_t kWindow = 120;
  const std::string lower = Lower(text);
  // Typographic apostrophes ("I’m") are common in chat output.
  std::string norm;
  for (size_t i = 0; i < lower.size(); ++i) {
    if (lower.compare(i, 3, "\xe2\x80\x99") == 0) {
      norm += '\'';
      i += 2;
    } else {
      norm += lower[i];
    }
  }
  const size_t start = norm.find_first_not_of(" \t\r\n");
  for (const char* p : kPhrases) {
    const size_t at = norm.find(p);
    if (at != std::string::npos && at - start < kWindow) return true;
  }
  return false;
}

// ---------------------------------------------------------------- JSON

// Keys whose value is the answer, in order of preference.
const char* const kAnswerKeys[] = {
    "answer",   "final_answer",  "final answer", "label",       "labels",
    "relation", "relation_type", "prediction",   "predictions", "output",
    "entities", "chemicals",     "diseases",     "mentions",    "result",
    "category", "categories",    "topics",       "decision",    "choice"};

void CollectJsonStrings(const nlohmann::json& v,
                        std::vector<std::string>* out) {
  if (v.is_string()) {
    out->push_back(v.get<std::string>());
  } else if (v.is_number() || v.is_boolean()) {
    out->push_back(v.dump());
  } else if (v.is_array()) {
    for (const auto& x : v) CollectJsonStrings(x, out);
  } else if (v.is_object()) {
    // An entity object: {"text": "aspirin", "type": "Chemical"}.
    for (const char* k : {"text", "mention", "entity", "name", "span"}) {
      if (v.contains(k)) {
        CollectJsonStrings(v[k], out);
        return;
      }
    }
  }
}

// Index one past the bracket that closes the one at `open`, honouring JSON
// strings; npos when unbalanced.
size_t MatchBracket(const std::string& s, size_t open) {
  const char o = s[open], c = o == '{' ? '}' : ']';
  int depth = 0;
  bool in_str = false;
  for (size_t i = open; i < s.size(); ++i) {
    const char ch = s[i];
    if (in_str) {
      if (ch == '\\') {
        ++i;
      } else if (ch == '"') {
        in_str = false;
      }
    } else if (ch == '"') {
      in_str = true;
    } else if (ch == o) {
      ++depth;
    } else if (ch == c) {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string::npos;
}

// The answer items of the first JSON object or array in the text (prose
// before and after is allowed). nullopt when there is none.
std::optional<std::vector<std::string>> JsonAnswer(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{' && text[i] != '[') continue;
    const size_t end = MatchBracket(text, i);
    if (end == std::string::npos) continue;
    nlohmann::json v = ParseJson(text.substr(i, end - i), false);
    if (v.is_discarded()) continue;
    std::vector<std::string> items;
    if (v.is_array()) {
      CollectJsonStrings(v, &items);
      return items;
    }
    if (!v.is_object()) continue;
    std::map<std::string, const nlohmann::json*> lower_keys;
    for (auto it = v.begin(); it != v.end(); ++it) {
      lower_keys[Lower(it.key())] = &it.value();
    }
    for (const char* k : kAnswerKeys) {
      auto it = lower_keys.find(k);
      if (it != lower_keys.end()) {
        CollectJsonStrings(*it->second, &items);
        return items;
      }
    }
    if (v.size() == 1) {
      CollectJsonStrings(v.begin().value(), &items);
      return items;
    }
    i = end - 1;  // an object without an answer key: look further on
  }
  return std::nullopt;
}

// Indices of the labels a JSON object marks as present, for answers like
// {"Treatment": 1, "Diagnosis": 0} (the format Chen et al. 2025 ask for):
// the first object with at least one key naming a label (case and
// punctuation ignored); values 1, true, "1", "yes", "true" mark a label.
std::optional<std::set<int>> JsonLabelMap(
    const std::string& text, const std::vector<std::string>& labels) {
  std::vector<std::string> keys;
  for (const auto& l : labels) keys.push_back(JoinWords(WordTexts(l)));
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{') continue;
    const size_t end = MatchBracket(text, i);
    if (end == std::string::npos) continue;
    nlohmann::json v = ParseJson(text.substr(i, end - i), false);
    if (v.is_discarded() || !v.is_object()) continue;
    std::set<int> on;
    bool any_key = false;
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string k = JoinWords(WordTexts(it.key()));
      const auto hit = std::find(keys.begin(), keys.end(), k);
      if (hit == keys.end()) continue;
      any_key = true;
      const auto& x = it.value();
      bool truthy = false;
      if (x.is_boolean()) {
        truthy = x.get<bool>();
      } else if (x.is_number()) {
        truthy = x.get<double>() != 0;
      } else if (x.is_string()) {
        const std::string t = Lower(Trim(x.get<std::string>()));
        truthy = t == "1" || t == "yes" || t == "true" || t == "y";
      }
      if (truthy) on.insert(static_cast<int>(hit - keys.begin()));
    }
    if (any_key) return on;
    i = end - 1;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- segments

// Text after the LAST answer marker (chain-of-thought puts the final answer
// last); if the rest of that line is empty, the next non-empty line.
std::optional<std::string> MarkerSegment(const std::string& text,
                                         bool allow_a_colon) {
  static const char* kMarkers[] = {
      "final answer",    "answer is",       "answer:",
      "answer -",        "answer =",        "label:",
      "labels:",         "relation:",       "relationship:",
      "relation type:",  "classification:", "prediction:",
      "category:",       "categories:",     "topics:",
      "topic:",          "decision:",       "option is",
      "choice is",       "entities:",       "relation is",
      "relationship is", "label is",        "classification is"};
  const std::string lower = Lower(text);
  size_t best = std::string::npos, best_end = 0;
  for (const char* m : kMarkers) {
    const size_t p = lower.rfind(m);
    if (p != std::string::npos && (best == std::string::npos || p > best)) {
      best = p;
      best_end = p + std::string_view(m).size();
    }
  }
  if (allow_a_colon) {
    // "A: CPR:4" (question/answer style few-shot echoes). Upper-case 'A:'
    // preceded by a line start or a space.
    for (size_t p = text.rfind("A:"); p != std::string::npos;
         p = p == 0 ? std::string::npos : text.rfind("A:", p - 1)) {
      if (p == 0 || std::isspace(static_cast<unsigned char>(text[p - 1]))) {
        if (best == std::string::npos || p > best) {
          best = p;
          best_end = p + 2;
        }
        break;
      }
    }
  }
  if (best == std::string::npos) return std::nullopt;
  size_t eol = text.find('\n', best_end);
  std::string rest = text.substr(
      best_end, eol == std::string::npos ? std::string::npos : eol - best_end);
  // "Final answer: **B**" and "the answer is: B" both reduce to "B".
  if (WordTexts(rest).empty() && eol != std::string::npos) {
    size_t pos = eol + 1;
    while (pos < text.size()) {
      size_t e = text.find('\n', pos);
      std::string line = text.substr(
          pos, e == std::string::npos ? std::string::npos : e - pos);
      if (!Trim(line).empty()) return line;
      if (e == std::string::npos) break;
      pos = e + 1;
    }
  }
  return rest;
}

// ---------------------------------------------------------------- labels

struct Alias {
  std::vector<std::string> words;
  int label = 0;
  int priority = 0;  // 0: full label name, 1: short form / synonym
};

bool WordEq(const std::string& text_word, const std::string& alias_word) {
  if (text_word == alias_word) return true;
  // Plural tolerance for names ("case reports"), not for codes ("cpr").
  return alias_word.size() >= 3 && text_word.size() == alias_word.size() + 1 &&
         text_word.back() == 's' && StartsWith(text_word, alias_word);
}

// The word-sequence aliases of a label set: the full names, the names
// without a prefix shared by all labels ("DDI-"), synonyms of the negative
// class and of "maybe".
std::vector<Alias> BuildAliases(const std::vector<std::string>& labels,
                                const std::string& negative_label) {
  std::vector<Alias> aliases;
  for (size_t i = 0; i < labels.size(); ++i) {
    auto words = WordTexts(labels[i]);
    if (words.empty()) continue;
    aliases.push_back({words, static_cast<int>(i), 0});
    if (words.size() > 1) aliases.push_back({{JoinWords(words)}, (int)i, 0});
  }
  // Shared prefix ending at a separator: "DDI-advise", "DDI-effect" -> "DDI-".
  if (labels.size() > 1) {
    size_t n = labels[0].size();
    for (const auto& l : labels) {
      size_t k = 0;
      while (k < n && k < l.size() && labels[0][k] == l[k]) ++k;
      n = k;
    }
    while (n > 0 && IsWordByte(static_cast<unsigned char>(labels[0][n - 1])))
      --n;
    if (n > 0) {
      for (size_t i = 0; i < labels.size(); ++i) {
        auto rest = WordTexts(std::string_view(labels[i]).substr(n));
        if (rest.size() == 1 && rest[0].size() >= 3 &&
            std::isalpha(static_cast<unsigned char>(rest[0][0]))) {
          aliases.push_back({rest, static_cast<int>(i), 1});
        }
      }
    }
  }
  auto index_of = [&](const std::string& name) -> int {
    for (size_t i = 0; i < labels.size(); ++i) {
      if (Lower(labels[i]) == name) return static_cast<int>(i);
    }
    return -1;
  };
  if (!negative_label.empty()) {
    const int neg = index_of(Lower(negative_label));
    if (neg >= 0) {
      for (const char* syn :
           {"false", "none", "no relation", "no relationship", "no interaction",
            "no ddi", "not related", "unrelated", "negative",
            "no drug drug interaction", "no chemical gene interaction"}) {
        aliases.push_back({WordTexts(syn), neg, 1});
      }
    }
  }
  // ChemProt's CPR groups by the relation names the corpus groups in them.
  static const std::pair<const char*, std::vector<const char*>> kCprGroups[] = {
      {"cpr:3", {"upregulator", "activator", "indirect upregulator"}},
      {"cpr:4", {"downregulator", "inhibitor", "indirect downregulator"}},
      {"cpr:5", {"agonist", "agonist activator", "agonist inhibitor"}},
      {"cpr:6", {"antagonist"}},
      {"cpr:9", {"substrate", "product of", "substrate product of"}}};
  for (const auto& [code, names] : kCprGroups) {
    const int i = index_of(code);
    if (i < 0) continue;
    for (const char* n : names) aliases.push_back({WordTexts(n), i, 1});
  }
  const int maybe = index_of("maybe");
  if (maybe >= 0 && index_of("yes") >= 0 && index_of("no") >= 0) {
    for (const char* syn : {"uncertain", "unclear", "inconclusive", "possibly",
                            "not clear", "not sure", "perhaps"}) {
      aliases.push_back({WordTexts(syn), maybe, 1});
    }
  }
  return aliases;
}

struct Match {
  size_t pos;  // word index
  int label;
  int priority;
};

std::vector<Match> FindMatches(const std::vector<std::string>& words,
                               const std::vector<Alias>& aliases) {
  std::vector<Match> matches;
  for (size_t p = 0; p < words.size(); ++p) {
    for (const auto& a : aliases) {
      if (p + a.words.size() > words.size()) continue;
      bool ok = true;
      for (size_t k = 0; k < a.words.size() && ok; ++k) {
        ok = WordEq(words[p + k], a.words[k]);
      }
      if (ok) matches.push_back({p, a.label, a.priority});
    }
  }
  return matches;
}

// Index of the only label whose key (full or short) the whole segment is an
// unambiguous prefix of ("mech" -> DDI-mechanism); -1 otherwise.
int UniquePrefixLabel(const std::vector<std::string>& seg_words,
                      const std::vector<Alias>& aliases) {
  const std::string key = JoinWords(seg_words);
  if (key.size() < 3) return -1;
  std::set<int> hits;
  for (const auto& a : aliases) {
    if (StartsWith(JoinWords(a.words), key)) hits.insert(a.label);
  }
  return hits.size() == 1 ? *hits.begin() : -1;
}

enum class SegResult { kNone, kOk, kAmbiguous };

// Decides the single label of one segment (see rule 4 in parse.h).
SegResult DecideSingle(const std::string& segment,
                       const std::vector<Alias>& aliases,
                       const std::vector<std::string>& labels, int* label,
                       std::string* why) {
  const auto words = WordTexts(segment);
  const auto all = FindMatches(words, aliases);
  for (int pri = 0; pri <= 1; ++pri) {
    std::vector<Match> ms;
    for (const auto& m : all) {
      if (m.priority == pri) ms.push_back(m);
    }
    if (ms.empty()) continue;
    std::set<int> distinct;
    for (const auto& m : ms) distinct.insert(m.label);
    if (distinct.size() == 1 || ms[0].pos == 0) {
      *label = ms[0].label;
      return SegResult::kOk;
    }
    std::string names;
    for (int d : distinct) names += (names.empty() ? "" : ", ") + labels[d];
    *why = "several answers (" + names + ")";
    return SegResult::kAmbiguous;
  }
  if (words.size() <= 3) {
    const int p = UniquePrefixLabel(words, aliases);
    if (p >= 0) {
      *label = p;
      return SegResult::kOk;
    }
  }
  return SegResult::kNone;
}

Parsed Unparsed(std::string reason) {
  Parsed p;
  p.ok = false;
  p.reason = std::move(reason);
  return p;
}

Parsed Ok(std::vector<std::string> labels) {
  Parsed p;
  p.ok = true;
  p.labels = std::move(labels);
  return p;
}

std::string Join(const std::vector<std::string>& items, const char* sep) {
  std::string r;
  for (size_t i = 0; i < items.size(); ++i) r += (i ? sep : "") + items[i];
  return r;
}

// Segments to try in order (rule 2): JSON answer, last marker, whole text.
// A JSON answer or marker segment that is ambiguous is final; one without
// any label falls through to the next.
struct Segment {
  std::string text;
  bool explicit_answer;  // JSON value or text after an answer marker
};

std::vector<Segment> CandidateSegments(const std::string& text,
                                       bool allow_a_colon) {
  std::vector<Segment> segs;
  if (auto j = JsonAnswer(text)) segs.push_back({Join(*j, "\n"), true});
  if (auto m = MarkerSegment(text, allow_a_colon)) segs.push_back({*m, true});
  // A model that echoes the question first ("Is X safe?  Maybe. The study
  // ..."): the text after the only '?' (several questions stay ambiguous).
  const size_t q = text.find('?');
  if (q != std::string::npos && text.find('?', q + 1) == std::string::npos &&
      !Trim(std::string_view(text).substr(q + 1)).empty()) {
    segs.push_back({text.substr(q + 1), false});
  }
  segs.push_back({text, false});
  return segs;
}

}  // namespace

ParseMode ParseModeFromName(const std::string& name) {
  if (name == "strict") return ParseMode::kStrict;
  if (name == "flexible") return ParseMode::kFlexible;
  Fail("--parse: unknown parse mode '{}' (strict|flexible)", name);
}

NerStyle NerStyleFromName(const std::string& name) {
  if (name == "auto") return NerStyle::kAuto;
  if (name == "list") return NerStyle::kList;
  if (name == "inline") return NerStyle::kInline;
  Fail("--ner-style: unknown NER output style '{}' (auto|list|inline)", name);
}

Parsed ParseSingleLabel(const std::string& output,
                        const std::vector<std::string>& labels,
                        const std::string& negative_label, ParseMode mode) {
  const std::string text = StripThink(output);
  if (Trim(text).empty()) return Unparsed("empty output");
  if (mode == ParseMode::kStrict) {
    const std::string bare = Lower(CleanBare(text));
    for (const auto& l : labels) {
      if (Lower(l) == bare) return Ok({l});
    }
    return Unparsed("not a bare label (strict mode)");
  }
  const auto aliases = BuildAliases(labels, negative_label);
  const bool refusal = IsRefusal(text);
  for (const auto& seg : CandidateSegments(text, /*allow_a_colon=*/true)) {
    if (!seg.explicit_answer && refusal) return Unparsed("refusal");
    int label = -1;
    std::string why;
    switch (DecideSingle(seg.text, aliases, labels, &label, &why)) {
      case SegResult::kOk:
        return Ok({labels[label]});
      case SegResult::kAmbiguous:
        return Unparsed(why);
      case SegResult::kNone:
        break;
    }
  }
  return Unparsed("no label found");
}

Parsed ParseMultiLabel(const std::string& output,
                       const std::vector<std::string>& labels, ParseMode mode) {
  const std::string text = StripThink(output);
  if (Trim(text).empty()) return Unparsed("empty output");
  auto ordered = [&](const std::set<int>& idx) {
    std::vector<std::string> r;
    for (int i : idx) r.push_back(labels[i]);
    return r;
  };
  if (mode == ParseMode::kStrict) {
    std::set<int> found;
    std::string item;
    auto flush = [&]() -> bool {
      const std::string bare = Lower(CleanBare(item));
      item.clear();
      if (bare.empty()) return true;
      for (size_t i = 0; i < labels.size(); ++i) {
        if (Lower(labels[i]) == bare) {
          found.insert(static_cast<int>(i));
          return true;
        }
      }
      return false;
    };
    for (char c : text) {
      if (c == ';' || c == ',' || c == '\n') {
        if (!flush())
          return Unparsed("not a list of bare labels (strict mode)");
      } else {
        item += c;
      }
    }
    if (!flush()) return Unparsed("not a list of bare labels (strict mode)");
    if (found.empty()) return Unparsed("no label found");
    return Ok(ordered(found));
  }
  if (auto on = JsonLabelMap(text, labels)) return Ok(ordered(*on));
  const auto aliases = BuildAliases(labels, "");
  const bool refusal = IsRefusal(text);
  for (const auto& seg : CandidateSegments(text, /*allow_a_colon=*/true)) {
    if (!seg.explicit_answer && refusal) return Unparsed("refusal");
    std::set<int> found;
    for (const auto& m : FindMatches(WordTexts(seg.text), aliases)) {
      found.insert(m.label);
    }
    // Items that name no label in full may abbreviate one ("Epidemic").
    std::string item;
    auto flush = [&]() {
      const auto words = WordTexts(item);
      item.clear();
      if (words.empty() || words.size() > 3) return;
      if (!FindMatches(words, aliases).empty()) return;
      const int p = UniquePrefixLabel(words, aliases);
      if (p >= 0) found.insert(p);
    };
    for (char c : seg.text) {
      if (c == ';' || c == ',' || c == '\n' || c == '|') {
        flush();
      } else {
        item += c;
      }
    }
    flush();
    if (!found.empty()) return Ok(ordered(found));
  }
  return Unparsed("no label found");
}

namespace {

// An upper-case option letter standing alone at byte `i` of `s`.
bool IsLetterToken(const std::string& s, size_t i) {
  const bool before =
      i == 0 || !IsWordByte(static_cast<unsigned char>(s[i - 1]));
  const bool after =
      i + 1 >= s.size() || !IsWordByte(static_cast<unsigned char>(s[i + 1]));
  return before && after;
}

bool EndsWithWord(const std::string& lower_prefix, std::string_view w) {
  std::string t = Trim(lower_prefix);
  while (!t.empty() && (t.back() == ':' || t.back() == '*')) {
    t.pop_back();
    t = Trim(t);
  }
  return t.size() >= w.size() &&
         t.compare(t.size() - w.size(), w.size(), w) == 0 &&
         (t.size() == w.size() ||
          !IsWordByte(static_cast<unsigned char>(t[t.size() - w.size() - 1])));
}

// Decides the option letter of one segment. A letter counts when it is
// clearly an option reference: "(B)", "[B]", "B)", "option B", "answer is
// B", the segment's first token when the segment is an explicit answer, or
// "B." / "B:" at the start of a line.
SegResult DecideChoice(const std::string& seg, bool explicit_answer,
                       const std::map<std::string, std::string>& options,
                       std::string* letter, std::string* why) {
  std::vector<std::pair<size_t, std::string>> hits;  // (byte pos, letter)
  std::set<std::string> line_letters;   // letters opening a line ("B. ...")
  std::set<std::string> named_letters;  // "option B", "answer is B"
  const std::string lower = Lower(seg);
  size_t first_word = std::string::npos;
  for (size_t i = 0; i < seg.size(); ++i) {
    if (IsWordByte(static_cast<unsigned char>(seg[i]))) {
      first_word = i;
      break;
    }
  }
  for (size_t i = 0; i < seg.size(); ++i) {
    const std::string l(1, seg[i]);
    if (!options.count(l) || !IsLetterToken(seg, i)) continue;
    const char prev = i > 0 ? seg[i - 1] : '\0';
    const char next = i + 1 < seg.size() ? seg[i + 1] : '\0';
    const bool wrapped = (prev == '(' && next == ')') ||
                         (prev == '[' && next == ']') ||
                         (prev == '*' && next == '*');
    const bool closing = next == ')';
    const std::string before = lower.substr(0, i);
    const bool named =
        EndsWithWord(before, "option") || EndsWithWord(before, "choice") ||
        EndsWithWord(before, "answer") || EndsWithWord(before, "answer is");
    const bool first = i == first_word && explicit_answer;
    size_t ls = seg.rfind('\n', i == 0 ? 0 : i - 1);
    ls = (ls == std::string::npos || i == 0) ? 0 : ls + 1;
    // Only whitespace or markdown ("**", "#", "> ") before it on its line.
    const bool line_start =
        std::string_view(seg)
                .substr(ls, i - ls)
                .find_first_not_of(" \t\r*#>_") == std::string_view::npos &&
        (next == '.' || next == ':' || next == '\0' || next == '\n');
    if (wrapped || closing || named || first || line_start) {
      hits.push_back({i, l});
    }
    if (line_start) line_letters.insert(l);
    if (named) named_letters.insert(l);
  }
  // "option C" / "answer is C" naming one letter beats letters that merely
  // open lines of an analysis of every option.
  if (named_letters.size() == 1) {
    *letter = *named_letters.begin();
    return SegResult::kOk;
  }
  if (!hits.empty()) {
    std::set<std::string> distinct;
    for (const auto& h : hits) distinct.insert(h.second);
    // Several lines that start "A." / "B." are the options echoed back.
    const bool echo = line_letters.size() > 1;
    if (distinct.size() == 1 || (hits[0].first == first_word && !echo)) {
      *letter = hits[0].second;
      return SegResult::kOk;
    }
    *why = "several answers (" +
           Join({distinct.begin(), distinct.end()}, ", ") + ")";
    return SegResult::kAmbiguous;
  }
  // No letter: the text of exactly one option (a longer option containing a
  // shorter matched one wins: "Aspirin and clopidogrel" over "Aspirin").
  const std::string seg_key = " " + Join(WordTexts(seg), " ") + " ";
  std::vector<std::pair<std::string, std::string>> found;  // letter, key
  for (const auto& [l, t] : options) {
    const std::string key = Join(WordTexts(t), " ");
    if (!key.empty() && seg_key.find(" " + key + " ") != std::string::npos) {
      found.push_back({l, key});
    }
  }
  std::vector<std::string> kept;
  for (const auto& [l, key] : found) {
    bool inside_other = false;
    for (const auto& [l2, key2] : found) {
      if (l2 != l && key2.size() > key.size() &&
          (" " + key2 + " ").find(" " + key + " ") != std::string::npos) {
        inside_other = true;
      }
    }
    if (!inside_other) kept.push_back(l);
  }
  if (kept.size() == 1) {
    *letter = kept[0];
    return SegResult::kOk;
  }
  if (kept.size() > 1) {
    *why = "several answers (" + Join(kept, ", ") + ")";
    return SegResult::kAmbiguous;
  }
  return SegResult::kNone;
}

}  // namespace

Parsed ParseChoice(const std::string& output,
                   const std::map<std::string, std::string>& options,
                   ParseMode mode) {
  const std::string text = StripThink(output);
  if (Trim(text).empty()) return Unparsed("empty output");
  if (mode == ParseMode::kStrict) {
    const std::string bare = CleanBare(text);
    std::string up = bare;
    for (auto& c : up)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (options.count(up)) return Ok({up});
    return Unparsed("not a bare option letter (strict mode)");
  }
  {  // A bare letter in any case: "c", "(b)".
    std::string up = CleanBare(text);
    if (up.size() == 1) {
      up[0] =
          static_cast<char>(std::toupper(static_cast<unsigned char>(up[0])));
      if (options.count(up)) return Ok({up});
    }
  }
  const bool refusal = IsRefusal(text);
  for (const auto& seg : CandidateSegments(text, /*allow_a_colon=*/false)) {
    if (!seg.explicit_answer && refusal) return Unparsed("refusal");
    std::string letter, why;
    switch (
        DecideChoice(seg.text, seg.explicit_answer, options, &letter, &why)) {
      case SegResult::kOk:
        return Ok({letter});
      case SegResult::kAmbiguous:
        return Unparsed(why);
      case SegResult::kNone:
        break;
    }
  }
  return Unparsed("no option found");
}

namespace {

bool IsNoneAnswer(const std::string& text) {
  std::string t = Lower(CleanBare(text));
  static const char* kExact[] = {"none",    "n/a",         "na",
                                 "nil",     "no entities", "no entity",
                                 "nothing", "empty",       ""};
  for (const char* e : kExact) {
    if (t == e) return true;
  }
  static const char* kPrefix[] = {"there are no ",
                                  "there is no ",
                                  "no chemical",
                                  "no disease",
                                  "no entities",
                                  "no entity",
                                  "none found",
                                  "none.",
                                  "none,",
                                  "no named entit",
                                  "the sentence does not contain",
                                  "the text does not contain",
                                  "no mentions"};
  for (const char* p : kPrefix) {
    if (StartsWith(t, p)) return true;
  }
  return false;
}

// Cleans one list item: bullets, numbering, quotes, emphasis, a trailing
// "(chemical)"-style type note.
std::string CleanMention(std::string item) {
  item = Trim(item);
  // Bullets "- ", "* ", "• ", "1. ", "1) ".
  if (StartsWith(item, "- ") || StartsWith(item, "* ") ||
      StartsWith(item, "+ ")) {
    item = Trim(item.substr(2));
  } else if (StartsWith(item, "\xe2\x80\xa2")) {
    item = Trim(item.substr(3));
  } else {
    size_t k = 0;
    while (k < item.size() && std::isdigit(static_cast<unsigned char>(item[k])))
      ++k;
    if (k > 0 && k + 1 < item.size() && (item[k] == '.' || item[k] == ')') &&
        item[k + 1] == ' ') {
      item = Trim(item.substr(k + 2));
    }
  }
  const std::string lower = Lower(item);
  for (const char* note :
       {"(chemical)", "(chemicals)", "(disease)", "(diseases)", "(drug)",
        "(entity)", "- chemical", "- disease"}) {
    const std::string_view n(note);
    if (lower.size() > n.size() &&
        lower.compare(lower.size() - n.size(), n.size(), n) == 0) {
      item = Trim(item.substr(0, item.size() - n.size()));
      break;
    }
  }
  // Emphasis and quotes around the whole item only; a mention may itself
  // contain brackets or a trailing '.' is sentence punctuation.
  bool changed = true;
  while (changed && item.size() >= 1) {
    changed = false;
    for (const char* w : {"**", "__", "\"", "'", "`", "\xe2\x80\x9c"}) {
      const std::string_view ws(w);
      if (item.size() >= 2 * ws.size() && StartsWith(item, ws) &&
          item.compare(item.size() - ws.size(), ws.size(), ws) == 0) {
        item = Trim(item.substr(ws.size(), item.size() - 2 * ws.size()));
        changed = true;
      }
    }
    if (!item.empty() &&
        (item.back() == '.' || item.back() == ',' || item.back() == ';')) {
      item = Trim(item.substr(0, item.size() - 1));
      changed = true;
    }
  }
  if (StartsWith(item, "\xe2\x80\x9c") && item.size() >= 6 &&
      item.compare(item.size() - 3, 3, "\xe2\x80\x9d") == 0) {
    item = Trim(item.substr(3, item.size() - 6));
  }
  return item;
}

// Splits a line into items at ", ", "; ", " | " and tabs (a comma without a
// following space stays: "2,4-dinitrophenol").
std::vector<std::string> SplitItems(const std::string& line) {
  std::vector<std::string> items;
  std::string cur;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    const bool sep = c == '\t' || c == '|' ||
                     ((c == ',' || c == ';') &&
                      (i + 1 == line.size() ||
                       std::isspace(static_cast<unsigned char>(line[i + 1]))));
    if (sep) {
      items.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  items.push_back(cur);
  return items;
}

void AddMention(std::vector<std::string>* out, std::string m) {
  m = CleanMention(std::move(m));
  if (m.empty() || IsNoneAnswer(m)) return;
  if (std::find(out->begin(), out->end(), m) == out->end()) out->push_back(m);
}

// Text between each pair of open/close markers.
void ExtractMarked(const std::string& text, const std::string& open,
                   const std::string& close, std::vector<std::string>* out) {
  size_t p = 0;
  while ((p = text.find(open, p)) != std::string::npos) {
    const size_t b = p + open.size();
    const size_t e = text.find(close, b);
    if (e == std::string::npos) break;
    AddMention(out, text.substr(b, e - b));
    p = e + close.size();
  }
}

// Text inside <tag ...>...</tag> (case-insensitive tag names, attributes
// allowed): Chen et al.'s "HTML that highlights" answers use <span>.
void ExtractTagged(const std::string& text, const std::string& tag,
                   std::vector<std::string>* out) {
  const std::string lower = Lower(text);
  const std::string open = "<" + tag, close = "</" + tag + ">";
  size_t p = 0;
  while ((p = lower.find(open, p)) != std::string::npos) {
    const size_t after = p + open.size();
    if (after >= lower.size() || (lower[after] != '>' && lower[after] != ' ')) {
      p = after;
      continue;
    }
    const size_t gt = lower.find('>', after);
    if (gt == std::string::npos) break;
    const size_t e = lower.find(close, gt + 1);
    if (e == std::string::npos) break;
    AddMention(out, text.substr(gt + 1, e - gt - 1));
    p = e + close.size();
  }
}

constexpr const char* kInlineTags[] = {"e",      "span", "mark",  "b",
                                       "strong", "em",   "entity"};

bool HasInlineMarks(const std::string& text) {
  if (text.find("@@") != std::string::npos) return true;
  const std::string lower = Lower(text);
  for (const char* t : kInlineTags) {
    const std::string o = std::string("<") + t;
    const size_t p = lower.find(o);
    if (p != std::string::npos && p + o.size() < lower.size() &&
        (lower[p + o.size()] == '>' || lower[p + o.size()] == ' ') &&
        lower.find(std::string("</") + t + ">") != std::string::npos) {
      return true;
    }
  }
  return false;
}

bool IsHeaderLine(const std::string& line) {
  const std::string l = Lower(Trim(line));
  if (l.empty()) return true;
  if (l.back() == ':') return true;
  for (const char* p : {"here are", "here is", "the following",
                        "note:", "explanation", "sure", "output:"}) {
    if (StartsWith(l, p)) return true;
  }
  return false;
}

}  // namespace

Parsed ParseNerMentions(const std::string& output, NerStyle style,
                        ParseMode mode) {
  const std::string text = StripThink(output);
  if (Trim(text).empty()) return Unparsed("empty output");
  std::vector<std::string> mentions;
  if (style == NerStyle::kInline ||
      (style == NerStyle::kAuto && HasInlineMarks(text))) {
    for (const char* t : kInlineTags) ExtractTagged(text, t, &mentions);
    ExtractMarked(text, "@@", "##", &mentions);
    if (mentions.empty() && IsRefusal(text)) return Unparsed("refusal");
    return Ok(mentions);  // a sentence with nothing marked: no entities
  }
  if (IsNoneAnswer(text)) return Ok({});
  if (mode == ParseMode::kFlexible) {
    if (auto j = JsonAnswer(text)) {
      for (auto& m : *j) AddMention(&mentions, m);
      return Ok(mentions);
    }
    if (IsRefusal(text)) return Unparsed("refusal");
  }
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t e = text.find('\n', pos);
    std::string line =
        text.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
    pos = e == std::string::npos ? text.size() + 1 : e + 1;
    if (Trim(line).empty()) continue;
    if (mode == ParseMode::kFlexible) {
      if (IsHeaderLine(line)) continue;
      // "Chemicals: a, b" -> "a, b" (a short label before ": ").
      const size_t colon = line.find(": ");
      if (colon != std::string::npos &&
          WordTexts(line.substr(0, colon)).size() <= 3) {
        line = line.substr(colon + 2);
      }
      if (IsNoneAnswer(line)) continue;
    }
    for (auto& item : SplitItems(line)) AddMention(&mentions, item);
  }
  return Ok(mentions);
}

bool IsLetterQa(const TaskInfo& task) {
  if (task.type != TaskType::kQa || task.labels.empty()) return false;
  for (const auto& l : task.labels) {
    if (l.size() != 1 || !std::isupper(static_cast<unsigned char>(l[0])))
      return false;
  }
  return true;
}

Parsed ParseOutput(const TaskInfo& task, const std::string& output,
                   const std::map<std::string, std::string>& options,
                   ParseMode mode, NerStyle ner_style) {
  switch (task.type) {
    case TaskType::kNer:
      return ParseNerMentions(output, ner_style, mode);
    case TaskType::kRelation:
      return ParseSingleLabel(output, task.labels, task.negative_label, mode);
    case TaskType::kMultiLabel:
      return ParseMultiLabel(output, task.labels, mode);
    case TaskType::kQa:
      if (IsLetterQa(task)) {
        if (!options.empty()) return ParseChoice(output, options, mode);
        std::map<std::string, std::string> letters;
        for (const auto& l : task.labels) letters[l] = "";
        return ParseChoice(output, letters, mode);
      }
      return ParseSingleLabel(output, task.labels, task.negative_label, mode);
  }
  return Unparsed("unknown task type");
}

}  // namespace bioquant
