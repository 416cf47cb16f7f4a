// Added and special tokens, found in the raw text before normalization and
// BPE (HF's AddedVocabulary with split_special_tokens=False). Internal header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bioquant::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches outside words
};

// A piece of text: either an added token or a stretch of ordinary text.
struct Segment {
  size_t begin = 0, end = 0;  // byte range in the text (ordinary text)
  int32_t id = -1;            // >= 0 for an added token
};

class AddedTokenMatcher {
 public:
  void Add(const AddedToken& t);  // a later token with the same content wins
  // Splits text at leftmost-longest matches.
  std::vector<Segment> Split(std::string_view text) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // Token indices by first byte, longest content first.
  std::vector<std::vector<uint32_t>> by_first_byte_ =
      std::vector<std::vector<uint32_t>>(256);
};

}  // namespace bioquant::tok
