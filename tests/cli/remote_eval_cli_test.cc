// `eval` through OpenAIBackend against `bioquant serve` (two instances, bf16
// and nf4, on 127.0.0.1): the same predictions and scores as the local
// engine; a server lost mid-run ends the run with one line, keeps every
// stored row, and the run resumes once the server is back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "process.h"
#include "study/store.h"
#include "study/study.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

using namespace std::chrono_literals;
using testing::RunBioquant;

const std::string& Model() { return testing::SynthModel("remotemodel", 4); }

// `bioquant serve` at a precision; port 0 picks a free one.
class Server {
 public:
  Server(const std::string& precision, int port = 0)
      : dir_(testing::TempDir("remoteserve")),
        proc_({BIOQUANT_BINARY, "serve", "--model", Model(), "--precision",
               precision, "--port", std::to_string(port), "--threads", "1",
               "--served-model-name", "tiny-" + precision},
              dir_) {
    const auto p =
        proc_.WaitForStderr(R"(listening on http://127\.0\.0\.1:(\d+))", 60s);
    EXPECT_TRUE(p) << proc_.Stderr();
    port_ = p ? std::stoi(*p) : -1;
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
  }
  int port() const { return port_; }
  testing::Process& proc() { return proc_; }

 private:
  std::string dir_;
  testing::Process proc_;
  int port_;
};

std::vector<std::string> StudyArgs(const std::string& out) {
  return {"eval",
          "--data-dir",
          testing::SourceDir() + "/examples/data",
          "--out",
          out,
          "--tasks",
          "bc5cdr_chem,chemprot,hoc,medqa,pubmedqa",
          "--strategies",
          "zero-shot,few-shot:1,sc:2",
          "--limit",
          "3",
          "--max-new-tokens",
          "10",
          "--max-new-tokens-cot",
          "12",
          "--resamples",
          "50",
          "--date",
          "2025-01-01"};
}

// Rows by key, without what differs between backends by design (timings,
// compute, the prompt's hash: text vs messages; token counts match).
std::map<std::string, nlohmann::json> Rows(const std::string& run) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& r : RunStore::OpenForRead(run)->Rows()) {
    const std::string key = r.key.precision + "|" + r.key.task + "|" +
                            r.key.strategy + "|" + r.key.example_id + "|" +
                            std::to_string(r.key.sample);
    out[key] = {r.raw_output, r.parsed,     r.parse_ok, r.gold,
                r.tokens_in,  r.tokens_out, r.seed};
  }
  return out;
}

TEST(RemoteEvalCli, ServeGivesTheLocalEnginesPredictionsAndScores) {
  const std::string tmp = testing::TempDir("remoteeval");
  auto local_args = StudyArgs(tmp + "/local");
  local_args.insert(local_args.end(), {"--model", Model(), "--precisions",
                                       "bf16,nf4", "--threads", "1"});
  const auto local = RunBioquant(local_args);
  ASSERT_EQ(local.exit_code, 0) << local.err;

  Server bf16("bf16"), nf4("nf4");
  auto remote_args = StudyArgs(tmp + "/remote");
  remote_args.insert(remote_args.end(),
                     {"--endpoints", "bf16=" + bf16.url() + ",nf4=" + nf4.url(),
                      "--concurrency", "3", "--model-config", Model()});
  const auto remote = RunBioquant(remote_args);
  ASSERT_EQ(remote.exit_code, 0) << remote.err;

  const auto a = Rows(tmp + "/local"), b = Rows(tmp + "/remote");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 50u);
  for (const auto& [key, row] : a) {
    ASSERT_TRUE(b.count(key)) << key;
    EXPECT_EQ(b.at(key), row) << key;
  }
  const auto sa = ScoreRun(*RunStore::OpenForRead(tmp + "/local"), 1, 50);
  const auto sb = ScoreRun(*RunStore::OpenForRead(tmp + "/remote"), 1, 50);
  ASSERT_EQ(sa["cells"].size(), sb["cells"].size());
  for (size_t i = 0; i < sa["cells"].size(); ++i) {
    EXPECT_EQ(sa["cells"][i]["metrics"], sb["cells"][i]["metrics"]);
    EXPECT_EQ(sb["cells"][i]["compute"], "remote");
    EXPECT_EQ(sb["cells"][i]["memory"]["measured"], false);
  }
  EXPECT_EQ(sa["comparisons"].size(), sb["comparisons"].size());

  // The report says memory was not measured and shows plan's prediction;
  // the manifest names the endpoints and no key.
  const auto rep = RunBioquant({"report", tmp + "/remote", "--format", "md",
                                "--resamples", "50", "--out", tmp + "/r.md"});
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  const std::string md = ReadFile(tmp + "/r.md");
  EXPECT_NE(md.find("not measured"), std::string::npos);
  EXPECT_NE(md.find("plan --device gpu"), std::string::npos) << md;
  const auto manifest = ReadJsonFile(tmp + "/remote/manifest.json");
  EXPECT_EQ(manifest["model"]["endpoints"][1]["served_model"], "tiny-nf4");
  EXPECT_EQ(manifest["run"]["api"], "chat");

  // A store is refused for another deployment (here: another label set).
  auto other = StudyArgs(tmp + "/remote");
  other.insert(other.end(), {"--endpoint", bf16.url()});
  const auto refused = RunBioquant(other);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("another model"), std::string::npos)
      << refused.err;
}

TEST(RemoteEvalCli, ALostServerEndsTheRunKeepingRowsThenResumes) {
  const std::string tmp = testing::TempDir("remotelost");
  // The reference: the whole run against a server that stays.
  std::map<std::string, nlohmann::json> want;
  int port = 0;
  {
    Server s("bf16");
    port = s.port();
    auto args = StudyArgs(tmp + "/ref");
    args.insert(args.end(), {"--endpoint", s.url(), "--precisions", "bf16"});
    ASSERT_EQ(RunBioquant(args).exit_code, 0);
    want = Rows(tmp + "/ref");
  }
  auto args = StudyArgs(tmp + "/run");
  args.insert(args.end(),
              {"--endpoint", "http://127.0.0.1:" + std::to_string(port) + "/v1",
               "--precisions", "bf16", "--retries", "1", "--concurrency", "1",
               "--batch", "1"});
  {
    auto server = std::make_unique<Server>("bf16", port);
    ASSERT_EQ(server->port(), port);
    std::vector<std::string> argv = {BIOQUANT_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    testing::Process eval(argv, testing::TempDir("remotelosteval"));
    // Let some rows land, then the server goes away for good.
    for (int i = 0; i < 3000; ++i) {
      try {
        if (RunStore::OpenForRead(tmp + "/run")->Rows().size() >= 5) break;
      } catch (const Error&) {
        // Not created yet, or being created.
      }
      std::this_thread::sleep_for(10ms);
    }
    server->proc().Signal(SIGKILL);
    server.reset();
    const auto code = eval.Wait(120s);
    ASSERT_TRUE(code.has_value()) << "eval did not end";
    EXPECT_EQ(*code, 1) << eval.Stderr();
    const std::string err = eval.Stderr();
    EXPECT_NE(err.find("bioquant eval: error:"), std::string::npos) << err;
  }
  const size_t kept = RunStore::OpenForRead(tmp + "/run")->Rows().size();
  EXPECT_GE(kept, 5u);
  EXPECT_LT(kept, want.size());
  // The server is back on the same address: the run resumes and ends with
  // the rows of an uninterrupted one.
  Server again("bf16", port);
  ASSERT_EQ(again.port(), port);
  const auto resumed = RunBioquant(args);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(Rows(tmp + "/run"), want);
}

TEST(RemoteEvalCli, FlagsThatDoNotMixAreRefused) {
  const std::string tmp = testing::TempDir("remoteflags");
  struct Case {
    std::vector<std::string> extra;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{}, "exactly one of --model"},
      {{"--model", Model(), "--endpoint", "http://127.0.0.1:1/v1"},
       "exactly one of --model"},
      {{"--endpoint", "ftp://x"}, "--endpoint"},
      {{"--endpoint", "http://127.0.0.1:1/v1", "--threads", "2"}, "--threads"},
      {{"--endpoints", "a=http://127.0.0.1:1/v1", "--precisions", "bf16"},
       "--endpoints"},
      {{"--model", Model(), "--concurrency", "4"}, "--concurrency"},
      {{"--endpoint", "http://127.0.0.1:1/v1", "--no-chat"}, "--no-chat"},
      {{"--endpoint", "http://127.0.0.1:1/v1", "--api-key-env",
        "BQ_NOT_SET_ANYWHERE"},
       "--api-key-env"},
  };
  for (const auto& c : cases) {
    auto args = StudyArgs(tmp + "/run");
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const auto r = RunBioquant(args);
    EXPECT_NE(r.exit_code, 0) << c.expect;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace bioquant
