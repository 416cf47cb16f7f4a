// One fuzz target per input format bioquant reads (fuzz/*_fuzz.cc). Each file
// is built two ways:
//  - with clang's libFuzzer (cmake -DBIOQUANT_FUZZ=ON, scripts/fuzz.sh): one
//    executable per target, defining LLVMFuzzerTestOneInput;
//  - into the normal test suite (tests/fuzz/replay_test.cc), where every file
//    of fuzz/corpus/<target>/ (seeds) and fuzz/regressions/<target>/ (every
//    crash ever found) is fed to the target under gtest.
// A target must return normally or throw bioquant::Error (a clean one-line
// rejection); anything else — a crash, a sanitizer report, another exception —
// is a bug.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "util/error.h"

namespace bioquant::fuzz {

using TargetFn = int (*)(const uint8_t*, size_t);

inline std::map<std::string, TargetFn>& Registry() {
  static std::map<std::string, TargetFn> r;
  return r;
}
inline bool Register(const char* name, TargetFn fn) {
  Registry()[name] = fn;
  return true;
}

// Runs f; a bioquant::Error is the expected way to refuse bad input.
template <class F>
void Rejects(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

// A private scratch folder of this process (made once), for readers that
// take paths.
std::string ScratchDir();
// Writes bytes to ScratchDir()/name and returns the path.
std::string WriteScratch(const std::string& name, std::string_view bytes);

// Splits input at the first NUL byte: (before, after); after is empty when
// there is none.
inline std::pair<std::string_view, std::string_view> SplitAtNul(
    const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  const size_t z = s.find('\0');
  if (z == std::string_view::npos) return {s, {}};
  return {s.substr(0, z), s.substr(z + 1)};
}

}  // namespace bioquant::fuzz

#ifdef BIOQUANT_LIBFUZZER
#define BIOQUANT_FUZZ_TARGET(name)                                          \
  static int FuzzBody_##name(const uint8_t* data, size_t size);             \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    return FuzzBody_##name(data, size);                                     \
  }                                                                         \
  static int FuzzBody_##name(const uint8_t* data, size_t size)
#else
#define BIOQUANT_FUZZ_TARGET(name)                              \
  static int FuzzBody_##name(const uint8_t* data, size_t size); \
  [[maybe_unused]] static const bool kRegistered_##name =       \
      ::bioquant::fuzz::Register(#name, FuzzBody_##name);       \
  static int FuzzBody_##name(const uint8_t* data, size_t size)
#endif
