// What a tokenizer file provides to Tokenizer: an encoder for ordinary text
// (between added tokens), the id -> piece table, and the decoder chain.
// Internal header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/pipeline.h"

namespace bioquant::tok {

class SegmentEncoder {
 public:
  virtual ~SegmentEncoder() = default;
  // Appends the ids of text that holds no added token; at_start: the text
  // begins the whole input.
  virtual void Encode(std::string_view text, bool at_start,
                      std::vector<int32_t>* out) const = 0;
};

struct Backend {
  std::string file;  // path of the file it came from
  std::unique_ptr<SegmentEncoder> encoder;
  std::vector<std::string> pieces;  // id -> piece ("" for unused ids)
  std::vector<AddedToken> added;    // special/added tokens to match in text
  Decoder decoder;
  // From tokenizer.json's post_processor (TemplateProcessing etc.).
  bool has_template = false;
  std::vector<int32_t> template_prefix, template_suffix;
  // The model's own BOS/EOS (sentencepiece), -1 if unknown.
  int32_t model_bos = -1, model_eos = -1;
};

Backend LoadTokenizerJson(const std::string& path);
Backend LoadSentencePiece(const std::string& path);
// vocab.json + merges.txt in dir, for a config's tokenizer_class.
Backend LoadVocabMerges(const std::string& dir,
                        const std::string& tokenizer_class);

}  // namespace bioquant::tok
