#include "tokenizer/pipeline.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace bioquant::tok {
namespace {

using nlohmann::json;

std::string TypeOf(const json& j, const std::string& file, const char* where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    Fail("{}: {} has no \"type\"", file, where);
  }
  return j["type"].get<std::string>();
}

std::string Str(const json& j, const char* key, const std::string& def) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

bool Bool(const json& j, const char* key, bool def) {
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}

// Escapes a literal for PCRE2 (\Q...\E breaks on an embedded \E).
std::string QuoteRegex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) !=
        std::string_view::npos) {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// A {"String": s} or {"Regex": r} pattern as a compiled regex.
std::shared_ptr<Regex> PatternOf(const json& j, const std::string& file,
                                 const std::string& where) {
  const auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) {
    Fail("{}: {} has no pattern", file, where);
  }
  if (it->contains("Regex") && (*it)["Regex"].is_string()) {
    return std::make_shared<Regex>((*it)["Regex"].get<std::string>(),
                                   file + ": " + where);
  }
  if (it->contains("String") && (*it)["String"].is_string()) {
    return std::make_shared<Regex>(
        QuoteRegex((*it)["String"].get<std::string>()), file + ": " + where);
  }
  Fail("{}: {} pattern is neither String nor Regex", file, where);
}

// The literal of a {"String": s} pattern, or "" for a Regex one.
std::string LiteralOf(const json& j) {
  const auto it = j.find("pattern");
  if (it != j.end() && it->is_object() && it->contains("String") &&
      (*it)["String"].is_string()) {
    return (*it)["String"].get<std::string>();
  }
  return "";
}

void ReplaceAll(std::string* s, const std::string& from,
                const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = s->find(from, pos);
    if (hit == std::string::npos) break;
    out.append(*s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  if (pos == 0) return;
  out.append(*s, pos);
  *s = std::move(out);
}

void ReplaceRegex(std::string* s, const Regex& re, const std::string& to) {
  std::vector<std::pair<size_t, size_t>> m;
  re.FindAll(*s, &m);
  if (m.empty()) return;
  std::string out;
  size_t pos = 0;
  for (const auto& [b, e] : m) {
    out.append(*s, pos, b - pos);
    out += to;
    pos = e;
  }
  out.append(*s, pos);
  *s = std::move(out);
}

// GPT-2's pre-tokenizer regex, used by ByteLevel with use_regex.
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

// ---------------------------------------------------------------- Normalizer

Normalizer::Normalizer(const json& j, const std::string& file) {
  if (!j.is_null()) Add(j, file);
}

void Normalizer::Add(const json& j, const std::string& file) {
  const std::string type = TypeOf(j, file, "normalizer");
  Step s{};
  if (type == "Sequence") {
    const auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) {
      Fail("{}: normalizer Sequence has no \"normalizers\" list", file);
    }
    for (const auto& n : *it) Add(n, file);
    return;
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" ||
             type == "NFKD") {
    s.kind = Step::kForm;
    s.form = type == "NFC"    ? NormalForm::kNfc
             : type == "NFD"  ? NormalForm::kNfd
             : type == "NFKC" ? NormalForm::kNfkc
                              : NormalForm::kNfkd;
  } else if (type == "Prepend") {
    s.kind = Step::kPrepend;
    s.a = Str(j, "prepend", "");
  } else if (type == "Replace") {
    s.kind = Step::kReplace;
    s.a = LiteralOf(j);
    if (s.a.empty()) s.re = PatternOf(j, file, "normalizer Replace");
    s.b = Str(j, "content", "");
  } else if (type == "Lowercase") {
    s.kind = Step::kLowercase;
  } else if (type == "Strip") {
    s.kind = Step::kStrip;
    s.left = Bool(j, "strip_left", true);
    s.right = Bool(j, "strip_right", true);
  } else {
    Fail("{}: normalizer type {:?} is not supported", file, type);
  }
  steps_.push_back(std::move(s));
}

std::string Normalizer::Apply(std::string s) const {
  for (const Step& st : steps_) {
    switch (st.kind) {
      case Step::kForm:
        s = Normalize(s, st.form);
        break;
      case Step::kPrepend:
        if (!s.empty()) s = st.a + s;  // HF leaves an empty string alone
        break;
      case Step::kReplace:
        if (st.re) {
          ReplaceRegex(&s, *st.re, st.b);
        } else {
          ReplaceAll(&s, st.a, st.b);
        }
        break;
      case Step::kLowercase:
        s = Lowercase(s);
        break;
      case Step::kStrip: {
        size_t b = 0, e = s.size();
        if (st.left) {
          while (b < e) {
            size_t p = b;
            if (!IsSpace(NextCodePoint(s, &p))) break;
            b = p;
          }
        }
        if (st.right) {
          while (e > b) {
            size_t p = e - 1;
            while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80)
              --p;
            size_t q = p;
            if (!IsSpace(NextCodePoint(s, &q))) break;
            e = p;
          }
        }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

// -------------------------------------------------------------- PreTokenizer

PreTokenizer::PreTokenizer(const json& j, const std::string& file) {
  if (!j.is_null()) Add(j, file);
}

void PreTokenizer::Add(const json& j, const std::string& file) {
  const std::string type = TypeOf(j, file, "pre_tokenizer");
  Step s{};
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) {
      Fail("{}: pre_tokenizer Sequence has no \"pretokenizers\" list", file);
    }
    for (const auto& p : *it) Add(p, file);
    return;
  } else if (type == "Split") {
    s.kind = Step::kSplit;
    s.re = PatternOf(j, file, "pre_tokenizer Split");
    const std::string b = Str(j, "behavior", "Isolated");
    if (b == "Removed") {
      s.behavior = Behavior::kRemoved;
    } else if (b == "Isolated") {
      s.behavior = Behavior::kIsolated;
    } else if (b == "MergedWithPrevious") {
      s.behavior = Behavior::kMergedWithPrevious;
    } else if (b == "MergedWithNext") {
      s.behavior = Behavior::kMergedWithNext;
    } else if (b == "Contiguous") {
      s.behavior = Behavior::kContiguous;
    } else {
      Fail("{}: pre_tokenizer Split behavior {:?} is not supported", file, b);
    }
    s.invert = Bool(j, "invert", false);
  } else if (type == "ByteLevel") {
    s.kind = Step::kByteLevel;
    s.add_prefix_space = Bool(j, "add_prefix_space", true);
    if (Bool(j, "use_regex", true)) {
      s.re = std::make_shared<Regex>(kGpt2Regex,
                                     file + ": pre_tokenizer ByteLevel");
    }
  } else if (type == "Metaspace") {
    s.kind = Step::kMetaspace;
    s.replacement = Str(j, "replacement", "\u2581");
    const std::string scheme = Str(j, "prepend_scheme", "");
    if (scheme.empty()) {  // files before prepend_scheme existed
      s.prepend =
          Bool(j, "add_prefix_space", true) ? Step::kAlways : Step::kNever;
    } else if (scheme == "always") {
      s.prepend = Step::kAlways;
    } else if (scheme == "never") {
      s.prepend = Step::kNever;
    } else if (scheme == "first") {
      s.prepend = Step::kFirst;
    } else {
      Fail("{}: pre_tokenizer Metaspace prepend_scheme {:?} is not supported",
           file, scheme);
    }
    s.split = Bool(j, "split", true);
  } else if (type == "Digits") {
    s.kind = Step::kDigits;
    s.re = std::make_shared<Regex>(R"(\p{N})", file + ": pre_tokenizer Digits");
    s.behavior = Bool(j, "individual_digits", false) ? Behavior::kIsolated
                                                     : Behavior::kContiguous;
  } else {
    Fail("{}: pre_tokenizer type {:?} is not supported", file, type);
  }
  steps_.push_back(std::move(s));
}

void PreTokenizer::Split(const std::string& s,
                         const std::vector<std::pair<size_t, size_t>>& matches,
                         Behavior behavior, bool invert,
                         std::vector<std::string>* out) {
  // Spans covering s: (begin, end, is_match), as HF's find_matches.
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b != prev) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != s.size()) spans.push_back({prev, s.size(), invert});

  std::vector<Span> pieces;  // match == "remove" from here on
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& sp : spans) pieces.push_back({sp.b, sp.e, false});
      break;
    case Behavior::kRemoved:
      pieces = spans;
      break;
    case Behavior::kContiguous: {
      bool prev_match = false;
      for (const auto& sp : spans) {
        if (sp.match == prev_match && !pieces.empty()) {
          pieces.back().e = sp.e;
        } else {
          pieces.push_back({sp.b, sp.e, false});
        }
        prev_match = sp.match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& sp : spans) {
        if (sp.match && !prev_match && !pieces.empty()) {
          pieces.back().e = sp.e;
        } else {
          pieces.push_back({sp.b, sp.e, false});
        }
        prev_match = sp.match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !prev_match && !pieces.empty()) {
          pieces.back().b = it->b;
        } else {
          pieces.push_back({it->b, it->e, false});
        }
        prev_match = it->match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    }
  }
  for (const auto& p : pieces) {
    if (!p.match && p.e > p.b) out->push_back(s.substr(p.b, p.e - p.b));
  }
}

std::vector<std::string> PreTokenizer::Apply(std::string s,
                                             bool at_start) const {
  std::vector<std::string> words;
  if (s.empty()) return words;
  words.push_back(std::move(s));
  std::vector<std::pair<size_t, size_t>> matches;
  for (const Step& st : steps_) {
    std::vector<std::string> next;
    for (size_t w = 0; w < words.size(); ++w) {
      std::string& word = words[w];
      switch (st.kind) {
        case Step::kSplit:
        case Step::kDigits:
          matches.clear();
          st.re->FindAll(word, &matches);
          Split(word, matches, st.behavior, st.invert, &next);
          break;
        case Step::kByteLevel: {
          if (st.add_prefix_space && word[0] != ' ') word.insert(0, " ");
          std::vector<std::string> parts;
          if (st.re) {
            matches.clear();
            st.re->FindAll(word, &matches);
            Split(word, matches, Behavior::kIsolated, false, &parts);
          } else {
            parts.push_back(std::move(word));
          }
          for (const auto& p : parts) {
            std::string mapped;
            mapped.reserve(p.size() * 2);
            for (char c : p)
              mapped += ByteToUnicode(static_cast<unsigned char>(c));
            next.push_back(std::move(mapped));
          }
          break;
        }
        case Step::kMetaspace: {
          ReplaceAll(&word, " ", st.replacement);
          // HF checks the prefix after replacing spaces, so " x" gets one
          // replacement character, not two.
          const bool first = at_start && w == 0;
          if ((st.prepend == Step::kAlways ||
               (st.prepend == Step::kFirst && first)) &&
              word.compare(0, st.replacement.size(), st.replacement) != 0) {
            word.insert(0, st.replacement);
          }
          if (st.split) {
            // Each replacement character starts a new word.
            matches.clear();
            for (size_t p = word.find(st.replacement); p != std::string::npos;
                 p = word.find(st.replacement, p + st.replacement.size())) {
              matches.emplace_back(p, p + st.replacement.size());
            }
            Split(word, matches, Behavior::kMergedWithNext, false, &next);
          } else {
            next.push_back(std::move(word));
          }
          break;
        }
      }
    }
    words = std::move(next);
  }
  return words;
}

// ------------------------------------------------------------------- Decoder

Decoder::Decoder(const json& j, const std::string& file) {
  if (!j.is_null()) {
    none_ = false;
    Add(j, file);
  }
}

Decoder Decoder::SentencePiece(bool strip_leading_space) {
  Decoder d;
  d.none_ = false;
  Step s{};
  s.kind = Step::kReplace;
  s.a = "\u2581";
  s.b = " ";
  d.steps_.push_back(s);
  d.steps_.push_back(Step{Step::kByteFallback, "", "", 0, 0, true});
  d.steps_.push_back(Step{Step::kFuse, "", "", 0, 0, true});
  if (strip_leading_space)
    d.steps_.push_back(Step{Step::kStrip, " ", "", 1, 0, true});
  return d;
}

void Decoder::Add(const json& j, const std::string& file) {
  const std::string type = TypeOf(j, file, "decoder");
  Step s{};
  if (type == "Sequence") {
    const auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) {
      Fail("{}: decoder Sequence has no \"decoders\" list", file);
    }
    for (const auto& d : *it) Add(d, file);
    return;
  } else if (type == "ByteLevel") {
    s.kind = Step::kByteLevel;
  } else if (type == "Replace") {
    s.kind = Step::kReplace;
    s.a = LiteralOf(j);
    if (s.a.empty()) {
      Fail("{}: decoder Replace with a Regex pattern is not supported", file);
    }
    s.b = Str(j, "content", "");
  } else if (type == "ByteFallback") {
    s.kind = Step::kByteFallback;
  } else if (type == "Fuse") {
    s.kind = Step::kFuse;
  } else if (type == "Strip") {
    s.kind = Step::kStrip;
    s.a = Str(j, "content", " ");
    s.start = j.value("start", 0);
    s.stop = j.value("stop", 0);
  } else if (type == "Metaspace") {
    s.kind = Step::kMetaspace;
    s.a = Str(j, "replacement", "\u2581");
    const std::string scheme = Str(j, "prepend_scheme", "");
    s.prepend =
        scheme.empty() ? Bool(j, "add_prefix_space", true) : scheme != "never";
  } else {
    Fail("{}: decoder type {:?} is not supported", file, type);
  }
  steps_.push_back(std::move(s));
}

std::string Decoder::Apply(std::vector<std::string> tokens) const {
  if (none_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const Step& st : steps_) {
    switch (st.kind) {
      case Step::kByteLevel: {
        // Each token maps back to bytes if every character is in the byte
        // map, else keeps its own UTF-8; all bytes are then read lossily.
        std::string bytes;
        for (const auto& t : tokens) {
          const size_t mark = bytes.size();
          bool ok = true;
          size_t pos = 0;
          while (pos < t.size()) {
            const int b = UnicodeToByte(NextCodePoint(t, &pos));
            if (b < 0) {
              ok = false;
              break;
            }
            bytes.push_back(static_cast<char>(b));
          }
          if (!ok) {
            bytes.resize(mark);
            bytes += t;
          }
        }
        tokens.assign(1, Utf8Lossy(bytes));
        break;
      }
      case Step::kReplace:
        for (auto& t : tokens) ReplaceAll(&t, st.a, st.b);
        break;
      case Step::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;  // bytes of consecutive <0xXX> tokens
        auto flush = [&] {
          if (pending.empty()) return;
          if (SanitizeUtf8(pending) == pending) {
            out.push_back(pending);
          } else {
            for (size_t i = 0; i < pending.size(); ++i) out.push_back("\uFFFD");
          }
          pending.clear();
        };
        for (auto& t : tokens) {
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
              std::isxdigit(static_cast<unsigned char>(t[3])) &&
              std::isxdigit(static_cast<unsigned char>(t[4]))) {
            pending.push_back(
                static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case Step::kFuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Step::kStrip:
        for (auto& t : tokens) {
          // start/stop count characters; content is a single character.
          size_t b = 0, e = t.size();
          for (int i = 0; i < st.start && t.compare(b, st.a.size(), st.a) == 0;
               ++i) {
            b += st.a.size();
          }
          for (int i = 0; i < st.stop && e >= b + st.a.size() &&
                          t.compare(e - st.a.size(), st.a.size(), st.a) == 0;
               ++i) {
            e -= st.a.size();
          }
          t = t.substr(b, e - b);
        }
        break;
      case Step::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          ReplaceAll(&tokens[i], st.a, i == 0 && st.prepend ? "" : " ");
        }
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace bioquant::tok
