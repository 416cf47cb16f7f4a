// Parser for the Python literals (repr() of lists, dicts, strings, numbers,
// None/True/False) that PubMedQA's CONTEXTS and MedQA-5's options columns hold.
// The result is JSON: lists -> arrays, dicts -> objects (keys must be
// strings), tuples -> arrays, None -> null. Strings are decoded to UTF-8,
// including \xhh, \uhhhh and \Uhhhhhhhh escapes.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace bioquant {

// Throws Error("python literal, offset N: ...") on malformed input or
// trailing characters.
nlohmann::json ParsePyLiteral(std::string_view text);

}  // namespace bioquant
