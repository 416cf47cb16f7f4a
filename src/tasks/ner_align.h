// Maps NER mentions (from a list-style or inline-marked answer) back onto the
// gold tokens as IOB2 tags.
//
// The rule (documented in the README and stored with results):
//  * A mention matches a token span [i, j) when the span's tokens,
//    concatenated without separators, equal the mention with all whitespace
//    removed, compared after ASCII lower-casing. So "Mesna's" matches the
//    tokens "Mesna" "'" "s", and "2, 4-D" matches "2" "," "4" "-" "D"; a
//    mention never matches part of a token.
//  * Every occurrence of a mention is tagged (a model that names "aspirin"
//    once has found every "aspirin" in the sentence, as in Chen et al.).
//  * Mentions are placed longest first (by whitespace-free length; ties in
//    the order given); a span that overlaps an already tagged token is
//    skipped, so tags never overlap.
#pragma once

#include <string>
#include <vector>

namespace bioquant {

// IOB2 tags, one per token: "B", "I", "O", or "B-<type>"/"I-<type>" when
// `type` is non-empty.
std::vector<std::string> MentionsToIob2(
    const std::vector<std::string>& tokens,
    const std::vector<std::string>& mentions, const std::string& type = "");

}  // namespace bioquant
