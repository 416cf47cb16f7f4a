// Mention -> IOB2 mapping rule (ner_align.h), one property per test.
#include "tasks/ner_align.h"

#include <gtest/gtest.h>

namespace bioquant {
namespace {

using Tags = std::vector<std::string>;

TEST(NerAlign, MentionSpansSeveralTokensIgnoringWhitespace) {
  EXPECT_EQ(MentionsToIob2({"Mesna", "'", "s", "action"}, {"Mesna's"}),
            (Tags{"B", "I", "I", "O"}));
  EXPECT_EQ(MentionsToIob2({"2", ",", "4", "-", "D", "was"}, {"2, 4-D"}),
            (Tags{"B", "I", "I", "I", "I", "O"}));
}

TEST(NerAlign, LongestMentionFirstNoOverlap) {
  EXPECT_EQ(MentionsToIob2({"breast", "cancer", "and", "cancer"},
                           {"cancer", "breast cancer"}),
            (Tags{"B", "I", "O", "B"}));
  // Equal lengths: the first given wins, the overlapping one is skipped.
  EXPECT_EQ(MentionsToIob2({"a", "b", "c"}, {"a b", "b c"}),
            (Tags{"B", "I", "O"}));
}

TEST(NerAlign, EveryOccurrenceCaseInsensitive) {
  EXPECT_EQ(MentionsToIob2({"Aspirin", "and", "ASPIRIN", "."}, {"aspirin"}),
            (Tags{"B", "O", "B", "O"}));
}

TEST(NerAlign, NeverPartOfAToken) {
  EXPECT_EQ(MentionsToIob2({"aspirins", "help"}, {"aspirin"}),
            (Tags{"O", "O"}));
  EXPECT_EQ(
      MentionsToIob2({"low", "dose", "aspirin"}, {"dose aspirin tablets"}),
      (Tags{"O", "O", "O"}));
}

TEST(NerAlign, TypeSuffixAndEmptyInputs) {
  EXPECT_EQ(MentionsToIob2({"lithium", "salts"}, {"lithium"}, "Chemical"),
            (Tags{"B-Chemical", "O"}));
  EXPECT_EQ(MentionsToIob2({"x", "y"}, {}), (Tags{"O", "O"}));
  EXPECT_EQ(MentionsToIob2({"x", "y"}, {"  ", ""}), (Tags{"O", "O"}));
  EXPECT_TRUE(MentionsToIob2({}, {"x"}).empty());
}

}  // namespace
}  // namespace bioquant
