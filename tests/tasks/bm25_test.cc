#include "tasks/bm25.h"

#include <gtest/gtest.h>

namespace bioquant {
namespace {

TEST(Bm25Test, TokenizeLowersAndSplitsOnPunctuation) {
  EXPECT_EQ(
      Bm25Index::Tokenize("IL-6 levels, (p<0.01) Naïve"),
      (std::vector<std::string>{"il", "6", "levels", "p", "0", "01", "naïve"}));
  EXPECT_TRUE(Bm25Index::Tokenize(" ,;- ").empty());
}

// Values computed by hand: N = 3, average length 2, k1 = 1.5, b = 0.75,
// idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
TEST(Bm25Test, ScoresMatchTheFormula) {
  const Bm25Index index({"a b", "a c c", "d"});
  // "c": df = 1; doc 1 has tf = 2 and length 3.
  EXPECT_NEAR(index.Score("c", 1), 1.2071744652452017, 1e-12);
  EXPECT_EQ(index.Score("c", 0), 0.0);
  // "a": df = 2; doc 0 (length 2, tf 1), doc 1 (length 3, tf 1).
  EXPECT_NEAR(index.Score("A", 0), 0.4700036292457356, 1e-12);
  EXPECT_NEAR(index.Score("a", 1), 0.3836764320373352, 1e-12);
  // Query terms add up, repeated query terms count again.
  EXPECT_NEAR(index.Score("a c", 1), 0.3836764320373352 + 1.2071744652452017,
              1e-12);
  EXPECT_NEAR(index.Score("c c", 1), 2 * 1.2071744652452017, 1e-12);
}

TEST(Bm25Test, TopKOrdersByScoreThenIndex) {
  const Bm25Index index(
      {"x y", "aspirin dose", "z", "aspirin aspirin dose", "x y"});
  const auto top = index.TopK("aspirin", 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 3u);  // higher tf, a bit longer
  EXPECT_EQ(top[1].first, 1u);
  EXPECT_EQ(top[2].first, 0u);  // score 0: the earliest document
  EXPECT_GT(top[0].second, top[1].second);
  EXPECT_EQ(top[2].second, 0.0);
  EXPECT_EQ(index.TopK("aspirin", 10).size(), 5u);
  EXPECT_EQ(index.size(), 5u);
}

TEST(Bm25Test, EmptyCollection) {
  const Bm25Index index({});
  EXPECT_TRUE(index.TopK("a", 3).empty());
}

}  // namespace
}  // namespace bioquant
