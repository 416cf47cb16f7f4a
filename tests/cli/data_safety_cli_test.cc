// Issue 15 "data safety": a full disk (simulated with RLIMIT_FSIZE: with
// SIGXFSZ ignored, a write past the limit fails with EFBIG as one on a full
// disk fails with ENOSPC) gives a one-line error naming the file, leaves no
// half-written output that could pass for complete, and loses nothing
// already completed: the run resumes where it stopped.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "study/store.h"
#include "testing.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;
using testing::RunBioquant;

// /bin/sh counts ulimit -f in 512-byte blocks (dash) or KiB (bash): either
// way these are small enough to fail and large enough to start.
std::string DiskFull(int blocks) {
  return "trap '' XFSZ; ulimit -f " + std::to_string(blocks) + "; ";
}

const std::string& Model() { return testing::SynthModel("safetymodel", 4); }

int Lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

TEST(DataSafetyCli, QuantizeOnAFullDiskLeavesNoHalfWrittenCheckpoint) {
  const std::string out = testing::TempDir("safetyq") + "/q";
  auto r = RunBioquant(
      {"quantize", "--model", Model(), "--precision", "nf4", "--out", out},
      DiskFull(40));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("write failed (File too large)"), std::string::npos)
      << r.err;
  // Nothing that a later load could take for a checkpoint.
  if (fs::exists(out)) {
    for (const auto& e : fs::directory_iterator(out)) {
      ADD_FAILURE() << "left behind: " << e.path();
    }
  }
  r = RunBioquant(
      {"quantize", "--model", Model(), "--precision", "nf4", "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
}

TEST(DataSafetyCli, EvalOnAFullDiskKeepsWhatItCompletedAndResumes) {
  const std::string run = testing::TempDir("safetyeval") + "/run";
  const std::vector<std::string> args = {
      "eval",
      "--model",
      Model(),
      "--data-dir",
      testing::SourceDir() + "/examples/data",
      "--out",
      run,
      "--precisions",
      "bf16,nf4",
      "--tasks",
      "pubmedqa,hoc",
      "--strategies",
      "zero-shot",
      "--limit",
      "6",
      "--max-new-tokens",
      "4",
      "--resamples",
      "10",
      "--threads",
      "1",
      "--no-cache"};
  // Room for the store's schema and some rows, not for all 24.
  auto r = RunBioquant(args, DiskFull(200));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  // Progress lines, then exactly one error line, the last.
  const std::string last_line =
      r.err.substr(r.err.rfind('\n', r.err.size() - 2) + 1);
  EXPECT_EQ(last_line.find("bioquant eval: error: "), 0u) << r.err;
  EXPECT_NE(last_line.find("store.sqlite: disk I/O error ("), std::string::npos)
      << r.err;
  const size_t kept = RunStore::OpenForRead(run)->Rows().size();
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, 24u);

  r = RunBioquant(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(std::to_string(kept) + " resumed;"), std::string::npos)
      << r.err;
  EXPECT_EQ(RunStore::OpenForRead(run)->Rows().size(), 24u);
}

}  // namespace
}  // namespace bioquant
