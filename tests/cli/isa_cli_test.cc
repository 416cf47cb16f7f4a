// `bench --isa` and BIOQUANT_ISA: the JSON names the target really used.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include "testing.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

bool Available(const nlohmann::json& isa, const std::string& t) {
  for (const auto& a : isa["available"]) {
    if (a == t) return true;
  }
  return false;
}

TEST(IsaCli, BenchReportsTheTargetUsed) {
  const std::string d = testing::TempDir("isacli") + "/m";
  ASSERT_EQ(RunBioquant({"synth", "--preset", "tiny", "--out", d}).exit_code,
            0);
  auto native = RunBioquant({"bench", "--model", d, "-p", "4", "-n", "2", "-r",
                             "1", "--threads", "1", "--json"});
  ASSERT_EQ(native.exit_code, 0) << native.err;
  const auto nj = nlohmann::json::parse(native.out);
  EXPECT_EQ(nj["isa"]["requested"], "native");
  EXPECT_EQ(nj["isa"]["target"], nj["isa"]["available"][0]);

  auto scalar = RunBioquant({"bench", "--model", d, "-p", "4", "-n", "2", "-r",
                             "1", "--threads", "1", "--precision", "nf4",
                             "--isa", "scalar", "--json"});
  ASSERT_EQ(scalar.exit_code, 0) << scalar.err;
  const auto sj = nlohmann::json::parse(scalar.out);
  EXPECT_EQ(sj["isa"]["requested"], "scalar");
  EXPECT_TRUE(sj["isa"]["target"] == "EMU128" ||
              sj["isa"]["target"] == "SCALAR")
      << sj["isa"];

  if (Available(nj["isa"], "AVX2")) {
    setenv("BIOQUANT_ISA", "avx2", 1);
    auto env = RunBioquant({"bench", "--machine", "--threads", "1", "--json"});
    unsetenv("BIOQUANT_ISA");
    ASSERT_EQ(env.exit_code, 0) << env.err;
    EXPECT_EQ(nlohmann::json::parse(env.out)["isa"]["target"], "AVX2");
  }

  auto bad = RunBioquant({"bench", "--machine", "--isa", "neon9"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--isa"), std::string::npos) << bad.err;
  setenv("BIOQUANT_ISA", "bogus", 1);
  auto bad_env = RunBioquant({"bench", "--machine", "--threads", "1"});
  unsetenv("BIOQUANT_ISA");
  EXPECT_NE(bad_env.exit_code, 0);
  EXPECT_NE(bad_env.err.find("BIOQUANT_ISA"), std::string::npos) << bad_env.err;
}

}  // namespace
}  // namespace bioquant
