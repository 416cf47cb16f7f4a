// `bioquant tasks`: registry and split summaries as JSON, and its errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

nlohmann::json TasksJson(const std::string& data_dir) {
  const auto r = RunBioquant({"tasks", "--data-dir", data_dir, "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  nlohmann::json by_id = nlohmann::json::object();
  for (const auto& t : j.at("tasks")) by_id[t["id"].get<std::string>()] = t;
  return by_id;
}

TEST(TasksCliTest, ExampleDataSummaries) {
  const auto t = TasksJson(testing::SourceDir() + "/examples/data");
  ASSERT_EQ(t.size(), 9u);
  EXPECT_EQ(t["bc5cdr_chem"]["type"], "ner");
  EXPECT_EQ(t["bc5cdr_chem"]["splits"]["test"]["examples"], 8);
  EXPECT_EQ(t["ncbi_disease"]["splits"]["test"]["entities"], 9);
  EXPECT_EQ(t["chemprot"]["splits"]["test"]["positives"], 6);
  EXPECT_EQ(t["chemprot"]["negative_label"], "false");
  EXPECT_EQ(t["chemprot"]["splits"]["dev"]["label_counts"]["CPR:4"], 2);
  EXPECT_EQ(t["hoc"]["labels"].size(), 10u);
  EXPECT_FALSE(t["litcovid"]["splits"].contains("train"));
  EXPECT_EQ(t["pubmedqa"]["splits"]["test"]["label_counts"],
            (nlohmann::json{{"yes", 2}, {"no", 2}, {"maybe", 2}}));
  EXPECT_EQ(t["medqa_5opt"]["splits"]["test"]["label_counts"]["E"], 0);
}

// The "done when" (a): loader counts on the real published files.
TEST(TasksCliTest, RealDataCounts) {
  BIOQUANT_REQUIRE_SHARED();
  const auto t = TasksJson(testing::BionlpDir());
  auto split = [&](const char* task, const char* s) {
    return t[task]["splits"][s];
  };
  EXPECT_EQ(split("bc5cdr_chem", "test")["examples"], 4797);
  EXPECT_EQ(split("bc5cdr_chem", "test")["entities"], 5385);
  EXPECT_EQ(split("ncbi_disease", "test")["examples"], 940);
  EXPECT_EQ(split("ncbi_disease", "test")["entities"], 960);
  EXPECT_EQ(split("ddi2013", "test")["examples"], 5761);
  EXPECT_EQ(split("ddi2013", "test")["positives"], 979);
  EXPECT_EQ(split("chemprot", "test_sample200")["examples"], 200);
  EXPECT_EQ(split("hoc", "test")["examples"], 315);
  EXPECT_EQ(split("litcovid", "test")["examples"], 2500);
  EXPECT_EQ(split("medqa", "test")["examples"], 1273);
  EXPECT_EQ(split("medqa_5opt", "test")["examples"], 1273);
  EXPECT_EQ(split("pubmedqa", "test")["examples"], 500);
  EXPECT_EQ(split("pubmedqa", "test")["label_counts"],
            (nlohmann::json{{"yes", 276}, {"no", 169}, {"maybe", 55}}));
}

TEST(TasksCliTest, MalformedFileFailsWithFileAndLine) {
  const std::string dir = testing::TempDir("tasks_cli");
  std::filesystem::create_directories(dir + "/ddi2013");
  WriteFile(
      dir + "/ddi2013/test.tsv",
      "index\tsentence\tlabel\na\t@DRUG$ and @DRUG$\tDDI-false\nb\tragged\n");
  const auto r = RunBioquant({"tasks", "--data-dir", dir, "--json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(
      r.err.find(dir + "/ddi2013/test.tsv:3: expected 3 tab-separated fields"),
      std::string::npos)
      << r.err;
}

TEST(TasksCliTest, UnknownTaskAndMissingFlag) {
  auto r = RunBioquant({"tasks", "--data-dir", ".", "--task", "bc5cdr"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown task 'bc5cdr'"), std::string::npos) << r.err;
  r = RunBioquant({"tasks"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--data-dir"), std::string::npos) << r.err;
}

TEST(TasksCliTest, TableListsEveryTask) {
  const auto r = RunBioquant(
      {"tasks", "--data-dir", testing::SourceDir() + "/examples/data"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* id :
       {"bc5cdr_chem", "ncbi_disease", "chemprot", "ddi2013", "hoc", "litcovid",
        "medqa", "medqa_5opt", "pubmedqa"}) {
    EXPECT_NE(r.out.find(id), std::string::npos) << id;
  }
}

}  // namespace
}  // namespace bioquant
