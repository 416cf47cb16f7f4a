// Metric conventions on hand-computed edge cases (values in comments).
#include "tasks/metrics.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace bioquant {
namespace {

using Tags = std::vector<std::string>;
using Opt = std::optional<std::string>;

double Get(const MetricSet& s, const std::string& name) {
  for (const auto& v : s.PointEstimates()) {
    if (v.name == name) return v.value;
  }
  ADD_FAILURE() << "no metric " << name;
  return -1;
}

TEST(Iob2, StrictEntities) {
  // I after O starts nothing; B-X I-Y ends X at the type change.
  const auto e =
      ExtractEntities({"O", "I", "I", "B-Chem", "I-Chem", "I-Dis", "B", "B"});
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0], (EntitySpan{3, 5, "Chem"}));
  EXPECT_EQ(e[1], (EntitySpan{6, 7, ""}));
  EXPECT_EQ(e[2], (EntitySpan{7, 8, ""}));
  EXPECT_TRUE(IsIob2Tag("B-disease"));
  EXPECT_FALSE(IsIob2Tag("B-"));
  EXPECT_FALSE(IsIob2Tag("E-x"));
  EXPECT_THROW(ExtractEntities({"S-x"}), Error);
}

TEST(NerMetrics, PartialMatch) {
  // gold {(0,2), (3,4)}, pred {(0,2)}: P = 1, R = 1/2, F1 = 2/3.
  const auto s = MakeNerMetrics({{"B", "I", "O", "B"}}, {{"B", "I", "O", "O"}});
  EXPECT_DOUBLE_EQ(Get(s, "ner_strict_entity_f1"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(Get(s, "ner_precision"), 1.0);
  EXPECT_DOUBLE_EQ(Get(s, "ner_recall"), 0.5);
}

TEST(NerMetrics, IAfterOIsNoEntity) {
  // pred "O I I O" has no entity, so nothing matches gold (1,3).
  const auto s = MakeNerMetrics({{"O", "B", "I", "O"}}, {{"O", "I", "I", "O"}});
  EXPECT_DOUBLE_EQ(Get(s, "ner_strict_entity_f1"), 0.0);
  const auto counts = s.PointEstimates()[0].counts;
  EXPECT_EQ(counts.at("pred_entities"), 0);
  EXPECT_EQ(counts.at("gold_entities"), 1);
}

TEST(NerMetrics, NoPredictionsEmptyGoldAndBothEmpty) {
  EXPECT_DOUBLE_EQ(
      Get(MakeNerMetrics({{"B", "O"}}, {{"O", "O"}}), "ner_strict_entity_f1"),
      0);
  const auto empty_gold = MakeNerMetrics({{"O", "O"}}, {{"B", "O"}});
  EXPECT_DOUBLE_EQ(Get(empty_gold, "ner_strict_entity_f1"), 0);
  EXPECT_DOUBLE_EQ(Get(empty_gold, "ner_recall"), 0);
  EXPECT_DOUBLE_EQ(
      Get(MakeNerMetrics({{"O"}}, {{"O"}}), "ner_strict_entity_f1"), 0);
}

TEST(NerMetrics, MicroOverSentencesAndTypeHandling) {
  // s1: gold 2, pred 2, 1 right; s2: gold 1, pred 0 -> tp 1, pred 2, gold 3.
  const auto s = MakeNerMetrics({{"B", "O", "B"}, {"B", "I"}},
                                {{"B", "B", "O"}, {"O", "O"}});
  EXPECT_DOUBLE_EQ(Get(s, "ner_strict_entity_f1"), 2.0 / 5);
  // Bare gold vs typed prediction: types ignored.
  EXPECT_DOUBLE_EQ(
      Get(MakeNerMetrics({{"B", "I"}}, {{"B-Chemical", "I-Chemical"}}),
          "ner_strict_entity_f1"),
      1.0);
  // Typed on both sides: a type mismatch is wrong.
  EXPECT_DOUBLE_EQ(Get(MakeNerMetrics({{"B-Chemical"}}, {{"B-Disease"}}),
                       "ner_strict_entity_f1"),
                   0);
  EXPECT_THROW(MakeNerMetrics({{"B", "O"}}, {{"B"}}), Error);
}

const std::vector<std::string> kRe = {"X", "Y", "Z", "false"};

TEST(RelationMetrics, MacroIncludesNegativeAndSkipsAbsentClass) {
  // X: tp1 fn1 -> 2/3; Y: tp1 fp1 -> 2/3; false (never predicted): fn1 -> 0;
  // Z occurs nowhere -> not averaged. Macro = 4/9. The unparsed answer is
  // wrong and no class. Positive micro: tp 2, pred 3, gold 3 -> 2/3.
  const auto s =
      MakeRelationMetrics({"X", "X", "Y", "false"},
                          {Opt("X"), Opt("Y"), Opt("Y"), {}}, kRe, "false");
  EXPECT_NEAR(Get(s, "macro_f1_all_classes"), 4.0 / 9, 1e-12);
  EXPECT_DOUBLE_EQ(Get(s, "accuracy"), 0.5);
  EXPECT_NEAR(Get(s, "micro_f1"), 2.0 / 3, 1e-12);
  const auto pc = s.PerClass();
  ASSERT_EQ(pc.size(), 4u);
  EXPECT_EQ(pc[3].label, "false");
  EXPECT_EQ(pc[3].fn, 1);
  EXPECT_EQ(pc[3].fp, 0);
}

TEST(RelationMetrics, AllWrongAndNoPredictions) {
  const auto wrong =
      MakeRelationMetrics({"X", "Y"}, {Opt("Y"), Opt("X")}, kRe, "false");
  EXPECT_DOUBLE_EQ(Get(wrong, "macro_f1_all_classes"), 0);
  EXPECT_DOUBLE_EQ(Get(wrong, "accuracy"), 0);
  EXPECT_DOUBLE_EQ(Get(wrong, "micro_f1"), 0);
  const auto none =
      MakeRelationMetrics({"X", "false"}, {Opt(), Opt()}, kRe, "false");
  EXPECT_DOUBLE_EQ(Get(none, "macro_f1_all_classes"), 0);
  EXPECT_DOUBLE_EQ(Get(none, "micro_f1"), 0);
  // Predicting the negative class is no positive prediction: micro P = 1/1,
  // R = 1/2 -> 2/3.
  const auto neg =
      MakeRelationMetrics({"X", "Y"}, {Opt("X"), Opt("false")}, kRe, "false");
  EXPECT_NEAR(Get(neg, "micro_f1"), 2.0 / 3, 1e-12);
  EXPECT_THROW(MakeRelationMetrics({"W"}, {Opt("X")}, kRe, "false"), Error);
}

TEST(UnitCorrect, PerExampleCorrectnessForPairedTests) {
  EXPECT_EQ(MakeRelationMetrics({"X", "Y", "false"},
                                {Opt("X"), Opt(), Opt("X")}, kRe, "false")
                .UnitCorrect(),
            (std::vector<bool>{true, false, false}));
  // NER: a sentence is right when its entity set is exactly the gold one.
  EXPECT_EQ(MakeNerMetrics({{"B", "O"}, {"O", "O"}, {"B", "B"}},
                           {{"B", "O"}, {"O", "O"}, {"B", "O"}})
                .UnitCorrect(),
            (std::vector<bool>{true, true, false}));
  using Set = std::vector<std::string>;
  EXPECT_EQ(MakeMultiLabelMetrics({{"A", "B"}, {"A"}},
                                  {Set{"B", "A"}, Set{"A", "B"}}, {"A", "B"})
                .UnitCorrect(),
            (std::vector<bool>{true, false}));
}

TEST(QaMetrics, MacroOverGoldClassesOnly) {
  // yes: tp1 fn1 -> 2/3; no: tp1 fp1 -> 2/3; maybe: fn1 -> 0. Macro 4/9.
  const std::vector<std::string> l = {"yes", "no", "maybe"};
  const auto s = MakeQaMetrics({"yes", "yes", "no", "maybe"},
                               {Opt("yes"), Opt("no"), Opt("no"), Opt()}, l);
  EXPECT_DOUBLE_EQ(Get(s, "accuracy"), 0.5);
  EXPECT_NEAR(Get(s, "macro_f1_gold_classes"), 4.0 / 9, 1e-12);
  // "maybe" predicted but never gold: not a class of the average
  // (yes 0, no 1 -> 0.5; the union rule would give 1/3).
  const auto g = MakeQaMetrics({"yes", "no"}, {Opt("maybe"), Opt("no")}, l);
  EXPECT_DOUBLE_EQ(Get(g, "macro_f1_gold_classes"), 0.5);
}

TEST(MultiLabelMetrics, LabelWiseMacroAndMicro) {
  // A: tp1 fn1 -> 2/3; B: tp1 -> 1; C: fn1 (unparsed doc) -> 0; D absent.
  // Macro 5/9; micro tp2 fp0 fn2 -> P 1, R 1/2, F1 2/3.
  const std::vector<std::string> l = {"A", "B", "C", "D"};
  using Set = std::vector<std::string>;
  const auto s = MakeMultiLabelMetrics({{"A"}, {"A", "B"}, {"C"}},
                                       {Set{"A"}, Set{"B"}, std::nullopt}, l);
  EXPECT_NEAR(Get(s, "label_macro_f1"), 5.0 / 9, 1e-12);
  EXPECT_NEAR(Get(s, "micro_f1"), 2.0 / 3, 1e-12);
  EXPECT_NEAR(Get(s, "exact_match"), 1.0 / 3, 1e-12);
  const auto none = MakeMultiLabelMetrics({{"A"}}, {std::nullopt}, l);
  EXPECT_DOUBLE_EQ(Get(none, "label_macro_f1"), 0);
}

TEST(Bootstrap, SeededPercentileIntervals) {
  std::vector<std::string> gold;
  std::vector<Opt> pred;
  for (int i = 0; i < 200; ++i) {
    gold.push_back(i % 3 ? "yes" : "no");
    pred.push_back(i % 5 ? gold.back() : std::string(i % 3 ? "no" : "yes"));
  }
  const auto s = MakeQaMetrics(gold, pred, {"yes", "no", "maybe"});
  BootstrapOptions o;
  o.seed = 7;
  o.resamples = 1000;
  const auto a = s.Evaluate(o);
  const auto b = s.Evaluate(o);
  ASSERT_EQ(a[0].name, "accuracy");
  EXPECT_DOUBLE_EQ(a[0].value, 0.8);
  EXPECT_EQ(a[0].ci_low, b[0].ci_low);  // same seed, same interval
  EXPECT_LT(a[0].ci_low, 0.8);
  EXPECT_GT(a[0].ci_high, 0.8);
  // Binomial SE sqrt(.8*.2/200) = 0.028: the 95% interval is about +-0.055.
  EXPECT_NEAR(a[0].ci_high - a[0].ci_low, 2 * 1.96 * 0.0283, 0.02);
  o.seed = 8;
  EXPECT_NE(s.Evaluate(o)[0].ci_low + s.Evaluate(o)[0].ci_high,
            a[0].ci_low + a[0].ci_high);
  o.resamples = 0;
  EXPECT_EQ(s.Evaluate(o)[0].ci_low, 0.8);
}

TEST(Bootstrap, PairedDelta) {
  std::vector<std::string> gold(50, "yes");
  std::vector<Opt> right(50, Opt("yes")), wrong(50, Opt("no"));
  const std::vector<std::string> l = {"yes", "no"};
  const auto a = MakeQaMetrics(gold, wrong, l);
  const auto b = MakeQaMetrics(gold, right, l);
  BootstrapOptions o;
  const auto d = PairedBootstrapDelta(a, b, "accuracy", o);
  EXPECT_DOUBLE_EQ(d.delta, 1.0);
  EXPECT_DOUBLE_EQ(d.ci_low, 1.0);
  EXPECT_DOUBLE_EQ(d.ci_high, 1.0);
  const auto same = PairedBootstrapDelta(b, b, "accuracy", o);
  EXPECT_DOUBLE_EQ(same.ci_low, 0);
  EXPECT_DOUBLE_EQ(same.ci_high, 0);
  // Half right: delta 0.5, interval strictly inside (0, 1).
  std::vector<Opt> half = right;
  for (int i = 0; i < 25; ++i) half[i] = Opt("no");
  const auto h =
      PairedBootstrapDelta(a, MakeQaMetrics(gold, half, l), "accuracy", o);
  EXPECT_DOUBLE_EQ(h.delta, 0.5);
  EXPECT_GT(h.ci_low, 0.2);
  EXPECT_LT(h.ci_high, 0.8);
  EXPECT_THROW(PairedBootstrapDelta(a, MakeQaMetrics({"yes"}, {Opt("yes")}, l),
                                    "accuracy", o),
               Error);
}

}  // namespace
}  // namespace bioquant
