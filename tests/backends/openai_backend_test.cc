// OpenAIBackend against an in-process fake server (cpp-httplib on
// 127.0.0.1, any free port) whose handlers script what a real server may do:
// stream or not, reasoning text, 429 with Retry-After, 500s, slow answers,
// malformed JSON, dropped connections, 400s, several models.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "backends/openai.h"
#include "engine/synth.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/sys.h"

namespace bioquant {
namespace {

using Handler =
    std::function<void(const httplib::Request&, httplib::Response&)>;

// A server on 127.0.0.1 in a thread of this process.
class FakeServer {
 public:
  FakeServer() {
    srv_.Get("/v1/models", [this](const httplib::Request& q,
                                  httplib::Response& r) {
      std::lock_guard<std::mutex> lock(mu_);
      last_auth_ = q.get_header_value("Authorization");
      models_calls_++;
      nlohmann::json data = nlohmann::json::array();
      for (const auto& m : models_) {
        // "created" changes on every call, as some servers do.
        data.push_back({{"id", m},
                        {"object", "model"},
                        {"created", models_calls_},
                        {"owned_by", "fake"}});
      }
      r.set_content(nlohmann::json({{"object", "list"}, {"data", data}}).dump(),
                    "application/json");
    });
    auto completion = [this](const httplib::Request& q, httplib::Response& r) {
      Handler h;
      {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.push_back(nlohmann::json::parse(q.body));
        last_auth_ = q.get_header_value("Authorization");
        const int n = static_cast<int>(bodies_.size());
        h = script_.count(n) ? script_[n] : default_;
        in_flight_++;
        max_in_flight_ = std::max(max_in_flight_, in_flight_);
      }
      h(q, r);
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_--;
    };
    srv_.Post("/v1/chat/completions", completion);
    srv_.Post("/v1/completions", completion);
    port_ = srv_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~FakeServer() {
    srv_.stop();
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
  }
  // Handler for the n-th completion request (1-based); others get default.
  void On(int n, Handler h) { script_[n] = std::move(h); }
  void Default(Handler h) { default_ = std::move(h); }
  std::vector<nlohmann::json> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  int max_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_;
  }
  std::string last_auth() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_auth_;
  }
  std::vector<std::string> models_ = {"org/med-7b"};

 private:
  httplib::Server srv_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::map<int, Handler> script_;
  Handler default_;
  std::vector<nlohmann::json> bodies_;
  int in_flight_ = 0, max_in_flight_ = 0, models_calls_ = 0;
  std::string last_auth_;
};

// A whole chat response echoing the request's last user message.
Handler ChatWhole(const std::string& prefix = "Answer: ") {
  return [prefix](const httplib::Request& q, httplib::Response& r) {
    const auto b = nlohmann::json::parse(q.body);
    const std::string user =
        b.contains("messages")
            ? b["messages"].back()["content"].get<std::string>()
            : std::string("prompt");
    r.set_content(
        nlohmann::json(
            {{"choices",
              {{{"index", 0},
                {"message",
                 {{"role", "assistant"}, {"content", prefix + user}}},
                {"finish_reason", "stop"}}}},
             {"usage", {{"prompt_tokens", 11}, {"completion_tokens", 3}}}})
            .dump(),
        "application/json");
  };
}

// A streamed chat response: `pieces` as deltas, usage at the end.
Handler ChatStream(std::vector<std::string> pieces, std::string reasoning = "",
                   bool finish = true) {
  return [=](const httplib::Request&, httplib::Response& r) {
    std::string body;
    auto event = [&](const nlohmann::json& j) {
      body += "data: " + j.dump() + "\n\n";
    };
    if (!reasoning.empty()) {
      event(
          {{"choices",
            {{{"index", 0}, {"delta", {{"reasoning_content", reasoning}}}}}}});
    }
    for (const auto& p : pieces) {
      event({{"choices", {{{"index", 0}, {"delta", {{"content", p}}}}}}});
    }
    if (finish) {
      event({{"choices",
              {{{"index", 0},
                {"delta", nlohmann::json::object()},
                {"finish_reason", "length"}}}}});
      event({{"choices", nlohmann::json::array()},
             {"usage", {{"prompt_tokens", 9}, {"completion_tokens", 4}}}});
      body += "data: [DONE]\n\n";
    }
    r.set_content(body, "text/event-stream");
  };
}

Handler Status(int status, const std::string& message,
               const std::string& retry_after = "") {
  return [=](const httplib::Request&, httplib::Response& r) {
    r.status = status;
    if (!retry_after.empty()) r.set_header("Retry-After", retry_after);
    r.set_content(
        nlohmann::json({{"error", {{"message", message}, {"type", "x"}}}})
            .dump(),
        "application/json");
  };
}

OpenAIBackendOptions Options(const FakeServer& s, bool stream = false) {
  OpenAIBackendOptions o;
  o.endpoints = {{"nf4", s.url(), ""}};
  o.stream = stream;
  o.backoff_s = 0.01;
  o.backoff_max_s = 0.05;
  o.retries = 3;
  o.request_timeout_s = 5;
  return o;
}

std::vector<BackendRequest> Requests(int n) {
  std::vector<BackendRequest> reqs(n);
  for (int i = 0; i < n; ++i) {
    reqs[i].messages = {
        {{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"}, {"content", "q" + std::to_string(i)}}};
    reqs[i].max_new_tokens = 16;
    reqs[i].temperature = i % 2 ? 0.7f : 0.0f;
    reqs[i].seed = 100 + i;
  }
  return reqs;
}

TEST(OpenAIBackendTest, ChatRequestsAndWholeResponses) {
  FakeServer s;
  s.Default(ChatWhole());
  auto set = MakeOpenAIBackendSet(Options(s));
  set->Fingerprint();  // resolves the served model from /models
  auto b = set->Open("nf4");
  EXPECT_TRUE(b->AppliesChatTemplate());
  std::string text;
  EXPECT_FALSE(b->RenderChat(nlohmann::json::array(), "2025-01-01", &text));
  EXPECT_EQ(b->Compute(), "remote");
  EXPECT_FALSE(b->Memory().has_value());
  auto reqs = Requests(5);
  reqs[2].stop = {"\n\n"};
  std::vector<size_t> order;
  const auto res = b->Generate(
      reqs, [&](size_t i, const BackendResult&) { order.push_back(i); });
  ASSERT_EQ(res.size(), 5u);
  EXPECT_EQ(order.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(res[i].text, "Answer: q" + std::to_string(i));
    EXPECT_EQ(res[i].finish_reason, "stop");
    EXPECT_EQ(res[i].tokens_in, 11);
    EXPECT_EQ(res[i].tokens_out, 3);
    EXPECT_GT(res[i].latency_ms, 0);
  }
  // What went over the wire.
  const auto bodies = s.bodies();
  ASSERT_EQ(bodies.size(), 5u);
  for (const auto& body : bodies) {
    EXPECT_EQ(body["model"], "org/med-7b");
    EXPECT_EQ(body["max_tokens"], 16);
    EXPECT_EQ(body["n"], 1);
    EXPECT_EQ(body["messages"].size(), 2u);
    EXPECT_FALSE(body.contains("stream"));
    const int i =
        std::stoi(body["messages"][1]["content"].get<std::string>().substr(1));
    EXPECT_EQ(body["seed"], 100 + i);
    EXPECT_EQ(body.contains("stop"), i == 2);
  }
}

TEST(OpenAIBackendTest,
     StreamedResponsesKeepReasoningApartAndTimeTheFirstToken) {
  FakeServer s;
  s.Default(ChatStream({"The ans", "wer is ", "yes."}, "Let me think."));
  auto set = MakeOpenAIBackendSet(Options(s, true));
  const auto res = set->Open("nf4")->Generate(Requests(2));
  for (const auto& r : res) {
    EXPECT_EQ(r.text, "The answer is yes.");
    EXPECT_EQ(r.reasoning, "Let me think.");
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.tokens_in, 9);
    EXPECT_EQ(r.tokens_out, 4);
    EXPECT_LE(r.prefill_ms, r.latency_ms);
    EXPECT_NEAR(r.prefill_ms + r.decode_ms, r.latency_ms, 1e-6);
  }
  const auto body = s.bodies()[0];
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(OpenAIBackendTest, TransientFailuresAreRetried) {
  FakeServer s;
  s.Default(ChatWhole());
  s.On(1, Status(429, "slow down", "0"));
  s.On(2, Status(503, "loading"));
  s.On(3, [](const httplib::Request&, httplib::Response& r) {
    r.set_content("{\"choices\": [", "application/json");  // malformed
  });
  s.On(4, [](const httplib::Request&, httplib::Response& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // timeout
    r.set_content("{}", "application/json");
  });
  OpenAIBackendOptions o = Options(s);
  o.concurrency = 1;
  o.retries = 4;
  o.request_timeout_s = 0.5;
  auto set = MakeOpenAIBackendSet(o);
  const auto res = set->Open("nf4")->Generate(Requests(1));
  EXPECT_EQ(res[0].text, "Answer: q0");
  EXPECT_EQ(s.bodies().size(), 5u);
}

TEST(OpenAIBackendTest, RetryAfterIsHonoured) {
  FakeServer s;
  s.Default(ChatWhole());
  s.On(1, Status(429, "slow down", "1"));
  auto set = MakeOpenAIBackendSet(Options(s));
  Stopwatch sw;
  set->Open("nf4")->Generate(Requests(1));
  EXPECT_GE(sw.ElapsedMs(), 950);
}

TEST(OpenAIBackendTest, ADroppedStreamIsRetried) {
  FakeServer s;
  s.Default(ChatStream({"fine"}));
  // Half a stream, then the connection closes without [DONE].
  s.On(1, ChatStream({"par", "tial"}, "", false));
  s.On(2, [](const httplib::Request&, httplib::Response& r) {
    r.set_chunked_content_provider(
        "text/event-stream", [](size_t, httplib::DataSink& sink) {
          const std::string ev =
              "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": "
              "\"x\"}}]}\n\n";
          sink.write(ev.data(), ev.size());
          return false;  // drop the connection mid-stream
        });
  });
  auto o = Options(s, true);
  o.concurrency = 1;
  const auto res = MakeOpenAIBackendSet(o)->Open("nf4")->Generate(Requests(1));
  EXPECT_EQ(res[0].text, "fine");
  EXPECT_EQ(s.bodies().size(), 3u);
}

TEST(OpenAIBackendTest, AContextLengthErrorIsAnAnswerNotAFailure) {
  FakeServer s;
  s.Default(ChatWhole());
  // vLLM's wording; llama.cpp's and TGI's are recognised too.
  s.On(2, Status(400,
                 "This model's maximum context length is 2048 tokens. However, "
                 "you requested 4100 tokens (4084 in the messages, 16 in the "
                 "completion)."));
  auto o = Options(s);
  o.concurrency = 1;
  auto b = MakeOpenAIBackendSet(o)->Open("nf4");
  std::vector<size_t> got;
  const auto res = b->Generate(
      Requests(4), [&](size_t i, const BackendResult&) { got.push_back(i); });
  EXPECT_EQ(got, (std::vector<size_t>{0, 1, 2, 3}));
  EXPECT_EQ(res[1].finish_reason, "prompt_too_long");
  EXPECT_TRUE(res[1].text.empty());
  EXPECT_EQ(res[2].text, "Answer: q2");
  EXPECT_EQ(s.bodies().size(), 4u);  // no retry of it
}

TEST(OpenAIBackendTest, AClientErrorEndsTheCallAfterDeliveringTheRest) {
  FakeServer s;
  s.Default(ChatWhole());
  s.On(3, Status(400, "prompt is too long for this model"));
  auto o = Options(s);
  o.concurrency = 1;  // requests go out in order
  auto b = MakeOpenAIBackendSet(o)->Open("nf4");
  std::vector<size_t> got;
  try {
    b->Generate(Requests(6),
                [&](size_t i, const BackendResult&) { got.push_back(i); });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("HTTP 400"), std::string::npos) << m;
    EXPECT_NE(m.find("prompt is too long"), std::string::npos) << m;
    EXPECT_NE(m.find("nf4="), std::string::npos) << m;
  }
  EXPECT_EQ(got, (std::vector<size_t>{0, 1}));  // the two before it
  EXPECT_EQ(s.bodies().size(), 3u);             // no retry of a 400
}

TEST(OpenAIBackendTest, PersistentFailureGivesUpAfterTheRetries) {
  FakeServer s;
  s.Default(Status(500, "boom"));
  auto o = Options(s);
  o.concurrency = 1;
  o.retries = 2;
  try {
    MakeOpenAIBackendSet(o)->Open("nf4")->Generate(Requests(1));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("after 3 attempts"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(s.bodies().size(), 3u);
}

TEST(OpenAIBackendTest, ManyRequestsAreInFlightAtOnce) {
  FakeServer s;
  s.Default([](const httplib::Request& q, httplib::Response& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ChatWhole()(q, r);
  });
  auto o = Options(s);
  o.concurrency = 4;
  const auto res = MakeOpenAIBackendSet(o)->Open("nf4")->Generate(Requests(12));
  EXPECT_EQ(res.size(), 12u);
  EXPECT_GT(s.max_in_flight(), 1);
  EXPECT_LE(s.max_in_flight(), 4);
}

TEST(OpenAIBackendTest, CompletionsApiSendsTokenIdsWithATokenizer) {
  FakeServer s;
  s.Default([](const httplib::Request&, httplib::Response& r) {
    r.set_content(R"({"choices": [{"text": "B", "finish_reason": "stop"}]})",
                  "application/json");
  });
  SynthOptions so;
  so.out_dir = testing::TempDir("oaitok") + "/m";
  WriteSyntheticCheckpoint(so);
  auto o = Options(s);
  o.api = "completions";
  o.tokenizer_dir = so.out_dir;
  auto b = MakeOpenAIBackendSet(o)->Open("nf4");
  EXPECT_FALSE(b->AppliesChatTemplate());
  BackendRequest req = Requests(1)[0];
  ASSERT_TRUE(b->RenderChat(req.messages, "2025-01-01", &req.text));
  req.add_special_tokens = false;
  const auto res = b->Generate({req});
  EXPECT_EQ(res[0].text, "B");
  const auto tok = Tokenizer::Load(so.out_dir);
  const auto ids = tok->Encode(req.text, false);
  EXPECT_EQ(s.bodies()[0]["prompt"], nlohmann::json(ids));
  EXPECT_EQ(res[0].tokens_in, static_cast<int64_t>(ids.size()));

  // Without a tokenizer: the plain text.
  o.tokenizer_dir.clear();
  auto plain = MakeOpenAIBackendSet(o)->Open("nf4");
  std::string unused;
  EXPECT_FALSE(plain->RenderChat(req.messages, "", &unused));
  req.text = "Question: yes or no?";
  plain->Generate({req});
  EXPECT_EQ(s.bodies()[1]["prompt"], "Question: yes or no?");
}

TEST(OpenAIBackendTest, FingerprintCoversTheDeploymentNotTheClock) {
  FakeServer s;
  auto a = MakeOpenAIBackendSet(Options(s));
  const std::string fa = a->Fingerprint();
  EXPECT_EQ(MakeOpenAIBackendSet(Options(s))->Fingerprint(), fa);
  auto o = Options(s);
  o.endpoints[0].label = "int8";
  EXPECT_NE(MakeOpenAIBackendSet(o)->Fingerprint(), fa);
  s.models_ = {"org/med-7b", "org/other"};
  o = Options(s);
  o.endpoints[0].served_model = "org/med-7b";
  const std::string named = MakeOpenAIBackendSet(o)->Fingerprint();
  EXPECT_EQ(named, fa);  // same deployment, named explicitly
  // Several models and none named; a model the server does not have.
  try {
    MakeOpenAIBackendSet(Options(s))->Fingerprint();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("org/other"), std::string::npos);
  }
  o.endpoints[0].served_model = "org/missing";
  EXPECT_THROW(MakeOpenAIBackendSet(o)->Fingerprint(), Error);
}

TEST(OpenAIBackendTest, TheKeyIsSentButNeverRecorded) {
  FakeServer s;
  s.Default(ChatWhole());
  setenv("BQ_TEST_OAI_KEY", "sk-test-123", 1);
  auto o = Options(s);
  o.api_key_env = "BQ_TEST_OAI_KEY";
  auto set = MakeOpenAIBackendSet(o);
  set->Fingerprint();
  set->Open("nf4")->Generate(Requests(1));
  EXPECT_EQ(s.last_auth(), "Bearer sk-test-123");
  const std::string recorded =
      set->Manifest().dump() + set->Config().dump() + set->Fingerprint();
  EXPECT_EQ(recorded.find("sk-test-123"), std::string::npos);
  o.api_key_env = "BQ_TEST_OAI_KEY_UNSET";
  EXPECT_THROW(MakeOpenAIBackendSet(o), Error);
}

TEST(OpenAIBackendTest, AnUnreachableServerIsAClearError) {
  // A port nothing listens on: bound, read back, closed.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  const int port = ntohs(addr.sin_port);
  OpenAIBackendOptions o;
  o.endpoints = {
      {"bf16", "http://127.0.0.1:" + std::to_string(port) + "/v1", "m"}};
  o.backoff_s = 0.01;
  o.retries = 1;
  try {
    MakeOpenAIBackendSet(o)->Fingerprint();
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("bf16=http://127.0.0.1"), std::string::npos) << m;
    EXPECT_NE(m.find("cannot reach"), std::string::npos) << m;
  }
}

TEST(OpenAIBackendTest, EndpointSpecsParse) {
  const auto eps = ParseEndpoints(
      "bf16=http://a:8000/v1,nf4=http://b:8001#org/m-nf4,int8=https://c/x/v1/",
      "--endpoints");
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_EQ(eps[0].label, "bf16");
  EXPECT_EQ(eps[0].url, "http://a:8000/v1");
  EXPECT_EQ(eps[1].url, "http://b:8001/v1");  // /v1 added to a bare host
  EXPECT_EQ(eps[1].served_model, "org/m-nf4");
  EXPECT_EQ(eps[2].url, "https://c/x/v1");
  for (const char* bad :
       {"", "bf16", "=http://a", "a=ftp://x", "a=http://x,a=http://y"}) {
    EXPECT_THROW(ParseEndpoints(bad, "--endpoints"), Error) << bad;
  }
}

TEST(OpenAIBackendTest, SseParserSplitsEventsAcrossReads) {
  SseParser p;
  std::vector<std::string> got;
  const std::string stream =
      ": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: "
      "line2\n\ndata: [DONE]\n\n";
  for (char c : stream) {
    p.Feed(&c, 1, [&](const std::string& d) { got.push_back(d); });
  }
  EXPECT_EQ(got,
            (std::vector<std::string>{"{\"a\":1}", "line1\nline2", "[DONE]"}));
  EXPECT_FALSE(p.pending());
}

}  // namespace
}  // namespace bioquant
