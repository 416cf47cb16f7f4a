// McNemar, percentiles, flip rate, bootstrap draws: hand-computed values.
#include "tasks/stats.h"

#include <gtest/gtest.h>

#include <numeric>

#include "util/error.h"

namespace bioquant {
namespace {

std::vector<bool> Bits(const std::string& s) {
  std::vector<bool> r;
  for (char c : s) r.push_back(c == '1');
  return r;
}

TEST(McNemar, ExactBinomial) {
  // b = 0, c = 5: p = 2 * 0.5^5 = 0.0625.
  auto r = McNemarExact(Bits("0000011"), Bits("1111111"));
  EXPECT_EQ(r.only_a, 0);
  EXPECT_EQ(r.only_b, 5);
  EXPECT_DOUBLE_EQ(r.p_value, 0.0625);
  // b = 1, c = 9: p = 2 * (1 + 10) / 1024.
  r = McNemarExact(Bits("1000000000"), Bits("0111111111"));
  EXPECT_NEAR(r.p_value, 22.0 / 1024, 1e-12);
  // b = c = 3: capped at 1; no discordant pairs: 1.
  EXPECT_DOUBLE_EQ(McNemarExact(Bits("111000"), Bits("000111")).p_value, 1.0);
  EXPECT_DOUBLE_EQ(McNemarExact(Bits("1010"), Bits("1010")).p_value, 1.0);
  EXPECT_THROW(McNemarExact(Bits("1"), Bits("10")), Error);
}

TEST(McNemar, LargeCountsStayFinite) {
  std::vector<bool> a(3000, false), b(3000, false);
  for (int i = 0; i < 1400; ++i) a[i] = true;
  for (int i = 1400; i < 3000; ++i) b[i] = true;
  const double p = McNemarExact(a, b).p_value;
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 0.001);  // 1400 vs 1600 discordant: z = 3.65
}

TEST(Percentile, LinearInterpolation) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 0.025), 1.075);
  EXPECT_DOUBLE_EQ(Percentile(v, 1.0), 4);
  EXPECT_DOUBLE_EQ(Percentile({5}, 0.3), 5);
}

TEST(FlipRate, ShareOfChangedPredictions) {
  EXPECT_DOUBLE_EQ(FlipRate({"a", "b", "", "c"}, {"a", "c", "d", "c"}), 0.5);
  EXPECT_DOUBLE_EQ(FlipRate({}, {}), 0);
  EXPECT_THROW(FlipRate({"a"}, {}), Error);
}

TEST(BootstrapWeights, DeterministicDrawOfSizeN) {
  const auto w = BootstrapWeights(1, 3, 100);
  EXPECT_EQ(std::accumulate(w.begin(), w.end(), 0u), 100u);
  EXPECT_EQ(w, BootstrapWeights(1, 3, 100));
  EXPECT_NE(w, BootstrapWeights(1, 4, 100));
  EXPECT_NE(w, BootstrapWeights(2, 3, 100));
  // About 1 - 1/e of the units are drawn at least once.
  const auto big = BootstrapWeights(5, 0, 10000);
  const auto drawn =
      std::count_if(big.begin(), big.end(), [](uint32_t x) { return x > 0; });
  EXPECT_NEAR(drawn / 10000.0, 0.632, 0.02);
}

}  // namespace
}  // namespace bioquant
