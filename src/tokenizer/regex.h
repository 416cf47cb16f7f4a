// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available)
// behind a pimpl, so pcre2.h stays in regex.cc. Internal header.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bioquant::tok {

class Regex {
 public:
  // Throws Error("<what>: ...") naming the pattern when it does not compile.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping matches in s,
  // left to right; empty matches are skipped. s must be valid UTF-8.
  void FindAll(std::string_view s,
               std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bioquant::tok
