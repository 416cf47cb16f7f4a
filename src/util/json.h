// JSON parsing with a nesting bound. Every JSON bioquant reads comes from a
// file, a server or a client it does not control; nlohmann's parser itself
// is iterative, but dump(), comparisons and our own walkers recurse, so a
// document nested 100,000 deep could overflow the stack. No real config,
// tokenizer, score file or request is nested more than a dozen levels.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace bioquant {

inline constexpr int kMaxJsonDepth = 512;

// The byte offset at which `text` opens its (max_depth + 1)-th nested array
// or object (strings and escapes skipped), or npos when it never does.
size_t JsonDepthExceededAt(std::string_view text,
                           int max_depth = kMaxJsonDepth);

// nlohmann's parse, refusing nesting deeper than kMaxJsonDepth: a
// json::parse_error naming the byte (or, without exceptions, a discarded
// value), so callers' existing error paths report it.
template <class J = nlohmann::json>
J ParseJson(std::string_view text, bool allow_exceptions = true) {
  const size_t at = JsonDepthExceededAt(text);
  if (at != std::string_view::npos) {
    if (!allow_exceptions) return J(J::value_t::discarded);
    throw nlohmann::json::parse_error::create(
        101, at + 1,
        "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels",
        nullptr);
  }
  return J::parse(text, nullptr, allow_exceptions);
}

// What a nlohmann exception says after its "[json.exception…] … at …: "
// prefix (e.g. "syntax error while parsing value - …" or the depth bound).
std::string JsonErrorReason(const nlohmann::json::exception& e);

// "at byte N (reason)" for a parse error, "(reason)" for another of the
// parser's exceptions (a number too large for its type is out_of_range).
std::string JsonErrorWhere(const nlohmann::json::exception& e);

}  // namespace bioquant
