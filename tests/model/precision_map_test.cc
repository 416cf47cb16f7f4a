// The per-module precision map's syntax: glob and layer ranges, first match
// wins, and one-line errors for bad rules or files.
#include "model/precision_map.h"

#include <gtest/gtest.h>

#include <fstream>

#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

TEST(PrecisionMap, PatternsMatchGlobsAndLayerRanges) {
  EXPECT_TRUE(MatchModulePattern("*", "model.layers.0.mlp.up_proj"));
  EXPECT_TRUE(MatchModulePattern("model.layers.7.*",
                                 "model.layers.7.self_attn.q_proj"));
  EXPECT_FALSE(MatchModulePattern("model.layers.7.*",
                                  "model.layers.17.self_attn.q_proj"));
  EXPECT_TRUE(
      MatchModulePattern("model.layers.0-5.*", "model.layers.5.mlp.down_proj"));
  EXPECT_FALSE(
      MatchModulePattern("model.layers.0-5.*", "model.layers.6.mlp.down_proj"));
  // A range reads the whole number: 15 is not "1" followed by "5".
  EXPECT_FALSE(MatchModulePattern("model.layers.0-5.*",
                                  "model.layers.15.mlp.down_proj"));
  EXPECT_TRUE(MatchModulePattern("model.layers.10-21.*",
                                 "model.layers.15.mlp.down_proj"));
  EXPECT_TRUE(
      MatchModulePattern("*.mlp.down_proj", "model.layers.3.mlp.down_proj"));
  EXPECT_FALSE(
      MatchModulePattern("*.mlp.down_proj", "model.layers.3.mlp.up_proj"));
}

TEST(PrecisionMap, FirstMatchWins) {
  const PrecisionMap m = ParsePrecisionMap(
      "model.layers.7.*=bf16, model.layers.0-5.*=int8,*=nf4", "--x");
  ASSERT_EQ(m.rules.size(), 3u);
  EXPECT_EQ(m.Lookup("model.layers.7.mlp.up_proj"), "bf16");
  EXPECT_EQ(m.Lookup("model.layers.3.mlp.up_proj"), "int8");
  EXPECT_EQ(m.Lookup("model.layers.6.mlp.up_proj"), "nf4");
  EXPECT_EQ(m.ToString(),
            "model.layers.7.*=bf16,model.layers.0-5.*=int8,*=nf4");
  EXPECT_EQ(ParsePrecisionMap("*.q_proj=int8", "--x").Lookup("lm_head"), "");
}

TEST(PrecisionMap, BadRulesAreOneLineErrorsNamingTheSource) {
  auto err = [](const std::string& text) {
    try {
      ParsePrecisionMap(text, "--precision-map");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("*=nf5").find("--precision-map: line 1: unknown precision"),
            std::string::npos);
  EXPECT_NE(err("model.layers.7.*").find("is not PATTERN=PRECISION"),
            std::string::npos);
  EXPECT_NE(err("*=llm-int8").find("whole model"), std::string::npos);
  EXPECT_NE(err("model.layers.5-2.*=int8").find("empty layer range"),
            std::string::npos);
  EXPECT_NE(err(" , ").find("no PATTERN=PRECISION"), std::string::npos);
}

TEST(PrecisionMap, ReadsAFileWithCommentsAndNamesItInErrors) {
  const std::string dir = testing::TempDir("pmap");
  const std::string f = dir + "/map.txt";
  std::ofstream(f) << "# mixed plan\nmodel.layers.1.*=bf16\n*=nf4\n";
  const PrecisionMap m = LoadPrecisionMap(f);
  EXPECT_EQ(m.ToString(), "model.layers.1.*=bf16,*=nf4");
  EXPECT_EQ(LoadPrecisionMap("@" + f).rules.size(), 2u);
  std::ofstream(f) << "*=nf4\nbogus\n";
  try {
    LoadPrecisionMap(f);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(f + ": line 2"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(LoadPrecisionMap(dir + "/missing.txt"), Error);
}

}  // namespace
}  // namespace bioquant
