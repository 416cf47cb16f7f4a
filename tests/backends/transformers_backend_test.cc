// TransformersBackend against a fake worker (fake_worker.py on Debian's
// python3, no torch): the protocol, a worker that dies mid-batch (restart,
// the unfinished requests resumed, none generated twice), malformed lines,
// error lines and the version check. The real worker is cross-checked in
// tests/crosscheck/test_transformers_backend.py.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backends/local.h"
#include "backends/transformers.h"
#include "engine/synth.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"

namespace bioquant {
namespace {

const std::string& ModelDir() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("hfbackend") + "/m";
    o.dtype = "f32";
    WriteSyntheticCheckpoint(o);
    return o.out_dir;
  }();
  return dir;
}

class TransformersBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The fake worker runs on Debian's python3 (scripts/setup.sh installs it).
    if (std::system("python3 -c pass >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "python3 is not installed (scripts/setup.sh)";
    }
    state_ = testing::TempDir("fakeworker");
    setenv("FAKE_WORKER_STATE", state_.c_str(), 1);
    setenv("FAKE_WORKER_MODE", "ok", 1);
  }
  void Mode(const char* m) { setenv("FAKE_WORKER_MODE", m, 1); }

  TransformersBackendOptions Options(std::vector<std::string> precisions = {
                                         "bf16", "nf4"}) {
    TransformersBackendOptions o;
    o.model_dir = ModelDir();
    o.precisions = std::move(precisions);
    o.python = "python3";
    o.worker = testing::SourceDir() + "/tests/backends/fake_worker.py";
    o.log = [this](const std::string& line) { log_ += line + "\n"; };
    return o;
  }

  static std::vector<BackendRequest> Requests(int n) {
    std::vector<BackendRequest> reqs(n);
    for (int i = 0; i < n; ++i) {
      reqs[i].text = "p" + std::to_string(i);
      reqs[i].max_new_tokens = 10 + i;
    }
    return reqs;
  }

  int Starts() const {
    std::ifstream f(state_ + "/starts");
    int n = 0;
    std::string line;
    while (std::getline(f, line)) ++n;
    return n;
  }

  // The Error message of f(), or "" when it does not throw.
  template <typename F>
  static std::string ErrorOf(F f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  std::string state_;
  std::string log_;
};

TEST_F(TransformersBackendTest, SpeaksTheProtocol) {
  auto set = MakeTransformersBackendSet(Options());
  EXPECT_EQ(set->Fingerprint(), ModelFingerprint(ModelDir()));
  EXPECT_NE(log_.find("torch 2.fake, transformers 4.fake, bitsandbytes "
                      "0.fake; device cpu (Fake)"),
            std::string::npos)
      << log_;
  EXPECT_EQ(set->Config()["backend"], "transformers");
  EXPECT_EQ(set->Manifest()["run"]["versions"]["torch"], "2.fake");
  auto b = set->Open("nf4");
  EXPECT_EQ(Starts(), 1);  // the worker that answered hello is reused
  EXPECT_EQ(b->Compute(), "fake-nf4");
  EXPECT_FALSE(b->AppliesChatTemplate());
  std::string text;
  ASSERT_TRUE(b->RenderChat({{{"role", "user"}, {"content", "hi"}}},
                            "2025-01-01", &text));
  EXPECT_EQ(text, "<user>hi<assistant>");

  auto reqs = Requests(3);
  reqs[2].stop = {"\n"};
  std::vector<size_t> seen;
  const auto res = b->Generate(
      reqs, [&](size_t i, const BackendResult&) { seen.push_back(i); });
  ASSERT_EQ(res.size(), 3u);
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(res[i].text,
              "nf4:p" + std::to_string(i) + ":" + std::to_string(10 + i));
    EXPECT_EQ(res[i].tokens_out, 10 + i);
    EXPECT_DOUBLE_EQ(res[i].latency_ms, 3.0);
  }
  EXPECT_EQ(res[2].finish_reason, "stop");
  const auto m = b->Memory();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->source, "cpu-rss");
  EXPECT_EQ(m->peak_rss_bytes, 1300u);  // the worker's peak after the batch
  EXPECT_EQ(m->weights_bytes, 111u);    // get_memory_footprint()
  b.reset();
  // A second precision gets a worker of its own.
  auto b2 = set->Open("bf16");
  EXPECT_EQ(Starts(), 2);
  EXPECT_EQ(b2->Generate(Requests(1))[0].text, "bf16:p0:10");
}

TEST_F(TransformersBackendTest, GpuPeakIsAllocatedOrReserved) {
  Mode("gpu");
  for (const char* which : {"allocated", "reserved"}) {
    auto o = Options({"bf16"});
    o.gpu_memory = which;
    auto set = MakeTransformersBackendSet(o);
    auto b = set->Open("bf16");
    b->Generate(Requests(2));
    const auto m = b->Memory();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->source, std::string("gpu-") + which);
    EXPECT_EQ(m->peak_rss_bytes,
              std::string(which) == "allocated" ? 1200u : 2400u);
  }
}

TEST_F(TransformersBackendTest, AWorkerThatDiesMidBatchIsRestartedAndResumed) {
  Mode("die_once");
  auto set = MakeTransformersBackendSet(Options());
  auto b = set->Open("bf16");
  std::vector<size_t> seen;
  const auto res = b->Generate(
      Requests(4), [&](size_t i, const BackendResult&) { seen.push_back(i); });
  // Request 0 finished before the crash and is not generated again; 1..3
  // come from the restarted worker.
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2, 3}));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(res[i].text,
              "bf16:p" + std::to_string(i) + ":" + std::to_string(10 + i));
  }
  EXPECT_EQ(Starts(), 2);
  EXPECT_NE(log_.find("the bf16 worker exited with status 11 (last stderr "
                      "line: Fatal Python error: Segmentation fault); "
                      "restarting it (1 of 2)"),
            std::string::npos)
      << log_;
}

TEST_F(TransformersBackendTest, AWorkerThatKeepsDyingIsAnError) {
  Mode("die_always");
  auto o = Options();
  o.max_restarts = 1;
  auto set = MakeTransformersBackendSet(o);
  auto b = set->Open("bf16");
  std::vector<size_t> seen;
  const std::string err = ErrorOf([&] {
    b->Generate(Requests(3),
                [&](size_t i, const BackendResult&) { seen.push_back(i); });
  });
  EXPECT_NE(err.find("transformers worker (bf16) exited with status 11"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("gave up after 1 restarts"), std::string::npos) << err;
  // What finished was handed over: request 0, then (the restarted worker's
  // first) request 1.
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(err.find('\n'), std::string::npos);
}

TEST_F(TransformersBackendTest, MalformedAndErrorLinesAreOneLineErrors) {
  Mode("malformed");
  {
    auto set = MakeTransformersBackendSet(Options());
    auto b = set->Open("bf16");
    const std::string err = ErrorOf([&] { b->Generate(Requests(2)); });
    EXPECT_NE(err.find("a line that is not a JSON object: Some library "
                       "chatter on stdout"),
              std::string::npos)
        << err;
  }
  Mode("error_line");
  {
    auto set = MakeTransformersBackendSet(Options());
    auto b = set->Open("bf16");
    const std::string err = ErrorOf([&] { b->Generate(Requests(2)); });
    EXPECT_EQ(err,
              "transformers worker (bf16): ImportError: No module named "
              "'bitsandbytes'");
  }
  Mode("load_oom");
  {
    auto set = MakeTransformersBackendSet(Options());
    const std::string err = ErrorOf([&] { set->Open("nf4"); });
    EXPECT_NE(err.find("at nf4: CudaOutOfMemory: CUDA out of memory. Tried to "
                       "allocate 2.00 GiB"),
              std::string::npos)
        << err;
  }
  Mode("garbage_hello");
  {
    auto set = MakeTransformersBackendSet(Options());
    const std::string err = ErrorOf([&] { set->Fingerprint(); });
    EXPECT_NE(err.find("answered hello with a line that is not a JSON object"),
              std::string::npos)
        << err;
  }
}

TEST_F(TransformersBackendTest, VersionCheckFailsBeforeAnythingRuns) {
  struct Case {
    const char* mode;
    const char* message;
  };
  for (const Case& c :
       {Case{"old_protocol", "speaks protocol 99"},
        Case{"no_transformers", "transformers is not installed"},
        Case{"no_bitsandbytes",
             "precision nf4 needs bitsandbytes, which is not "
             "installed"}}) {
    Mode(c.mode);
    auto set = MakeTransformersBackendSet(Options());
    const std::string err = ErrorOf([&] { set->Fingerprint(); });
    EXPECT_NE(err.find(c.message), std::string::npos) << c.mode << ": " << err;
  }
  // Without a 4/8-bit precision bitsandbytes is not needed.
  Mode("no_bitsandbytes");
  auto set = MakeTransformersBackendSet(Options({"bf16", "f32"}));
  EXPECT_EQ(ErrorOf([&] { set->Fingerprint(); }), "");
}

TEST_F(TransformersBackendTest, APythonThatCannotStartIsNamed) {
  auto o = Options();
  o.python = "/nonexistent/python3";
  auto set = MakeTransformersBackendSet(o);
  const std::string err = ErrorOf([&] { set->Fingerprint(); });
  EXPECT_NE(err.find("exited with status 127"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot run /nonexistent/python3"), std::string::npos)
      << err;
}

TEST_F(TransformersBackendTest, StopKillsAHangingWorker) {
  Mode("hang");
  std::atomic<bool> stop{false};
  auto o = Options();
  o.stop = &stop;
  auto set = MakeTransformersBackendSet(o);
  auto b = set->Open("bf16");
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  Stopwatch sw;
  const std::string err = ErrorOf([&] { b->Generate(Requests(1)); });
  t.join();
  EXPECT_EQ(err, "interrupted");
  EXPECT_LT(sw.ElapsedMs(), 5000);
  // The worker is gone: its pid no longer exists.
  std::ifstream f(state_ + "/starts");
  int pid = 0;
  f >> pid;
  ASSERT_GT(pid, 0);
  EXPECT_NE(kill(pid, 0), 0);
}

TEST_F(TransformersBackendTest, BadOptionsNameTheFlag) {
  struct Case {
    std::function<void(TransformersBackendOptions&)> edit;
    const char* message;
  };
  const Case cases[] = {
      {[](auto& o) { o.precisions = {"q5"}; },
       "--precisions: q5 is not a transformers precision"},
      {[](auto& o) { o.model_dir = "/nonexistent"; },
       "--model: /nonexistent: model directory not found"},
      {[](auto& o) { o.device = "tpu"; }, "--device tpu"},
      {[](auto& o) { o.compute_dtype = "f8"; }, "--compute-dtype f8"},
      {[](auto& o) { o.gpu_memory = "free"; }, "--gpu-memory free"},
      {[](auto& o) { o.worker = "/nonexistent.py"; },
       "--worker: /nonexistent.py: file not found"},
  };
  for (const Case& c : cases) {
    auto o = Options();
    c.edit(o);
    const std::string err = ErrorOf([&] { MakeTransformersBackendSet(o); });
    EXPECT_NE(err.find(c.message), std::string::npos) << err;
  }
}

TEST_F(TransformersBackendTest, TheWorkerScriptIsFoundFromTheSourceTree) {
  unsetenv("BIOQUANT_WORKER");
  const std::string w = FindWorkerScript();
  EXPECT_TRUE(FileExists(w)) << w;
  EXPECT_NE(w.find("bioquant_worker.py"), std::string::npos);
}

}  // namespace
}  // namespace bioquant
