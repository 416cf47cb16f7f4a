// `bioquant serve` end to end: the binary on 127.0.0.1 (any free port), a
// synthetic model, real HTTP from cpp-httplib's client. Texts are compared
// with the engine's own for the same prompt: continuous batching, streaming
// and n > 1 must not change a single byte.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "engine/engine.h"
#include "engine/synth.h"
#include "process.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/sys.h"

namespace bioquant {
namespace {

using namespace std::chrono_literals;

const std::string& ModelDir() {
  static const std::string dir = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = testing::TempDir("servemodel") + "/tiny-chat";
    o.seed = 21;
    o.init_std = 0.08;  // peakier logits: varied text, some EOS
    WriteSyntheticCheckpoint(o);
    return o.out_dir;
  }();
  return dir;
}

// A server process and a client for it.
class Serve {
 public:
  explicit Serve(std::vector<std::string> extra = {},
                 std::vector<std::string> env = {})
      : dir_(testing::TempDir("serve")) {
    std::vector<std::string> argv = {BIOQUANT_BINARY, "serve",  "--model",
                                     ModelDir(),      "--port", "0",
                                     "--threads",     "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<testing::Process>(argv, dir_, env);
    const auto port =
        proc_->WaitForStderr(R"(listening on http://127\.0\.0\.1:(\d+))", 60s);
    if (!port) {
      ADD_FAILURE() << "serve did not start: " << proc_->Stderr();
      return;
    }
    port_ = std::stoi(*port);
  }
  int port() const { return port_; }
  testing::Process& proc() { return *proc_; }
  std::unique_ptr<httplib::Client> Client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(60, 0);
    return c;
  }
  // POST of a JSON body; status and parsed body (null when not JSON).
  std::pair<int, nlohmann::json> Post(
      const std::string& path, const nlohmann::json& body,
      const httplib::Headers& headers = {}) const {
    auto res =
        Client()->Post(path.c_str(), headers, body.dump(), "application/json");
    if (!res) return {-1, nullptr};
    return {res->status, nlohmann::json::parse(res->body, nullptr, false)};
  }

 private:
  std::string dir_;
  std::unique_ptr<testing::Process> proc_;
  int port_ = -1;
};

// POSTs JSON and hands the response body to `receive` as it arrives;
// returning false from it drops the connection. The HTTP status.
int PostReceiving(const Serve& s, const std::string& path,
                  const std::string& body,
                  std::function<bool(const char*, size_t)> receive) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    return receive(d, n);
  };
  httplib::Response res;
  httplib::Error err;
  s.Client()->send(req, res, err);
  return res.status;
}

// What the engine itself generates for a chat prompt.
std::string EngineChat(const std::string& user, int max_tokens,
                       float temperature, uint64_t seed,
                       std::vector<std::string> stop = {}) {
  static std::unique_ptr<Engine> engine = [] {
    EngineOptions o;
    o.model_dir = ModelDir();
    o.threads = 2;
    return Engine::Load(o);
  }();
  std::string text;
  EXPECT_TRUE(engine->RenderChat(
      nlohmann::json::array({{{"role", "user"}, {"content", user}}}), true, "",
      "", &text));
  GenerateRequest r;
  r.prompt_ids = engine->RequireTokenizer().Encode(text, false);
  r.max_new_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.stop = std::move(stop);
  return engine->Generate(r).text;
}

nlohmann::json Chat(const std::string& user, int max_tokens,
                    float temperature = 0, uint64_t seed = 0) {
  return {{"model", "tiny-chat"},
          {"messages", {{{"role", "user"}, {"content", user}}}},
          {"max_tokens", max_tokens},
          {"temperature", temperature},
          {"seed", seed}};
}

// The text of a streamed response, its finish reasons and whether it ended
// with [DONE].
struct Streamed {
  int status = 0;
  std::map<int, std::string> text;
  std::map<int, std::string> finish;
  bool done = false;
  nlohmann::json usage;
};

Streamed PostStream(const Serve& s, const std::string& path,
                    nlohmann::json body) {
  body["stream"] = true;
  Streamed out;
  std::string buf;
  auto res = s.Client()->Post(path.c_str(), httplib::Headers{}, body.dump(),
                              "application/json");
  if (!res) return out;
  out.status = res->status;
  std::stringstream ss(res->body);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      out.done = true;
      continue;
    }
    const auto j = nlohmann::json::parse(data);
    if (j.contains("usage") && !j["usage"].is_null()) out.usage = j["usage"];
    for (const auto& c : j["choices"]) {
      const int i = c["index"];
      if (c.contains("delta")) {
        out.text[i] += c["delta"].value("content", "");
      } else {
        out.text[i] += c.value("text", "");
      }
      if (!c["finish_reason"].is_null()) out.finish[i] = c["finish_reason"];
    }
  }
  return out;
}

TEST(ServeTest, HealthModelsAndMetrics) {
  Serve s;
  auto c = s.Client();
  auto h = c->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c->Get("/v1/models");
  ASSERT_TRUE(m);
  const auto models = nlohmann::json::parse(m->body);
  EXPECT_EQ(models["data"][0]["id"], "tiny-chat");  // the directory's name
  EXPECT_GT(models["data"][0]["max_model_len"].get<int>(), 0);
  s.Post("/v1/chat/completions", Chat("Hello", 4));
  // A request is counted once its response has gone out (httplib's logger
  // runs after the write), so a scrape right after the response may not see
  // it yet: poll briefly.
  const std::string counted =
      "bioquant_requests_total{route=\"/v1/chat/completions\","
      "status=\"200\"} 1";
  auto x = c->Get("/metrics");
  for (int i = 0; i < 100 && x && x->body.find(counted) == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(50ms);
    x = c->Get("/metrics");
  }
  ASSERT_TRUE(x);
  for (const char* name :
       {"bioquant_requests_total{route=\"/v1/chat/"
        "completions\",status=\"200\"} "
        "1",
        "bioquant_generation_tokens_total", "bioquant_queue_length",
        "bioquant_batch_size", "bioquant_request_duration_seconds_bucket",
        "bioquant_time_to_first_token_seconds_count"}) {
    EXPECT_NE(x->body.find(name), std::string::npos) << name << "\n" << x->body;
  }
  // The request's prefill and decode steps were timed.
  for (const char* name :
       {"bioquant_prefill_seconds_total ", "bioquant_decode_seconds_total "}) {
    const size_t at = x->body.find(std::string("\n") + name);
    ASSERT_NE(at, std::string::npos) << name << "\n" << x->body;
    EXPECT_GT(std::stod(x->body.substr(at + 1 + std::strlen(name))), 0.0)
        << name;
  }
}

TEST(ServeTest, ChatAndCompletionsGiveTheEnginesText) {
  Serve s;
  const auto [status, j] =
      s.Post("/v1/chat/completions", Chat("Is aspirin an NSAID?", 24));
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny-chat");
  const std::string text = j["choices"][0]["message"]["content"];
  EXPECT_EQ(text, EngineChat("Is aspirin an NSAID?", 24, 0, 0));
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() +
                j["usage"]["completion_tokens"].get<int>());
  const std::string fr = j["choices"][0]["finish_reason"];
  EXPECT_TRUE(fr == "stop" || fr == "length") << fr;

  // /v1/completions with token ids: the same as a rendered chat prompt.
  EngineOptions eo;
  eo.model_dir = ModelDir();
  auto engine = Engine::Load(eo);
  std::string rendered;
  engine->RenderChat(
      nlohmann::json::array(
          {{{"role", "user"}, {"content", "Is aspirin an NSAID?"}}}),
      true, "", "", &rendered);
  const auto ids = engine->RequireTokenizer().Encode(rendered, false);
  const auto [st2, k] =
      s.Post("/v1/completions",
             {{"prompt", ids}, {"max_tokens", 24}, {"temperature", 0}});
  ASSERT_EQ(st2, 200) << k.dump();
  EXPECT_EQ(k["object"], "text_completion");
  EXPECT_EQ(k["choices"][0]["text"], text);
  EXPECT_EQ(k["usage"]["prompt_tokens"], ids.size());
}

TEST(ServeTest, StreamingGivesTheSameTextAsAWholeResponse) {
  Serve s;
  for (const float temperature : {0.0f, 0.9f}) {
    nlohmann::json body = Chat("Name a disease.", 40, temperature, 7);
    const auto [status, whole] = s.Post("/v1/chat/completions", body);
    ASSERT_EQ(status, 200);
    body["stream_options"] = {{"include_usage", true}};
    const Streamed st = PostStream(s, "/v1/chat/completions", body);
    EXPECT_EQ(st.status, 200);
    EXPECT_TRUE(st.done);
    EXPECT_EQ(st.text.at(0), whole["choices"][0]["message"]["content"]);
    EXPECT_EQ(st.finish.at(0), whole["choices"][0]["finish_reason"]);
    EXPECT_EQ(st.usage, whole["usage"]);
  }
  // A stop string that spans pieces: the stream holds back what may start
  // it, so the streamed text equals the cut whole text.
  const std::string full = EngineChat("Name a drug.", 40, 0, 0);
  ASSERT_GE(full.size(), 6u) << full;
  const std::string stop = full.substr(3, 3);
  nlohmann::json body = Chat("Name a drug.", 40);
  body["stop"] = {stop};
  const auto [status, whole] = s.Post("/v1/chat/completions", body);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(whole["choices"][0]["message"]["content"],
            EngineChat("Name a drug.", 40, 0, 0, {stop}));
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "stop");
  const Streamed st = PostStream(s, "/v1/chat/completions", body);
  EXPECT_EQ(st.text.at(0), whole["choices"][0]["message"]["content"]);
}

TEST(ServeTest, NChoicesUseConsecutiveSeeds) {
  Serve s;
  nlohmann::json body = Chat("List symptoms.", 16, 1.0f, 100);
  body["n"] = 3;
  const auto [status, j] = s.Post("/v1/chat/completions", body);
  ASSERT_EQ(status, 200) << j.dump();
  ASSERT_EQ(j["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["message"]["content"],
              EngineChat("List symptoms.", 16, 1.0f, 100 + i));
  }
  const Streamed st = PostStream(s, "/v1/chat/completions", body);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(st.text.at(i), j["choices"][i]["message"]["content"]);
  }
}

TEST(ServeTest, ConcurrentRequestsJoinTheBatchAndKeepTheirText) {
  Serve s({"--max-batch", "4"});
  const std::vector<std::string> users = {"a",
                                          "What treats hypertension?",
                                          "Define sepsis.",
                                          "b c d",
                                          "Is metformin safe?",
                                          "Symptoms of flu",
                                          "x",
                                          "Name a gene."};
  std::vector<std::future<std::pair<int, nlohmann::json>>> futs;
  for (size_t i = 0; i < users.size(); ++i) {
    futs.push_back(std::async(std::launch::async, [&, i] {
      return s.Post(
          "/v1/chat/completions",
          Chat(users[i], 12 + 4 * static_cast<int>(i), i % 2 ? 0.8f : 0.0f, i));
    }));
  }
  for (size_t i = 0; i < users.size(); ++i) {
    const auto [status, j] = futs[i].get();
    ASSERT_EQ(status, 200) << j.dump();
    EXPECT_EQ(j["choices"][0]["message"]["content"],
              EngineChat(users[i], 12 + 4 * static_cast<int>(i),
                         i % 2 ? 0.8f : 0.0f, i))
        << "request " << i;
  }
  // More than one sequence decoded together at some step.
  auto x = s.Client()->Get("/metrics");
  ASSERT_TRUE(x);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      x->body, m, std::regex("bioquant_batch_size_mean ([0-9.e+]+)")));
  EXPECT_GT(std::stod(m[1]), 1.0) << x->body;
}

TEST(ServeTest, BadRequestsGetOpenAIErrors) {
  Serve s({"--max-body-bytes", "4096", "--ctx", "128"});
  auto c = s.Client();
  auto post = [&](const std::string& path, const std::string& body) {
    auto r = c->Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(r);
    return std::make_pair(
        r ? r->status : -1,
        r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json());
  };
  struct Case {
    std::string path, body;
    int status;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", 400, ""},
      {"/v1/chat/completions", "[1,2]", 400, ""},
      {"/v1/chat/completions", R"({"max_tokens": 3})", 400, "messages"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "robot", "content": "x"}]})", 400,
       "messages[0].role"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})",
       400, "temperature"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000})",
       400, "max_tokens"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})",
       400, "logprobs"},
      {"/v1/chat/completions",
       R"({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})",
       404, "model"},
      {"/v1/completions", R"({"prompt": [1, 2, 99999999]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": ")" + std::string(1000, 'a') + "\"}",
       400, "prompt"},
      {"/v1/nothing", "{}", 404, ""},
      {"/v1/chat/completions", std::string(5000, ' '), 413, ""},
  };
  for (const auto& k : cases) {
    const auto [status, j] = post(k.path, k.body);
    EXPECT_EQ(status, k.status) << k.body.substr(0, 80) << " -> " << j.dump();
    ASSERT_TRUE(j.is_object() && j.contains("error")) << j.dump();
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    if (!k.param.empty()) {
      EXPECT_EQ(j["error"]["param"], k.param);
    }
  }
  // The server is still fine.
  EXPECT_EQ(s.Post("/v1/chat/completions", Chat("x", 2)).first, 200);
}

TEST(ServeTest, AnApiKeyGuardsEveryRouteButHealth) {
  Serve s({"--api-key-env", "BQ_TEST_KEY"}, {"BQ_TEST_KEY=s3cret"});
  auto c = s.Client();
  EXPECT_EQ(c->Get("/health")->status, 200);
  EXPECT_EQ(c->Get("/v1/models")->status, 401);
  EXPECT_EQ(s.Post("/v1/chat/completions", Chat("x", 2)).first, 401);
  EXPECT_EQ(s.Post("/v1/chat/completions", Chat("x", 2),
                   {{"Authorization", "Bearer wrong"}})
                .first,
            401);
  const auto [st, j] = s.Post("/v1/chat/completions", Chat("x", 2),
                              {{"Authorization", "Bearer s3cret"}});
  EXPECT_EQ(st, 200) << j.dump();
  EXPECT_EQ(c->Get("/metrics", {{"Authorization", "Bearer s3cret"}})->status,
            200);
}

TEST(ServeTest, AFullQueueAnswers429) {
  Serve s({"--max-batch", "1", "--max-queue", "2"});
  // Three choices cannot wait in a queue of two: refused whole, at once.
  nlohmann::json body = Chat("y", 2);
  body["n"] = 3;
  const auto [status, j] = s.Post("/v1/chat/completions", body);
  EXPECT_EQ(status, 429) << j.dump();
  EXPECT_EQ(j["error"]["type"], "rate_limit_error");
  body["n"] = 2;
  EXPECT_EQ(s.Post("/v1/chat/completions", body).first, 200);
}

TEST(ServeTest, AClientThatGoesAwayFreesItsSlot) {
  Serve s({"--max-batch", "1"});
  nlohmann::json hold = Chat("hold", 100000);
  hold.erase("max_tokens");
  hold["ignore_eos"] = true;
  hold["stream"] = true;
  int chunks = 0;
  PostReceiving(s, "/v1/chat/completions", hold.dump(),
                [&](const char*, size_t) { return ++chunks < 3; });
  // The only slot is free again: a new request is answered.
  Stopwatch sw;
  const auto [status, j] = s.Post("/v1/chat/completions", Chat("next", 4));
  EXPECT_EQ(status, 200) << j.dump();
  EXPECT_LT(sw.ElapsedMs(), 20000);
  auto x = s.Client()->Get("/metrics");
  EXPECT_NE(x->body.find("bioquant_cancelled_total 1"), std::string::npos)
      << x->body;
}

TEST(ServeTest, SigtermFinishesRequestsInFlightThenExitsZero) {
  Serve s;
  nlohmann::json body = Chat("Tell me about insulin.", 300);
  body["ignore_eos"] = true;
  auto fut = std::async(std::launch::async, [&] {
    return PostStream(s, "/v1/chat/completions", body);
  });
  // Wait until it runs.
  for (int i = 0; i < 500; ++i) {
    auto x = s.Client()->Get("/metrics");
    if (x && x->body.find("bioquant_batch_size 1") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  s.proc().Signal(SIGTERM);
  const Streamed st = fut.get();
  EXPECT_EQ(st.status, 200);
  EXPECT_TRUE(st.done);
  EXPECT_EQ(st.finish.at(0), "length");
  const auto code = s.proc().Wait(30s);
  ASSERT_TRUE(code.has_value()) << "serve did not stop";
  EXPECT_EQ(*code, 0) << s.proc().Stderr();
  EXPECT_NE(s.proc().Stderr().find("SIGTERM"), std::string::npos);
}

TEST(ServeTest, StartupErrorsAreOneLine) {
  const std::string dir = testing::TempDir("servebad");
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"--api-key-env", "BQ_NO_SUCH_VAR_SET"}, {}, "--api-key-env"},
      {{"--ctx", "99999999"}, {}, "--ctx"},
      {{"--port", "70000"}, {}, "--port"},
      {{"--max-batch", "0"}, {}, "--max-batch"},
  };
  for (const auto& k : cases) {
    std::vector<std::string> argv = {BIOQUANT_BINARY, "serve", "--model",
                                     ModelDir()};
    if (k.args[0] != "--port") argv.insert(argv.end(), {"--port", "0"});
    argv.insert(argv.end(), k.args.begin(), k.args.end());
    testing::Process p(argv, dir, k.env);
    const auto code = p.Wait(60s);
    ASSERT_TRUE(code.has_value());
    const std::string err = p.Stderr();
    EXPECT_EQ(*code, 1) << err;
    EXPECT_NE(err.find(k.expect), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// A client nobody here wrote: curl, whole and streamed (-N).
TEST(ServeTest, CurlTalksToIt) {
  if (std::system("curl --version >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "curl not installed (scripts/setup.sh installs it)";
  }
  Serve s({"--api-key-env", "BQ_TEST_KEY"}, {"BQ_TEST_KEY=k1"});
  const std::string base =
      "curl -s -m 60 -H 'Authorization: Bearer k1' -H 'Content-Type: "
      "application/json' http://127.0.0.1:" +
      std::to_string(s.port());
  const std::string body =
      R"('{"model": "tiny-chat", "messages": [{"role": "user", "content": "Is aspirin an NSAID?"}], "max_tokens": 24, "temperature": 0)";
  auto run = [](const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    EXPECT_EQ(pclose(p), 0) << cmd;
    return out;
  };
  const auto whole = nlohmann::json::parse(
      run(base + "/v1/chat/completions -d " + body + "}'"));
  const std::string text = whole["choices"][0]["message"]["content"];
  EXPECT_EQ(text, EngineChat("Is aspirin an NSAID?", 24, 0, 0));
  const std::string sse = run(base + "/v1/chat/completions -N -d " + body +
                              R"(, "stream": true}')");
  std::string streamed;
  std::stringstream ss(sse);
  std::string line;
  std::string last;
  while (std::getline(ss, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    last = line;
    if (line == "data: [DONE]") continue;
    const auto j = nlohmann::json::parse(line.substr(6));
    streamed += j["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(last, "data: [DONE]");
  const auto models = nlohmann::json::parse(run(base + "/v1/models"));
  EXPECT_EQ(models["data"][0]["id"], "tiny-chat");
}

}  // namespace
}  // namespace bioquant
