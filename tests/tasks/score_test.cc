// `bioquant score`: the published GPT-3.5/GPT-4 predictions reproduce
// expected_scores.json; own fixtures cover the jsonl/tsv paths; bad input
// fails with file:line and a non-zero exit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tasks/csv.h"
#include "tasks/score_file.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::BionlpDir;
using testing::RunBioquant;

double Round4(double v) { return std::round(v * 1e4) / 1e4; }

std::string Fixture(const std::string& name, const std::string& content) {
  const std::string path = testing::TempDir("score") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

// "GOLD (header case varies)" -> "GOLD".
std::string ColumnName(const nlohmann::json& c, const char* key) {
  if (!c.contains(key)) return "";
  std::string s = c[key].get<std::string>();
  return s.substr(0, s.find(" ("));
}

TEST(ScoreReference, ReproducesExpectedScores) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string dir = BionlpDir() + "/reference_predictions";
  const auto expected = ReadJsonFile(dir + "/expected_scores.json");
  int checked = 0;
  for (const auto& c : expected["cases"]) {
    const std::string file = dir + "/" + c["file"].get<std::string>();
    ScoreOptions opts;
    opts.gold_col = ColumnName(c, "gold_column");
    opts.pred_col = ColumnName(c, "pred_column");
    opts.bootstrap.resamples = 200;  // intervals are not what is checked here
    const auto r =
        ScoreFile(FindTask(c["dataset"].get<std::string>()), file, opts);
    const std::string metric = c["metric"].get<std::string>();
    ASSERT_TRUE(r["metrics"].contains(metric)) << file << " has no " << metric;
    const double v = r["metrics"][metric]["value"].get<double>();
    EXPECT_DOUBLE_EQ(Round4(v), c["value"].get<double>())
        << file << " " << metric << " " << v;
    ++checked;
    if (c.contains("accuracy")) {
      EXPECT_DOUBLE_EQ(Round4(r["metrics"]["accuracy"]["value"].get<double>()),
                       c["accuracy"].get<double>())
          << file;
    }
    const auto& m = r["metrics"][metric];
    EXPECT_LE(m["ci_low"].get<double>(), v) << file;
    EXPECT_GE(m["ci_high"].get<double>(), v) << file;
  }
  EXPECT_EQ(checked, 16);
}

TEST(ScoreReference, UnparsedOutputsAreCountedAndWrong) {
  BIOQUANT_REQUIRE_SHARED();
  ScoreOptions opts;
  opts.pred_col = "Predicted_processed";
  opts.bootstrap.resamples = 0;
  const auto r = ScoreFile(FindTask("pubmedqa"),
                           BionlpDir() +
                               "/reference_predictions/pubmedqa/"
                               "pubmedqa_gpt-4_zero_shot.tsv",
                           opts);
  EXPECT_EQ(r["unparsed"].get<int>(), 13);  // the 13 'X' answers
  EXPECT_NEAR(r["unparsed_rate"].get<double>(), 13.0 / 200, 1e-12);
  EXPECT_EQ(r["gold_column"], "Gold");
}

// The benchmark's authors mapped every raw output to a label by hand
// ("predicted_processed"); wherever they found a label, the flexible parser
// must find the same one in the raw output ("A: CPR:4", "Example-2 A:
// ANTAGONIST", "DDI-effect. The sentence describes ...", question echoes).
TEST(ScoreReference, RawOutputsParseLikeTheHandProcessedColumn) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string dir = BionlpDir() + "/reference_predictions";
  int compared = 0;
  for (const char* task_id : {"chemprot", "ddi2013", "pubmedqa"}) {
    const TaskInfo& task = FindTask(task_id);
    for (const auto& entry :
         std::filesystem::directory_iterator(dir + "/" + task_id)) {
      const auto rows = ReadDelimitedFile(entry.path().string(), '\t');
      ASSERT_FALSE(rows.empty());
      int raw = -1, processed = -1;
      for (size_t i = 0; i < rows[0].fields.size(); ++i) {
        std::string h = rows[0].fields[i];
        for (auto& ch : h)
          ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (h == "predicted_raw") raw = static_cast<int>(i);
        if (h == "predicted_processed") processed = static_cast<int>(i);
      }
      ASSERT_GE(raw, 0);
      ASSERT_GE(processed, 0);
      for (size_t r = 1; r < rows.size(); ++r) {
        const Parsed want = ParseOutput(task, rows[r].fields[processed], {},
                                        ParseMode::kStrict);
        if (!want.ok) continue;  // "X", "special case", empty column
        const Parsed got =
            ParseOutput(task, rows[r].fields[raw], {}, ParseMode::kFlexible);
        EXPECT_TRUE(got.ok && got.labels == want.labels)
            << entry.path() << ":" << rows[r].line
            << " raw: " << rows[r].fields[raw];
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 2000);
}

TEST(ScoreCli, ReferenceFileThroughTheBinary) {
  BIOQUANT_REQUIRE_SHARED();
  const auto r = RunBioquant(
      {"score", "--task", "ncbi_disease",
       BionlpDir() + "/reference_predictions/ncbi_disease/gpt-4_zero_shot.bio",
       "--resamples", "1000", "--seed", "3", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& f1 = j["metrics"]["ner_strict_entity_f1"];
  EXPECT_DOUBLE_EQ(Round4(f1["value"].get<double>()), 0.5673);
  EXPECT_EQ(f1["counts"]["tp"].get<double>(), 139);
  EXPECT_EQ(f1["counts"]["gold_entities"].get<double>(), 210);
  EXPECT_LT(f1["ci_low"].get<double>(), 0.5673);
  EXPECT_GT(f1["ci_high"].get<double>(), 0.5673);
  EXPECT_EQ(j["unparsed"].get<int>(), 0);
  EXPECT_EQ(j["bootstrap"]["resamples"].get<int>(), 1000);
  EXPECT_GT(j["units"].get<int>(),
            100);  // cut into sentences for the bootstrap
  // Same seed, same interval; the text form names the primary metric.
  const auto again = RunBioquant(
      {"score", "--task", "ncbi_disease",
       BionlpDir() + "/reference_predictions/ncbi_disease/gpt-4_zero_shot.bio",
       "--seed", "3", "--json"});
  EXPECT_EQ(nlohmann::json::parse(
                again.out)["metrics"]["ner_strict_entity_f1"]["ci_low"],
            f1["ci_low"]);
  const auto text = RunBioquant(
      {"score", "--task", "ncbi_disease",
       BionlpDir() +
           "/reference_predictions/ncbi_disease/gpt-4_zero_shot.bio"});
  EXPECT_NE(text.out.find("ner_strict_entity_f1"), std::string::npos);
}

// --------------------------------------------------------------- fixtures

TEST(ScoreFixtures, Conll3WithAndWithoutSentenceBreaks) {
  const std::string body =
      "Aspirin\tB-Chemical\tB-Chemical\nhelps\tO\tO\n.\tO\tO\n";
  const std::string two = body + "\n" + "Low\tO\tB\nsodium\tB\tI\n.\tO\tO\n";
  const std::string one = body + "Low\tO\tB\nsodium\tB\tI\n.\tO\tO\n";
  ScoreOptions o;
  o.bootstrap.resamples = 0;
  const auto a = ScoreFile(FindTask("bc5cdr_chem"), Fixture("a.bio", two), o);
  const auto b = ScoreFile(FindTask("bc5cdr_chem"), Fixture("b.conll", one), o);
  // gold {Aspirin, sodium}, pred {Aspirin, Low sodium}: F1 = 1/2.
  EXPECT_DOUBLE_EQ(a["metrics"]["ner_strict_entity_f1"]["value"].get<double>(),
                   0.5);
  EXPECT_DOUBLE_EQ(b["metrics"]["ner_strict_entity_f1"]["value"].get<double>(),
                   0.5);
  EXPECT_EQ(a["units"].get<int>(), 2);
  EXPECT_EQ(b["units"].get<int>(), 2);
  EXPECT_EQ(a["units_from"], "blank lines");
}

TEST(ScoreFixtures, JsonlNerRawOutputsMappedOntoTokens) {
  const std::string path = Fixture(
      "ner.jsonl",
      R"j({"id": "s1", "tokens": ["Lithium", "and", "haloperidol", "toxicity"], "gold": ["B", "O", "B", "O"], "pred": "- lithium\n- haloperidol"})j"
      "\n"
      R"j({"id": "s2", "tokens": ["No", "drugs", "here"], "gold": ["O", "O", "O"], "pred": "None"})j"
      "\n"
      R"j({"id": "s3", "tokens": ["Cocaine", "use"], "gold": ["B", "O"], "pred": "I'm sorry, I cannot help with that."})j"
      "\n"
      R"j({"id": "s4", "tokens": ["@", "x"], "gold": ["O", "B"], "pred": "The @@x## is marked"})j"
      "\n");
  ScoreOptions o;
  o.bootstrap.resamples = 0;
  const auto r = ScoreFile(FindTask("bc5cdr_chem"), path, o);
  // tp 3 (lithium, haloperidol, x), pred 3, gold 4 -> F1 6/7.
  EXPECT_NEAR(r["metrics"]["ner_strict_entity_f1"]["value"].get<double>(),
              6.0 / 7, 1e-12);
  EXPECT_EQ(r["unparsed"].get<int>(), 1);
  EXPECT_EQ(r["unparsed_reasons"]["refusal"].get<int>(), 1);
  EXPECT_DOUBLE_EQ(r["unparsed_rate"].get<double>(), 0.25);
}

TEST(ScoreFixtures, TsvNerWithTokensColumn) {
  const std::string tsv =
      Fixture("ner.tsv",
              "id\ttokens\tgold\tpred\n"
              "1\tLithium and haloperidol\tB O B\t\"[\"\"lithium\"\"]\"\n"
              "2\tNo drug\tO O\tNone\n");
  ScoreOptions o;
  o.bootstrap.resamples = 0;
  const auto r = ScoreFile(FindTask("bc5cdr_chem"), tsv, o);
  // tp 1, pred 1, gold 2 -> F1 2/3.
  EXPECT_NEAR(r["metrics"]["ner_strict_entity_f1"]["value"].get<double>(),
              2.0 / 3, 1e-12);
  const std::string bad =
      Fixture("ner_bad.tsv", "tokens\tgold\tpred\na b\tB\tx\n");
  EXPECT_THROW(ScoreFile(FindTask("bc5cdr_chem"), bad, o), Error);
}

TEST(ScoreFixtures, TsvMultiLabelAndJsonlMedQa) {
  const std::string tsv =
      Fixture("lc.tsv",
              "PMID\tLabels\tOutput\n"
              "1\tTreatment;Diagnosis\t\"Treatment, Diagnosis\"\n"
              "2\tPrevention\t\"- Prevention\n- Transmission\"\n"
              "3\tCase Report\tI cannot classify this.\n");
  ScoreOptions o;
  o.bootstrap.resamples = 0;
  const auto r = ScoreFile(FindTask("litcovid"), tsv, o);
  // Treatment 1, Diagnosis 1, Prevention 1, Transmission 0 (fp), Case
  // Report 0 (fn): macro 3/5; micro tp 3 fp 1 fn 1 -> 3/4.
  EXPECT_NEAR(r["metrics"]["label_macro_f1"]["value"].get<double>(), 0.6,
              1e-12);
  EXPECT_NEAR(r["metrics"]["micro_f1"]["value"].get<double>(), 0.75, 1e-12);
  EXPECT_EQ(r["unparsed"].get<int>(), 1);
  EXPECT_EQ(r["pred_column"], "Output");

  const std::string jl = Fixture(
      "mq.jsonl",
      R"j({"id": "q1", "gold": "B", "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Alteplase"}, "pred": "The best choice is heparin."})j"
      "\n"
      R"j({"id": "q2", "gold": "D", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "pred": "Answer: (C)"})j"
      "\n");
  const auto q = ScoreFile(FindTask("medqa"), jl, o);
  EXPECT_DOUBLE_EQ(q["metrics"]["accuracy"]["value"].get<double>(), 0.5);
  EXPECT_EQ(q["metrics"]["accuracy"]["counts"]["correct"].get<double>(), 1);
  EXPECT_EQ(q["unparsed"].get<int>(), 0);
}

// -------------------------------------------------------------- bad input

void ExpectCliError(const std::vector<std::string>& args,
                    const std::string& needle) {
  const auto r = RunBioquant(args);
  EXPECT_NE(r.exit_code, 0) << "args: " << args.back();
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(ScoreCli, BadInputNamesFileAndLine) {
  const std::string missing = testing::TempDir("score") + "/missing.tsv";
  ExpectCliError({"score", "--task", "chemprot", missing, "--json"}, missing);

  const std::string header =
      Fixture("hdr.tsv", "id\tsentence\tresult\n1\tx\tCPR:4\n");
  ExpectCliError({"score", "--task", "chemprot", header, "--json"},
                 header + ":1: no gold column");
  ExpectCliError(
      {"score", "--task", "chemprot", header, "--gold-col", "gold", "--json"},
      header + ":1: no column 'gold'");

  const std::string unknown =
      Fixture("unk.tsv", "label\tpred\nCPR:4\tCPR:4\nCPR:7\tCPR:4\n");
  ExpectCliError({"score", "--task", "chemprot", unknown, "--json"},
                 unknown + ":3: unknown gold label 'CPR:7'");

  const std::string ragged =
      Fixture("rag.tsv", "label\tpred\nCPR:4\tCPR:4\nfalse\n");
  ExpectCliError({"score", "--task", "chemprot", ragged, "--json"},
                 ragged + ":3: row has 1 fields but the header has 2");

  const std::string empty = Fixture("empty.tsv", "");
  ExpectCliError({"score", "--task", "chemprot", empty, "--json"},
                 empty + ":1: empty file");
  const std::string only_header = Fixture("hdr_only.tsv", "label\tpred\n");
  ExpectCliError({"score", "--task", "chemprot", only_header, "--json"},
                 only_header + ":2: no data rows");

  const std::string bad_tag = Fixture("bad.bio", "a\tO\tO\nb\tB-x\tX\n");
  ExpectCliError({"score", "--task", "bc5cdr_chem", bad_tag, "--json"},
                 bad_tag + ":2: predicted tag 'X' is not an IOB2 tag");
  const std::string few = Fixture("few.bio", "a\tO\tO\nb\tO\n");
  ExpectCliError({"score", "--task", "bc5cdr_chem", few, "--json"},
                 few + ":2: expected 3");

  const std::string bad_json =
      Fixture("bad.jsonl", "{\"gold\": \"yes\", \"pred\": \"yes\"}\n{oops\n");
  ExpectCliError({"score", "--task", "pubmedqa", bad_json, "--json"},
                 bad_json + ":2: not a JSON object");
  const std::string tok = Fixture(
      "tok.jsonl",
      "{\"tokens\": [\"a\", \"b\"], \"gold\": [\"O\"], \"pred\": \"a\"}\n");
  ExpectCliError({"score", "--task", "ncbi_disease", tok, "--json"},
                 tok + ":1: 1 gold tags for 2 tokens");

  const std::string ext = Fixture("preds.xyz", "label\tpred\n");
  ExpectCliError({"score", "--task", "chemprot", ext}, "pass --format");
  ExpectCliError({"score", "--task", "nosuchtask", unknown},
                 "unknown task 'nosuchtask'");
  const auto usage =
      RunBioquant({"score", "--task", "chemprot", unknown, "--format", "csv"});
  EXPECT_EQ(usage.exit_code, 2);
}

TEST(ScoreLibrary, ErrorsAreThrownNotExited) {
  ScoreOptions o;
  EXPECT_THROW(ScoreFile(FindTask("chemprot"), Fixture("e.tsv", "\n\n"), o),
               Error);
  o.format = "conll3";
  EXPECT_THROW(
      ScoreFile(FindTask("chemprot"), Fixture("c.tsv", "a\tO\tO\n"), o), Error);
}

}  // namespace
}  // namespace bioquant
