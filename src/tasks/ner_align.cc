#include "tasks/ner_align.h"

#include <algorithm>
#include <cctype>
#include <numeric>

namespace bioquant {
namespace {

// Lower-cased, whitespace-free form used for matching.
std::string Key(const std::string& s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isspace(u)) continue;
    r += static_cast<char>(std::tolower(u));
  }
  return r;
}

}  // namespace

std::vector<std::string> MentionsToIob2(
    const std::vector<std::string>& tokens,
    const std::vector<std::string>& mentions, const std::string& type) {
  const size_t n = tokens.size();
  std::vector<std::string> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = Key(tokens[i]);
  std::vector<std::string> mkeys;
  for (const auto& m : mentions) {
    std::string k = Key(m);
    if (!k.empty() && std::find(mkeys.begin(), mkeys.end(), k) == mkeys.end()) {
      mkeys.push_back(std::move(k));
    }
  }
  std::stable_sort(mkeys.begin(), mkeys.end(),
                   [](const std::string& a, const std::string& b) {
                     return a.size() > b.size();
                   });
  std::vector<int> owner(n, -1);  // span start of the entity covering a token
  for (const auto& mk : mkeys) {
    for (size_t i = 0; i < n; ++i) {
      if (keys[i].empty()) continue;  // a span never starts on an empty token
      // Extend the span token by token while it stays a prefix of the mention.
      size_t len = 0, j = i;
      while (j < n && len < mk.size()) {
        const std::string& k = keys[j];
        if (mk.compare(len, k.size(), k) != 0) break;
        len += k.size();
        ++j;
      }
      if (len != mk.size()) continue;
      bool free = true;
      for (size_t t = i; t < j && free; ++t) free = owner[t] < 0;
      if (!free) continue;
      for (size_t t = i; t < j; ++t) owner[t] = static_cast<int>(i);
      i = j - 1;
    }
  }
  const std::string suffix = type.empty() ? "" : "-" + type;
  std::vector<std::string> tags(n, "O");
  for (size_t i = 0; i < n; ++i) {
    if (owner[i] < 0) continue;
    tags[i] = (owner[i] == static_cast<int>(i) ? "B" : "I") + suffix;
  }
  return tags;
}

}  // namespace bioquant
