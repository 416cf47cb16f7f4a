// Text <-> token ids for Hugging Face checkpoints (STYLE habit 10: a small
// header; PCRE2, ICU and sentencepiece stay inside tokenizer/*.cc).
//
// Supported: tokenizer.json with a BPE model, either byte-level (Llama-3,
// Qwen2: Split regex + ByteLevel, NFC, ignore_merges) or SentencePiece-style
// (Llama-2, Mistral: Prepend/Replace normalizer or Metaspace, byte fallback,
// fuse_unk); tokenizer.model through libsentencepiece when there is no
// tokenizer.json. Anything else is rejected with an Error naming the file and
// the component.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bioquant {

class Tokenizer {
 public:
  // dir holds tokenizer.json (preferred), tokenizer.model, or vocab.json +
  // merges.txt, plus optional tokenizer_config.json and
  // special_tokens_map.json.
  static std::unique_ptr<Tokenizer> Load(const std::string& dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: add BOS/EOS as tokenizer_config.json says (add_bos_token /
  // add_eos_token), else as tokenizer.json's TemplateProcessing says.
  // Added/special tokens written in the text are always matched (like HF with
  // split_special_tokens=False). Invalid UTF-8 bytes become U+FFFD.
  // Thread-safe.
  std::vector<int32_t> Encode(std::string_view text,
                              bool add_special = true) const;
  // Ids outside [0, vocab_size()) throw Error.
  std::string Decode(const std::vector<int32_t>& ids,
                     bool skip_special = false) const;
  std::string Piece(int32_t id) const;  // the vocab string of an id
  int32_t vocab_size() const;           // highest id + 1, added tokens included
  int32_t bos_id() const;               // -1 when none
  int32_t eos_id() const;               // -1 when none
  std::string bos_token() const;        // "" when none
  std::string eos_token() const;
  // From tokenizer_config.json ("" if none); a list of {name, template} gives
  // the one named "default".
  std::string chat_template() const;
  bool IsSpecial(int32_t id) const;
  // The ids Encode(..., true) puts before / after the text.
  const std::vector<int32_t>& prefix_ids() const;
  const std::vector<int32_t>& suffix_ids() const;
  // "tokenizer.json", "tokenizer.model" or "vocab.json+merges.txt".
  std::string source() const;
  // tokenizer_config.json's clean_up_tokenization_spaces (false if absent).
  // Decode never applies it; callers that must match transformers' decode()
  // pass the text through CleanUpTokenizationSpaces when this is true.
  bool clean_up_tokenization_spaces() const;
  // transformers' clean_up_tokenization: " ." -> ".", " n't" -> "n't", ...
  static std::string CleanUpTokenizationSpaces(std::string text);

  // UTF-8 safe incremental decoding for streaming generation: Push returns
  // only text whose bytes are complete; concatenating every Push and the
  // final Flush equals Decode(all ids).
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& t, bool skip_special = false);
    std::string Push(int32_t id);
    std::string Flush();

   private:
    const Tokenizer& tok_;
    bool skip_special_;
    std::vector<int32_t> ids_;  // window: ids_[0, prefix_index_) were emitted
    std::string prefix_;        // Decode(ids_[0, prefix_index_)) as emitted
    size_t prefix_index_ = 0;
  };

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bioquant
