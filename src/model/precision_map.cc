#include "model/precision_map.h"

#include <cctype>

#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

bool IsDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)); }

// A layer range "A-B" starting at p[i]: sets lo/hi and the index past it.
bool RangeAt(const std::string& p, size_t i, long* lo, long* hi, size_t* end) {
  size_t j = i;
  while (j < p.size() && IsDigit(p[j])) ++j;
  if (j == i || j >= p.size() || p[j] != '-') return false;
  size_t k = j + 1;
  while (k < p.size() && IsDigit(p[k])) ++k;
  if (k == j + 1) return false;
  *lo = std::stol(p.substr(i, j - i));
  *hi = std::stol(p.substr(j + 1, k - j - 1));
  *end = k;
  return true;
}

bool Match(const std::string& p, size_t i, const std::string& n, size_t j) {
  while (i < p.size()) {
    if (p[i] == '*') {
      for (size_t k = j; k <= n.size(); ++k) {
        if (Match(p, i + 1, n, k)) return true;
      }
      return false;
    }
    long lo = 0, hi = 0;
    size_t end = 0;
    if (RangeAt(p, i, &lo, &hi, &end)) {
      size_t k = j;
      while (k < n.size() && IsDigit(n[k])) ++k;
      if (k == j || k - j > 9) return false;
      const long v = std::stol(n.substr(j, k - j));
      if (v < lo || v > hi) return false;
      i = end;
      j = k;
      continue;
    }
    if (j >= n.size() || p[i] != n[j]) return false;
    ++i;
    ++j;
  }
  return j == n.size();
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

bool MatchModulePattern(const std::string& pattern, const std::string& name) {
  return Match(pattern, 0, name, 0);
}

std::string PrecisionMap::Lookup(const std::string& module) const {
  for (const PrecisionRule& r : rules) {
    if (MatchModulePattern(r.pattern, module)) return r.precision;
  }
  return "";
}

std::string PrecisionMap::ToString() const {
  std::string s;
  for (const PrecisionRule& r : rules) {
    s += (s.empty() ? "" : ",") + r.pattern + "=" + r.precision;
  }
  return s;
}

PrecisionMap ParsePrecisionMap(const std::string& text,
                               const std::string& what) {
  PrecisionMap m;
  std::string item;
  int line = 1, item_line = 1;
  auto flush = [&]() {
    const std::string t = Trim(item);
    item.clear();
    if (t.empty() || t[0] == '#') return;
    const size_t eq = t.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == t.size()) {
      Fail("{}: line {}: '{}' is not PATTERN=PRECISION", what, item_line, t);
    }
    PrecisionRule r{Trim(t.substr(0, eq)), Trim(t.substr(eq + 1))};
    static const char* kKnown[] = {"f32", "bf16", "f16", "int8", "nf4", "fp4"};
    bool known = false;
    for (const char* k : kKnown) known = known || r.precision == k;
    if (r.precision == "llm-int8") {
      Fail(
          "{}: line {}: llm-int8 quantizes the activations of the whole "
          "model; use it as --precision, not per module",
          what, item_line);
    }
    if (!known) {
      Fail(
          "{}: line {}: unknown precision '{}' in '{}' (f32, bf16, f16, "
          "int8, nf4, fp4)",
          what, item_line, r.precision, t);
    }
    for (size_t i = 0; i < r.pattern.size(); ++i) {
      long lo = 0, hi = 0;
      size_t end = 0;
      if (RangeAt(r.pattern, i, &lo, &hi, &end)) {
        if (lo > hi) {
          Fail("{}: line {}: empty layer range in '{}'", what, item_line,
               r.pattern);
        }
        i = end - 1;
      }
    }
    m.rules.push_back(std::move(r));
  };
  for (char c : text) {
    if (c == ',' || c == '\n') {
      flush();
      if (c == '\n') ++line;
      item_line = line;
      continue;
    }
    item += c;
  }
  flush();
  if (m.rules.empty()) Fail("{}: no PATTERN=PRECISION rule", what);
  return m;
}

PrecisionMap LoadPrecisionMap(const std::string& arg) {
  std::string path;
  if (!arg.empty() && arg[0] == '@') {
    path = arg.substr(1);
  } else if (arg.find('=') == std::string::npos || FileExists(arg)) {
    path = arg;
  }
  if (path.empty()) return ParsePrecisionMap(arg, "--precision-map");
  if (!FileExists(path)) {
    Fail("--precision-map: '{}' is neither a rule list nor a file", arg);
  }
  return ParsePrecisionMap(ReadFile(path), path);
}

}  // namespace bioquant
