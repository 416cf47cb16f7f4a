// `bioquant prompt`: the exact prompt for one example, and its errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

std::string Data() { return testing::SourceDir() + "/examples/data"; }

nlohmann::json PromptJson(std::vector<std::string> args) {
  args.insert(args.begin(), "prompt");
  args.push_back("--json");
  const auto r = RunBioquant(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
}

TEST(PromptCliTest, JsonHasTextChatAndProvenance) {
  const auto j =
      PromptJson({"--task", "ddi2013", "--strategy", "few-shot:2:bm25",
                  "--index", "1", "--data-dir", Data()});
  EXPECT_EQ(j["template_id"], "re.few-shot@1");
  EXPECT_EQ(j["strategy"], "few-shot:2:bm25");
  EXPECT_EQ(j["example_id"], "DDI-Example.d10.s1.p0");
  EXPECT_EQ(j["demo_source"], "dev");
  EXPECT_EQ(j["demo_ids"].size(), 2u);
  ASSERT_EQ(j["chat"].size(), 2u);
  EXPECT_EQ(j["chat"][0]["role"], "system");
  EXPECT_EQ(j["chat"][1]["role"], "user");
  EXPECT_EQ(j["text"], j["chat"][0]["content"].get<std::string>() + "\n\n" +
                           j["chat"][1]["content"].get<std::string>());
}

TEST(PromptCliTest, MatchesTheGoldenPrompt) {
  const auto j = PromptJson({"--task", "pubmedqa", "--strategy", "cot",
                             "--index", "1", "--data-dir", Data()});
  const std::string golden = ReadFile(
      testing::SourceDir() + "/tests/tasks/golden_prompts/pubmedqa.cot.txt");
  EXPECT_EQ("template_id: " + j["template_id"].get<std::string>() +
                "\n=== system ===\n" +
                j["chat"][0]["content"].get<std::string>() +
                "\n=== user ===\n" +
                j["chat"][1]["content"].get<std::string>() + "\n",
            golden);
}

TEST(PromptCliTest, SelfConsistencyRecordsSamples) {
  const auto j =
      PromptJson({"--task", "medqa", "--strategy", "sc:3:0.8", "--index", "0",
                  "--data-dir", Data(), "--seed", "10"});
  EXPECT_EQ(j["template_id"], "qa.cot@1");
  ASSERT_EQ(j["samples"].size(), 3u);
  EXPECT_EQ(j["samples"][2]["seed"], 12);
  EXPECT_DOUBLE_EQ(j["samples"][2]["temperature"].get<double>(), 0.8);
}

TEST(PromptCliTest, KFlagAndNerStyle) {
  const auto j = PromptJson({"--task", "bc5cdr_chem", "--strategy", "few-shot",
                             "--k", "3", "--index", "0", "--data-dir", Data(),
                             "--ner-style", "inline"});
  EXPECT_EQ(j["strategy"], "few-shot:3:random");
  EXPECT_EQ(j["demo_ids"].size(), 3u);
  EXPECT_EQ(j["template_id"], "ner.few-shot.inline@1");
  EXPECT_NE(j["text"].get<std::string>().find("<e>"), std::string::npos);
  // Same seed, same demos; the rank file picks the listed training items.
  EXPECT_EQ(j["demo_ids"],
            PromptJson({"--task", "bc5cdr_chem", "--strategy", "few-shot:3",
                        "--index", "0", "--data-dir", Data()})["demo_ids"]);
  EXPECT_EQ(
      PromptJson({"--task", "bc5cdr_chem", "--strategy", "few-shot:2:rank",
                  "--index", "0", "--data-dir", Data()})["demo_ids"],
      (nlohmann::json{"4", "1"}));
}

TEST(PromptCliTest, Errors) {
  auto r = RunBioquant({"prompt", "--task", "hoc", "--strategy", "few-shot:2",
                        "--index", "99", "--data-dir", Data()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--index 99 is out of range"), std::string::npos)
      << r.err;
  r = RunBioquant({"prompt", "--task", "hoc", "--strategy", "tree-of-thought",
                   "--index", "0", "--data-dir", Data()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown strategy 'tree-of-thought'"), std::string::npos)
      << r.err;
  r = RunBioquant({"prompt", "--task", "litcovid", "--strategy", "few-shot:2",
                   "--index", "0", "--data-dir", Data()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--demos FILE"), std::string::npos) << r.err;
  r = RunBioquant(
      {"prompt", "--task", "hoc", "--index", "0", "--data-dir", Data()});
  EXPECT_EQ(r.exit_code, 2);
  r = RunBioquant({"prompt", "--task", "hoc", "--strategy", "cot", "--k", "2",
                   "--index", "0", "--data-dir", Data()});
  EXPECT_EQ(r.exit_code, 1);
}

TEST(PromptCliTest, LitCovidWithDemosFile) {
  const auto j = PromptJson({"--task", "litcovid", "--strategy",
                             "few-shot:2:bm25", "--index", "0", "--data-dir",
                             Data(), "--demos", Data() + "/litcovid/test.tsv"});
  EXPECT_EQ(j["demo_ids"].size(), 2u);
}

TEST(PromptCliTest, ChenTemplateFile) {
  BIOQUANT_REQUIRE_SHARED();
  const auto j = PromptJson(
      {"--task", "ncbi_disease", "--strategy", "zero-shot", "--index", "0",
       "--data-dir", Data(), "--template",
       testing::BionlpDir() + "/prompts/ncbi_disease/chen2025_zeroshot.txt"});
  EXPECT_EQ(
      j["template_id"].get<std::string>().rfind("file:chen2025_zeroshot@", 0),
      0u);
  ASSERT_EQ(j["chat"].size(), 1u);
  const std::string text = j["text"];
  EXPECT_NE(text.find("Sentence: The mutation was found in three families"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace bioquant
