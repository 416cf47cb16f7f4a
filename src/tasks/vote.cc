#include "tasks/vote.h"

#include <cctype>

namespace bioquant {
namespace {

std::string VoteKey(const std::string& s) {
  std::string r;
  bool space = false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isspace(u)) {
      space = !r.empty();
      continue;
    }
    if (space) r += ' ';
    space = false;
    r += static_cast<char>(std::tolower(u));
  }
  return r;
}

// Adds one vote for `item` keyed by `key`; returns its index.
size_t AddVote(const std::string& key, const std::string& item,
               std::vector<std::string>* keys, VoteResult* r) {
  for (size_t i = 0; i < keys->size(); ++i) {
    if ((*keys)[i] == key) {
      ++r->distribution[i].second;
      return i;
    }
  }
  keys->push_back(key);
  r->distribution.push_back({item, 1});
  return keys->size() - 1;
}

}  // namespace

VoteResult MajorityVote(const std::vector<Parsed>& samples) {
  VoteResult r;
  r.samples = static_cast<int>(samples.size());
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> answers;  // per distribution entry
  for (const auto& s : samples) {
    if (!s.ok || s.labels.empty()) continue;
    ++r.parsed;
    // A multi-label answer votes as one joined value here.
    std::string joined;
    for (size_t i = 0; i < s.labels.size(); ++i)
      joined += (i ? ";" : "") + s.labels[i];
    if (AddVote(joined, joined, &keys, &r) == answers.size())
      answers.push_back(s.labels);
  }
  if (r.parsed == 0) {
    r.answer.reason = "no sample parsed";
    return r;
  }
  // Strict '>' keeps the earliest-seen answer among equals.
  size_t best = 0;
  for (size_t i = 1; i < r.distribution.size(); ++i) {
    if (r.distribution[i].second > r.distribution[best].second) best = i;
  }
  r.answer.ok = true;
  r.answer.labels = answers[best];
  return r;
}

VoteResult MajorityVoteSet(const std::vector<Parsed>& samples) {
  VoteResult r;
  r.samples = static_cast<int>(samples.size());
  std::vector<std::string> keys;
  for (const auto& s : samples) {
    if (!s.ok) continue;
    ++r.parsed;
    std::vector<std::string> seen;  // one vote per sample per item
    for (const auto& item : s.labels) {
      const std::string key = VoteKey(item);
      bool dup = false;
      for (const auto& k : seen) dup = dup || k == key;
      if (dup) continue;
      seen.push_back(key);
      AddVote(key, item, &keys, &r);
    }
  }
  if (r.parsed == 0) {
    r.answer.reason = "no sample parsed";
    return r;
  }
  r.answer.ok = true;
  for (const auto& [item, votes] : r.distribution) {
    if (2 * votes > r.parsed) r.answer.labels.push_back(item);
  }
  return r;
}

}  // namespace bioquant
