// The BPE model of tokenizer.json ("model": {"type": "BPE"}): vocab, merges
// by rank, ignore_merges, byte_fallback, unk / fuse_unk. Internal header.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bioquant::tok {

// std::string keys looked up by string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return std::hash<std::string_view>{}(s);
  }
};
using Vocab =
    std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // model is tokenizer.json's "model" object; errors name `file`.
  BpeModel(const nlohmann::json& model, const std::string& file);

  // Appends the ids of one pre-tokenized word. Thread-safe (the word cache
  // is locked).
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t max_id() const { return max_id_; }

 private:
  void Merge(std::string_view word, std::vector<int32_t>* out) const;

  Vocab vocab_;
  int32_t max_id_ = -1;
  // (left id << 32 | right id) -> rank (lower merges first) and merged id.
  struct MergeInfo {
    int32_t rank;
    int32_t id;
  };
  std::unordered_map<uint64_t, MergeInfo> merges_;
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // id of "<0xXX>" for byte fallback, -1 if absent

  // Words seen before (HF caches the same way); bounded, cleared when full.
  static constexpr size_t kCacheMax = 1 << 18;
  static constexpr size_t kCacheMaxWordBytes = 64;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash,
                             std::equal_to<>>
      cache_;
};

}  // namespace bioquant::tok
