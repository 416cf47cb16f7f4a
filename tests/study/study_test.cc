#include "study/study.h"

#include <cmath>
#include <filesystem>

#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {

// A small hand-made run (also used by report_test.cc): bf16 vs nf4 on
//  pubmedqa  zero-shot  4 examples  bf16 acc 3/4, nf4 acc 2/4 (one unparsed)
//  pubmedqa  sc:3       2 examples  bf16 votes right twice, nf4 wrong twice
//  chemprot  zero-shot  3 examples  identical outputs (macro-F1 0.5 both)
//  bc5cdr_chem zero-shot 2 sentences bf16 F1 1.0, nf4 F1 0.5
//  medqa     zero-shot 25 examples  bf16 all right, nf4 one wrong
// When `only_chemprot_nf4` the nf4 side has only chemprot rows.
void MakeStudyStore(const std::string& dir, bool only_chemprot_nf4 = false) {
  auto store = RunStore::Open(dir, "fp-test", {{"seed", 1}}, true);
  auto put = [&](const std::string& precision, const std::string& task,
                 const std::string& strategy, const std::string& ex, int sample,
                 const std::string& raw, const nlohmann::json& gold) {
    if (only_chemprot_nf4 && precision == "nf4" && task != "chemprot") return;
    GenerationRow r;
    r.key = {precision, task,  strategy, task + "_" + strategy + "@1",
             ex,        sample};
    r.compute = precision == "nf4" ? "w4a16" : "bf16";
    r.raw_output = raw;
    r.gold = gold;
    r.tokens_in = 100;
    r.tokens_out = 5;
    r.prefill_ms = 50;
    r.decode_ms = 10;
    // pubmedqa zero-shot latencies 10, 20, 30, 40 ms (per precision);
    // everything else 10 ms per row.
    r.latency_ms = task == "pubmedqa" && strategy == "zero-shot"
                       ? 10.0 * (ex[1] - '0')
                       : 10;
    store->Put(r);
  };
  const char* qa_gold[] = {"yes", "no", "yes", "maybe"};
  const char* qa_bf16[] = {"yes", "no", "yes", "no"};
  const char* qa_nf4[] = {"Yes.", "maybe", "banana", "Answer: maybe"};
  for (int i = 0; i < 4; ++i) {
    const std::string id = "q" + std::to_string(i + 1);
    put("bf16", "pubmedqa", "zero-shot", id, 0, qa_bf16[i], {qa_gold[i]});
    put("nf4", "pubmedqa", "zero-shot", id, 0, qa_nf4[i], {qa_gold[i]});
  }
  const char* sc_bf16[2][3] = {{"yes", "no", "yes"}, {"no", "no", "maybe"}};
  const char* sc_nf4[2][3] = {{"no", "yes", "no"}, {"maybe", "no", "banana"}};
  for (int i = 0; i < 2; ++i) {
    for (int k = 0; k < 3; ++k) {
      const nlohmann::json gold = {i == 0 ? "yes" : "no"};
      put("bf16", "pubmedqa", "sc:3", "s" + std::to_string(i), k + 1,
          sc_bf16[i][k], gold);
      put("nf4", "pubmedqa", "sc:3", "s" + std::to_string(i), k + 1,
          sc_nf4[i][k], gold);
    }
  }
  const char* re_gold[] = {"CPR:4", "false", "CPR:3"};
  const char* re_out[] = {"CPR:4", "false", "CPR:9"};
  for (int i = 0; i < 3; ++i) {
    for (const char* p : {"bf16", "nf4"}) {
      put(p, "chemprot", "zero-shot", "r" + std::to_string(i), 0, re_out[i],
          {re_gold[i]});
    }
  }
  const nlohmann::json s1 = {
      {"tokens", {"Aspirin", "and", "ibuprofen", "cause", "harm"}},
      {"tags", {"B", "O", "B", "O", "O"}}};
  const nlohmann::json s2 = {{"tokens", {"No", "drug", "here"}},
                             {"tags", {"O", "O", "O"}}};
  put("bf16", "bc5cdr_chem", "zero-shot", "n1", 0, "aspirin, ibuprofen", s1);
  put("bf16", "bc5cdr_chem", "zero-shot", "n2", 0, "None", s2);
  put("nf4", "bc5cdr_chem", "zero-shot", "n1", 0, "aspirin", s1);
  put("nf4", "bc5cdr_chem", "zero-shot", "n2", 0, "here", s2);
  for (int i = 0; i < 25; ++i) {
    const std::string id = "m" + std::to_string(100 + i);
    put("bf16", "medqa", "zero-shot", id, 0, "B", {"B"});
    put("nf4", "medqa", "zero-shot", id, 0, i == 7 ? "C" : "(B)", {"B"});
  }
  for (const auto& [task, strategy] :
       std::vector<std::pair<std::string, std::string>>{
           {"pubmedqa", "zero-shot"}, {"chemprot", "zero-shot"}}) {
    store->PutMeasurement({"bf16", task, strategy, 900, 3LL << 30, 2LL << 30,
                           1 << 20, 1 << 19, 2, 1, 4});
    store->PutMeasurement({"nf4", task, strategy, 700, 1LL << 30, 600LL << 20,
                           1 << 20, 1 << 19, 2, 1, 4});
  }
}

namespace {

const nlohmann::json& Cell(const nlohmann::json& s, const std::string& p,
                           const std::string& t, const std::string& st) {
  for (const auto& c : s["cells"]) {
    if (c["precision"] == p && c["task"] == t && c["strategy"] == st) return c;
  }
  static const nlohmann::json kNull;
  ADD_FAILURE() << "no cell " << p << " " << t << " " << st;
  return kNull;
}

const nlohmann::json& Cmp(const nlohmann::json& s, const std::string& t,
                          const std::string& st) {
  for (const auto& c : s["comparisons"]) {
    if (c["task"] == t && c["strategy"] == st) return c;
  }
  static const nlohmann::json kNull;
  ADD_FAILURE() << "no comparison " << t << " " << st;
  return kNull;
}

double Value(const nlohmann::json& cell) {
  return cell["metrics"][cell["primary_metric"].get<std::string>()]["value"];
}

class StudyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir("study"));
    MakeStudyStore(*dir_);
    StudyOptions o;
    o.seed = 3;
    o.resamples = 1000;
    scores_ = new nlohmann::json(ScoreRun(*RunStore::OpenForRead(*dir_), o));
  }
  static std::string* dir_;
  static nlohmann::json* scores_;
};
std::string* StudyTest::dir_ = nullptr;
nlohmann::json* StudyTest::scores_ = nullptr;

TEST(PrecisionRankTest, OrdersByFidelity) {
  EXPECT_LT(PrecisionRank("f32"), PrecisionRank("bf16"));
  EXPECT_LT(PrecisionRank("bf16"), PrecisionRank("f16"));
  EXPECT_LT(PrecisionRank("f16"), PrecisionRank("int8"));
  EXPECT_LT(PrecisionRank("int8"), PrecisionRank("llm-int8"));
  EXPECT_LT(PrecisionRank("llm-int8"), PrecisionRank("nf4"));
  EXPECT_LT(PrecisionRank("nf4"), PrecisionRank("fp4"));
  EXPECT_LT(PrecisionRank("fp4"), PrecisionRank("q2_weird"));
}

TEST_F(StudyTest, OrdersPrecisionsTasksStrategiesAndPicksReference) {
  const auto& s = *scores_;
  EXPECT_EQ(s["reference_precision"], "bf16");
  EXPECT_EQ(s["precisions"], nlohmann::json({"bf16", "nf4"}));
  EXPECT_EQ(s["tasks"],
            nlohmann::json({"bc5cdr_chem", "chemprot", "medqa", "pubmedqa"}));
  EXPECT_EQ(s["strategies"], nlohmann::json({"zero-shot", "sc:3"}));
  EXPECT_EQ(s["cells"].size(), 10u);
  EXPECT_EQ(s["comparisons"].size(), 5u);
  EXPECT_EQ(s["meta"]["model_fingerprint"], "fp-test");
}

TEST_F(StudyTest, CellMetricsMatchHandComputation) {
  const auto& s = *scores_;
  const auto& qa_bf16 = Cell(s, "bf16", "pubmedqa", "zero-shot");
  EXPECT_EQ(qa_bf16["primary_metric"], "accuracy");
  EXPECT_DOUBLE_EQ(Value(qa_bf16), 0.75);
  EXPECT_EQ(qa_bf16["unparsed"], 0);
  const auto& qa_nf4 = Cell(s, "nf4", "pubmedqa", "zero-shot");
  EXPECT_DOUBLE_EQ(Value(qa_nf4), 0.5);
  EXPECT_EQ(qa_nf4["unparsed"], 1);
  EXPECT_DOUBLE_EQ(qa_nf4["unparsed_rate"], 0.25);
  EXPECT_EQ(qa_nf4["compute"], "w4a16");
  // CI brackets the point estimate and stays in [0, 1].
  const auto& acc = qa_nf4["metrics"]["accuracy"];
  EXPECT_LE(acc["ci_low"].get<double>(), 0.5);
  EXPECT_GE(acc["ci_high"].get<double>(), 0.5);
  EXPECT_LT(acc["ci_low"].get<double>(), acc["ci_high"].get<double>());
  EXPECT_GE(acc["ci_low"].get<double>(), 0.0);

  // RE: classes CPR:4 (F1 1), false (1), CPR:3 (0, missed), CPR:9 (0, wrong).
  EXPECT_DOUBLE_EQ(Value(Cell(s, "bf16", "chemprot", "zero-shot")), 0.5);
  // NER: bf16 finds both entities; nf4 1 TP, 1 FN, 1 FP -> P = R = F1 = 0.5.
  EXPECT_DOUBLE_EQ(Value(Cell(s, "bf16", "bc5cdr_chem", "zero-shot")), 1.0);
  EXPECT_DOUBLE_EQ(Value(Cell(s, "nf4", "bc5cdr_chem", "zero-shot")), 0.5);
  EXPECT_EQ(Cell(s, "nf4", "bc5cdr_chem", "zero-shot")["primary_metric"],
            "ner_strict_entity_f1");
  // Self-consistency: votes (yes,no,yes)->yes, (no,no,maybe)->no for bf16;
  // nf4 (no,yes,no)->no, (maybe,no,unparsed)-> tie, first seen maybe.
  const auto& sc_bf16 = Cell(s, "bf16", "pubmedqa", "sc:3");
  EXPECT_DOUBLE_EQ(Value(sc_bf16), 1.0);
  EXPECT_EQ(sc_bf16["examples"], 2);
  EXPECT_EQ(sc_bf16["rows"], 6);
  EXPECT_DOUBLE_EQ(Value(Cell(s, "nf4", "pubmedqa", "sc:3")), 0.0);
  EXPECT_DOUBLE_EQ(Value(Cell(s, "nf4", "medqa", "zero-shot")), 24.0 / 25);
}

TEST_F(StudyTest, LatencyThroughputAndMemory) {
  const auto& c = Cell(*scores_, "bf16", "pubmedqa", "zero-shot");
  EXPECT_DOUBLE_EQ(c["latency_ms"]["mean"], 25.0);
  EXPECT_DOUBLE_EQ(c["latency_ms"]["p50"], 25.0);
  EXPECT_NEAR(c["latency_ms"]["p95"].get<double>(), 38.5,
              1e-9);                                    // numpy linear
  EXPECT_DOUBLE_EQ(c["prefill_tokens_per_s"], 2000.0);  // 400 tok / 200 ms
  EXPECT_DOUBLE_EQ(c["decode_tokens_per_s"], 500.0);    // 20 tok / 40 ms
  EXPECT_DOUBLE_EQ(c["tokens_in"]["mean"], 100.0);
  EXPECT_EQ(c["memory"]["weights_bytes"], 2LL << 30);
  // SC: an example's latency is the sum of its samples (3 x 10 ms).
  EXPECT_DOUBLE_EQ(
      Cell(*scores_, "bf16", "pubmedqa", "sc:3")["latency_ms"]["mean"], 30.0);
  EXPECT_TRUE(Cell(*scores_, "bf16", "medqa", "zero-shot")["memory"].is_null());
}

TEST_F(StudyTest, ComparisonsMatchHandComputation) {
  const auto& s = *scores_;
  const auto& qa = Cmp(s, "pubmedqa", "zero-shot");
  EXPECT_EQ(qa["precision"], "nf4");
  EXPECT_EQ(qa["reference"], "bf16");
  EXPECT_EQ(qa["paired_examples"], 4);
  EXPECT_DOUBLE_EQ(qa["delta"], -0.25);
  EXPECT_NEAR(qa["relative_drop"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_EQ(qa["criterion"], "violated");
  // Only bf16 right on q2, q3; only nf4 right on q4: p = 2 * P[Bin(3,.5) <= 1]
  // = 1.
  EXPECT_EQ(qa["mcnemar"]["only_reference"], 2);
  EXPECT_EQ(qa["mcnemar"]["only_precision"], 1);
  EXPECT_DOUBLE_EQ(qa["mcnemar"]["p_value"], 1.0);
  EXPECT_DOUBLE_EQ(qa["flip_rate"], 0.75);  // q2, q3 (to unparsed), q4
  EXPECT_DOUBLE_EQ(qa["unparsed_rate"], 0.25);
  EXPECT_DOUBLE_EQ(qa["unparsed_rate_reference"], 0.0);
  EXPECT_LE(qa["delta_ci_low"].get<double>(), -0.25);
  EXPECT_GE(qa["delta_ci_high"].get<double>(), -0.25);

  const auto& re = Cmp(s, "chemprot", "zero-shot");
  EXPECT_DOUBLE_EQ(re["delta"], 0.0);
  EXPECT_DOUBLE_EQ(re["relative_drop"], 0.0);
  EXPECT_DOUBLE_EQ(re["relative_drop_ci_high"], 0.0);
  EXPECT_EQ(re["criterion"], "supported");
  EXPECT_DOUBLE_EQ(re["flip_rate"], 0.0);

  const auto& ner = Cmp(s, "bc5cdr_chem", "zero-shot");
  EXPECT_DOUBLE_EQ(ner["relative_drop"], 0.5);
  EXPECT_EQ(ner["criterion"], "violated");
  // Both sentences change: n1 loses ibuprofen, n2 gains "here".
  EXPECT_DOUBLE_EQ(ner["flip_rate"], 1.0);
  EXPECT_EQ(ner["mcnemar"]["only_reference"], 2);

  // 1 error in 25: drop 4% <= 5%, but resamples that draw it twice or more
  // push the upper bound past 5%.
  const auto& mq = Cmp(s, "medqa", "zero-shot");
  EXPECT_NEAR(mq["relative_drop"].get<double>(), 0.04, 1e-12);
  EXPECT_GT(mq["relative_drop_ci_high"].get<double>(), 0.05);
  EXPECT_EQ(mq["criterion"], "not established");
  EXPECT_EQ(mq["mcnemar"]["only_reference"], 1);

  const auto& sc = Cmp(s, "pubmedqa", "sc:3");
  EXPECT_DOUBLE_EQ(sc["relative_drop"], 1.0);
  EXPECT_DOUBLE_EQ(sc["flip_rate"], 1.0);
}

TEST_F(StudyTest, SummaryHasThePlannerShape) {
  const auto& sum = (*scores_)["summary"];
  EXPECT_EQ(sum["reference_precision"], "bf16");
  ASSERT_EQ(sum["precisions"].size(), 2u);
  const auto& ref = sum["precisions"][0];
  EXPECT_EQ(ref["precision"], "bf16");
  EXPECT_DOUBLE_EQ(ref["relative_drop"], 0.0);
  EXPECT_TRUE(ref["ci_supports_within_5pct"]);
  EXPECT_EQ(ref["weights_bytes"], 2LL << 30);
  EXPECT_EQ(ref["peak_rss_bytes"], 3LL << 30);
  const auto& nf4 = sum["precisions"][1];
  EXPECT_EQ(nf4["precision"], "nf4");
  EXPECT_NEAR(nf4["relative_drop"].get<double>(),
              (1.0 / 3 + 0 + 0.5 + 1.0 + 0.04) / 5, 1e-12);
  EXPECT_FALSE(nf4["ci_supports_within_5pct"]);
  EXPECT_EQ(nf4["weights_bytes"], 600LL << 20);
  EXPECT_EQ(nf4["tasks"]["chemprot"]["criterion"], "supported");

  const std::string path = *dir_ + "/summary.json";
  WriteSummary(*scores_, path);
  EXPECT_EQ(ReadJsonFile(path), sum);
}

TEST(StudyRunTest, AllComparedCellsSupportedMeansCiSupports) {
  const std::string dir = testing::TempDir("study");
  MakeStudyStore(dir, /*only_chemprot_nf4=*/true);
  const auto s = ScoreRun(*RunStore::OpenForRead(dir), 1, 200);
  ASSERT_EQ(s["comparisons"].size(), 1u);
  EXPECT_TRUE(s["summary"]["precisions"][1]["ci_supports_within_5pct"]);
}

TEST(StudyRunTest, ScoringIsRepeatableForASeed) {
  const std::string dir = testing::TempDir("study");
  MakeStudyStore(dir);
  const auto store = RunStore::OpenForRead(dir);
  const auto a = ScoreRun(*store, 5, 300), b = ScoreRun(*store, 5, 300);
  EXPECT_EQ(a, b);
  EXPECT_NE(a["cells"], ScoreRun(*store, 6, 300)["cells"]);
}

TEST(StudyRunTest, ZeroResamplesGivesPointIntervals) {
  const std::string dir = testing::TempDir("study");
  MakeStudyStore(dir);
  const auto s = ScoreRun(*RunStore::OpenForRead(dir), 1, 0);
  const auto& c = Cmp(s, "medqa", "zero-shot");
  EXPECT_DOUBLE_EQ(c["relative_drop_ci_high"], c["relative_drop"]);
  EXPECT_EQ(c["criterion"], "supported");
}

TEST(StudyRunTest, UnknownTaskInStoreNamesTheStore) {
  const std::string dir = testing::TempDir("study");
  {
    auto store = RunStore::Open(dir, "fp", {{"seed", 1}}, true);
    GenerationRow r;
    r.key = {"bf16", "no_such_task", "zero-shot", "t@1", "e1", 0};
    r.gold = {"x"};
    store->Put(r);
  }
  try {
    ScoreRun(*RunStore::OpenForRead(dir), 1, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/store.sqlite: unknown task"),
              std::string::npos)
        << e.what();
  }
}

TEST(StudyRunTest, MalformedNerGoldIsAnError) {
  const std::string dir = testing::TempDir("study");
  {
    auto store = RunStore::Open(dir, "fp", {{"seed", 1}}, true);
    GenerationRow r;
    r.key = {"bf16", "bc5cdr_chem", "zero-shot", "t@1", "e1", 0};
    r.gold = {"B", "O"};  // a bare list, not {"tokens", "tags"}
    store->Put(r);
  }
  EXPECT_THROW(ScoreRun(*RunStore::OpenForRead(dir), 1, 10), Error);
}

}  // namespace
}  // namespace bioquant
