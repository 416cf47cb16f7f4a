#include "tasks/prompt.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "tasks/loaders.h"
#include "tasks/strategy.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

std::string ExampleData() { return testing::SourceDir() + "/examples/data"; }
std::string GoldenDir() {
  return testing::SourceDir() + "/tests/tasks/golden_prompts";
}

// The golden form of a prompt: its id, then the chat messages.
std::string Golden(const Prompt& p) {
  return "template_id: " + p.template_id + "\n=== system ===\n" + p.system +
         "\n=== user ===\n" + p.user + "\n";
}

struct GoldenCase {
  std::string task;
  std::string strategy;
  std::string ner_style;
};

std::string CaseName(const GoldenCase& c) {
  std::string s = c.task + "." + c.strategy;
  for (char& ch : s)
    if (ch == ':') ch = '-';
  if (!c.ner_style.empty()) s += "." + c.ner_style;
  return s;
}

class GoldenPromptTest : public ::testing::TestWithParam<GoldenCase> {};

// Every built-in template is pinned: a wording change fails here until the
// golden files are regenerated (BIOQUANT_UPDATE_GOLDEN=1) and
// kBuiltinTemplateVersion is bumped, so it shows in review and in stored ids.
TEST_P(GoldenPromptTest, MatchesGoldenFile) {
  const GoldenCase& c = GetParam();
  const TaskInfo& task = FindTask(c.task);
  StrategySpec spec = ParseStrategy(c.strategy);
  if (!c.ner_style.empty()) spec.ner_style = c.ner_style;
  const auto examples = LoadSplit(ExampleData(), c.task, "test");
  const Example& ex = examples.at(1);
  std::vector<Example> demos;
  if (spec.kind == StrategyKind::kFewShot) {
    const DemoPool pool = LoadDemoPool(ExampleData(), task, "", spec);
    demos = SelectDemos(task, spec, ex, pool, 0, nullptr);
  }
  const Prompt p = BuildPrompt(task, ex, spec, demos);
  EXPECT_EQ(p.text, p.system + "\n\n" + p.user);
  EXPECT_EQ(p.template_id, BuiltinTemplateId(task, spec));
  const std::string path = GoldenDir() + "/" + CaseName(c) + ".txt";
  if (std::getenv("BIOQUANT_UPDATE_GOLDEN")) {
    std::filesystem::create_directories(GoldenDir());
    WriteFile(path, Golden(p));
    GTEST_SKIP() << "wrote " << path;
  }
  ASSERT_TRUE(FileExists(path))
      << path << " missing; run with BIOQUANT_UPDATE_GOLDEN=1";
  EXPECT_EQ(Golden(p), ReadFile(path)) << "prompt changed: " << path;
}

std::vector<GoldenCase> AllCases() {
  std::vector<GoldenCase> cases;
  for (const TaskInfo& t : AllTasks()) {
    cases.push_back({t.id, "zero-shot", ""});
    cases.push_back({t.id, "cot", ""});
    if (t.id != "litcovid" && t.id != "medqa") {  // no train/dev to draw from
      cases.push_back({t.id, "few-shot:2:bm25", ""});
    }
  }
  cases.push_back({"bc5cdr_chem", "zero-shot", "inline"});
  cases.push_back({"ncbi_disease", "few-shot:2:bm25", "inline"});
  cases.push_back({"ncbi_disease", "cot", "inline"});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllTasks, GoldenPromptTest,
                         ::testing::ValuesIn(AllCases()), [](const auto& info) {
                           std::string n = CaseName(info.param);
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch)))
                               ch = '_';
                           return n;
                         });

TEST(PromptTest, TemplateIdsNameTypeStrategyStyleAndVersion) {
  StrategySpec spec = ParseStrategy("zero-shot");
  EXPECT_EQ(BuiltinTemplateId(FindTask("bc5cdr_chem"), spec),
            "ner.zero-shot.list@1");
  spec.ner_style = "inline";
  EXPECT_EQ(BuiltinTemplateId(FindTask("bc5cdr_chem"), spec),
            "ner.zero-shot.inline@1");
  EXPECT_EQ(
      BuiltinTemplateId(FindTask("chemprot"), ParseStrategy("few-shot:3")),
      "re.few-shot@1");
  EXPECT_EQ(BuiltinTemplateId(FindTask("hoc"), ParseStrategy("cot")),
            "multilabel.cot@1");
  // Self-consistency samples the chain-of-thought prompt.
  EXPECT_EQ(BuiltinTemplateId(FindTask("pubmedqa"), ParseStrategy("sc:5")),
            "qa.cot@1");
}

TEST(PromptTest, SelfConsistencyPromptIsTheCotPrompt) {
  const TaskInfo& task = FindTask("medqa");
  const auto ex = LoadSplit(ExampleData(), "medqa", "test").at(0);
  const Prompt cot = BuildPrompt(task, ex, ParseStrategy("cot"), {});
  const Prompt sc = BuildPrompt(task, ex, ParseStrategy("sc:5"), {});
  EXPECT_EQ(cot.text, sc.text);
  EXPECT_EQ(cot.template_id, sc.template_id);
  EXPECT_NE(cot.text,
            BuildPrompt(task, ex, ParseStrategy("zero-shot"), {}).text);
}

TEST(PromptTest, EveryPromptCarriesTheItemAndTheAnswerContract) {
  for (const TaskInfo& task : AllTasks()) {
    const auto examples = LoadSplit(ExampleData(), task.id, "test");
    for (const char* s : {"zero-shot", "cot"}) {
      const Prompt p = BuildPrompt(task, examples[0], ParseStrategy(s), {});
      EXPECT_NE(p.user.find(examples[0].text), std::string::npos) << task.id;
      EXPECT_NE(p.system.find("\"Answer:\""), std::string::npos) << task.id;
      if (task.type == TaskType::kRelation ||
          task.type == TaskType::kMultiLabel) {
        for (const auto& label : task.labels)
          EXPECT_NE(p.system.find(label), std::string::npos)
              << task.id << " " << label;
      }
      if (task.type == TaskType::kQa && task.id != "pubmedqa") {
        for (const auto& [letter, option] : examples[0].options)
          EXPECT_NE(p.user.find(letter + ". " + option), std::string::npos);
      }
    }
  }
}

TEST(PromptTest, DemosOnlyWithFewShot) {
  const TaskInfo& task = FindTask("chemprot");
  const auto ex = LoadSplit(ExampleData(), "chemprot", "test");
  EXPECT_THROW(BuildPrompt(task, ex[0], ParseStrategy("zero-shot"), {ex[1]}),
               Error);
  EXPECT_THROW(BuildPrompt(task, ex[0], ParseStrategy("cot"), {ex[1]}), Error);
  StrategySpec bad = ParseStrategy("zero-shot");
  bad.ner_style = "html";
  EXPECT_THROW(BuildPrompt(FindTask("ncbi_disease"), ex[0], bad, {}), Error);
}

Example NerExample(std::vector<std::string> tokens,
                   std::vector<std::string> tags) {
  Example e;
  e.tokens = std::move(tokens);
  e.tags = std::move(tags);
  return e;
}

TEST(PromptTest, NerAnswersInBothStyles) {
  const TaskInfo& task = FindTask("bc5cdr_chem");
  const Example e = NerExample({"a", "\"b\"", "c", "d", "e", "f"},
                               {"O", "B", "I", "O", "I", "B"});
  // An I after O starts no entity (strict IOB2), as the metrics count it.
  EXPECT_EQ(RenderAnswer(task, e, "list"), R"(["\"b\" c", "f"])");
  EXPECT_EQ(RenderAnswer(task, e, "inline"), "a <e>\"b\" c</e> d e <e>f</e>");
  EXPECT_EQ(RenderAnswer(task, NerExample({"x"}, {"O"}), "list"), "[]");
  EXPECT_EQ(RenderAnswer(task, NerExample({"x", "y"}, {"B", "B"}), "inline"),
            "<e>x</e> <e>y</e>");
}

TEST(PromptTest, RenderInputForUserTemplates) {
  const auto mq = LoadSplit(ExampleData(), "medqa_5opt", "test").at(0);
  EXPECT_EQ(RenderInput(FindTask("medqa_5opt"), mq),
            mq.text + "\nA. " + mq.options.at("A") + "\nB. " +
                mq.options.at("B") + "\nC. " + mq.options.at("C") + "\nD. " +
                mq.options.at("D") + "\nE. " + mq.options.at("E"));
  Example pq;
  pq.text = "Q?";
  pq.context = "one.\ntwo.";
  EXPECT_EQ(RenderInput(FindTask("pubmedqa"), pq), "Q? one. two.");
  Example ml;
  ml.text = "abstract";
  ml.gold = {"Treatment", "Diagnosis"};
  EXPECT_EQ(RenderAnswer(FindTask("litcovid"), ml, "list"),
            "Treatment; Diagnosis");
}

TEST(PromptTest, UserTemplateSlotsAndId) {
  const TaskInfo& task = FindTask("ddi2013");
  const auto ex = LoadSplit(ExampleData(), "ddi2013", "test");
  const UserTemplate t =
      MakeUserTemplate("dir/my.txt", "\xEF\xBB\xBFQ: {Input}\nA:");
  const Prompt p = BuildPromptFromTemplate(t, task, ex[0], {});
  EXPECT_EQ(p.text, "Q: " + ex[0].text + "\nA:");
  EXPECT_EQ(p.user, p.text);
  EXPECT_TRUE(p.system.empty());
  EXPECT_EQ(p.template_id.rfind("file:my@", 0), 0u) << p.template_id;
  EXPECT_EQ(p.template_id.size(), std::string("file:my@").size() + 8);
  // Another body gives another id; the same body the same id.
  EXPECT_NE(MakeUserTemplate("dir/my.txt", "Q2: {Input}").id, t.id);
  EXPECT_EQ(MakeUserTemplate("other/my.txt", "\xEF\xBB\xBFQ: {Input}\nA:").id,
            t.id);
  // Upper-case slot, no slot (appended), and an {Examples} slot.
  EXPECT_EQ(BuildPromptFromTemplate(MakeUserTemplate("u", "In: {INPUT}"), task,
                                    ex[0], {})
                .text,
            "In: " + ex[0].text);
  EXPECT_EQ(BuildPromptFromTemplate(MakeUserTemplate("n", "Sentence:\n\n"),
                                    task, ex[0], {})
                .text,
            "Sentence:\n" + ex[0].text);
  const Prompt with_demos = BuildPromptFromTemplate(
      MakeUserTemplate("e", "{Examples}\n\nInput: {Input}"), task, ex[0],
      {ex[1], ex[2]});
  EXPECT_EQ(with_demos.text,
            "Input: " + ex[1].text + "\nOutput: " + ex[1].gold[0] +
                "\n\nInput: " + ex[2].text + "\nOutput: " + ex[2].gold[0] +
                "\n\nInput: " + ex[0].text);
  EXPECT_THROW(BuildPromptFromTemplate(t, task, ex[0], {ex[1]}), Error);
  EXPECT_THROW(LoadUserTemplate(testing::TempDir("tmpl") + "/missing.txt"),
               Error);
}

// Chen et al.'s published template files work as they are.
TEST(PromptTest, ChenTemplatesFromSharedWork) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string prompts = testing::BionlpDir() + "/prompts";
  int used = 0;
  for (const auto& dir : std::filesystem::directory_iterator(prompts)) {
    const std::string task_id = dir.path().filename().string();
    const TaskInfo& task =
        FindTask(task_id == "medqa" ? "medqa_5opt" : task_id);
    const auto ex = LoadSplit(ExampleData(), task.id, "test").at(0);
    for (const auto& file : std::filesystem::directory_iterator(dir.path())) {
      const UserTemplate t = LoadUserTemplate(file.path().string());
      const Prompt p = BuildPromptFromTemplate(t, task, ex, {});
      EXPECT_NE(p.text.find(RenderInput(task, ex)), std::string::npos)
          << file.path();
      for (const char* slot : {"{Input}", "{INPUT}", "{input}"})
        EXPECT_EQ(p.text.find(slot), std::string::npos) << file.path();
      EXPECT_EQ(p.text.rfind("\xEF\xBB\xBF", 0), std::string::npos)
          << file.path();
      ++used;
    }
  }
  EXPECT_EQ(used, 31);
}

}  // namespace
}  // namespace bioquant
