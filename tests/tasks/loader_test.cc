#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "tasks/loaders.h"
#include "tasks/task.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;
using testing::BionlpDir;

// Writes `content` to dir/rel (creating folders) and returns the full path.
std::string Put(const std::string& dir, const std::string& rel,
                const std::string& content) {
  const std::string path = dir + "/" + rel;
  fs::create_directories(fs::path(path).parent_path());
  WriteFile(path, content);
  return path;
}

// Expects LoadSplit to throw an Error whose message starts with `prefix` and
// contains `part`.
void ExpectLoadError(const std::string& dir, const std::string& task,
                     const std::string& split, const std::string& prefix,
                     const std::string& part) {
  try {
    LoadSplit(dir, task, split);
    ADD_FAILURE() << "no error for " << task << "/" << split;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
}

TEST(LoaderTest, NerSentencesAndTabOnlySeparators) {
  const std::string dir = testing::TempDir("ner");
  Put(dir, "bc5cdr_chem/test.tsv",
      "Zorbitol\tB\nlowers\tO\nblood\tO\nglucose\tB\n.\tO\n\n"
      "No\tO\nchemical\tO\nhere\tO\n\t\nAcetyl\tB\n-\tI\nfoo\tI\n");
  const auto ex = LoadSplit(dir, "bc5cdr_chem", "test");
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[0].id, "0");
  EXPECT_EQ(ex[0].text, "Zorbitol lowers blood glucose .");
  EXPECT_EQ(ex[0].tags, (std::vector<std::string>{"B", "O", "O", "B", "O"}));
  EXPECT_EQ(CountEntities(ex[0]), 2);
  EXPECT_EQ(CountEntities(ex[1]), 0);
  EXPECT_EQ(ex[2].id, "2");
  EXPECT_EQ(GoldMentions(ex[2]), std::vector<std::string>{"Acetyl - foo"});
}

TEST(LoaderTest, NerTypedTagsAreReduced) {
  const std::string dir = testing::TempDir("ner");
  Put(dir, "ncbi_disease/dev.tsv", "colon\tB-Disease\ncancer\tI-Disease\n");
  const auto ex = LoadSplit(dir, "ncbi_disease", "dev");
  EXPECT_EQ(ex[0].tags, (std::vector<std::string>{"B", "I"}));
}

TEST(LoaderTest, NerErrors) {
  const std::string dir = testing::TempDir("ner");
  Put(dir, "bc5cdr_chem/test.tsv", "a\tO\nb\tX\n");
  ExpectLoadError(dir, "bc5cdr_chem", "test",
                  dir + "/bc5cdr_chem/test.tsv:2: ", "unknown tag 'X'");
  Put(dir, "bc5cdr_chem/dev.tsv", "a\tO\n\nno tab here\n");
  ExpectLoadError(dir, "bc5cdr_chem", "dev",
                  dir + "/bc5cdr_chem/dev.tsv:3: ", "expected 'token<TAB>tag'");
  Put(dir, "bc5cdr_chem/train.tsv", "\n\n");
  ExpectLoadError(dir, "bc5cdr_chem", "train",
                  dir + "/bc5cdr_chem/train.tsv:1: ", "empty");
}

TEST(LoaderTest, MissingFileNamesPathAndAvailableSplits) {
  const std::string dir = testing::TempDir("miss");
  Put(dir, "hoc/test.tsv", "pmid\ttext\tlabels\n1\tx\tcellular energetics\n");
  ExpectLoadError(
      dir, "hoc", "train", dir + "/hoc/train.tsv: ",
      "no such file (split 'train' of task 'hoc'; available: test)");
  EXPECT_EQ(AvailableSplits(dir, "hoc"), std::vector<std::string>{"test"});
  EXPECT_TRUE(AvailableSplits(dir, "litcovid").empty());
}

TEST(LoaderTest, RelationRowsAndErrors) {
  const std::string dir = testing::TempDir("re");
  Put(dir, "chemprot/test.tsv",
      "index\tsentence\tlabel\n"
      "p1.T1.T2\t@CHEMICAL$ blocks @GENE$ .\tCPR:4\n"
      "p1.T1.T3\t\"A \"\"quoted\"\"\nsentence with @GENE$\"\tfalse\n");
  const auto ex = LoadSplit(dir, "chemprot", "test");
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].id, "p1.T1.T2");
  EXPECT_EQ(ex[0].gold, std::vector<std::string>{"CPR:4"});
  EXPECT_EQ(ex[1].text, "A \"quoted\"\nsentence with @GENE$");

  const std::string p = dir + "/ddi2013/";
  Put(dir, "ddi2013/test.tsv", "index\ttext\tlabel\na\tb\tDDI-false\n");
  ExpectLoadError(dir, "ddi2013", "test", p + "test.tsv:1: ",
                  "expected header 'index<TAB>sentence<TAB>label'");
  Put(dir, "ddi2013/dev.tsv",
      "index\tsentence\tlabel\na\tb\tDDI-false\nc\td\tDDI-unknown\n");
  ExpectLoadError(dir, "ddi2013", "dev",
                  p + "dev.tsv:3: ", "unknown label 'DDI-unknown'");
  Put(dir, "ddi2013/train.tsv",
      "index\tsentence\tlabel\na\tb\tDDI-false\nc\tDDI-int\n");
  ExpectLoadError(dir, "ddi2013", "train", p + "train.tsv:3: ",
                  "expected 3 tab-separated fields, found 2");
  Put(dir, "ddi2013/test_sample200.tsv", "");
  ExpectLoadError(dir, "ddi2013", "test_sample200",
                  p + "test_sample200.tsv:1: ", "file is empty");
}

TEST(LoaderTest, HeaderOnlyFileIsAnError) {
  const std::string dir = testing::TempDir("re");
  Put(dir, "chemprot/dev.tsv", "index\tsentence\tlabel\n");
  ExpectLoadError(dir, "chemprot", "dev",
                  dir + "/chemprot/dev.tsv:2: ", "no examples");
}

TEST(LoaderTest, MultiLabelSplitsAndChecksLabels) {
  const std::string dir = testing::TempDir("ml");
  Put(dir, "litcovid/test.tsv",
      "pmid\ttext\tlabels\n11\tAbstract one.\tTreatment;Case Report\n"
      "12\t\"Two,\n\"\"lines\"\"\"\tPrevention\n");
  const auto ex = LoadSplit(dir, "litcovid", "test");
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].gold, (std::vector<std::string>{"Treatment", "Case Report"}));
  EXPECT_EQ(ex[1].text, "Two,\n\"lines\"");
  Put(dir, "hoc/test.tsv",
      "pmid\ttext\tlabels\n1\tx\tcellular energetics\n2\ty\tCellular "
      "Energetics\n");
  ExpectLoadError(dir, "hoc", "test", dir + "/hoc/test.tsv:3: ",
                  "unknown label 'Cellular Energetics'");
}

TEST(LoaderTest, MedQaJsonlAndTsvVariants) {
  const std::string dir = testing::TempDir("qa");
  Put(dir, "medqa/test_4opt.jsonl",
      R"({"question": "Q1?", "options": {"A": "a1", "B": "b1", "C": "c1", "D": "d1"}, "answer_idx": "C", "answer": "c1", "meta_info": "step1"})"
      "\n"
      R"({"question": "Q2?", "options": {"A": "a2", "B": "b2", "C": "c2", "D": "d2"}, "answer_idx": "A", "answer": "a2"})"
      "\n");
  Put(dir, "medqa/test_5opt.tsv",
      "\tmeta_info\tquestion\tanswer_idx\tanswer\toptions\n"
      "0\tstep1\t\"Q1 over\ntwo lines?\"\tD\tc1\t[{'key': 'A', 'value': 'a1'}, "
      "{'key': 'B', 'value': 'b1'}, {'key': 'C', 'value': 'x'}, {'key': 'D', "
      "'value': 'c1'}, {'key': 'E', 'value': \"it's\"}]\n");
  const auto four = LoadSplit(dir, "medqa", "test");
  ASSERT_EQ(four.size(), 2u);
  EXPECT_EQ(four[1].id, "1");
  EXPECT_EQ(four[0].gold, std::vector<std::string>{"C"});
  EXPECT_EQ(four[0].options.at("D"), "d1");
  const auto five = LoadSplit(dir, "medqa_5opt", "test");
  ASSERT_EQ(five.size(), 1u);
  EXPECT_EQ(five[0].id, "0");
  EXPECT_EQ(five[0].text, "Q1 over\ntwo lines?");
  EXPECT_EQ(five[0].options.at("E"), "it's");
  EXPECT_EQ(five[0].options.at(five[0].gold[0]),
            four[0].options.at(four[0].gold[0]));
}

TEST(LoaderTest, MedQaErrors) {
  const std::string dir = testing::TempDir("qa");
  const std::string p = dir + "/medqa/";
  Put(dir, "medqa/test_4opt.jsonl",
      R"({"question": "Q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "B", "answer": "b"})"
      "\n{not json\n");
  ExpectLoadError(dir, "medqa", "test",
                  p + "test_4opt.jsonl:2: ", "invalid JSON");
  Put(dir, "medqa/dev_4opt.jsonl",
      R"({"question": "Q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "F", "answer": "b"})"
      "\n");
  ExpectLoadError(dir, "medqa", "dev",
                  p + "dev_4opt.jsonl:1: ", "unknown label 'F'");
  Put(dir, "medqa/train_4opt.jsonl",
      R"({"question": "Q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "A", "answer": "b"})"
      "\n");
  ExpectLoadError(dir, "medqa", "train",
                  p + "train_4opt.jsonl:1: ", "differs from option A");
  Put(dir, "medqa/test_5opt.tsv",
      "\tmeta_info\tquestion\tanswer_idx\tanswer\toptions\n"
      "0\ts\tQ\tA\ta\t[{'key': 'A', 'value': 'a'}\n");
  ExpectLoadError(dir, "medqa_5opt", "test",
                  p + "test_5opt.tsv:2: ", "options: python literal");
  Put(dir, "medqa/dev_5opt.tsv", "\tmeta_info\tquestion\tanswer\toptions\n");
  ExpectLoadError(dir, "medqa_5opt", "dev",
                  p + "dev_5opt.tsv:1: ", "header lacks column 'answer_idx'");
}

TEST(LoaderTest, PubMedQaContextsAndErrors) {
  const std::string dir = testing::TempDir("pqa");
  const std::string header =
      "QUESTION\tCONTEXTS\tLABELS\tfinal_decision\tLONG_ANSWER\tpmid\n";
  Put(dir, "pubmedqa/test.tsv",
      header +
          "Does X help?\t\"['First part.', \"\"It's second.\"\"]\"\t['A', "
          "'B']\tmaybe\tlong\t123\n");
  const auto ex = LoadSplit(dir, "pubmedqa", "test");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].id, "123");
  EXPECT_EQ(ex[0].context, "First part.\nIt's second.");
  EXPECT_EQ(ex[0].gold, std::vector<std::string>{"maybe"});
  Put(dir, "pubmedqa/dev.tsv", header + "Q\t['c']\t[]\tperhaps\tl\t9\n");
  ExpectLoadError(dir, "pubmedqa", "dev",
                  dir + "/pubmedqa/dev.tsv:2: ", "unknown label 'perhaps'");
  Put(dir, "pubmedqa/train.tsv", header + "Q\t['c'\t[]\tyes\tl\t9\n");
  ExpectLoadError(dir, "pubmedqa", "train",
                  dir + "/pubmedqa/train.tsv:2: ", "CONTEXTS: python literal");
}

// ---- The real published files (skipped without ../shared). ----

TEST(RealDataTest, NerCounts) {
  BIOQUANT_REQUIRE_SHARED();
  const std::map<std::string, std::pair<size_t, int>> want = {
      {"bc5cdr_chem", {4797, 5385}}, {"ncbi_disease", {940, 960}}};
  for (const auto& [task, counts] : want) {
    const auto ex = LoadSplit(BionlpDir(), task, "test");
    int entities = 0;
    for (const auto& e : ex) entities += CountEntities(e);
    EXPECT_EQ(ex.size(), counts.first) << task;
    EXPECT_EQ(entities, counts.second) << task;
    EXPECT_EQ(LoadSplit(BionlpDir(), task, "test_sample200").size(), 200u);
  }
}

TEST(RealDataTest, RelationCounts) {
  BIOQUANT_REQUIRE_SHARED();
  const auto ddi = LoadSplit(BionlpDir(), "ddi2013", "test");
  EXPECT_EQ(ddi.size(), 5761u);
  int positives = 0;
  for (const auto& e : ddi) positives += e.gold[0] != "DDI-false";
  EXPECT_EQ(positives, 979);
  EXPECT_EQ(LoadSplit(BionlpDir(), "chemprot", "test_sample200").size(), 200u);
  EXPECT_EQ(LoadSplit(BionlpDir(), "chemprot", "dev").size(), 11820u);
  EXPECT_EQ(LoadSplit(BionlpDir(), "ddi2013", "dev").size(), 7244u);
}

TEST(RealDataTest, MultiLabelCounts) {
  BIOQUANT_REQUIRE_SHARED();
  EXPECT_EQ(LoadSplit(BionlpDir(), "hoc", "test").size(), 315u);
  const auto lit = LoadSplit(BionlpDir(), "litcovid", "test");
  EXPECT_EQ(lit.size(), 2500u);
  int treatment = 0;
  for (const auto& e : lit)
    for (const auto& l : e.gold) treatment += l == "Treatment";
  EXPECT_EQ(treatment, 1035);
  EXPECT_EQ(AvailableSplits(BionlpDir(), "litcovid"),
            (std::vector<std::string>{"test", "test_sample200"}));
}

TEST(RealDataTest, MedQaVariantsAgree) {
  BIOQUANT_REQUIRE_SHARED();
  const auto four = LoadSplit(BionlpDir(), "medqa", "test");
  const auto five = LoadSplit(BionlpDir(), "medqa_5opt", "test");
  ASSERT_EQ(four.size(), 1273u);
  ASSERT_EQ(five.size(), 1273u);
  for (size_t i = 0; i < four.size(); ++i) {
    ASSERT_EQ(four[i].options.size(), 4u);
    ASSERT_EQ(five[i].options.size(), 5u);
    EXPECT_EQ(four[i].text, five[i].text) << i;
    EXPECT_EQ(four[i].options.at(four[i].gold[0]),
              five[i].options.at(five[i].gold[0]))
        << i;
  }
  EXPECT_EQ(LoadSplit(BionlpDir(), "medqa_5opt", "dev").size(), 1272u);
}

TEST(RealDataTest, PubMedQaMatchesOfficialGroundTruth) {
  BIOQUANT_REQUIRE_SHARED();
  const auto ex = LoadSplit(BionlpDir(), "pubmedqa", "test");
  ASSERT_EQ(ex.size(), 500u);
  const auto truth =
      ReadJsonFile(BionlpDir() + "/pubmedqa/test_ground_truth.json");
  ASSERT_EQ(truth.size(), 500u);
  std::map<std::string, int> counts;
  for (const auto& e : ex) {
    ++counts[e.gold[0]];
    ASSERT_TRUE(truth.contains(e.id)) << e.id;
    EXPECT_EQ(truth[e.id].get<std::string>(), e.gold[0]) << e.id;
    EXPECT_FALSE(e.context.empty()) << e.id;
  }
  EXPECT_EQ(counts, (std::map<std::string, int>{
                        {"yes", 276}, {"no", 169}, {"maybe", 55}}));
  // Contexts decode Python escapes: the official JSON holds the same text.
  const auto ori = ReadJsonFile(BionlpDir() + "/pubmedqa/ori_pqal.json");
  int compared = 0;
  for (const auto& e : ex) {
    if (!ori.contains(e.id)) continue;
    std::string joined;
    for (const auto& p : ori[e.id]["CONTEXTS"])
      joined += (joined.empty() ? "" : "\n") + p.get<std::string>();
    EXPECT_EQ(joined, e.context) << e.id;
    ++compared;
  }
  EXPECT_EQ(compared, 500);
  EXPECT_EQ(LoadSplit(BionlpDir(), "pubmedqa", "train").size(), 450u);
  EXPECT_EQ(LoadSplit(BionlpDir(), "pubmedqa", "dev").size(), 50u);
}

TEST(RealDataTest, EverySplitOfEveryTaskLoads) {
  BIOQUANT_REQUIRE_SHARED();
  for (const TaskInfo& t : AllTasks()) {
    const auto splits = AvailableSplits(BionlpDir(), t.id);
    EXPECT_FALSE(splits.empty()) << t.id;
    for (const auto& s : splits) {
      EXPECT_NO_THROW(LoadSplit(BionlpDir(), t.id, s)) << t.id << "/" << s;
    }
  }
}

}  // namespace
}  // namespace bioquant
