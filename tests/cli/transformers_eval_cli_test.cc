// `bioquant eval --backend transformers` end to end with the fake worker
// (tests/backends/fake_worker.py on python3, no torch): the study stored
// with the worker's compute labels and memory source, the report's labelled
// memory column, a crash mid-run survived, Ctrl-C, and flag errors. The real
// worker: tests/crosscheck/test_transformers_backend.py.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "study/store.h"
#include "testing.h"
#include "util/file.h"

extern char** environ;

namespace bioquant {
namespace {

using testing::RunBioquant;

const std::string& TinyModel() { return testing::SynthModel("hfevalmodel", 2); }

std::vector<std::string> Args(const std::string& out) {
  return {"eval",
          "--backend",
          "transformers",
          "--python",
          "python3",
          "--worker",
          testing::SourceDir() + "/tests/backends/fake_worker.py",
          "--model",
          TinyModel(),
          "--data-dir",
          testing::SourceDir() + "/examples/data",
          "--out",
          out,
          "--precisions",
          "bf16,nf4",
          "--tasks",
          "pubmedqa,hoc",
          "--limit",
          "3",
          "--max-new-tokens",
          "5",
          "--resamples",
          "20"};
}

class TransformersEvalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    // The fake worker runs on Debian's python3 (scripts/setup.sh installs it).
    if (std::system("python3 -c pass >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "python3 is not installed (scripts/setup.sh)";
    }
    state_ = testing::TempDir("hfevalstate");
    setenv("FAKE_WORKER_STATE", state_.c_str(), 1);
    setenv("FAKE_WORKER_MODE", "ok", 1);
  }
  std::string state_;
};

TEST_F(TransformersEvalCli, RunsTheStudyAndLabelsItsMemory) {
  const std::string run = testing::TempDir("hfeval") + "/run";
  const auto r = RunBioquant(Args(run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("transformers: python 3.x (python3), torch 2.fake, "
                       "transformers 4.fake, bitsandbytes 0.fake; device cpu"),
            std::string::npos)
      << r.err;
  auto store = RunStore::OpenForRead(run);
  const auto rows = store->Rows();
  ASSERT_EQ(rows.size(), 2u * 2 * 3);
  for (const auto& row : rows) {
    EXPECT_EQ(row.compute, "fake-" + row.key.precision);
    // The prompt rendered by the worker's template (the fake's markers).
    EXPECT_NE(row.raw_output.find("<user>"), std::string::npos)
        << row.raw_output;
    EXPECT_EQ(row.tokens_out, 5);
  }
  for (const auto& m : store->Measurements()) {
    EXPECT_EQ(m.memory_source, "cpu-rss");
    EXPECT_EQ(m.weights_bytes, 111);
    EXPECT_GT(m.peak_rss_bytes, 1000);
  }
  EXPECT_EQ(store->Meta()["config"]["backend"], "transformers");
  const auto manifest = nlohmann::json::parse(ReadFile(run + "/manifest.json"));
  EXPECT_EQ(manifest["run"]["versions"]["transformers"], "4.fake");
  const auto rep = RunBioquant({"report", run, "--format", "md"});
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  const std::string md = ReadFile(run + "/report.md");
  EXPECT_NE(md.find("| peak memory |"), std::string::npos) << md;
  EXPECT_NE(md.find("(CPU RSS) |"), std::string::npos) << md;

  // A store of the local engine is not resumed by this backend.
  const auto local = RunBioquant(
      {"eval", "--model", TinyModel(), "--data-dir",
       testing::SourceDir() + "/examples/data", "--out", run, "--precisions",
       "bf16", "--tasks", "pubmedqa", "--limit", "1", "--max-new-tokens", "5"});
  EXPECT_NE(local.exit_code, 0);
  EXPECT_NE(local.err.find("made with another configuration"),
            std::string::npos)
      << local.err;
}

TEST_F(TransformersEvalCli, AWorkerCrashIsSurvived) {
  setenv("FAKE_WORKER_MODE", "die_once", 1);
  const std::string run = testing::TempDir("hfeval") + "/run";
  const auto r = RunBioquant(Args(run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("restarting it (1 of 2)"), std::string::npos) << r.err;
  EXPECT_EQ(RunStore::OpenForRead(run)->Rows().size(), 2u * 2 * 3);
}

TEST_F(TransformersEvalCli, CtrlCStopsTheWorkerAndTheRun) {
  setenv("FAKE_WORKER_MODE", "hang", 1);
  const std::string run = testing::TempDir("hfeval") + "/run";
  std::vector<std::string> args = {BIOQUANT_BINARY};
  for (const auto& s : Args(run)) args.push_back(s);
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  const std::string err_file = state_ + "/stderr.txt";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  ASSERT_EQ(
      posix_spawn(&pid, BIOQUANT_BINARY, &fa, nullptr, argv.data(), environ),
      0);
  posix_spawn_file_actions_destroy(&fa);
  // Wait until the worker of the first precision is generating.
  for (int i = 0; i < 1000; ++i) {
    if (FileExists(run + "/store.sqlite") && FileExists(state_ + "/starts")) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130) << ReadFile(err_file);
  EXPECT_NE(ReadFile(err_file).find("interrupted"), std::string::npos);
  std::ifstream f(state_ + "/starts");
  int worker = 0;
  f >> worker;
  ASSERT_GT(worker, 0);
  EXPECT_NE(kill(worker, 0), 0) << "the worker outlived bioquant";
}

TEST_F(TransformersEvalCli, FlagsOfAnotherBackendAreOneLineErrors) {
  const std::string run = testing::TempDir("hfeval") + "/run";
  struct Case {
    std::vector<std::string> extra;
    const char* message;
  };
  const Case cases[] = {
      {{"--blocksize", "128"},
       "--blocksize: applies to bioquant's engine, not to --backend "
       "transformers"},
      {{"--compute-dtype", "f8"}, "--compute-dtype f8: expected bf16"},
      {{"--gpu-memory", "free"}, "--gpu-memory free: expected allocated"},
  };
  for (const Case& c : cases) {
    auto a = Args(run);
    for (const auto& e : c.extra) a.push_back(e);
    const auto r = RunBioquant(a);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }
  // The worker's flags do not apply to the local engine.
  const auto r = RunBioquant(
      {"eval", "--model", TinyModel(), "--python", "python3", "--data-dir",
       testing::SourceDir() + "/examples/data", "--out", run});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--python: applies to --backend transformers"),
            std::string::npos)
      << r.err;
  const auto b = RunBioquant(
      {"eval", "--model", TinyModel(), "--backend", "tpu", "--data-dir",
       testing::SourceDir() + "/examples/data", "--out", run});
  EXPECT_NE(b.exit_code, 0);
  EXPECT_NE(b.err.find("--backend tpu: expected local, transformers or openai"),
            std::string::npos)
      << b.err;
}

}  // namespace
}  // namespace bioquant
