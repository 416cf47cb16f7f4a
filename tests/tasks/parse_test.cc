// Answer parsers on realistic model outputs (written for these tests): bare
// labels, wrong case, markdown, JSON followed by prose, chain-of-thought with
// a final answer line, several answers, refusals.
#include "tasks/parse.h"

#include <gtest/gtest.h>

#include "tasks/task.h"
#include "util/error.h"

namespace bioquant {
namespace {

// One output and what the flexible parser must make of it; an empty
// `expect` with ok == false means unparsed.
struct Case {
  const char* output;
  bool ok;
  std::vector<std::string> expect;
};

std::string Show(const Parsed& p) {
  std::string s = p.ok ? "ok [" : "unparsed (" + p.reason + ") [";
  for (const auto& l : p.labels) s += "'" + l + "' ";
  return s + "]";
}

void RunCases(const std::string& task_id, const std::vector<Case>& cases,
              const std::map<std::string, std::string>& options = {}) {
  const TaskInfo& task = FindTask(task_id);
  for (const auto& c : cases) {
    const Parsed p = ParseOutput(task, c.output, options, ParseMode::kFlexible);
    EXPECT_EQ(p.ok, c.ok) << task_id << " output: " << c.output << "\n got "
                          << Show(p);
    if (c.ok && p.ok) {
      EXPECT_EQ(p.labels, c.expect) << task_id << " output: " << c.output;
    }
    if (!p.ok) {
      EXPECT_FALSE(p.reason.empty()) << c.output;
    }
  }
}

// ------------------------------------------------------------------ RE

TEST(ParseRelation, ChemProtOutputs) {
  RunCases(
      "chemprot",
      {
          {"CPR:4", true, {"CPR:4"}},
          {"cpr-4", true, {"CPR:4"}},
          {"CPR 9.", true, {"CPR:9"}},
          {"**CPR:3**", true, {"CPR:3"}},
          {"CPR4", true, {"CPR:4"}},
          {"A: CPR:4", true, {"CPR:4"}},
          {"Example-2 A: CPR:9", true, {"CPR:9"}},
          {"The relation between @CHEMICAL$ and @GENE$ is CPR:5 (agonist).",
           true,
           {"CPR:5"}},
          {"Let's think step by step. The chemical inhibits the gene, so CPR:4 "
           "fits; "
           "CPR:3 would need an upregulation.\nAnswer: CPR:4",
           true,
           {"CPR:4"}},
          {"{\"relation\": \"CPR:6\"} The compound is described as an "
           "antagonist.",
           true,
           {"CPR:6"}},
          {"There is no relation between the chemical and the gene.",
           true,
           {"false"}},
          {"None", true, {"false"}},
          {"FALSE.", true, {"false"}},
          {"CPR:4 (inhibitor). Note that this is not CPR:3.", true, {"CPR:4"}},
          {"Answer: CPR:4\n\nExplanation: @CHEMICAL$ inhibits @GENE$, an "
           "inhibitor "
           "relation rather than CPR:3.",
           true,
           {"CPR:4"}},
          {"<think>Maybe CPR:3? No, it inhibits the enzyme.</think>CPR:4",
           true,
           {"CPR:4"}},
          {"**Relation:** cpr:9", true, {"CPR:9"}},
          {"Example-2 Q: What is the relation between @CHEMICAL$ and @GENE$?\n"
           "Example-2 A: ANTAGONIST",
           true,
           {"CPR:6"}},
          {"The chemical acts as an inhibitor of the gene product.",
           true,
           {"CPR:4"}},
          {"CPR:3 would need an activator. Here @CHEMICAL$ blocks @GENE$, so "
           "the "
           "relation is CPR:4.",
           true,
           {"CPR:4"}},
          {"It is either CPR:3 or CPR:4.", false, {}},
          {"I'm sorry, but I cannot determine the relationship from this "
           "sentence.",
           false,
           {}},
          {"", false, {}},
          {"The sentence mentions an enzyme.", false, {}},
      });
}

TEST(ParseRelation, DdiOutputs) {
  RunCases(
      "ddi2013",
      {
          {"DDI-mechanism", true, {"DDI-mechanism"}},
          {"mechanism", true, {"DDI-mechanism"}},
          {"ddi_effect", true, {"DDI-effect"}},
          {"DDI-effect. The sentence describes an increased odds ratio of "
           "bleeding, "
           "a pharmacodynamic mechanism or effect between the drugs.",
           true,
           {"DDI-effect"}},
          {"The interaction type is: DDI-advise", true, {"DDI-advise"}},
          {"Advise", true, {"DDI-advise"}},
          {"DDI-int", true, {"DDI-int"}},
          {"No interaction.", true, {"DDI-false"}},
          {"Mech", true, {"DDI-mechanism"}},
          {"The answer is DDI-false because the sentence does not describe an "
           "interaction.",
           true,
           {"DDI-false"}},
          {"Label: **DDI-effect**", true, {"DDI-effect"}},
          {"A: DDI-effect", true, {"DDI-effect"}},
          {"DDI-false.", true, {"DDI-false"}},
          {"```json\n{\"label\": \"DDI-mechanism\"}\n```\nThe clearance is "
           "reduced.",
           true,
           {"DDI-mechanism"}},
          {"The label could be DDI-effect or DDI-mechanism.", false, {}},
          {"As an AI language model, I cannot classify drug interactions.",
           false,
           {}},
      });
}

TEST(ParseRelation, StrictModeOnlyTakesBareLabels) {
  const TaskInfo& t = FindTask("chemprot");
  EXPECT_TRUE(ParseOutput(t, "CPR:4", {}, ParseMode::kStrict).ok);
  EXPECT_EQ(ParseOutput(t, " cpr:4. ", {}, ParseMode::kStrict).labels,
            std::vector<std::string>{"CPR:4"});
  EXPECT_FALSE(ParseOutput(t, "A: CPR:4", {}, ParseMode::kStrict).ok);
  EXPECT_FALSE(ParseOutput(t, "cpr-4", {}, ParseMode::kStrict).ok);
}

// ------------------------------------------------------------ multi-label

TEST(ParseMultiLabel, LitCovidOutputs) {
  RunCases("litcovid",
           {
               {"Treatment", true, {"Treatment"}},
               {"Treatment; Diagnosis", true, {"Treatment", "Diagnosis"}},
               {"diagnosis, treatment", true, {"Treatment", "Diagnosis"}},
               {"- Prevention\n- Transmission",
                true,
                {"Prevention", "Transmission"}},
               {"[\"Mechanism\", \"Case Report\"]",
                true,
                {"Mechanism", "Case Report"}},
               {"{\"labels\": [\"Epidemic Forecasting\"]}\nThe article models "
                "case growth.",
                true,
                {"Epidemic Forecasting"}},
               {"Case Reports", true, {"Case Report"}},
               {"Epidemic", true, {"Epidemic Forecasting"}},
               {"The article is about treating COVID-19 patients.\nAnswer: "
                "Treatment, "
                "Mechanism",
                true,
                {"Treatment", "Mechanism"}},
               {"TREATMENT|PREVENTION", true, {"Treatment", "Prevention"}},
               {"**Topics:** Diagnosis and Transmission",
                true,
                {"Diagnosis", "Transmission"}},
               {"Labels: Prevention\nThis is a guideline paper.",
                true,
                {"Prevention"}},
               {"{\n  \"Treatment\": 1,\n  \"Diagnosis\": 0,\n  "
                "\"Prevention\": 1,\n  "
                "\"Mechanism\": 0,\n  \"Transmission\": 0,\n  \"Epidemic "
                "Forecasting\": 0,\n  "
                "\"Case Report\": 0\n}",
                true,
                {"Treatment", "Prevention"}},
               {"{\"Treatment\": 0, \"Diagnosis\": 0, \"Case Report\": 0}",
                true,
                {}},
               {"I'm sorry, I can't classify this article.", false, {}},
               {"None of the above.", false, {}},
               {"", false, {}},
           });
}

TEST(ParseMultiLabel, HocOutputs) {
  RunCases(
      "hoc",
      {
          {"sustaining proliferative signaling; resisting cell death",
           true,
           {"resisting cell death", "sustaining proliferative signaling"}},
          {"Genomic Instability and Mutation",
           true,
           {"genomic instability and mutation"}},
          {"1. Inducing angiogenesis\n2. Activating invasion and metastasis",
           true,
           {"activating invasion and metastasis", "inducing angiogenesis"}},
          {"The hallmarks are: evading growth suppressors, tumor-promoting "
           "inflammation.",
           true,
           {"evading growth suppressors", "tumor promoting inflammation"}},
          {"```json\n{\"answer\": [\"cellular energetics\"]}\n```",
           true,
           {"cellular energetics"}},
          {"avoiding immune destruction, enabling replicative immortality",
           true,
           {"avoiding immune destruction", "enabling replicative immortality"}},
          {"```json\n{\"activating invasion and metastasis\": 0, \"sustaining "
           "proliferative signaling\": \"1\", \"Tumor-promoting "
           "inflammation\": true}\n```\n"
           "The abstract reports EGFR-driven growth.",
           true,
           {"sustaining proliferative signaling",
            "tumor promoting inflammation"}},
          {"I cannot identify any hallmark.", false, {}},
      });
}

TEST(ParseMultiLabel, StrictMode) {
  const TaskInfo& t = FindTask("litcovid");
  EXPECT_EQ(
      ParseOutput(t, "Treatment;Diagnosis", {}, ParseMode::kStrict).labels,
      (std::vector<std::string>{"Treatment", "Diagnosis"}));
  EXPECT_FALSE(
      ParseOutput(t, "Treatment and diagnosis", {}, ParseMode::kStrict).ok);
}

// -------------------------------------------------------------------- QA

const std::map<std::string, std::string> kOptions = {
    {"A", "Aspirin"},
    {"B", "Clopidogrel"},
    {"C", "Aspirin and clopidogrel"},
    {"D", "Warfarin"}};

TEST(ParseQa, MedQaOutputs) {
  RunCases(
      "medqa",
      {
          {"B", true, {"B"}},
          {"(C)", true, {"C"}},
          {"c", true, {"C"}},
          {"Answer: D", true, {"D"}},
          {"The answer is B. Clopidogrel", true, {"B"}},
          {"the correct answer is (A) Aspirin.", true, {"A"}},
          {"**B. Clopidogrel**", true, {"B"}},
          {"Warfarin", true, {"D"}},
          {"Aspirin and clopidogrel", true, {"C"}},
          {"A 45-year-old man with chest pain needs dual therapy. Let's think "
           "step "
           "by step.\nTherefore, the answer is C.",
           true,
           {"C"}},
          {"Final answer: B", true, {"B"}},
          {"{\"answer\": \"D\", \"explanation\": \"long-term "
           "anticoagulation\"}",
           true,
           {"D"}},
          {"Option B is correct.", true, {"B"}},
          {"Both A and C are plausible, but the best answer is C.",
           true,
           {"C"}},
          {"Answer:\n\n(D) Warfarin", true, {"D"}},
          {"<think>Consider (A)... no, bleeding risk.</think>\nB", true, {"B"}},
          {"The most appropriate drug here is clopidogrel.", true, {"B"}},
          {"Let's look at each option.\nA. Aspirin alone is not enough.\nB. "
           "Clopidogrel alone is not enough.\nC. Dual therapy is "
           "indicated.\nD. "
           "Warfarin is not indicated.\nSo I would pick option C.",
           true,
           {"C"}},
          {"**Answer: C. Aspirin and clopidogrel**", true, {"C"}},
          {"I cannot provide medical advice.", false, {}},
          {"A. Aspirin\nB. Clopidogrel\nC. Aspirin and clopidogrel\nD. "
           "Warfarin",
           false,
           {}},
          {"The answer is E", false, {}},
          {"", false, {}},
      },
      kOptions);
}

TEST(ParseQa, MedQaStrict) {
  const TaskInfo& t = FindTask("medqa");
  EXPECT_EQ(ParseOutput(t, "(b)", kOptions, ParseMode::kStrict).labels,
            std::vector<std::string>{"B"});
  EXPECT_FALSE(ParseOutput(t, "Answer: B", kOptions, ParseMode::kStrict).ok);
}

TEST(ParseQa, PubMedQaOutputs) {
  RunCases(
      "pubmedqa",
      {
          {"yes", true, {"yes"}},
          {"Yes.", true, {"yes"}},
          {" Maybe.", true, {"maybe"}},
          {"NO", true, {"no"}},
          {"Yes. The abstract discusses the migration of foreign bodies and no "
           "complications.",
           true,
           {"yes"}},
          {"Can reporting of red blood cell morphology be biased?   Yes.",
           true,
           {"yes"}},
          {"Answer: no", true, {"no"}},
          {"Based on the results, the answer is maybe.", true, {"maybe"}},
          {"The evidence is inconclusive.", true, {"maybe"}},
          {"{\"answer\": \"yes\", \"reason\": \"survival improved\"}",
           true,
           {"yes"}},
          {"Final answer: **Maybe**", true, {"maybe"}},
          {"There was no significant difference between groups, so the answer "
           "is yes.",
           true,
           {"yes"}},
          {"The study shows no benefit. No.", true, {"no"}},
          {"No, the results do not support this.", true, {"no"}},
          {"uncertain", true, {"maybe"}},
          {"Maybe. Although the cohort was large, the authors note that a "
           "single-centre "
           "registry of this kind cannot provide a definitive answer, and I "
           "cannot see "
           "a control group.",
           true,
           {"maybe"}},
          {"Does the site of access influence early outcomes?  Maybe. The "
           "study found "
           "no difference in occlusion rates.",
           true,
           {"maybe"}},
          {"Can the device measure hot flashes?   Maybe.   Is it comfortable?  "
           " No.",
           false,
           {}},
          {"X", false, {}},
          {"special case", false, {}},
          {"I'm sorry, but I can't answer that.", false, {}},
          {"It could be yes or no.", false, {}},
          {"", false, {}},
      });
}

TEST(ParseQa, PubMedQaStrict) {
  const TaskInfo& t = FindTask("pubmedqa");
  EXPECT_TRUE(ParseOutput(t, "Yes.", {}, ParseMode::kStrict).ok);
  EXPECT_FALSE(ParseOutput(t, "Yes, it does", {}, ParseMode::kStrict).ok);
}

// ------------------------------------------------------------------- NER

TEST(ParseNer, ListOutputs) {
  RunCases(
      "bc5cdr_chem",
      {
          {"aspirin", true, {"aspirin"}},
          {"aspirin, ibuprofen", true, {"aspirin", "ibuprofen"}},
          {"- aspirin\n- ibuprofen", true, {"aspirin", "ibuprofen"}},
          {"1. Aspirin\n2. 2,4-dinitrophenol",
           true,
           {"Aspirin", "2,4-dinitrophenol"}},
          {"[\"cisplatin\", \"5-FU\"]", true, {"cisplatin", "5-FU"}},
          {"Here are the chemicals mentioned:\n* cisplatin\n* doxorubicin",
           true,
           {"cisplatin", "doxorubicin"}},
          {"None", true, {}},
          {"There are no chemical entities in this sentence.", true, {}},
          {"Chemicals: lithium, haloperidol", true, {"lithium", "haloperidol"}},
          {"{\"entities\": [{\"text\": \"morphine\", \"type\": \"Chemical\"}]}",
           true,
           {"morphine"}},
          {"**levodopa**; **carbidopa**", true, {"levodopa", "carbidopa"}},
          {"aspirin (chemical), warfarin (chemical)",
           true,
           {"aspirin", "warfarin"}},
          {"cisplatin\ncisplatin", true, {"cisplatin"}},
          {"\"nicotine\"", true, {"nicotine"}},
          {"[]", true, {}},
          {"N/A", true, {}},
          {"Entities: none", true, {}},
          {"Sure! The chemical mentions are:\n- lidocaine\n- bupivacaine",
           true,
           {"lidocaine", "bupivacaine"}},
          {"I'm sorry, I cannot help with that.", false, {}},
          {"", false, {}},
      });
}

TEST(ParseNer, InlineOutputs) {
  RunCases(
      "ncbi_disease",
      {
          {"The <e>cisplatin</e> induced <e>nephrotoxicity</e> was severe.",
           true,
           {"cisplatin", "nephrotoxicity"}},
          {"@@Lithium## treatment and @@haloperidol## toxicity",
           true,
           {"Lithium", "haloperidol"}},
          {"Patients with <e>breast cancer</e> and <e>breast cancer</e> "
           "relatives",
           true,
           {"breast cancer"}},
          {"A common MSH2 mutation in North American <span> HNPCC </span> "
           "families and "
           "<span class=\"disease\">colorectal cancer</span> .",
           true,
           {"HNPCC", "colorectal cancer"}},
          {"HTML: Children with <mark>asthma</mark><br> were enrolled",
           true,
           {"asthma"}},
      });
  const TaskInfo& t = FindTask("ncbi_disease");
  const Parsed none = ParseOutput(t, "Patients received placebo.", {},
                                  ParseMode::kFlexible, NerStyle::kInline);
  EXPECT_TRUE(none.ok);
  EXPECT_TRUE(none.labels.empty());
  EXPECT_FALSE(ParseOutput(t, "I'm sorry, I can't do that.", {},
                           ParseMode::kFlexible, NerStyle::kInline)
                   .ok);
}

TEST(ParseModes, NamesRoundTripAndBadNamesThrow) {
  EXPECT_EQ(ParseModeFromName("strict"), ParseMode::kStrict);
  EXPECT_EQ(NerStyleFromName("inline"), NerStyle::kInline);
  EXPECT_THROW(ParseModeFromName("loose"), Error);
  EXPECT_THROW(NerStyleFromName("table"), Error);
}

}  // namespace
}  // namespace bioquant
