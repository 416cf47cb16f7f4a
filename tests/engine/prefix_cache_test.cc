// PrefixCache on hand-made KV caches (no model): longest-prefix lookup with
// the last prompt token left to compute, exact copies, LRU eviction inside
// the byte budget, dominated entries dropped.
#include "engine/prefix_cache.h"

#include <gtest/gtest.h>

#include <vector>

namespace bioquant {
namespace {

constexpr int64_t kLayers = 2, kDim = 4;

// A cache whose value at (layer, position, i) encodes all three, for the
// tokens `ids` (position p's value also encodes ids[p], so caches of
// different prompts differ where their tokens do).
KVCache MakeCache(const std::vector<int32_t>& ids) {
  KVCache c;
  c.Init(kLayers, kDim);
  c.Reserve(ids.size());
  for (int64_t l = 0; l < kLayers; ++l) {
    for (size_t p = 0; p < ids.size(); ++p) {
      for (int64_t i = 0; i < kDim; ++i) {
        c.k[l][p * kDim + i] = 1000.0f * ids[p] + 100.0f * l + p + 0.1f * i;
        c.v[l][p * kDim + i] = -c.k[l][p * kDim + i];
      }
    }
  }
  c.length = static_cast<int64_t>(ids.size());
  return c;
}

std::vector<int32_t> Seq(int32_t first, int n) {
  std::vector<int32_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = first + i;
  return v;
}

// Bytes one entry of n tokens takes (the cache keeps at least 64 positions).
uint64_t EntryBytes(int64_t n) {
  return 2ull * kLayers * std::max<int64_t>(n, 64) * kDim * 4 + n * 4;
}

TEST(PrefixCache, LongestPrefixLeavesLastTokenAndCopiesExactly) {
  PrefixCache pc(1 << 20);
  const auto a = Seq(10, 20);
  auto b = a;
  b.resize(12);
  b.push_back(999);  // shares 12 tokens with a
  pc.Insert(a, MakeCache(a));
  pc.Insert(b, MakeCache(b));
  EXPECT_EQ(pc.size(), 2u);
  // A prompt that extends a: all of a reused.
  auto q = a;
  q.push_back(5);
  q.push_back(6);
  KVCache out;
  out.Init(kLayers, kDim);
  EXPECT_EQ(pc.Lookup(q, &out), 20);
  ASSERT_EQ(out.length, 20);
  const KVCache want = MakeCache(a);
  for (int64_t l = 0; l < kLayers; ++l) {
    for (int64_t i = 0; i < 20 * kDim; ++i) {
      ASSERT_EQ(out.k[l][i], want.k[l][i]);
      ASSERT_EQ(out.v[l][i], want.v[l][i]);
    }
  }
  // a itself: the last token is left to compute.
  EXPECT_EQ(pc.Lookup(a, &out), 19);
  EXPECT_EQ(out.length, 19);
  // b's branch: 13 shared with b, 12 with a.
  auto r = b;
  r.push_back(7);
  EXPECT_EQ(pc.Lookup(r, &out), 13);
  EXPECT_EQ(out.k[0][12 * kDim], MakeCache(b).k[0][12 * kDim]);
  // Nothing shared, or a one-token prompt: nothing reused, out untouched.
  KVCache untouched;
  untouched.Init(kLayers, kDim);
  EXPECT_EQ(pc.Lookup(Seq(500, 8), &untouched), 0);
  EXPECT_EQ(pc.Lookup(std::vector<int32_t>{10}, &untouched), 0);
  EXPECT_EQ(untouched.length, 0);
  EXPECT_EQ(untouched.capacity, 0);
}

TEST(PrefixCache, EvictsLeastRecentlyUsedWithinBudget) {
  // Room for three 100-token entries, not four.
  const uint64_t budget = 3 * EntryBytes(100) + EntryBytes(100) / 2;
  PrefixCache pc(budget);
  const auto a = Seq(0, 100), b = Seq(1000, 100), c = Seq(2000, 100),
             d = Seq(3000, 100);
  pc.Insert(a, MakeCache(a));
  pc.Insert(b, MakeCache(b));
  pc.Insert(c, MakeCache(c));
  EXPECT_EQ(pc.size(), 3u);
  EXPECT_EQ(pc.bytes(), 3 * EntryBytes(100));
  // Using a makes b the least recently used one.
  KVCache out;
  out.Init(kLayers, kDim);
  EXPECT_EQ(pc.Lookup(a, &out), 99);
  pc.Insert(d, MakeCache(d));
  EXPECT_EQ(pc.size(), 3u);
  EXPECT_LE(pc.bytes(), budget);
  EXPECT_EQ(pc.Lookup(b, &out), 0) << "b should have been evicted";
  EXPECT_EQ(pc.Lookup(a, &out), 99);
  EXPECT_EQ(pc.Lookup(c, &out), 99);
  EXPECT_EQ(pc.Lookup(d, &out), 99);
  // One entry larger than the whole budget is not kept (and evicts nothing).
  const auto huge = Seq(5000, 400);
  pc.Insert(huge, MakeCache(huge));
  EXPECT_EQ(pc.size(), 3u);
  EXPECT_EQ(pc.Lookup(huge, &out), 0);
  EXPECT_LE(pc.bytes(), budget);
  // Budget 0 keeps nothing.
  PrefixCache off(0);
  off.Insert(a, MakeCache(a));
  EXPECT_EQ(off.size(), 0u);
  EXPECT_EQ(off.bytes(), 0u);
}

TEST(PrefixCache, DominatedEntriesAreReplaced) {
  PrefixCache pc(1 << 20);
  const auto a = Seq(0, 30);
  auto longer = a;
  for (int i = 0; i < 10; ++i) longer.push_back(700 + i);
  pc.Insert(a, MakeCache(a));
  pc.Insert(longer, MakeCache(longer));
  EXPECT_EQ(pc.size(), 1u) << "a is a prefix of the longer prompt";
  EXPECT_EQ(pc.bytes(), EntryBytes(40));
  // A prompt already held as a prefix of an entry adds nothing.
  pc.Insert(a, MakeCache(a));
  EXPECT_EQ(pc.size(), 1u);
  KVCache out;
  out.Init(kLayers, kDim);
  EXPECT_EQ(pc.Lookup(longer, &out), 39);
  pc.Clear();
  EXPECT_EQ(pc.size(), 0u);
  EXPECT_EQ(pc.bytes(), 0u);
}

}  // namespace
}  // namespace bioquant
