// Okapi BM25 over a small in-memory collection, used to pick few-shot
// demonstrations that share vocabulary with the test item.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bioquant {

class Bm25Index {
 public:
  // k1 and b are the usual defaults (Robertson & Zaragoza 2009).
  explicit Bm25Index(const std::vector<std::string>& docs, double k1 = 1.5,
                     double b = 0.75);

  // Terms are lower-cased runs of ASCII letters and digits; bytes >= 0x80
  // (UTF-8 sequences) stay inside terms so "β-blocker" is not cut in two.
  // Everything else separates terms.
  static std::vector<std::string> Tokenize(std::string_view text);

  double Score(const std::string& query, size_t doc) const;

  // The k best documents, best first; ties go to the lower index so results
  // are deterministic. Documents with score 0 are still returned (after the
  // scored ones, by index) when fewer than k share a term with the query.
  std::vector<std::pair<size_t, double>> TopK(const std::string& query,
                                              size_t k) const;

  size_t size() const { return doc_len_.size(); }

 private:
  // idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)), never negative.
  double Idf(size_t df) const;
  void Accumulate(const std::string& query, std::vector<double>& scores) const;

  double k1_, b_, avg_len_ = 0;
  std::vector<size_t> doc_len_;  // [n_docs] terms per document
  // term -> postings (doc index, term frequency), doc indices ascending.
  std::unordered_map<std::string, std::vector<std::pair<size_t, int>>>
      postings_;
};

}  // namespace bioquant
