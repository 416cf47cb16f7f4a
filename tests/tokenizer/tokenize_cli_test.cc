// `bioquant tokenize`: flags, JSON shape, exit codes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

using nlohmann::json;
using testing::RunBioquant;

std::string TokDir(const std::string& sub) {
  return testing::OracleDir() + "/tokenizers/" + sub;
}

TEST(TokenizeCli, JsonHasIdsPiecesAndDecodedText) {
  BIOQUANT_REQUIRE_SHARED();
  const auto r = RunBioquant({"tokenize", "--model", TokDir("derived/llama3"),
                              "--text", "Hello world", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("ids"), json({128000, 9906, 1917}));
  EXPECT_EQ(j.at("pieces"),
            json({"<|begin_of_text|>", "Hello", "\xC4\xA0world"}));
  EXPECT_EQ(j.at("decoded"), "<|begin_of_text|>Hello world");
  EXPECT_EQ(j.size(), 3u);
}

TEST(TokenizeCli, NoSpecialAndPlainOutput) {
  BIOQUANT_REQUIRE_SHARED();
  auto r = RunBioquant({"tokenize", "--model", TokDir("derived/llama3"),
                        "--text", "Hello world", "--no-special"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "9906 1917\n");
  // Special tokens written in the text still match.
  r = RunBioquant({"tokenize", "--model", TokDir("derived/qwen2"), "--text",
                   "<|im_start|>user", "--no-special"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "151644 872\n");
}

// A folder with only tokenizer.model (no config.json, no weights) works;
// --text-file reads the text verbatim.
TEST(TokenizeCli, TextFileAndSentencePieceOnlyFolder) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string dir = testing::TempDir("cli_spm");
  std::filesystem::copy_file(TokDir("llama-2/tokenizer.model"),
                             dir + "/tokenizer.model");
  WriteFile(dir + "/text.txt", "Hello world");
  const auto r = RunBioquant(
      {"tokenize", "--model", dir, "--text-file", dir + "/text.txt", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("ids"),
            json({1, 15043, 3186}));  // BOS + llama-spm "Hello world"
  EXPECT_EQ(j.at("pieces"), json({"<s>", "\u2581Hello", "\u2581world"}));
  EXPECT_EQ(j.at("decoded"), "<s> Hello world");
}

TEST(TokenizeCli, JsonlIsOneObjectPerLineEachAsTextGivesIt) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string tok = TokDir("derived/llama3");
  const std::string lines = testing::TempDir("jsonl") + "/texts.jsonl";
  WriteFile(lines, "\"Hello world\"\n\"line\\nbreak \\u00e9\"\n\n\"\"\n");
  const auto r = RunBioquant({"tokenize", "--model", tok, "--jsonl", lines});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> per_line;
  for (size_t a = 0, b; (b = r.out.find('\n', a)) != std::string::npos;
       a = b + 1)
    per_line.push_back(json::parse(r.out.substr(a, b - a)));
  ASSERT_EQ(per_line.size(), 3u);  // blank lines are skipped
  EXPECT_EQ(per_line[0].at("ids"), json({128000, 9906, 1917}));
  const auto one = RunBioquant(
      {"tokenize", "--model", tok, "--text", "line\nbreak \u00e9", "--json"});
  EXPECT_EQ(per_line[1], json::parse(one.out));
  EXPECT_EQ(per_line[2].at("ids"), json({128000}));
  // --no-special applies to every line.
  const auto ns = RunBioquant(
      {"tokenize", "--model", tok, "--jsonl", lines, "--no-special"});
  ASSERT_EQ(ns.exit_code, 0) << ns.err;
  EXPECT_EQ(json::parse(ns.out.substr(0, ns.out.find('\n'))).at("ids"),
            json({9906, 1917}));
  // A line that is not a JSON string names the file and the line.
  WriteFile(lines, "\"ok\"\n42\n");
  const auto bad = RunBioquant({"tokenize", "--model", tok, "--jsonl", lines});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("line 2"), std::string::npos) << bad.err;
  EXPECT_NE(
      RunBioquant({"tokenize", "--model", tok, "--jsonl", lines, "--text", "x"})
          .exit_code,
      0);
}

TEST(TokenizeCli, ErrorsAndUsage) {
  const std::string dir = testing::TempDir("cli_bad");
  WriteFile(dir + "/tokenizer.json", "{ not json");
  auto r = RunBioquant({"tokenize", "--model", dir, "--text", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir + "/tokenizer.json"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");

  r = RunBioquant({"tokenize", "--model", dir + "/missing", "--text", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir + "/missing"), std::string::npos) << r.err;

  r = RunBioquant({"tokenize", "--model", dir});  // no text
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--text"), std::string::npos) << r.err;
  r = RunBioquant(
      {"tokenize", "--model", dir, "--text", "a", "--text-file", "b"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = RunBioquant({"tokenize", "--text", "a"});  // no --model
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = RunBioquant(
      {"tokenize", "--model", dir, "--text-file", dir + "/nope.txt"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nope.txt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace bioquant
