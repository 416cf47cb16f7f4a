#include "tasks/bm25.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace bioquant {

Bm25Index::Bm25Index(const std::vector<std::string>& docs, double k1, double b)
    : k1_(k1), b_(b) {
  doc_len_.reserve(docs.size());
  size_t total = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    std::map<std::string, int> tf;
    const auto terms = Tokenize(docs[d]);
    for (const auto& t : terms) ++tf[t];
    for (auto& [term, count] : tf) postings_[term].emplace_back(d, count);
    doc_len_.push_back(terms.size());
    total += terms.size();
  }
  avg_len_ = docs.empty() ? 0 : static_cast<double>(total) / docs.size();
}

std::vector<std::string> Bm25Index::Tokenize(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80) {
      cur += ch;
    } else if (c >= 'A' && c <= 'Z') {
      cur += static_cast<char>(c - 'A' + 'a');
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

double Bm25Index::Idf(size_t df) const {
  const double n = static_cast<double>(doc_len_.size());
  return std::log(1.0 + (n - df + 0.5) / (df + 0.5));
}

void Bm25Index::Accumulate(const std::string& query,
                           std::vector<double>& scores) const {
  scores.assign(doc_len_.size(), 0.0);
  // Each query term counts once per occurrence in the query, as in the
  // classic formula summed over query tokens.
  for (const auto& term : Tokenize(query)) {
    const auto it = postings_.find(term);
    if (it == postings_.end()) continue;
    const double idf = Idf(it->second.size());
    for (const auto& [doc, tf] : it->second) {
      const double norm =
          k1_ * (1.0 - b_ + b_ * (avg_len_ > 0 ? doc_len_[doc] / avg_len_ : 0));
      scores[doc] += idf * tf * (k1_ + 1.0) / (tf + norm);
    }
  }
}

double Bm25Index::Score(const std::string& query, size_t doc) const {
  std::vector<double> scores;
  Accumulate(query, scores);
  return doc < scores.size() ? scores[doc] : 0.0;
}

std::vector<std::pair<size_t, double>> Bm25Index::TopK(const std::string& query,
                                                       size_t k) const {
  std::vector<double> scores;
  Accumulate(query, scores);
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  k = std::min(k, order.size());
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](size_t a, size_t b) {
                      if (scores[a] != scores[b]) return scores[a] > scores[b];
                      return a < b;
                    });
  std::vector<std::pair<size_t, double>> out;
  for (size_t i = 0; i < k; ++i) out.emplace_back(order[i], scores[order[i]]);
  return out;
}

}  // namespace bioquant
