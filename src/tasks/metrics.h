// Task metrics exactly per the conventions in data/bionlp/README.md, each
// with a seeded percentile-bootstrap interval.
//
// Every metric is a function of counts summed over scoring units (a sentence
// for NER, an example otherwise). A MetricSet keeps the per-unit counts, so a
// bootstrap resample, or a paired resample of two systems, only re-sums
// rows. Zero denominators give 0 (precision with no predictions, recall with
// no gold, F1 with P + R = 0), as scikit-learn and seqeval do.
//
//  NER   ner_strict_entity_f1 (primary), ner_precision, ner_recall: exact
//        (begin, end, type) matches of seqeval-strict IOB2 entities,
//        micro-averaged over the whole set.
//  RE    macro_f1_all_classes (primary): mean per-class F1 over every class,
//        the negative one included, that occurs in gold or predictions
//        (scikit-learn's default label set); accuracy; micro_f1 over the
//        positive classes (a prediction of the negative class is no
//        prediction, gold negatives are no gold).
//  Multi-label  label_macro_f1 (primary): mean per-label F1 over the labels
//        that occur in gold or predictions; micro_f1 over all labels.
//  QA    accuracy (primary); macro_f1_gold_classes: mean per-class F1 over
//        the classes that occur in gold.
// An unparsed prediction is wrong and never a class: it adds a false
// negative to its gold class(es) and no false positive anywhere.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tasks/stats.h"

namespace bioquant {

// ------------------------------------------------------------------- IOB2

struct EntitySpan {
  size_t begin = 0;  // token index
  size_t end = 0;    // one past the last token
  std::string type;  // tag suffix after "B-"/"I-"; empty for bare tags
  auto operator<=>(const EntitySpan&) const = default;
};

// True for "O", "B", "I", "B-<type>", "I-<type>".
bool IsIob2Tag(const std::string& tag);

// seqeval strict mode, IOB2: an entity starts at B-X and continues over
// following I-X (same type); an I that follows O, the sequence start, or an
// entity of another type starts nothing and is dropped.
std::vector<EntitySpan> ExtractEntities(const std::vector<std::string>& tags);

// ------------------------------------------------------------- metric sets

// One metric's point estimate, interval and the counts it was computed from.
struct MetricValue {
  std::string name;
  double value = 0;
  double ci_low = 0;
  double ci_high = 0;
  std::map<std::string, double> counts;
};

// Per-class counts behind a macro average, for reports.
struct ClassCounts {
  std::string label;
  double tp = 0, fp = 0, fn = 0;
  double Precision() const;
  double Recall() const;
  double F1() const;
};

class MetricSet {
 public:
  using ValueFn = std::function<double(const std::vector<double>& sums)>;
  using CountsFn = std::function<std::map<std::string, double>(
      const std::vector<double>& sums)>;

  const std::string& primary() const { return primary_; }
  size_t units() const { return rows_.size(); }
  std::vector<std::string> MetricNames() const;

  // Point estimates on all units (no resampling).
  std::vector<MetricValue> PointEstimates() const;
  // Point estimates with percentile-bootstrap intervals.
  std::vector<MetricValue> Evaluate(const BootstrapOptions& opts) const;
  // Per-class counts over all units (RE, multi-label, QA; empty for NER).
  std::vector<ClassCounts> PerClass() const;

  // Per-unit correctness for McNemar and flip counts: RE/QA the answer is
  // right; multi-label the predicted set equals the gold set; NER the
  // sentence's entities are exactly the gold ones.
  const std::vector<bool>& UnitCorrect() const { return correct_; }

  // Value of `metric` with unit i weighted by weights[i].
  double Value(const std::string& metric,
               const std::vector<uint32_t>* weights) const;

  // Builders used by the Make* functions below.
  void SetColumns(std::vector<std::string> columns) {
    columns_ = std::move(columns);
  }
  int Column(const std::string& name) const;
  void AddRow(std::vector<double> row, bool correct) {
    rows_.push_back(std::move(row));
    correct_.push_back(correct);
  }
  void AddMetric(std::string name, ValueFn value, CountsFn counts);
  void SetPrimary(std::string name) { primary_ = std::move(name); }
  void SetClasses(std::vector<std::string> classes) {
    classes_ = std::move(classes);
  }

 private:
  struct Def {
    std::string name;
    ValueFn value;
    CountsFn counts;
  };
  std::vector<double> Sums(const std::vector<uint32_t>* weights) const;
  const Def& FindDef(const std::string& name) const;

  std::vector<std::string> columns_;
  std::vector<std::vector<double>> rows_;  // [unit][column]
  std::vector<bool> correct_;              // [unit]
  std::vector<Def> defs_;
  std::vector<std::string> classes_;  // columns tp:<c>, fp:<c>, fn:<c>
  std::string primary_;
};

// NER: one unit per sentence; gold[i] and pred[i] are that sentence's tags.
// When one side uses bare tags (B/I/O) and the other typed ones, types are
// ignored on both sides (single-type tasks often mix the two styles).
MetricSet MakeNerMetrics(const std::vector<std::vector<std::string>>& gold,
                         const std::vector<std::vector<std::string>>& pred);

// RE: gold labels, predictions (nullopt = unparsed), the task's classes and
// its negative class.
MetricSet MakeRelationMetrics(
    const std::vector<std::string>& gold,
    const std::vector<std::optional<std::string>>& pred,
    const std::vector<std::string>& labels, const std::string& negative_label);

// Multi-label: gold label sets, predicted sets (nullopt = unparsed).
MetricSet MakeMultiLabelMetrics(
    const std::vector<std::vector<std::string>>& gold,
    const std::vector<std::optional<std::vector<std::string>>>& pred,
    const std::vector<std::string>& labels);

// QA: accuracy and macro-F1 over the gold classes.
MetricSet MakeQaMetrics(const std::vector<std::string>& gold,
                        const std::vector<std::optional<std::string>>& pred,
                        const std::vector<std::string>& labels);

// Paired comparison of two systems on the same units: delta = B - A with a
// paired-bootstrap interval (both resampled with the same draws).
struct PairedDelta {
  std::string metric;
  double a = 0, b = 0, delta = 0, ci_low = 0, ci_high = 0;
};
PairedDelta PairedBootstrapDelta(const MetricSet& a, const MetricSet& b,
                                 const std::string& metric,
                                 const BootstrapOptions& opts);

}  // namespace bioquant
