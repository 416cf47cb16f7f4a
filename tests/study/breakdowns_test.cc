// Hallucination, rare-concept and answer-flip breakdowns against
// hand-computed small cases, alone and through ScoreRun and the report.
#include "study/breakdowns.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "study/report.h"
#include "study/store.h"
#include "study/study.h"
#include "testing.h"

namespace bioquant {

void MakeStudyStore(const std::string& dir, bool only_chemprot_nf4 = false);

namespace {

BootstrapOptions NoResample() {
  BootstrapOptions b;
  b.resamples = 0;
  return b;
}

NerScored Ner(std::vector<std::string> tokens, std::vector<std::string> gold,
              std::vector<std::string> pred,
              std::vector<std::string> mentions) {
  NerScored n;
  n.tokens = std::move(tokens);
  n.gold_tags = std::move(gold);
  n.pred_tags = std::move(pred);
  n.mentions = std::move(mentions);
  return n;
}

TEST(Breakdowns, MentionMatchingIgnoresCaseAndWhitespace) {
  const std::vector<std::string> s = {"Cis", "-", "platin", "induced",
                                      "Nephrotoxicity"};
  EXPECT_TRUE(MentionOccurs("cis-platin", s));
  EXPECT_TRUE(MentionOccurs("CIS - PLATIN", s));
  EXPECT_TRUE(MentionOccurs("platin induced", s));
  EXPECT_FALSE(MentionOccurs("carboplatin", s));
  EXPECT_EQ(ConceptKey("  Aspirin   Lysine "), "aspirin lysine");
  EXPECT_EQ(RePairKey("<e1>Aspirin</e1> inhibits <e2>COX-1</e2>."),
            "aspirin|cox-1");
  EXPECT_EQ(RePairKey("@CHEMICAL$ inhibits @GENE$."), "");
}

TEST(Breakdowns, HallucinationRateHandComputed) {
  // 6 mentions, 3 not in their sentence; 2 of 3 examples have one.
  const std::vector<NerScored> ex = {
      Ner({"Aspirin", "induced", "asthma", "."}, {}, {},
          {"aspirin", "Induced Asthma", "ibuprofen"}),
      Ner({"No", "drugs"}, {}, {}, {}),
      Ner({"Cis", "-", "platin"}, {}, {}, {"cis-platin", "carbo platin", "x"})};
  const nlohmann::json h = Hallucination(ex, NoResample());
  EXPECT_EQ(h["mentions"], 6);
  EXPECT_EQ(h["hallucinated"], 3);
  EXPECT_DOUBLE_EQ(h["per_100_mentions"].get<double>(), 50.0);
  EXPECT_EQ(h["examples_with_any"], 2);
  EXPECT_EQ(h["examples"], 3);
  // Paired against a reference with one hallucination in 4 mentions.
  const std::vector<NerScored> ref = {
      Ner({"Aspirin", "induced", "asthma", "."}, {}, {}, {"aspirin"}),
      Ner({"No", "drugs"}, {}, {}, {"drugs", "heroin"}),
      Ner({"Cis", "-", "platin"}, {}, {}, {"Cis-platin"})};
  const nlohmann::json d = PairedHallucination(ref, ex, NoResample());
  EXPECT_DOUBLE_EQ(d["reference"].get<double>(), 25.0);
  EXPECT_DOUBLE_EQ(d["delta"].get<double>(), 25.0);
  // With resampling the interval holds the point estimate.
  BootstrapOptions b;
  b.resamples = 200;
  const nlohmann::json hb = Hallucination(ex, b);
  EXPECT_LE(hb["ci_low"].get<double>(), 50.0);
  EXPECT_GE(hb["ci_high"].get<double>(), 50.0);
  EXPECT_LT(hb["ci_low"].get<double>(), hb["ci_high"].get<double>());
}

TEST(Breakdowns, NerRecallPerRarityBucketHandComputed) {
  const std::map<std::string, int64_t> train = {{"aspirin", 3}, {"asthma", 1}};
  // A: aspirin (>=3) found, asthma (1-2) missed.
  // B: cisplatin (unseen) found, aspirin (>=3) missed.
  const std::vector<NerScored> x = {Ner({"aspirin", "causes", "asthma"},
                                        {"B", "O", "B"}, {"B", "O", "O"}, {}),
                                    Ner({"cisplatin", "and", "Aspirin"},
                                        {"B", "O", "B"}, {"B", "O", "O"}, {})};
  const nlohmann::json r = NerRarity(x, train, NoResample());
  EXPECT_DOUBLE_EQ(r["buckets"][">=3"]["value"].get<double>(), 0.5);
  EXPECT_EQ(r["buckets"][">=3"]["gold"], 2);
  EXPECT_DOUBLE_EQ(r["buckets"]["1-2"]["value"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(r["buckets"]["unseen"]["value"].get<double>(), 1.0);
  // The reference finds everything: relative drops 50%, 100%, 0%.
  std::vector<NerScored> ref = x;
  for (auto& e : ref) e.pred_tags = e.gold_tags;
  const nlohmann::json p = PairedNerRarity(ref, x, train, NoResample());
  EXPECT_DOUBLE_EQ(p["buckets"][">=3"]["relative_drop"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(p["buckets"]["1-2"]["relative_drop"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(p["buckets"]["unseen"]["relative_drop"].get<double>(), 0);
}

TEST(Breakdowns, ReMacroF1PerRarityBucketHandComputed) {
  const std::vector<std::string> labels = {"CPR:4", "false"};
  const std::map<std::string, int64_t> train = {{"a|b", 5}};
  auto re = [](std::string pair, std::string gold, std::string pred) {
    ReScored r;
    r.pair = std::move(pair);
    r.gold = std::move(gold);
    r.pred = std::move(pred);
    return r;
  };
  // >=3: both right -> 1.0. unseen: CPR:4 F1 0, false F1 2/3 -> 1/3.
  const std::vector<ReScored> x = {
      re("a|b", "CPR:4", "CPR:4"), re("a|b", "false", "false"),
      re("c|d", "CPR:4", "false"), re("e|f", "false", "false"),
      re("", "CPR:4", "CPR:4")};  // unknown pair: in no bucket
  const nlohmann::json r = ReRarity(x, train, labels, "false", NoResample());
  EXPECT_DOUBLE_EQ(r["buckets"][">=3"]["value"].get<double>(), 1.0);
  EXPECT_NEAR(r["buckets"]["unseen"]["value"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_EQ(r["buckets"]["unseen"]["examples"], 2);
  EXPECT_TRUE(r["buckets"]["1-2"]["value"].is_null());
  // Masked sentences only: unavailable, saying why.
  const nlohmann::json m = ReRarity({re("", "CPR:4", "false")}, train, labels,
                                    "false", NoResample());
  EXPECT_FALSE(m["available"].get<bool>());
  EXPECT_NE(m["reason"].get<std::string>().find("masked"), std::string::npos);
}

TEST(Breakdowns, ScoreRunListsFlipsAndBreakdownsAndTheReportShowsThem) {
  const std::string dir = testing::TempDir("breakdowns");
  MakeStudyStore(dir);
  // Task data with a train split for bc5cdr_chem: "aspirin" seen 3 times,
  // "ibuprofen" never.
  const std::string data = dir + "/data";
  std::filesystem::create_directories(data + "/bc5cdr_chem");
  std::ofstream(data + "/bc5cdr_chem/train.tsv")
      << "aspirin\tB\nhelps\tO\n\nAspirin\tB\nagain\tO\n\naspirin\tB\n";
  StudyOptions o;
  o.resamples = 0;
  o.data_dir = data;
  const nlohmann::json s = ScoreRun(*RunStore::OpenForRead(dir), o);
  const nlohmann::json* qa = nullptr;
  const nlohmann::json* ner = nullptr;
  for (const auto& c : s["comparisons"]) {
    if (c["task"] == "pubmedqa" && c["strategy"] == "zero-shot") qa = &c;
    if (c["task"] == "bc5cdr_chem") ner = &c;
  }
  ASSERT_TRUE(qa && ner);
  // pubmedqa: bf16 yes,no,yes,no; nf4 yes,maybe,(unparsed),maybe.
  ASSERT_EQ((*qa)["flips"].size(), 3u);
  EXPECT_EQ((*qa)["flips_total"], 3);
  EXPECT_EQ((*qa)["flips"][0]["id"], "q2");
  EXPECT_EQ((*qa)["flips"][0]["reference_answer"], "no");
  EXPECT_EQ((*qa)["flips"][0]["answer"], "maybe");
  EXPECT_EQ((*qa)["flips"][1]["answer"], "");
  EXPECT_EQ((*qa)["flips"][1]["gold"], nlohmann::json({"yes"}));
  // NER: nf4 finds aspirin (>=3) and misses ibuprofen (unseen); "here"
  // occurs in its sentence, so nothing is hallucinated.
  EXPECT_EQ((*ner)["flips"][0]["gold"],
            nlohmann::json({"Aspirin", "ibuprofen"}));
  EXPECT_DOUBLE_EQ((*ner)["hallucination"]["value"].get<double>(), 0.0);
  const auto& rc = (*ner)["rare_concepts"]["buckets"];
  EXPECT_DOUBLE_EQ(rc["unseen"]["relative_drop"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rc[">=3"]["relative_drop"].get<double>(), 0.0);
  // chemprot has no train split here: unavailable, saying why.
  for (const auto& c : s["cells"]) {
    if (c["task"] == "chemprot") {
      EXPECT_FALSE(c["rare_concepts"]["available"].get<bool>());
    }
  }
  const std::string md = RenderMarkdown(s);
  EXPECT_NE(md.find("### NER hallucination"), std::string::npos);
  EXPECT_NE(md.find("### Rare concepts"), std::string::npos);
  EXPECT_NE(md.find("| q2 | no | maybe | no |"), std::string::npos) << md;
  const std::string html = RenderHtml(s);
  EXPECT_NE(html.find("<h3>Answer flips vs bf16 (sample)</h3>"),
            std::string::npos);
}

}  // namespace
}  // namespace bioquant
