#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/text.h"

namespace bioquant::tok {
namespace {

// The code point that ends just before byte `end`.
uint32_t PrevCodePoint(std::string_view s, size_t end, size_t* begin) {
  size_t p = end - 1;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  *begin = p;
  size_t q = p;
  return NextCodePoint(s, &q);
}

}  // namespace

void AddedTokenMatcher::Add(const AddedToken& t) {
  if (t.content.empty()) return;
  for (auto& old : tokens_) {
    if (old.content == t.content) {
      old = t;
      return;
    }
  }
  tokens_.push_back(t);
  auto& list = by_first_byte_[static_cast<unsigned char>(t.content[0])];
  list.push_back(static_cast<uint32_t>(tokens_.size() - 1));
  std::stable_sort(list.begin(), list.end(), [&](uint32_t a, uint32_t b) {
    return tokens_[a].content.size() > tokens_[b].content.size();
  });
}

std::vector<Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> out;
  size_t plain = 0;  // start of the pending ordinary text
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& cands = by_first_byte_[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (uint32_t i : cands) {
      const AddedToken& t = tokens_[i];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        size_t b;
        const size_t e = pos + t.content.size();
        if (pos > 0 && IsAlnum(PrevCodePoint(text, pos, &b))) continue;
        size_t q = e;
        if (e < text.size() && IsAlnum(NextCodePoint(text, &q))) continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      pos += 1;
      continue;
    }
    size_t b = pos, e = pos + hit->content.size();
    if (hit->lstrip) {
      size_t cb;
      while (b > plain && IsSpace(PrevCodePoint(text, b, &cb))) b = cb;
    }
    if (hit->rstrip) {
      size_t q = e;
      while (e < text.size() && IsSpace(NextCodePoint(text, &q))) e = q;
    }
    if (b > plain) out.push_back({plain, b, -1});
    out.push_back({b, e, hit->id});
    plain = pos = e;
  }
  if (plain < text.size()) out.push_back({plain, text.size(), -1});
  return out;
}

}  // namespace bioquant::tok
