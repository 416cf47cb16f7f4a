#include "util/json.h"

namespace bioquant {

size_t JsonDepthExceededAt(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    }
  }
  return std::string_view::npos;
}

std::string JsonErrorReason(const nlohmann::json::exception& e) {
  std::string what = e.what();
  // "[json.exception.parse_error.101] parse error at line 1, column 2: why"
  // or "[json.exception.out_of_range.406] why".
  if (!what.empty() && what[0] == '[') {
    const size_t close = what.find("] ");
    if (close != std::string::npos) what = what.substr(close + 2);
  }
  if (what.rfind("parse error", 0) == 0) {
    const size_t colon = what.find(": ");
    if (colon != std::string::npos) what = what.substr(colon + 2);
  }
  return what;
}

std::string JsonErrorWhere(const nlohmann::json::exception& e) {
  if (const auto* pe = dynamic_cast<const nlohmann::json::parse_error*>(&e)) {
    return "at byte " + std::to_string(pe->byte) + " (" + JsonErrorReason(e) +
           ")";
  }
  return "(" + JsonErrorReason(e) + ")";
}

}  // namespace bioquant
