// Replays every fuzz target (fuzz/*_fuzz.cc) on its checked-in seeds
// (fuzz/corpus/<target>/) and on every input that ever crashed it
// (fuzz/regressions/<target>/), under the normal test build (and the
// AddressSanitizer/UBSan one): a crash found once stays fixed. A target may
// only return or throw bioquant::Error.
#include <gtest/gtest.h>

#include <filesystem>

#include "fuzz_target.h"
#include "testing.h"
#include "util/file.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> Inputs(const std::string& target) {
  std::vector<fs::path> out;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir =
        fs::path(testing::SourceDir()) / "fuzz" / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(FuzzReplay, EveryTargetHasSeeds) {
  ASSERT_GE(fuzz::Registry().size(), 9u);
  for (const auto& [name, fn] : fuzz::Registry()) {
    EXPECT_GE(Inputs(name).size(), 2u) << "fuzz/corpus/" << name;
  }
}

TEST(FuzzReplay, EveryInputReturnsOrIsRefusedCleanly) {
  size_t n = 0;
  for (const auto& [name, fn] : fuzz::Registry()) {
    for (const fs::path& p : Inputs(name)) {
      SCOPED_TRACE(p.string());
      const std::string bytes = ReadFile(p.string());
      EXPECT_NO_THROW(
          fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
      ++n;
    }
  }
  EXPECT_GT(n, 0u);
}

}  // namespace
}  // namespace bioquant
