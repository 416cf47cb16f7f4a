#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <queue>

#include "tokenizer/text.h"
#include "util/error.h"

namespace bioquant::tok {
namespace {

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
         static_cast<uint32_t>(b);
}

bool OptBool(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model, const std::string& file) {
  for (auto& b : byte_ids_) b = -1;
  const auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) {
    Fail("{}: model.vocab is missing or not an object", file);
  }
  vocab_.reserve(vit->size());
  for (const auto& [piece, id] : vit->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > INT32_MAX) {
      Fail("{}: model.vocab[{:?}] is not a non-negative integer id", file,
           piece);
    }
    const auto i = id.get<int32_t>();
    vocab_.emplace(piece, i);
    max_id_ = std::max(max_id_, i);
  }

  const auto mit = model.find("merges");
  if (mit != model.end() && !mit->is_null()) {
    if (!mit->is_array()) Fail("{}: model.merges is not a list", file);
    merges_.reserve(mit->size());
    int32_t rank = 0;
    std::string a, b;
    for (const auto& m : *mit) {
      // Merges are "a b" strings (older files) or ["a", "b"] pairs (newer
      // files, which allow spaces inside tokens).
      if (m.is_string()) {
        const auto& s = m.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) {
          Fail("{}: model.merges[{}] {:?} is not \"a b\"", file, rank, s);
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
                 m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        Fail("{}: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", file,
             rank);
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b);
      const auto iab = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || iab == vocab_.end()) {
        Fail("{}: model.merges[{}] ({:?}, {:?}) uses a token not in the vocab",
             file, rank, a, b);
      }
      // Like HF, a repeated pair keeps its last rank.
      merges_.insert_or_assign(PairKey(ia->second, ib->second),
                               MergeInfo{rank, iab->second});
      ++rank;
    }
  }

  const auto uit = model.find("unk_token");
  if (uit != model.end() && uit->is_string()) {
    const auto it = vocab_.find(uit->get<std::string>());
    if (it == vocab_.end()) {
      Fail("{}: model.unk_token {:?} is not in the vocab", file,
           uit->get<std::string>());
    }
    unk_id_ = it->second;
  }
  byte_fallback_ = OptBool(model, "byte_fallback");
  fuse_unk_ = OptBool(model, "fuse_unk");
  ignore_merges_ = OptBool(model, "ignore_merges");
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    if (it != vocab_.end()) byte_ids_[b] = it->second;
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && it->is_string() &&
        !it->get<std::string>().empty()) {
      Fail("{}: model.{} {:?} is not supported", file, key,
           it->get<std::string>());
    }
  }
  const auto dit = model.find("dropout");
  if (dit != model.end() && dit->is_number() && dit->get<double>() > 0) {
    Fail("{}: model.dropout {} is not supported (inference needs none)", file,
         dit->get<double>());
  }
}

void BpeModel::Tokenize(std::string_view word,
                        std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  Merge(word, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheMax) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

void BpeModel::Merge(std::string_view word, std::vector<int32_t>* out) const {
  // Symbols form a doubly linked list over the word; a merged-away symbol
  // gets id -1.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1});
  };
  // Initial symbols: one per character, as in HF's merge_word.
  int32_t pending_unk = -1;  // HF holds an unk back to fuse it with the next
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t len = std::min(Utf8SeqLen(word[pos]), word.size() - pos);
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    const auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch)
        all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch) add(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = unk_id_;
    }
    // No unk token: HF drops the character.
  }
  if (pending_unk >= 0) add(pending_unk);
  if (syms.empty()) return;
  syms.back().next = -1;

  // Min-heap on (rank, position): the lowest-ranked pair merges first, the
  // leftmost among equals. Entries go stale when a neighbour merges; they are
  // recognised by the pair no longer producing the same id.
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto push = [&](int32_t p) {
    const int32_t n = syms[p].next;
    if (n < 0) return;
    const auto it = merges_.find(PairKey(syms[p].id, syms[n].id));
    if (it != merges_.end()) heap.push({it->second.rank, p, it->second.id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Symbol& s = syms[c.pos];
    if (s.id < 0 || s.next < 0) continue;
    const int32_t n = s.next;
    const auto it = merges_.find(PairKey(s.id, syms[n].id));
    if (it == merges_.end() || it->second.id != c.id) continue;
    s.id = c.id;
    s.next = syms[n].next;
    syms[n].id = -1;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    if (s.prev >= 0) push(s.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
}

}  // namespace bioquant::tok
