#include "tasks/metrics.h"

#include <algorithm>
#include <array>
#include <set>

#include "util/error.h"

namespace bioquant {
namespace {

// Tag prefix ('B', 'I', 'O') and type; false when the tag is not IOB2.
bool SplitTag(const std::string& tag, char* prefix, std::string* type) {
  if (tag == "O") {
    *prefix = 'O';
    type->clear();
    return true;
  }
  if (tag.empty() || (tag[0] != 'B' && tag[0] != 'I')) return false;
  *prefix = tag[0];
  if (tag.size() == 1) {
    type->clear();
    return true;
  }
  if (tag[1] != '-' || tag.size() == 2) return false;
  *type = tag.substr(2);
  return true;
}

double SafeDiv(double a, double b) { return b > 0 ? a / b : 0.0; }

// F1 = 2tp / (2tp + fp + fn), which equals 2PR/(P+R) and is 0 when tp = 0.
double F1(double tp, double fp, double fn) {
  return SafeDiv(2 * tp, 2 * tp + fp + fn);
}

enum class ClassRule { kGoldOrPred, kGold };

// Adds tp:/fp:/fn: columns per class and returns the column index of tp:<c0>.
std::vector<std::string> ClassColumns(const std::vector<std::string>& classes) {
  std::vector<std::string> cols;
  for (const auto& c : classes) {
    cols.push_back("tp:" + c);
    cols.push_back("fp:" + c);
    cols.push_back("fn:" + c);
  }
  return cols;
}

// Macro F1 over the classes selected by `rule`; columns start at `base`.
MetricSet::ValueFn MacroF1(size_t base, size_t n_classes, ClassRule rule) {
  return [=](const std::vector<double>& s) {
    double total = 0;
    int k = 0;
    for (size_t c = 0; c < n_classes; ++c) {
      const double tp = s[base + 3 * c], fp = s[base + 3 * c + 1],
                   fn = s[base + 3 * c + 2];
      const bool in = rule == ClassRule::kGold ? tp + fn > 0 : tp + fp + fn > 0;
      if (!in) continue;
      total += F1(tp, fp, fn);
      ++k;
    }
    return k ? total / k : 0.0;
  };
}

MetricSet::CountsFn MacroCounts(size_t base, size_t n_classes, ClassRule rule) {
  return [=](const std::vector<double>& s) {
    std::map<std::string, double> m{
        {"classes", 0}, {"tp", 0}, {"fp", 0}, {"fn", 0}};
    for (size_t c = 0; c < n_classes; ++c) {
      const double tp = s[base + 3 * c], fp = s[base + 3 * c + 1],
                   fn = s[base + 3 * c + 2];
      const bool in = rule == ClassRule::kGold ? tp + fn > 0 : tp + fp + fn > 0;
      if (!in) continue;
      m["classes"] += 1;
      m["tp"] += tp;
      m["fp"] += fp;
      m["fn"] += fn;
    }
    return m;
  };
}

int IndexOf(const std::vector<std::string>& v, const std::string& x) {
  auto it = std::find(v.begin(), v.end(), x);
  return it == v.end() ? -1 : static_cast<int>(it - v.begin());
}

}  // namespace

bool IsIob2Tag(const std::string& tag) {
  char p;
  std::string t;
  return SplitTag(tag, &p, &t);
}

std::vector<EntitySpan> ExtractEntities(const std::vector<std::string>& tags) {
  std::vector<EntitySpan> spans;
  const size_t n = tags.size();
  size_t i = 0;
  while (i < n) {
    char p;
    std::string type;
    if (!SplitTag(tags[i], &p, &type)) Fail("bad IOB2 tag '{}'", tags[i]);
    if (p != 'B') {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < n) {
      char q;
      std::string t2;
      if (!SplitTag(tags[j], &q, &t2)) Fail("bad IOB2 tag '{}'", tags[j]);
      if (q != 'I' || t2 != type) break;
      ++j;
    }
    spans.push_back({i, j, type});
    i = j;
  }
  return spans;
}

double ClassCounts::Precision() const { return SafeDiv(tp, tp + fp); }
double ClassCounts::Recall() const { return SafeDiv(tp, tp + fn); }
double ClassCounts::F1() const { return bioquant::F1(tp, fp, fn); }

int MetricSet::Column(const std::string& name) const {
  const int i = IndexOf(columns_, name);
  if (i < 0) Fail("metric set has no count column '{}'", name);
  return i;
}

void MetricSet::AddMetric(std::string name, ValueFn value, CountsFn counts) {
  defs_.push_back({std::move(name), std::move(value), std::move(counts)});
}

std::vector<std::string> MetricSet::MetricNames() const {
  std::vector<std::string> r;
  for (const auto& d : defs_) r.push_back(d.name);
  return r;
}

std::vector<double> MetricSet::Sums(
    const std::vector<uint32_t>* weights) const {
  std::vector<double> s(columns_.size(), 0.0);
  for (size_t u = 0; u < rows_.size(); ++u) {
    const double w = weights ? (*weights)[u] : 1.0;
    if (w == 0) continue;
    const auto& row = rows_[u];
    for (size_t c = 0; c < row.size(); ++c) s[c] += w * row[c];
  }
  return s;
}

const MetricSet::Def& MetricSet::FindDef(const std::string& name) const {
  for (const auto& d : defs_) {
    if (d.name == name) return d;
  }
  Fail("unknown metric '{}'", name);
}

double MetricSet::Value(const std::string& metric,
                        const std::vector<uint32_t>* weights) const {
  return FindDef(metric).value(Sums(weights));
}

std::vector<MetricValue> MetricSet::PointEstimates() const {
  const auto sums = Sums(nullptr);
  std::vector<MetricValue> out;
  for (const auto& d : defs_) {
    MetricValue v;
    v.name = d.name;
    v.value = d.value(sums);
    v.ci_low = v.ci_high = v.value;
    v.counts = d.counts(sums);
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<MetricValue> MetricSet::Evaluate(
    const BootstrapOptions& opts) const {
  auto out = PointEstimates();
  if (opts.resamples <= 0 || rows_.empty()) return out;
  std::vector<std::vector<double>> samples(defs_.size());
  for (int b = 0; b < opts.resamples; ++b) {
    const auto w = BootstrapWeights(opts.seed, b, rows_.size());
    const auto sums = Sums(&w);
    for (size_t m = 0; m < defs_.size(); ++m)
      samples[m].push_back(defs_[m].value(sums));
  }
  const double tail = (1 - opts.level) / 2;
  for (size_t m = 0; m < defs_.size(); ++m) {
    std::sort(samples[m].begin(), samples[m].end());
    out[m].ci_low = Percentile(samples[m], tail);
    out[m].ci_high = Percentile(samples[m], 1 - tail);
  }
  return out;
}

std::vector<ClassCounts> MetricSet::PerClass() const {
  std::vector<ClassCounts> r;
  if (classes_.empty()) return r;
  const auto s = Sums(nullptr);
  for (const auto& c : classes_) {
    ClassCounts cc;
    cc.label = c;
    cc.tp = s[Column("tp:" + c)];
    cc.fp = s[Column("fp:" + c)];
    cc.fn = s[Column("fn:" + c)];
    r.push_back(cc);
  }
  return r;
}

MetricSet MakeNerMetrics(const std::vector<std::vector<std::string>>& gold,
                         const std::vector<std::vector<std::string>>& pred) {
  if (gold.size() != pred.size()) {
    Fail("NER metrics: {} gold sentences but {} predicted", gold.size(),
         pred.size());
  }
  auto typed = [](const std::vector<std::vector<std::string>>& seqs) {
    for (const auto& s : seqs) {
      for (const auto& t : s) {
        if (t.size() > 1) return true;
      }
    }
    return false;
  };
  const bool keep_types = typed(gold) && typed(pred);
  MetricSet set;
  set.SetColumns({"tp", "pred", "gold"});
  for (size_t i = 0; i < gold.size(); ++i) {
    if (gold[i].size() != pred[i].size()) {
      Fail("NER metrics: sentence {} has {} gold tags but {} predicted", i + 1,
           gold[i].size(), pred[i].size());
    }
    auto g = ExtractEntities(gold[i]);
    auto p = ExtractEntities(pred[i]);
    if (!keep_types) {
      for (auto& e : g) e.type.clear();
      for (auto& e : p) e.type.clear();
    }
    const std::set<EntitySpan> gs(g.begin(), g.end());
    double tp = 0;
    for (const auto& e : std::set<EntitySpan>(p.begin(), p.end()))
      tp += gs.count(e);
    set.AddRow(
        {tp, static_cast<double>(p.size()), static_cast<double>(g.size())},
        tp == static_cast<double>(p.size()) &&
            tp == static_cast<double>(g.size()));
  }
  auto counts = [](const std::vector<double>& s) {
    return std::map<std::string, double>{{"tp", s[0]},
                                         {"fp", s[1] - s[0]},
                                         {"fn", s[2] - s[0]},
                                         {"pred_entities", s[1]},
                                         {"gold_entities", s[2]}};
  };
  set.AddMetric(
      "ner_strict_entity_f1",
      [](const std::vector<double>& s) {
        return SafeDiv(2 * s[0], s[1] + s[2]);
      },
      counts);
  set.AddMetric(
      "ner_precision",
      [](const std::vector<double>& s) { return SafeDiv(s[0], s[1]); }, counts);
  set.AddMetric(
      "ner_recall",
      [](const std::vector<double>& s) { return SafeDiv(s[0], s[2]); }, counts);
  set.SetPrimary("ner_strict_entity_f1");
  return set;
}

namespace {

void CheckSizes(size_t gold, size_t pred, const char* what) {
  if (gold != pred)
    Fail("{} metrics: {} gold labels but {} predictions", what, gold, pred);
}

int LabelIndex(const std::vector<std::string>& labels, const std::string& l,
               const char* what) {
  const int i = IndexOf(labels, l);
  if (i < 0)
    Fail("{} metrics: label '{}' is not in the task's label set", what, l);
  return i;
}

MetricSet::CountsFn AccuracyCounts(int n_col, int correct_col) {
  return [=](const std::vector<double>& s) {
    return std::map<std::string, double>{{"correct", s[correct_col]},
                                         {"n", s[n_col]}};
  };
}

MetricSet::ValueFn Accuracy(int n_col, int correct_col) {
  return [=](const std::vector<double>& s) {
    return SafeDiv(s[correct_col], s[n_col]);
  };
}

}  // namespace

MetricSet MakeRelationMetrics(
    const std::vector<std::string>& gold,
    const std::vector<std::optional<std::string>>& pred,
    const std::vector<std::string>& labels, const std::string& negative_label) {
  CheckSizes(gold.size(), pred.size(), "RE");
  const int neg = LabelIndex(labels, negative_label, "RE");
  const size_t k = labels.size();
  auto cols = ClassColumns(labels);
  const int n_col = static_cast<int>(cols.size());
  for (const char* c : {"n", "correct", "tp_pos", "pred_pos", "gold_pos"})
    cols.push_back(c);
  MetricSet set;
  set.SetColumns(cols);
  set.SetClasses(labels);
  for (size_t i = 0; i < gold.size(); ++i) {
    std::vector<double> row(cols.size(), 0.0);
    const int g = LabelIndex(labels, gold[i], "RE");
    const int p = pred[i] ? LabelIndex(labels, *pred[i], "RE") : -1;
    if (p == g) {
      row[3 * g] += 1;
    } else {
      row[3 * g + 2] += 1;
      if (p >= 0) row[3 * p + 1] += 1;
    }
    row[n_col] = 1;
    row[n_col + 1] = p == g;
    row[n_col + 2] = p == g && g != neg;
    row[n_col + 3] = p >= 0 && p != neg;
    row[n_col + 4] = g != neg;
    set.AddRow(std::move(row), p == g);
  }
  set.AddMetric("macro_f1_all_classes", MacroF1(0, k, ClassRule::kGoldOrPred),
                MacroCounts(0, k, ClassRule::kGoldOrPred));
  set.AddMetric("accuracy", Accuracy(n_col, n_col + 1),
                AccuracyCounts(n_col, n_col + 1));
  set.AddMetric(
      "micro_f1",
      [=](const std::vector<double>& s) {
        return F1(s[n_col + 2], s[n_col + 3] - s[n_col + 2],
                  s[n_col + 4] - s[n_col + 2]);
      },
      [=](const std::vector<double>& s) {
        return std::map<std::string, double>{
            {"tp", s[n_col + 2]},
            {"fp", s[n_col + 3] - s[n_col + 2]},
            {"fn", s[n_col + 4] - s[n_col + 2]}};
      });
  set.SetPrimary("macro_f1_all_classes");
  return set;
}

MetricSet MakeMultiLabelMetrics(
    const std::vector<std::vector<std::string>>& gold,
    const std::vector<std::optional<std::vector<std::string>>>& pred,
    const std::vector<std::string>& labels) {
  CheckSizes(gold.size(), pred.size(), "multi-label");
  const size_t k = labels.size();
  auto cols = ClassColumns(labels);
  const int n_col = static_cast<int>(cols.size());
  cols.push_back("n");
  cols.push_back("exact");
  MetricSet set;
  set.SetColumns(cols);
  set.SetClasses(labels);
  for (size_t i = 0; i < gold.size(); ++i) {
    std::vector<double> row(cols.size(), 0.0);
    std::vector<bool> g(k, false), p(k, false);
    for (const auto& l : gold[i])
      g[LabelIndex(labels, l, "multi-label")] = true;
    if (pred[i]) {
      for (const auto& l : *pred[i])
        p[LabelIndex(labels, l, "multi-label")] = true;
    }
    for (size_t c = 0; c < k; ++c) {
      if (g[c] && p[c]) row[3 * c] = 1;
      if (!g[c] && p[c]) row[3 * c + 1] = 1;
      if (g[c] && !p[c]) row[3 * c + 2] = 1;
    }
    row[n_col] = 1;
    row[n_col + 1] = pred[i].has_value() && g == p;
    // Read before the move: argument evaluation order is unspecified (clang
    // moves `row` first; found by fuzzing).
    const bool exact = row[n_col + 1] > 0;
    set.AddRow(std::move(row), exact);
  }
  set.AddMetric("label_macro_f1", MacroF1(0, k, ClassRule::kGoldOrPred),
                MacroCounts(0, k, ClassRule::kGoldOrPred));
  auto micro_sums = [=](const std::vector<double>& s) {
    double tp = 0, fp = 0, fn = 0;
    for (size_t c = 0; c < k; ++c) {
      tp += s[3 * c];
      fp += s[3 * c + 1];
      fn += s[3 * c + 2];
    }
    return std::array<double, 3>{tp, fp, fn};
  };
  set.AddMetric(
      "micro_f1",
      [=](const std::vector<double>& s) {
        auto [tp, fp, fn] = micro_sums(s);
        return F1(tp, fp, fn);
      },
      [=](const std::vector<double>& s) {
        auto [tp, fp, fn] = micro_sums(s);
        return std::map<std::string, double>{
            {"tp", tp}, {"fp", fp}, {"fn", fn}};
      });
  set.AddMetric("exact_match", Accuracy(n_col, n_col + 1),
                AccuracyCounts(n_col, n_col + 1));
  set.SetPrimary("label_macro_f1");
  return set;
}

MetricSet MakeQaMetrics(const std::vector<std::string>& gold,
                        const std::vector<std::optional<std::string>>& pred,
                        const std::vector<std::string>& labels) {
  CheckSizes(gold.size(), pred.size(), "QA");
  const size_t k = labels.size();
  auto cols = ClassColumns(labels);
  const int n_col = static_cast<int>(cols.size());
  cols.push_back("n");
  cols.push_back("correct");
  MetricSet set;
  set.SetColumns(cols);
  set.SetClasses(labels);
  for (size_t i = 0; i < gold.size(); ++i) {
    std::vector<double> row(cols.size(), 0.0);
    const int g = LabelIndex(labels, gold[i], "QA");
    const int p = pred[i] ? LabelIndex(labels, *pred[i], "QA") : -1;
    if (p == g) {
      row[3 * g] = 1;
    } else {
      row[3 * g + 2] = 1;
      if (p >= 0) row[3 * p + 1] = 1;
    }
    row[n_col] = 1;
    row[n_col + 1] = p == g;
    set.AddRow(std::move(row), p == g);
  }
  set.AddMetric("accuracy", Accuracy(n_col, n_col + 1),
                AccuracyCounts(n_col, n_col + 1));
  set.AddMetric("macro_f1_gold_classes", MacroF1(0, k, ClassRule::kGold),
                MacroCounts(0, k, ClassRule::kGold));
  set.SetPrimary("accuracy");
  return set;
}

PairedDelta PairedBootstrapDelta(const MetricSet& a, const MetricSet& b,
                                 const std::string& metric,
                                 const BootstrapOptions& opts) {
  if (a.units() != b.units()) {
    Fail(
        "paired comparison of '{}': {} units vs {}; pairing needs the same "
        "examples",
        metric, a.units(), b.units());
  }
  PairedDelta d;
  d.metric = metric;
  d.a = a.Value(metric, nullptr);
  d.b = b.Value(metric, nullptr);
  d.delta = d.b - d.a;
  d.ci_low = d.ci_high = d.delta;
  if (opts.resamples <= 0 || a.units() == 0) return d;
  std::vector<double> deltas;
  deltas.reserve(opts.resamples);
  for (int r = 0; r < opts.resamples; ++r) {
    const auto w = BootstrapWeights(opts.seed, r, a.units());
    deltas.push_back(b.Value(metric, &w) - a.Value(metric, &w));
  }
  std::sort(deltas.begin(), deltas.end());
  const double tail = (1 - opts.level) / 2;
  d.ci_low = Percentile(deltas, tail);
  d.ci_high = Percentile(deltas, 1 - tail);
  return d;
}

}  // namespace bioquant
