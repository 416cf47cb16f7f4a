// Prefix reuse: the KV caches of recent prompts, kept so that a prompt that
// starts like one of them (shared instructions, few-shot demonstrations, a
// chat template's system turn) computes only the tokens after the common
// prefix. Keys and values at position p depend only on tokens 0..p, so a
// copied prefix is exactly what prefilling it again would give, and the
// rest of the prompt gets the same bits as in a full prefill as long as
// MatMul's per-output arithmetic does not depend on how many rows it is
// given (tests/model/decoder_batch_test.cc checks it per precision).
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <vector>

#include "model/decoder.h"

namespace bioquant {

class PrefixCache {
 public:
  // Entries are evicted, least recently used first, to keep bytes() <=
  // budget_bytes; 0 keeps nothing.
  explicit PrefixCache(uint64_t budget_bytes) : budget_(budget_bytes) {}

  // Finds the entry sharing the longest token prefix with `prompt`, makes
  // *out hold that many positions of it and returns the count. At most
  // prompt.size() - 1: the last prompt token is always computed again,
  // because its logits start generation. 0 (and *out untouched) when nothing
  // matches.
  int64_t Lookup(std::span<const int32_t> prompt, KVCache* out);

  // Offers the KV of `prompt` (cache.length >= prompt.size(); the first
  // prompt.size() positions are kept, as a compact copy). Entries that are a
  // prefix of `prompt` are dropped (it serves every lookup they would); a
  // prompt already held as a prefix of an entry only refreshes that entry.
  // A prompt whose KV alone exceeds the budget is not kept.
  void Insert(std::span<const int32_t> prompt, const KVCache& cache);

  void Clear() {
    entries_.clear();
    bytes_ = 0;
  }
  uint64_t bytes() const { return bytes_; }
  uint64_t budget() const { return budget_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::vector<int32_t> tokens;  // the prompt; kv.length == tokens.size()
    KVCache kv;
    uint64_t Bytes() const { return kv.Bytes() + tokens.size() * 4; }
  };
  uint64_t budget_;
  uint64_t bytes_ = 0;
  std::list<Entry> entries_;  // most recently used first
};

}  // namespace bioquant
