// tokenizer.json's normalizer, pre_tokenizer and decoder components, parsed
// into flat step lists (a "Sequence" is flattened). Internal header.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/text.h"

namespace bioquant::tok {

// Applies to each text segment between added tokens.
class Normalizer {
 public:
  // j may be null (no normalizer). Errors name `file` and the component.
  Normalizer(const nlohmann::json& j, const std::string& file);
  std::string Apply(std::string s) const;
  bool empty() const { return steps_.empty(); }

 private:
  struct Step {
    enum Kind { kForm, kPrepend, kReplace, kLowercase, kStrip } kind;
    NormalForm form = NormalForm::kNfc;
    std::string a, b;  // Prepend: a; Replace: a -> b (literal unless re)
    std::shared_ptr<Regex> re;
    bool left = false, right = false;  // Strip
  };
  void Add(const nlohmann::json& j, const std::string& file);
  std::vector<Step> steps_;
};

// Splits a normalized segment into words for the model.
class PreTokenizer {
 public:
  PreTokenizer(const nlohmann::json& j, const std::string& file);
  // at_start: the segment begins the text (Metaspace prepend_scheme "first").
  std::vector<std::string> Apply(std::string s, bool at_start) const;

 private:
  enum class Behavior {
    kRemoved,
    kIsolated,
    kMergedWithPrevious,
    kMergedWithNext,
    kContiguous
  };
  struct Step {
    enum Kind { kSplit, kByteLevel, kMetaspace, kDigits } kind;
    std::shared_ptr<Regex> re;  // Split (a String pattern is escaped)
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;  // ByteLevel
    std::string replacement;        // Metaspace
    enum Prepend { kAlways, kNever, kFirst } prepend = kAlways;
    bool split = true;  // Metaspace
  };
  void Add(const nlohmann::json& j, const std::string& file);
  static void Split(const std::string& s,
                    const std::vector<std::pair<size_t, size_t>>& matches,
                    Behavior behavior, bool invert,
                    std::vector<std::string>* out);
  std::vector<Step> steps_;
};

// Turns the pieces of a list of ids back into text.
class Decoder {
 public:
  Decoder() = default;
  Decoder(const nlohmann::json& j, const std::string& file);
  // The chain HF uses for SentencePiece models (and we use for
  // tokenizer.model): Replace(U+2581 -> ' '), ByteFallback, Fuse, and
  // Strip(' ', 1, 0) when the model adds a dummy prefix.
  static Decoder SentencePiece(bool strip_leading_space);
  std::string Apply(std::vector<std::string> tokens) const;

 private:
  struct Step {
    enum Kind {
      kByteLevel,
      kReplace,
      kByteFallback,
      kFuse,
      kStrip,
      kMetaspace
    } kind;
    std::string a,
        b;  // Replace a -> b; Strip content a; Metaspace replacement a
    int start = 0, stop = 0;
    bool prepend = true;  // Metaspace: drop the replacement in the first token
  };
  void Add(const nlohmann::json& j, const std::string& file);
  std::vector<Step> steps_;
  bool none_ = true;  // no decoder: HF joins tokens with spaces
};

}  // namespace bioquant::tok
