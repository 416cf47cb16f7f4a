// Self-consistency: majority vote over n sampled answers (already parsed).
//
// Unparsed samples cast no vote; the vote is over the parsed samples.
//  * Single answer (RE, QA): the answer with the most votes; a tie goes to
//    the tied answer that appears in the earliest sample (first seen). No
//    parsed sample -> unparsed.
//  * Set-valued answers (multi-label, NER mentions): an item is in the voted
//    set when more than half of the parsed samples contain it (an exact half
//    is not enough, so there are no ties); items keep first-seen order.
//    NER mentions are compared after ASCII lower-casing and whitespace
//    collapsing; the first-seen spelling is kept. An empty voted set is a
//    valid answer ("no entities").
// The vote distribution (votes per answer/item, first-seen order) is kept
// for the store.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tasks/parse.h"

namespace bioquant {

struct VoteResult {
  Parsed answer;
  std::vector<std::pair<std::string, int>> distribution;
  int samples = 0;
  int parsed = 0;
};

VoteResult MajorityVote(const std::vector<Parsed>& samples);
VoteResult MajorityVoteSet(const std::vector<Parsed>& samples);

}  // namespace bioquant
