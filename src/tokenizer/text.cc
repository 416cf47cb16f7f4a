#include "tokenizer/text.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <array>
#include <vector>

#include "util/error.h"

namespace bioquant::tok {
namespace {

constexpr uint32_t kReplacement = 0xFFFD;

// Length of the valid UTF-8 sequence at s[pos], or 0 if invalid; *bad_len
// gets the length of the maximal invalid subpart (>= 1) so that, like
// from_utf8_lossy, one U+FFFD replaces it.
size_t ValidSeqLen(std::string_view s, size_t pos, size_t* bad_len) {
  const auto c = static_cast<unsigned char>(s[pos]);
  *bad_len = 1;
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    if (pos + k >= s.size()) {
      *bad_len = k;
      return 0;
    }
    const auto d = static_cast<unsigned char>(s[pos + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (d < l || d > h) {
      *bad_len = k;
      return 0;
    }
  }
  return n;
}

struct ByteMaps {
  std::array<std::string, 256> to_unicode;
  std::vector<int> to_byte;  // indexed by code point < 0x200
  ByteMaps() : to_byte(0x200, -1) {
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') ||
                             (b >= 0xA1 && b <= 0xAC) ||
                             (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? b : 0x100 + next++;
      AppendUtf8(cp, &to_unicode[b]);
      to_byte[cp] = b;
    }
  }
};

const ByteMaps& Maps() {
  static const ByteMaps maps;
  return maps;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

uint32_t NextCodePoint(std::string_view s, size_t* pos) {
  size_t bad;
  const size_t n = ValidSeqLen(s, *pos, &bad);
  if (n == 0) {
    *pos += 1;
    return kReplacement;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(s.data() + *pos);
  *pos += n;
  switch (n) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) |
             ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  size_t pos = 0, copied = 0;
  while (pos < s.size()) {
    size_t bad;
    const size_t n = ValidSeqLen(s, pos, &bad);
    if (n > 0) {
      pos += n;
      continue;
    }
    if (out.empty()) out.reserve(s.size() + 8);
    out.append(s.substr(copied, pos - copied));
    AppendUtf8(kReplacement, &out);
    pos += bad;
    copied = pos;
  }
  if (copied == 0) return std::string(s);
  out.append(s.substr(copied));
  return out;
}

const std::string& ByteToUnicode(unsigned char b) {
  return Maps().to_unicode[b];
}

int UnicodeToByte(uint32_t cp) {
  const auto& m = Maps().to_byte;
  return cp < m.size() ? m[cp] : -1;
}

std::string Normalize(std::string_view s, NormalForm form) {
  if (IsAscii(s)) return std::string(s);  // ASCII is invariant under NF*
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = nullptr;
  switch (form) {
    case NormalForm::kNfc:
      norm = icu::Normalizer2::getNFCInstance(status);
      break;
    case NormalForm::kNfd:
      norm = icu::Normalizer2::getNFDInstance(status);
      break;
    case NormalForm::kNfkc:
      norm = icu::Normalizer2::getNFKCInstance(status);
      break;
    case NormalForm::kNfkd:
      norm = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  if (U_FAILURE(status))
    Fail("ICU normalizer unavailable: {}", u_errorName(status));
  const icu::UnicodeString in = icu::UnicodeString::fromUTF8(
      icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  const icu::UnicodeString res = norm->normalize(in, status);
  if (U_FAILURE(status))
    Fail("ICU normalization failed: {}", u_errorName(status));
  std::string out;
  res.toUTF8String(out);
  return out;
}

std::string Lowercase(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(
      icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  u.toLower(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}

bool IsSpace(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

bool IsAlnum(uint32_t cp) { return u_isalnum(static_cast<UChar32>(cp)); }

}  // namespace bioquant::tok
