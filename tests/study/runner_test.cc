// The study runner through the Backend seam, with no model: a fake backend
// returns fixed strings, and the store, the scores, resume, prompt rendering
// and failure handling are checked against what it was asked and answered.
#include "study/runner.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "study/store.h"
#include "study/study.h"
#include "tasks/task.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"

namespace bioquant {
namespace {

// What every fake backend of a set saw and did.
struct FakeLog {
  int opened = 0;
  int calls = 0;
  std::vector<BackendRequest> requests;
};

// How a fake renders chat messages: nullopt = the model has no template.
using RenderFn =
    std::function<std::optional<std::string>(const nlohmann::json&)>;

class FakeBackend : public Backend {
 public:
  FakeBackend(std::string label,
              std::function<BackendResult(const BackendRequest&)> answer,
              RenderFn render, bool own_template, FakeLog* log, int fail_call)
      : label_(std::move(label)),
        answer_(std::move(answer)),
        render_(std::move(render)),
        own_template_(own_template),
        log_(log),
        fail_call_(fail_call) {}

  bool RenderChat(const nlohmann::json& messages, const std::string& date,
                  std::string* out) const override {
    EXPECT_EQ(date, "2025-01-01");  // the study's fixed default
    if (!render_) return false;
    const std::optional<std::string> r = render_(messages);
    if (!r) return false;
    *out = *r;
    return true;
  }
  bool AppliesChatTemplate() const override { return own_template_; }
  std::vector<BackendResult> Generate(const std::vector<BackendRequest>& reqs,
                                      const OnResult& on_result) override {
    ++log_->calls;
    std::vector<BackendResult> out;
    for (const auto& r : reqs) {
      // The failing call answers its first request, then loses the server.
      if (log_->calls == fail_call_ && !out.empty()) {
        Fail("fake: connection lost");
      }
      log_->requests.push_back(r);
      BackendResult b = answer_(r);
      b.tokens_in = static_cast<int64_t>(r.text.size());
      b.tokens_out = 3;
      b.latency_ms = 10;
      b.prefill_ms = 4;
      b.decode_ms = 6;
      out.push_back(b);
      if (on_result) on_result(out.size() - 1, b);
    }
    return out;
  }
  std::string Compute() const override { return "fake-" + label_; }
  std::optional<BackendMemory> Memory() const override {
    if (label_ != "bf16") return std::nullopt;  // like a remote server
    return BackendMemory{1000, 200, 30, 4000, "gpu-allocated"};
  }
  int threads() const override { return 7; }

 private:
  std::string label_;
  std::function<BackendResult(const BackendRequest&)> answer_;
  RenderFn render_;
  bool own_template_;
  FakeLog* log_;
  int fail_call_;
};

class FakeSet : public BackendSet {
 public:
  std::string fingerprint = "fake-model";
  RenderFn render;
  bool own_template = false;
  int fail_call = 0;  // Generate call (1-based, over the set) that throws
  std::map<std::string, std::function<BackendResult(const BackendRequest&)>>
      answers;
  FakeLog log;

  std::string Fingerprint() override { return fingerprint; }
  nlohmann::json Config() const override { return {{"fake_option", 1}}; }
  nlohmann::json Manifest() const override {
    return {{"model", "fake"}, {"run", {{"threads", 7}}}};
  }
  std::unique_ptr<Backend> Open(const std::string& label) override {
    ++log.opened;
    return std::make_unique<FakeBackend>(label, answers.at(label), render,
                                         own_template, &log, fail_call);
  }
};

BackendResult Text(const std::string& t) {
  BackendResult r;
  r.text = t;
  return r;
}

// bf16 always answers yes; nf4 never answers; self-consistency samples with
// seeds 0, 1, 2 say yes, no, no (the vote is no).
void DefaultAnswers(FakeSet& set) {
  set.answers["bf16"] = [](const BackendRequest& r) {
    if (r.temperature > 0) return Text(r.seed == 0 ? "Answer: yes" : "no");
    return Text("Answer: yes");
  };
  set.answers["nf4"] = [](const BackendRequest&) {
    return Text("I cannot say.");
  };
}

EvalOptions Options(const std::string& out) {
  EvalOptions o;
  o.precisions = {"bf16", "nf4"};
  o.tasks = {"pubmedqa"};
  o.strategies = {"zero-shot", "sc:3"};
  o.data_dir = testing::SourceDir() + "/examples/data";
  o.out_dir = out;
  o.batch = 2;
  return o;
}

EvalSummary RunStudy(const EvalOptions& o, FakeSet& set) {
  std::atomic<bool> stop{false};
  return RunEval(o, set, stop, [](const EvalProgress&) {});
}

std::vector<Example> PubmedqaTest() {
  return LoadSplit(testing::SourceDir() + "/examples/data", "pubmedqa", "test");
}

double Share(const std::vector<Example>& ex, const std::string& label) {
  int n = 0;
  for (const auto& e : ex) n += e.gold == std::vector<std::string>{label};
  return static_cast<double>(n) / ex.size();
}

const nlohmann::json& Cell(const nlohmann::json& s, const std::string& p,
                           const std::string& strategy) {
  for (const auto& c : s["cells"]) {
    if (c["precision"] == p && c["strategy"] == strategy) return c;
  }
  ADD_FAILURE() << "no cell " << p << " " << strategy;
  static const nlohmann::json none;
  return none;
}

TEST(RunnerTest, StoresWhatTheBackendReturnsAndScoresIt) {
  const std::string out = testing::TempDir("runner") + "/run";
  FakeSet set;
  DefaultAnswers(set);
  const EvalSummary s = RunStudy(Options(out), set);
  const auto ex = PubmedqaTest();
  const int64_t n = static_cast<int64_t>(ex.size());
  ASSERT_GE(n, 3);
  EXPECT_EQ(s.generated, 2 * (n + 3 * n));
  EXPECT_EQ(s.resumed, 0);
  EXPECT_EQ(set.log.opened, 2);
  // zero-shot in calls of 2 examples, each sc example in a call of its own.
  EXPECT_EQ(set.log.calls, 2 * ((n + 1) / 2 + n));

  auto store = RunStore::OpenForRead(out);
  EXPECT_EQ(store->fingerprint(), "fake-model");
  EXPECT_EQ(store->Meta()["config"]["fake_option"], 1);
  const auto rows = store->Rows();
  ASSERT_EQ(static_cast<int64_t>(rows.size()), s.generated);
  std::map<std::string, const BackendRequest*> by_hash;
  for (const auto& r : set.log.requests) by_hash[Fnv1aHex(r.text)] = &r;
  for (const auto& r : rows) {
    EXPECT_EQ(r.compute, "fake-" + r.key.precision);
    EXPECT_EQ(r.tokens_out, 3);
    EXPECT_EQ(r.latency_ms, 10);
    EXPECT_EQ(r.prefill_ms, 4);
    EXPECT_EQ(r.decode_ms, 6);
    // The stored hash names a prompt the backend was really sent.
    ASSERT_TRUE(by_hash.count(r.prompt_hash)) << r.key.example_id;
    EXPECT_EQ(r.tokens_in,
              static_cast<int64_t>(by_hash[r.prompt_hash]->text.size()));
    if (r.key.precision == "nf4") {
      EXPECT_EQ(r.raw_output, "I cannot say.");
      EXPECT_FALSE(r.parse_ok);
    } else {
      EXPECT_TRUE(r.parse_ok) << r.raw_output;
    }
  }
  // No template: plain prompts, with the tokenizer's special tokens.
  for (const auto& r : set.log.requests) {
    EXPECT_TRUE(r.add_special_tokens);
    EXPECT_FALSE(r.text.empty());
  }

  const nlohmann::json scores = ScoreRun(*store, 1, 50);
  const auto value = [&](const std::string& p, const std::string& st) {
    return Cell(scores, p, st)["metrics"]["accuracy"]["value"].get<double>();
  };
  EXPECT_DOUBLE_EQ(value("bf16", "zero-shot"), Share(ex, "yes"));
  EXPECT_DOUBLE_EQ(value("bf16", "sc:3:0.7"), Share(ex, "no"));  // the vote
  EXPECT_DOUBLE_EQ(value("nf4", "zero-shot"), 0.0);
  EXPECT_DOUBLE_EQ(Cell(scores, "nf4", "zero-shot")["unparsed_rate"], 1.0);
  EXPECT_EQ(scores["reference_precision"], "bf16");

  // Memory as the backend measured it, or none.
  for (const auto& m : store->Measurements()) {
    EXPECT_EQ(m.threads, 7);
    EXPECT_EQ(m.examples, n);
    EXPECT_EQ(m.weights_bytes, m.precision == "bf16" ? 1000 : 0);
    EXPECT_EQ(m.peak_rss_bytes, m.precision == "bf16" ? 4000 : 0);
    // What the backend says it measured, or that nothing was.
    EXPECT_EQ(m.memory_source,
              m.precision == "bf16" ? "gpu-allocated" : "not measured");
  }
  const auto manifest = ReadJsonFile(out + "/manifest.json");
  EXPECT_EQ(manifest["model"], "fake");
  EXPECT_EQ(manifest["run"]["threads"], 7);
  EXPECT_EQ(manifest["run"]["batch"], 2);
}

TEST(RunnerTest, ResumeOpensNothingWhenNothingIsLeft) {
  const std::string out = testing::TempDir("runner") + "/run";
  FakeSet set;
  DefaultAnswers(set);
  const EvalSummary first = RunStudy(Options(out), set);
  FakeSet again;
  DefaultAnswers(again);
  const EvalSummary second = RunStudy(Options(out), again);
  EXPECT_EQ(second.generated, 0);
  EXPECT_EQ(second.resumed,
            2 * 2 * static_cast<int64_t>(PubmedqaTest().size()));
  EXPECT_EQ(again.log.opened, 0);
  EXPECT_EQ(again.log.calls, 0);
  EXPECT_EQ(static_cast<int64_t>(RunStore::OpenForRead(out)->Rows().size()),
            first.generated);
}

// A request the backend could not fit in the model's context is stored as
// an unparsed row that says so (scored as wrong), and the study goes on.
TEST(RunnerTest, APromptOverTheContextIsStoredUnparsedWithTheReason) {
  const std::string out = testing::TempDir("runner") + "/run";
  FakeSet set;
  DefaultAnswers(set);
  set.answers["bf16"] = [](const BackendRequest&) {
    BackendResult r = Text("Answer: yes");  // ignored: nothing was generated
    r.finish_reason = "prompt_too_long";
    return r;
  };
  EvalOptions o = Options(out);
  o.strategies = {"zero-shot"};
  RunStudy(o, set);
  int too_long = 0;
  for (const auto& row : RunStore::OpenForRead(out)->Rows()) {
    if (row.key.precision != "bf16") continue;
    EXPECT_FALSE(row.parse_ok);
    EXPECT_EQ(row.parse_reason, "the prompt exceeds the model's context");
    ++too_long;
  }
  EXPECT_EQ(too_long, static_cast<int>(PubmedqaTest().size()));
}

TEST(RunnerTest, AFailingBackendKeepsEveryStoredRowAndResumes) {
  const std::string ref = testing::TempDir("runner") + "/ref";
  FakeSet whole;
  DefaultAnswers(whole);
  RunStudy(Options(ref), whole);

  const std::string out = testing::TempDir("runner") + "/run";
  FakeSet failing;
  DefaultAnswers(failing);
  failing.fail_call = 3;
  EXPECT_THROW(RunStudy(Options(out), failing), Error);
  // Two calls of two zero-shot examples each were stored before the third,
  // and the one request the third answered before it failed.
  EXPECT_EQ(RunStore::OpenForRead(out)->Rows().size(), 5u);
  FakeSet healthy;
  DefaultAnswers(healthy);
  const EvalSummary s = RunStudy(Options(out), healthy);
  EXPECT_EQ(s.resumed, 5);
  const auto a = RunStore::OpenForRead(ref)->Rows();
  const auto b = RunStore::OpenForRead(out)->Rows();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].key.example_id, b[i].key.example_id);
    EXPECT_EQ(a[i].raw_output, b[i].raw_output);
    EXPECT_EQ(a[i].prompt_hash, b[i].prompt_hash);
  }
}

TEST(RunnerTest, AStoreOfAnotherBackendIsRefusedUntouched) {
  const std::string out = testing::TempDir("runner") + "/run";
  FakeSet set;
  DefaultAnswers(set);
  RunStudy(Options(out), set);
  const size_t rows = RunStore::OpenForRead(out)->Rows().size();
  FakeSet other;
  DefaultAnswers(other);
  other.fingerprint = "another-deployment";
  try {
    RunStudy(Options(out), other);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(other.log.opened, 0);
  EXPECT_EQ(RunStore::OpenForRead(out)->Rows().size(), rows);
}

TEST(RunnerTest, PromptsAreRenderedWithTheBackendsChatTemplate) {
  FakeSet set;
  DefaultAnswers(set);
  set.render = [](const nlohmann::json& m) -> std::optional<std::string> {
    std::string s;
    for (const auto& turn : m) {
      s += "<|" + turn["role"].get<std::string>() + "|>" +
           turn["content"].get<std::string>();
    }
    return s + "<|assistant|>";
  };
  EvalOptions o = Options(testing::TempDir("runner") + "/run");
  o.precisions = {"bf16"};
  o.strategies = {"zero-shot"};
  RunStudy(o, set);
  ASSERT_FALSE(set.log.requests.empty());
  for (const auto& r : set.log.requests) {
    EXPECT_EQ(r.text.rfind("<|system|>", 0), 0u) << r.text;
    EXPECT_FALSE(r.add_special_tokens);  // the template writes them
    ASSERT_EQ(r.messages.size(), 2u);
    EXPECT_EQ(r.messages[1]["role"], "user");
  }

  // --no-chat: the plain prompt, special tokens added by the tokenizer.
  FakeSet plain;
  DefaultAnswers(plain);
  plain.render = set.render;
  o.out_dir = testing::TempDir("runner") + "/plain";
  o.chat = false;
  RunStudy(o, plain);
  for (const auto& r : plain.log.requests) {
    EXPECT_EQ(r.text.find("<|"), std::string::npos);
    EXPECT_TRUE(r.add_special_tokens);
  }
}

TEST(RunnerTest, ATemplateThatRefusesASystemTurnGetsItFoldedIn) {
  FakeSet set;
  DefaultAnswers(set);
  set.render = [](const nlohmann::json& m) -> std::optional<std::string> {
    if (m[0]["role"] == "system") Fail("System role not supported");
    return "<user>" + m[0]["content"].get<std::string>();
  };
  EvalOptions o = Options(testing::TempDir("runner") + "/run");
  o.precisions = {"bf16"};
  o.strategies = {"zero-shot"};
  RunStudy(o, set);
  ASSERT_FALSE(set.log.requests.empty());
  for (const auto& r : set.log.requests) {
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.text, "<user>" + r.messages[0]["content"].get<std::string>());
    EXPECT_FALSE(r.add_special_tokens);
  }
}

TEST(RunnerTest, ABackendWithItsOwnTemplateGetsMessages) {
  FakeSet set;
  DefaultAnswers(set);
  set.own_template = true;
  set.answers["bf16"] = [](const BackendRequest&) {
    BackendResult r;
    r.reasoning = "It could be yes. Answer: yes";
    r.text = "Answer: no";
    return r;
  };
  const std::string out = testing::TempDir("runner") + "/run";
  EvalOptions o = Options(out);
  o.precisions = {"bf16"};
  o.strategies = {"zero-shot"};
  RunStudy(o, set);
  ASSERT_FALSE(set.log.requests.empty());
  for (const auto& r : set.log.requests) {
    EXPECT_TRUE(r.text.empty());
    ASSERT_EQ(r.messages.size(), 2u);
    EXPECT_EQ(r.messages[0]["role"], "system");
  }
  std::set<std::string> sent;
  for (const auto& r : set.log.requests)
    sent.insert(Fnv1aHex(r.messages.dump()));
  const auto rows = RunStore::OpenForRead(out)->Rows();
  ASSERT_EQ(rows.size(), set.log.requests.size());
  EXPECT_EQ(sent.size(), rows.size());  // one prompt per example
  for (const auto& row : rows) {
    // Hash of the messages sent; the reasoning is kept as a <think> block,
    // which the parser skips.
    EXPECT_TRUE(sent.count(row.prompt_hash));
    EXPECT_EQ(row.raw_output,
              "<think>It could be yes. Answer: yes</think>Answer: no");
    EXPECT_EQ(row.parsed, nlohmann::json({"no"}));
  }
}

}  // namespace
}  // namespace bioquant
