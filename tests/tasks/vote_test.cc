// Self-consistency voting: majorities, ties, unparsed samples.
#include "tasks/vote.h"

#include <gtest/gtest.h>

namespace bioquant {
namespace {

Parsed P(std::vector<std::string> labels) {
  Parsed p;
  p.ok = true;
  p.labels = std::move(labels);
  return p;
}

Parsed U() {
  Parsed p;
  p.reason = "refusal";
  return p;
}

using Dist = std::vector<std::pair<std::string, int>>;

TEST(Vote, MajorityKeepsDistribution) {
  const auto r = MajorityVote({P({"CPR:4"}), P({"CPR:3"}), P({"CPR:4"})});
  ASSERT_TRUE(r.answer.ok);
  EXPECT_EQ(r.answer.labels, std::vector<std::string>{"CPR:4"});
  EXPECT_EQ(r.distribution, (Dist{{"CPR:4", 2}, {"CPR:3", 1}}));
  EXPECT_EQ(r.samples, 3);
  EXPECT_EQ(r.parsed, 3);
}

TEST(Vote, TieGoesToFirstSeen) {
  EXPECT_EQ(
      MajorityVote({P({"CPR:3"}), P({"CPR:4"}), P({"CPR:4"}), P({"CPR:3"})})
          .answer.labels,
      std::vector<std::string>{"CPR:3"});
  EXPECT_EQ(MajorityVote({U(), P({"B"}), P({"A"})}).answer.labels,
            std::vector<std::string>{"B"});
}

TEST(Vote, UnparsedSamplesDoNotVote) {
  const auto r = MajorityVote({P({"A"}), U(), U()});
  EXPECT_TRUE(r.answer.ok);
  EXPECT_EQ(r.answer.labels, std::vector<std::string>{"A"});
  EXPECT_EQ(r.parsed, 1);
  const auto none = MajorityVote({U(), U()});
  EXPECT_FALSE(none.answer.ok);
  EXPECT_FALSE(none.answer.reason.empty());
}

TEST(VoteSet, MoreThanHalfNoTies) {
  // aspirin 3/4 in; warfarin 2/4 is exactly half: out.
  const auto r = MajorityVoteSet({P({"aspirin", "warfarin"}), P({"Aspirin"}),
                                  P({"aspirin"}), P({"warfarin"})});
  EXPECT_EQ(r.answer.labels, std::vector<std::string>{"aspirin"});
  EXPECT_EQ(r.distribution, (Dist{{"aspirin", 3}, {"warfarin", 2}}));
}

TEST(VoteSet, LabelSetsAndEmptyAnswers) {
  const auto r =
      MajorityVoteSet({P({"Treatment", "Diagnosis"}), P({"Treatment"}),
                       P({"Diagnosis", "Treatment"}), U()});
  EXPECT_EQ(r.answer.labels,
            (std::vector<std::string>{"Treatment", "Diagnosis"}));
  const auto empty = MajorityVoteSet({P({}), P({}), P({"x"})});
  EXPECT_TRUE(empty.answer.ok);
  EXPECT_TRUE(empty.answer.labels.empty());
  // A sample naming an item twice votes once.
  EXPECT_TRUE(
      MajorityVoteSet({P({"x", "x"}), P({}), P({})}).answer.labels.empty());
  EXPECT_FALSE(MajorityVoteSet({U()}).answer.ok);
}

}  // namespace
}  // namespace bioquant
