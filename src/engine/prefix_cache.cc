#include "engine/prefix_cache.h"

#include <algorithm>

namespace bioquant {
namespace {

int64_t CommonPrefix(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  return std::mismatch(a.begin(), a.begin() + n, b.begin()).first - a.begin();
}

}  // namespace

int64_t PrefixCache::Lookup(std::span<const int32_t> prompt, KVCache* out) {
  const int64_t usable = static_cast<int64_t>(prompt.size()) - 1;
  auto best = entries_.end();
  int64_t best_len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const int64_t len = std::min(CommonPrefix(it->tokens, prompt), usable);
    if (len > best_len) {
      best = it;
      best_len = len;
    }
  }
  if (best_len == 0) return 0;
  out->AssignPrefix(best->kv, best_len);
  entries_.splice(entries_.begin(), entries_, best);
  return best_len;
}

void PrefixCache::Insert(std::span<const int32_t> prompt,
                         const KVCache& cache) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) return;
  // The positions alone (before the cache's allocation granularity).
  if (2ull * cache.num_layers * n * cache.kv_dim * 4 > budget_) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const int64_t common = CommonPrefix(it->tokens, prompt);
    if (common == n) {  // already held (as this entry or a prefix of it)
      entries_.splice(entries_.begin(), entries_, it);
      return;
    }
    if (common == static_cast<int64_t>(it->tokens.size())) {
      bytes_ -= it->Bytes();
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  Entry e;
  e.tokens.assign(prompt.begin(), prompt.end());
  e.kv.Init(cache.num_layers, cache.kv_dim);
  e.kv.AssignPrefix(cache, n);
  const uint64_t b = e.Bytes();
  if (b > budget_) return;
  while (bytes_ + b > budget_) {
    bytes_ -= entries_.back().Bytes();
    entries_.pop_back();
  }
  bytes_ += b;
  entries_.push_front(std::move(e));
}

}  // namespace bioquant
