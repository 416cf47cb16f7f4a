// UTF-8 and Unicode helpers for the tokenizer (internal header).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bioquant::tok {

// Length of the UTF-8 sequence that starts with lead byte c (1 for a stray
// continuation byte, so loops always advance).
inline size_t Utf8SeqLen(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the code point at s[*pos] and advances *pos; invalid input gives
// U+FFFD and advances by one byte.
uint32_t NextCodePoint(std::string_view s, size_t* pos);
void AppendUtf8(uint32_t cp, std::string* out);

// Returns s with every invalid UTF-8 byte sequence replaced by U+FFFD (the
// regex engine and ICU need valid UTF-8; HF gets it from Rust's String).
std::string SanitizeUtf8(std::string_view s);

// Returns bytes as text: valid UTF-8 kept, each invalid byte (including an
// incomplete trailing sequence) replaced by U+FFFD, like
// String::from_utf8_lossy.
inline std::string Utf8Lossy(std::string_view bytes) {
  return SanitizeUtf8(bytes);
}

// GPT-2's byte <-> printable-character map used by ByteLevel pre-tokenizers
// and decoders: printable Latin-1 bytes map to themselves, the other 68 to
// U+0100.. in byte order.
const std::string& ByteToUnicode(unsigned char b);  // UTF-8 of the character
int UnicodeToByte(uint32_t cp);                     // -1 if not in the map

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
std::string Normalize(std::string_view s, NormalForm form);
std::string Lowercase(std::string_view s);

// Unicode White_Space (for added-token lstrip/rstrip) and alphanumerics (for
// single_word).
bool IsSpace(uint32_t cp);
bool IsAlnum(uint32_t cp);

}  // namespace bioquant::tok
