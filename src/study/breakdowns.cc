#include "study/breakdowns.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>

#include "tasks/metrics.h"

namespace bioquant {
namespace {

// A statistic of n examples under bootstrap weights (null = each once).
using StatFn = std::function<double(const std::vector<uint32_t>* w)>;

nlohmann::json NumOrNull(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

void Interval(const StatFn& f, size_t n, const BootstrapOptions& b, double* lo,
              double* hi) {
  const double v = f(nullptr);
  *lo = *hi = v;
  if (b.resamples <= 0 || n == 0) return;
  std::vector<double> vals;
  for (int i = 0; i < b.resamples; ++i) {
    const auto w = BootstrapWeights(b.seed, i, n);
    const double x = f(&w);
    if (std::isfinite(x)) vals.push_back(x);
  }
  if (vals.empty()) return;
  std::sort(vals.begin(), vals.end());
  const double a = (1.0 - b.level) / 2;
  *lo = Percentile(vals, a);
  *hi = Percentile(vals, 1.0 - a);
}

// Reference and precision statistics of the same n examples, their delta
// and the relative drop (ref - x) / ref, with paired-bootstrap intervals.
nlohmann::json Paired(const StatFn& ref, const StatFn& x, size_t n,
                      const BootstrapOptions& b) {
  const double r = ref(nullptr), v = x(nullptr);
  double dlo = 0, dhi = 0, rlo = 0, rhi = 0;
  Interval([&](const std::vector<uint32_t>* w) { return x(w) - ref(w); }, n, b,
           &dlo, &dhi);
  Interval(
      [&](const std::vector<uint32_t>* w) {
        const double a = ref(w);
        return a > 0 ? (a - x(w)) / a : NAN;
      },
      n, b, &rlo, &rhi);
  nlohmann::json j = {{"examples", n},
                      {"reference", NumOrNull(r)},
                      {"value", NumOrNull(v)},
                      {"delta", NumOrNull(v - r)},
                      {"delta_ci_low", NumOrNull(dlo)},
                      {"delta_ci_high", NumOrNull(dhi)}};
  const bool rel = std::isfinite(r) && r > 0;
  j["relative_drop"] = rel ? nlohmann::json((r - v) / r) : nullptr;
  j["relative_drop_ci_low"] = rel ? NumOrNull(rlo) : nullptr;
  j["relative_drop_ci_high"] = rel ? NumOrNull(rhi) : nullptr;
  return j;
}

// sum(w num) / sum(w den) * scale; NaN when the denominator is 0.
StatFn Ratio(const std::vector<double>& num, const std::vector<double>& den,
             double scale) {
  // The vectors outlive the function (callers keep them); pointers, not
  // captured references, so nothing dangles.
  const std::vector<double>* n = &num;
  const std::vector<double>* dn = &den;
  return [n, dn, scale](const std::vector<uint32_t>* w) {
    double a = 0, d = 0;
    for (size_t i = 0; i < n->size(); ++i) {
      const double k = w ? (*w)[i] : 1.0;
      a += k * (*n)[i];
      d += k * (*dn)[i];
    }
    return d > 0 ? scale * a / d : NAN;
  };
}

// Per example: (hallucinated, mentions).
void HallucinationCounts(const std::vector<NerScored>& ex,
                         std::vector<double>* h, std::vector<double>* m) {
  for (const auto& e : ex) {
    double k = 0;
    for (const auto& mention : e.mentions)
      k += !MentionOccurs(mention, e.tokens);
    h->push_back(k);
    m->push_back(static_cast<double>(e.mentions.size()));
  }
}

// Per example and bucket: gold entities and those found.
void RecallCounts(const std::vector<NerScored>& ex,
                  const std::map<std::string, int64_t>& counts, int bucket,
                  std::vector<double>* found, std::vector<double>* gold) {
  for (const auto& e : ex) {
    const auto spans = ExtractEntities(e.gold_tags);
    const auto pred = ExtractEntities(e.pred_tags);
    double g = 0, f = 0;
    for (const auto& s : spans) {
      std::string text;
      for (size_t t = s.begin; t < s.end && t < e.tokens.size(); ++t)
        text += (t > s.begin ? " " : "") + e.tokens[t];
      const auto it = counts.find(ConceptKey(text));
      const int64_t c = it == counts.end() ? 0 : it->second;
      if (RarityBucket(c) != std::string(kRarityBuckets[bucket])) continue;
      g += 1;
      for (const auto& p : pred) {
        if (p.begin == s.begin && p.end == s.end) {
          f += 1;
          break;
        }
      }
    }
    found->push_back(f);
    gold->push_back(g);
  }
}

int PairBucket(const ReScored& e, const std::map<std::string, int64_t>& c) {
  if (e.pair.empty()) return -1;
  const auto it = c.find(e.pair);
  const std::string b = RarityBucket(it == c.end() ? 0 : it->second);
  for (int k = 0; k < 3; ++k)
    if (b == kRarityBuckets[k]) return k;
  return -1;
}

// Macro-F1 of the RE examples `idx` (indices into ex).
StatFn ReMacroF1(const std::vector<ReScored>& ex, std::vector<size_t> idx,
                 const std::vector<std::string>& labels,
                 const std::string& negative) {
  std::vector<std::string> gold;
  std::vector<std::optional<std::string>> pred;
  for (size_t i : idx) {
    gold.push_back(ex[i].gold);
    pred.push_back(ex[i].pred);
  }
  auto set = std::make_shared<MetricSet>(
      MakeRelationMetrics(gold, pred, labels, negative));
  return [set](const std::vector<uint32_t>* w) {
    return set->Value(set->primary(), w);
  };
}

nlohmann::json Unavailable(const std::string& why) {
  return {{"available", false}, {"reason", why}};
}

// The RE examples of each rarity bucket (indices into ex, by the pair's
// train count); empty when no sentence names its entity pair.
std::vector<std::vector<size_t>> PairBucketIndices(
    const std::vector<ReScored>& ex, const std::map<std::string, int64_t>& c) {
  std::vector<std::vector<size_t>> idx(3);
  bool any = false;
  for (size_t i = 0; i < ex.size(); ++i) {
    const int k = PairBucket(ex[i], c);
    if (k >= 0) {
      idx[k].push_back(i);
      any = true;
    }
  }
  if (!any) idx.clear();
  return idx;
}

nlohmann::json PairsMasked() {
  return Unavailable(
      "the sentences do not name the entity pair (masked, e.g. @CHEMICAL$)");
}

}  // namespace

std::string NormalizeForMatch(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isspace(c)) continue;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

std::string ConceptKey(const std::string& s) {
  std::string out;
  bool space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

bool MentionOccurs(const std::string& mention,
                   const std::vector<std::string>& tokens) {
  const std::string m = NormalizeForMatch(mention);
  if (m.empty()) return true;  // nothing claimed
  std::string sentence;
  for (const auto& t : tokens) sentence += NormalizeForMatch(t);
  return sentence.find(m) != std::string::npos;
}

const char* RarityBucket(int64_t count) {
  return count <= 0 ? "unseen" : count <= 2 ? "1-2" : ">=3";
}

std::vector<std::string> GoldEntityKeys(const std::vector<std::string>& tokens,
                                        const std::vector<std::string>& tags) {
  std::vector<std::string> out;
  for (const auto& s : ExtractEntities(tags)) {
    std::string text;
    for (size_t t = s.begin; t < s.end && t < tokens.size(); ++t)
      text += (t > s.begin ? " " : "") + tokens[t];
    out.push_back(ConceptKey(text));
  }
  return out;
}

nlohmann::json Hallucination(const std::vector<NerScored>& ex,
                             const BootstrapOptions& b) {
  std::vector<double> h, m;
  HallucinationCounts(ex, &h, &m);
  double hs = 0, ms = 0;
  int64_t any = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    hs += h[i];
    ms += m[i];
    any += h[i] > 0;
  }
  double lo = 0, hi = 0;
  const StatFn f = Ratio(h, m, 100.0);
  Interval(f, ex.size(), b, &lo, &hi);
  return {{"mentions", static_cast<int64_t>(ms)},
          {"hallucinated", static_cast<int64_t>(hs)},
          {"per_100_mentions", NumOrNull(f(nullptr))},
          {"ci_low", NumOrNull(lo)},
          {"ci_high", NumOrNull(hi)},
          {"examples", ex.size()},
          {"examples_with_any", any}};
}

nlohmann::json NerRarity(const std::vector<NerScored>& ex,
                         const std::map<std::string, int64_t>& train_counts,
                         const BootstrapOptions& b) {
  nlohmann::json j = {{"available", true}, {"metric", "recall"}};
  for (int k = 0; k < 3; ++k) {
    std::vector<double> f, g;
    RecallCounts(ex, train_counts, k, &f, &g);
    double gs = 0;
    for (double x : g) gs += x;
    const StatFn s = Ratio(f, g, 1.0);
    double lo = 0, hi = 0;
    Interval(s, ex.size(), b, &lo, &hi);
    j["buckets"][kRarityBuckets[k]] = {{"gold", static_cast<int64_t>(gs)},
                                       {"value", NumOrNull(s(nullptr))},
                                       {"ci_low", NumOrNull(lo)},
                                       {"ci_high", NumOrNull(hi)}};
  }
  return j;
}

std::string RePairKey(const std::string& s) {
  auto between = [&](const std::string& open, const std::string& close) {
    const size_t a = s.find(open);
    if (a == std::string::npos) return std::string();
    const size_t e = s.find(close, a + open.size());
    if (e == std::string::npos) return std::string();
    return ConceptKey(s.substr(a + open.size(), e - a - open.size()));
  };
  const std::string e1 = between("<e1>", "</e1>"),
                    e2 = between("<e2>", "</e2>");
  if (e1.empty() || e2.empty()) return "";
  return e1 + "|" + e2;
}

nlohmann::json ReRarity(const std::vector<ReScored>& ex,
                        const std::map<std::string, int64_t>& train_counts,
                        const std::vector<std::string>& labels,
                        const std::string& negative_label,
                        const BootstrapOptions& b) {
  const auto idx = PairBucketIndices(ex, train_counts);
  if (idx.empty()) return PairsMasked();
  nlohmann::json j = {{"available", true}, {"metric", "macro_f1"}};
  for (int k = 0; k < 3; ++k) {
    nlohmann::json bj = {{"examples", idx[k].size()}};
    if (!idx[k].empty()) {
      const StatFn s = ReMacroF1(ex, idx[k], labels, negative_label);
      double lo = 0, hi = 0;
      Interval(s, idx[k].size(), b, &lo, &hi);
      bj["value"] = NumOrNull(s(nullptr));
      bj["ci_low"] = NumOrNull(lo);
      bj["ci_high"] = NumOrNull(hi);
    } else {
      bj["value"] = bj["ci_low"] = bj["ci_high"] = nullptr;
    }
    j["buckets"][kRarityBuckets[k]] = bj;
  }
  return j;
}

nlohmann::json PairedHallucination(const std::vector<NerScored>& ref,
                                   const std::vector<NerScored>& x,
                                   const BootstrapOptions& b) {
  std::vector<double> hr, mr, hx, mx;
  HallucinationCounts(ref, &hr, &mr);
  HallucinationCounts(x, &hx, &mx);
  nlohmann::json j =
      Paired(Ratio(hr, mr, 100.0), Ratio(hx, mx, 100.0), ref.size(), b);
  // A relative drop of a hallucination rate reads backwards; keep deltas.
  j.erase("relative_drop");
  j.erase("relative_drop_ci_low");
  j.erase("relative_drop_ci_high");
  return j;
}

nlohmann::json PairedNerRarity(
    const std::vector<NerScored>& ref, const std::vector<NerScored>& x,
    const std::map<std::string, int64_t>& train_counts,
    const BootstrapOptions& b) {
  nlohmann::json j = {{"available", true}, {"metric", "recall"}};
  for (int k = 0; k < 3; ++k) {
    std::vector<double> fr, gr, fx, gx;
    RecallCounts(ref, train_counts, k, &fr, &gr);
    RecallCounts(x, train_counts, k, &fx, &gx);
    nlohmann::json p =
        Paired(Ratio(fr, gr, 1.0), Ratio(fx, gx, 1.0), ref.size(), b);
    double g = 0;
    for (double v : gr) g += v;
    p["gold"] = static_cast<int64_t>(g);
    j["buckets"][kRarityBuckets[k]] = p;
  }
  return j;
}

nlohmann::json PairedReRarity(
    const std::vector<ReScored>& ref, const std::vector<ReScored>& x,
    const std::map<std::string, int64_t>& train_counts,
    const std::vector<std::string>& labels, const std::string& negative_label,
    const BootstrapOptions& b) {
  const auto idx = PairBucketIndices(ref, train_counts);
  if (idx.empty()) return PairsMasked();
  nlohmann::json j = {{"available", true}, {"metric", "macro_f1"}};
  for (int k = 0; k < 3; ++k) {
    if (idx[k].empty()) {
      j["buckets"][kRarityBuckets[k]] = {{"examples", 0}};
      continue;
    }
    j["buckets"][kRarityBuckets[k]] =
        Paired(ReMacroF1(ref, idx[k], labels, negative_label),
               ReMacroF1(x, idx[k], labels, negative_label), idx[k].size(), b);
  }
  return j;
}

}  // namespace bioquant
