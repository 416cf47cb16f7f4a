// bioquant eval end to end on the project's example data: a short study,
// the report, resume after SIGKILL at random moments (identical store, no
// duplicate rows), and refusal of a store made for another configuration.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "study/store.h"
#include "study/study.h"
#include "testing.h"
#include "util/file.h"

extern char** environ;

namespace bioquant {
namespace {

using testing::RunBioquant;

const std::string& TinyModel() { return testing::SynthModel("evalmodel", 2); }

std::vector<std::string> EvalArgs(const std::string& out) {
  return {"eval",
          "--model",
          TinyModel(),
          "--data-dir",
          testing::SourceDir() + "/examples/data",
          "--out",
          out,
          "--precisions",
          "bf16,nf4",
          "--tasks",
          "bc5cdr_chem,ddi2013,hoc,pubmedqa",
          "--strategies",
          "zero-shot,sc:2",
          "--limit",
          "3",
          "--max-new-tokens",
          "12",
          "--max-new-tokens-cot",
          "12",
          "--resamples",
          "50",
          "--threads",
          "1"};
}

// Everything about a row except wall-clock timings.
std::vector<std::string> Canonical(const std::string& run) {
  auto store = RunStore::OpenForRead(run);
  std::vector<std::string> out;
  for (const auto& r : store->Rows()) {
    nlohmann::json j = {
        r.key.precision,  r.key.task,   r.key.strategy, r.key.templ,
        r.key.example_id, r.key.sample, r.compute,      r.prompt_hash,
        r.raw_output,     r.parsed,     r.parse_ok,     r.parse_reason,
        r.gold,           r.tokens_in,  r.tokens_out,   r.seed};
    out.push_back(
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return out;
}

TEST(EvalCli, StudyReportAndResumeAfterKill) {
  const std::string tmp = testing::TempDir("eval");
  // Uninterrupted run.
  const std::string a = tmp + "/a";
  auto r = RunBioquant(EvalArgs(a));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows_a = Canonical(a);
  // 4 tasks x (1 + 2 samples) x 3 examples x 2 precisions.
  EXPECT_EQ(rows_a.size(), 4u * 3 * 3 * 2);
  EXPECT_TRUE(FileExists(a + "/manifest.json"));
  EXPECT_TRUE(FileExists(a + "/summary.json"));
  for (const char* fmt : {"md", "csv", "json", "html"}) {
    auto rep = RunBioquant({"report", a, "--format", fmt, "--resamples", "50"});
    ASSERT_EQ(rep.exit_code, 0) << rep.err;
    EXPECT_TRUE(FileExists(a + "/report." + std::string(fmt))) << fmt;
  }
  EXPECT_NE(ReadFile(a + "/report.html").find("<svg"), std::string::npos);

  // The same run interrupted three times at random moments.
  const std::string b = tmp + "/b";
  std::vector<std::string> args = {BIOQUANT_BINARY};
  for (const auto& s : EvalArgs(b)) args.push_back(s);
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> delay_ms(150, 1500);
  for (int kill_round = 0; kill_round < 3; ++kill_round) {
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    ASSERT_EQ(
        posix_spawn(&pid, BIOQUANT_BINARY, &fa, nullptr, argv.data(), environ),
        0);
    posix_spawn_file_actions_destroy(&fa);
    if (kill_round == 0) {
      // Ctrl-C once the store exists (the handler is installed before it is
      // opened): a clean stop with exit code 130.
      for (int i = 0; i < 500 && !FileExists(b + "/store.sqlite"); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    }
    // The first interruption is Ctrl-C (clean stop, exit 130), then SIGKILL.
    kill(pid, kill_round == 0 ? SIGINT : SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (kill_round == 0) {
      ASSERT_TRUE(WIFEXITED(status)) << "Ctrl-C must not kill the process";
      EXPECT_EQ(WEXITSTATUS(status), 130)
          << "Ctrl-C must stop cleanly with 130";
    }
  }
  auto resumed = RunBioquant(EvalArgs(b));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(Canonical(b), rows_a);  // identical rows, none duplicated
  // Same scores.
  auto sa = ScoreRun(*RunStore::OpenForRead(a), 1, 50);
  auto sb = ScoreRun(*RunStore::OpenForRead(b), 1, 50);
  ASSERT_EQ(sa["cells"].size(), sb["cells"].size());
  for (size_t i = 0; i < sa["cells"].size(); ++i) {
    EXPECT_EQ(sa["cells"][i]["metrics"], sb["cells"][i]["metrics"]);
  }
  // A re-run with everything done generates nothing new.
  auto again = RunBioquant(EvalArgs(b));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("0 new completions"), std::string::npos)
      << again.err;
}

TEST(EvalCli, BadInputLeavesStoreUntouched) {
  const std::string tmp = testing::TempDir("evalbad");
  const std::string run = tmp + "/run";
  auto args = EvalArgs(run);
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--limit") args[i + 1] = "1";
  }
  ASSERT_EQ(RunBioquant(args).exit_code, 0);
  const std::string before = ReadFile(run + "/store.sqlite");
  struct Case {
    std::vector<std::string> replace;  // flag, value
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"--seed", "9"}, "another configuration"},
      {{"--tasks", "nosuchtask"}, "unknown task 'nosuchtask'"},
      {{"--strategies", "telepathy"}, "telepathy"},
      {{"--data-dir", tmp + "/missing"}, "--data-dir"},
      {{"--model", tmp + "/nomodel"}, "model directory not found"},
      {{"--precisions", "int3"}, "unknown precision 'int3'"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> a = args;
    for (size_t i = 0; i + 1 < a.size(); ++i) {
      if (a[i] == c.replace[0]) a[i + 1] = c.replace[1];
    }
    if (c.replace[0] == "--seed") {
      a.push_back("--seed");
      a.push_back("9");
    }
    auto r = RunBioquant(a);
    EXPECT_NE(r.exit_code, 0) << c.expect;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // Another model: same config, different weights.
  const std::string other = tmp + "/other";
  ASSERT_EQ(
      RunBioquant({"synth", "--preset", "tiny", "--out", other, "--seed", "5"})
          .exit_code,
      0);
  std::vector<std::string> a = args;
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    if (a[i] == "--model") a[i + 1] = other;
  }
  auto r = RunBioquant(a);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("made for another model"), std::string::npos) << r.err;
  EXPECT_EQ(ReadFile(run + "/store.sqlite"), before);
}

// A store written by bioquant before the Backend seam (schema 1, checked in
// from that version: `eval --model <synth tiny seed 2> --precisions bf16
// --tasks pubmedqa --strategies zero-shot --limit 2 --max-new-tokens 4`)
// resumes: same fingerprint, same configuration, nothing redone.
TEST(EvalCli, AStoreFromBeforeTheBackendSeamResumes) {
  const std::string run = testing::TempDir("evalold") + "/run";
  std::filesystem::create_directories(run);
  std::filesystem::copy_file(
      testing::SourceDir() + "/tests/cli/fixtures/store_schema1/store.sqlite",
      run + "/store.sqlite");
  const auto r = RunBioquant({"eval",
                              "--model",
                              TinyModel(),
                              "--data-dir",
                              testing::SourceDir() + "/examples/data",
                              "--out",
                              run,
                              "--precisions",
                              "bf16",
                              "--tasks",
                              "pubmedqa",
                              "--strategies",
                              "zero-shot",
                              "--limit",
                              "2",
                              "--max-new-tokens",
                              "4",
                              "--resamples",
                              "10",
                              "--threads",
                              "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("0 new completions, 2 resumed"), std::string::npos)
      << r.err;
  EXPECT_EQ(RunStore::OpenForRead(run)->Rows().size(), 2u);
  // Resuming migrated it to the current schema; its measurement is labelled
  // as what bioquant's engine measured.
  auto store = RunStore::OpenForRead(run);
  EXPECT_EQ(store->Meta()["schema_version"], kStoreSchemaVersion);
  ASSERT_FALSE(store->Measurements().empty());
  EXPECT_EQ(store->Measurements()[0].memory_source, "cpu-rss");
}

}  // namespace
}  // namespace bioquant
