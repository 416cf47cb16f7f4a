#include "backends/openai.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"
#include "util/sys.h"

namespace bioquant {
namespace {

// The exchange of one HTTP request.
struct HttpResult {
  CURLcode code = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::string body;          // the body, unless streamed to on_chunk
  double retry_after_s = 0;  // Retry-After in seconds (0: none)
};

// One curl easy handle, reused for every request of a worker so that
// connections stay open between requests.
class Http {
 public:
  Http() : h_(curl_easy_init()) {
    if (!h_) Fail("libcurl: cannot create a handle");
  }
  ~Http() { curl_easy_cleanup(h_); }
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  // GET when body is null, else POST of JSON. `on_chunk` (may be empty)
  // receives a 200 response's body as it arrives; returning false aborts.
  HttpResult Request(const std::string& url, const std::string* body,
                     const std::string& api_key, bool sse, double timeout_s,
                     double connect_timeout_s,
                     const std::function<bool(const char*, size_t)>& on_chunk) {
    HttpResult r;
    State st{&r, &on_chunk, h_};
    curl_easy_reset(h_);
    curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(timeout_s * 1000));
    curl_easy_setopt(h_, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(connect_timeout_s * 1000));
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, &Http::OnBody);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(h_, CURLOPT_HEADERFUNCTION, &Http::OnHeader);
    curl_easy_setopt(h_, CURLOPT_HEADERDATA, &st);
    char err[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, err);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (sse) headers = curl_slist_append(headers, "Accept: text/event-stream");
    const std::string auth = "Authorization: Bearer " + api_key;
    if (!api_key.empty()) headers = curl_slist_append(headers, auth.c_str());
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers);
    if (body) {
      curl_easy_setopt(h_, CURLOPT_POST, 1L);
      curl_easy_setopt(h_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(body->size()));
    }
    r.code = curl_easy_perform(h_);
    curl_slist_free_all(headers);
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &r.status);
    if (r.code != CURLE_OK) {
      r.curl_error = err[0] ? err : curl_easy_strerror(r.code);
    }
    return r;
  }

 private:
  struct State {
    HttpResult* r;
    const std::function<bool(const char*, size_t)>* on_chunk;
    CURL* h;
  };
  static size_t OnBody(char* p, size_t size, size_t n, void* user) {
    auto* st = static_cast<State*>(user);
    long status = 0;
    curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200 && *st->on_chunk) {
      return (*st->on_chunk)(p, size * n) ? size * n : 0;
    }
    // Bodies are small JSON (errors, whole responses): bounded anyway.
    if (st->r->body.size() + size * n > (64u << 20)) return 0;
    st->r->body.append(p, size * n);
    return size * n;
  }
  static size_t OnHeader(char* p, size_t size, size_t n, void* user) {
    auto* st = static_cast<State*>(user);
    std::string line(p, size * n);
    std::string lower = line;
    for (char& c : lower) c = static_cast<char>(std::tolower(c));
    if (lower.rfind("retry-after:", 0) == 0) {
      // Seconds; an HTTP date is not worth parsing here (the backoff
      // applies instead).
      st->r->retry_after_s = std::atof(line.c_str() + 12);
    }
    return size * n;
  }
  CURL* h_;
};

// How one attempt at a request ended.
struct Attempt {
  bool ok = false;
  bool retryable = false;
  double retry_after_s = 0;
  std::string error;
  BackendResult result;
};

// The message of an OpenAI-style error body, or the body's start.
std::string ServerMessage(const std::string& body) {
  try {
    const auto j = ParseJson(body);
    if (j.contains("error")) {
      const auto& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string())
        return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
    if (j.contains("message") && j["message"].is_string())
      return j["message"].get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return body.substr(0, 200);
}

std::string StringOr(const nlohmann::json& o, const char* key) {
  if (!o.is_object() || !o.contains(key) || !o[key].is_string()) return "";
  return o[key].get<std::string>();
}

// What a response (or a streamed chunk) says: its text, reasoning, finish
// reason and usage, added to `out`.
void ReadChoice(const nlohmann::json& j, bool chat, BackendResult& out,
                bool* has_usage, bool* saw_text) {
  if (j.contains("usage") && j["usage"].is_object()) {
    const auto& u = j["usage"];
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
      out.tokens_in = u["prompt_tokens"].get<int64_t>();
    if (u.contains("completion_tokens") &&
        u["completion_tokens"].is_number_integer()) {
      out.tokens_out = u["completion_tokens"].get<int64_t>();
      *has_usage = true;
    }
  }
  if (!j.contains("choices") || !j["choices"].is_array() ||
      j["choices"].empty()) {
    return;
  }
  const auto& c = j["choices"][0];
  if (!c.is_object()) return;
  std::string text, reasoning;
  if (chat) {
    const auto& m =
        c.contains("delta") ? c["delta"] : c.value("message", nlohmann::json());
    text = StringOr(m, "content");
    // vLLM and others return a reasoning model's thinking apart.
    reasoning = StringOr(m, "reasoning_content");
    if (reasoning.empty()) reasoning = StringOr(m, "reasoning");
  } else {
    text = StringOr(c, "text");
  }
  out.text += text;
  out.reasoning += reasoning;
  *saw_text = !text.empty() || !reasoning.empty();
  if (c.contains("finish_reason") && c["finish_reason"].is_string())
    out.finish_reason = c["finish_reason"].get<std::string>();
}

bool RetryableStatus(long status) {
  return status == 408 || status == 429 || status >= 500;
}

// A 400 that says the prompt (with max_tokens) exceeds the context, as
// vLLM / bioquant serve ("context_length_exceeded", "maximum context
// length"), llama.cpp ("exceed_context_size_error", "exceeds the available
// context size") and TGI ("must be <= ...") word it.
bool IsContextLengthError(const std::string& body) {
  std::string b = body;
  std::transform(b.begin(), b.end(), b.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (const char* needle :
       {"context_length_exceeded", "maximum context length",
        "exceed_context_size", "context size", "context window",
        "max_new_tokens` must be <="}) {
    if (b.find(needle) != std::string::npos) return true;
  }
  return false;
}

class OpenAIBackend : public Backend {
 public:
  OpenAIBackend(Endpoint ep, const OpenAIBackendOptions& o,
                std::shared_ptr<const Tokenizer> tok, std::string api_key)
      : ep_(std::move(ep)),
        o_(o),
        tok_(std::move(tok)),
        api_key_(std::move(api_key)),
        chat_(o.api == "chat") {}

  bool RenderChat(const nlohmann::json& messages, const std::string& date,
                  std::string* out) const override {
    if (chat_) return false;
    return RenderChatFor(tok_.get(), "", messages, true, date, out);
  }
  bool AppliesChatTemplate() const override { return chat_; }
  std::string Compute() const override { return "remote"; }

  std::vector<BackendResult> Generate(const std::vector<BackendRequest>& reqs,
                                      const OnResult& on_result) override {
    const size_t n = reqs.size();
    std::vector<BackendResult> results(n);
    std::mutex mu;
    std::condition_variable cv;
    std::deque<size_t> finished;
    size_t next = 0;
    int running = 0;
    std::atomic<bool> abort{false};
    std::string fatal;
    const int workers = static_cast<int>(
        std::min<size_t>(n, static_cast<size_t>(std::max(1, o_.concurrency))));
    std::vector<std::thread> threads;
    running = workers;
    for (int w = 0; w < workers; ++w) {
      threads.emplace_back([&] {
        Http http;
        for (;;) {
          size_t i;
          {
            std::lock_guard<std::mutex> lock(mu);
            if (abort || next >= n) break;
            i = next++;
          }
          std::string error;
          BackendResult r;
          const bool ok = Run(http, reqs[i], abort, &r, &error);
          std::lock_guard<std::mutex> lock(mu);
          if (ok) {
            results[i] = std::move(r);
            finished.push_back(i);
          } else if (!abort.exchange(true)) {
            fatal = error;
          }
          cv.notify_all();
        }
        std::lock_guard<std::mutex> lock(mu);
        --running;
        cv.notify_all();
      });
    }
    // Hand results over on this thread as they come.
    for (;;) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !finished.empty() || running == 0; });
      if (finished.empty()) break;
      const size_t i = finished.front();
      finished.pop_front();
      lock.unlock();
      if (on_result) on_result(i, results[i]);
    }
    for (auto& t : threads) t.join();
    if (!fatal.empty()) Fail("{}", fatal);
    return results;
  }

 private:
  // The request body for one completion.
  std::string Body(const BackendRequest& r, int64_t* prompt_tokens) const {
    nlohmann::json b = {{"model", ep_.served_model},
                        {"max_tokens", r.max_new_tokens},
                        {"temperature", r.temperature},
                        {"top_p", r.top_p},
                        {"seed", r.seed},
                        {"n", 1}};
    if (!r.stop.empty()) b["stop"] = r.stop;
    if (o_.stream) {
      b["stream"] = true;
      b["stream_options"] = {{"include_usage", true}};
    }
    if (chat_) {
      b["messages"] = r.messages;
    } else if (tok_) {
      // Token ids: the server tokenizes nothing, so the prompt is exactly
      // what bioquant rendered (no second BOS).
      const std::vector<int32_t> ids =
          tok_->Encode(r.text, r.add_special_tokens);
      *prompt_tokens = static_cast<int64_t>(ids.size());
      b["prompt"] = ids;
    } else {
      b["prompt"] = r.text;
    }
    return b.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  // One request with retries. False (and *error) when it cannot be done.
  bool Run(Http& http, const BackendRequest& req,
           const std::atomic<bool>& abort, BackendResult* out,
           std::string* error) {
    int64_t prompt_tokens = 0;
    const std::string body = Body(req, &prompt_tokens);
    const std::string url =
        ep_.url + (chat_ ? "/chat/completions" : "/completions");
    std::mt19937_64 rng(std::random_device{}());
    for (int attempt = 0;; ++attempt) {
      Attempt a = Once(http, url, body);
      if (a.ok) {
        if (a.result.tokens_in == 0) a.result.tokens_in = prompt_tokens;
        *out = std::move(a.result);
        return true;
      }
      if (!a.retryable || attempt >= o_.retries || abort) {
        *error = fmt::format(
            "{}={}: {}{}", ep_.label, url, a.error,
            a.retryable ? fmt::format(" (after {} attempts)", attempt + 1)
                        : "");
        return false;
      }
      // Exponential backoff with jitter, at least what Retry-After asks.
      const double backoff =
          std::min(o_.backoff_max_s, o_.backoff_s * std::pow(2.0, attempt)) *
          std::uniform_real_distribution<double>(0.5, 1.0)(rng);
      const double wait = std::max(backoff, std::min(a.retry_after_s, 120.0));
      Stopwatch sw;
      while (sw.ElapsedMs() < wait * 1000 && !abort) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

  Attempt Once(Http& http, const std::string& url, const std::string& body) {
    Attempt a;
    BackendResult& r = a.result;
    bool has_usage = false, done = false, bad_chunk = false;
    int64_t pieces = 0;
    double ttft_ms = -1;
    std::string chunk_error;
    SseParser sse;
    Stopwatch sw;
    std::function<bool(const char*, size_t)> on_chunk;
    if (o_.stream) {
      on_chunk = [&](const char* p, size_t len) {
        sse.Feed(p, len, [&](const std::string& data) {
          if (data == "[DONE]") {
            done = true;
            return;
          }
          nlohmann::json j;
          try {
            j = ParseJson(data);
          } catch (const nlohmann::json::exception&) {
            bad_chunk = true;
            return;
          }
          if (j.contains("error")) {
            chunk_error = ServerMessage(data);
            return;
          }
          bool saw = false;
          ReadChoice(j, chat_, r, &has_usage, &saw);
          if (saw) {
            ++pieces;
            if (ttft_ms < 0) ttft_ms = sw.ElapsedMs();
          }
        });
        return !bad_chunk && chunk_error.empty();
      };
    }
    const HttpResult h =
        http.Request(url, &body, api_key_, o_.stream, o_.request_timeout_s,
                     o_.connect_timeout_s, on_chunk);
    const double total_ms = sw.ElapsedMs();
    a.retry_after_s = h.retry_after_s;
    if (bad_chunk || !chunk_error.empty()) {
      a.retryable = true;
      a.error = bad_chunk ? "malformed JSON in the event stream"
                          : "server error in the stream: " + chunk_error;
      return a;
    }
    if (h.code != CURLE_OK) {
      a.retryable =
          h.code != CURLE_URL_MALFORMAT && h.code != CURLE_UNSUPPORTED_PROTOCOL;
      a.error = h.curl_error;
      return a;
    }
    if (h.status == 400 && IsContextLengthError(h.body)) {
      // The prompt (with max_tokens) does not fit the server's context: an
      // answer about this request, not a failure of the run.
      r.finish_reason = "prompt_too_long";
      r.latency_ms = total_ms;
      a.ok = true;
      return a;
    }
    if (h.status != 200) {
      a.retryable = RetryableStatus(h.status);
      a.error = fmt::format("HTTP {}: {}", h.status, ServerMessage(h.body));
      return a;
    }
    if (o_.stream) {
      if (!done && r.finish_reason.empty()) {
        a.retryable = true;
        a.error = "the event stream ended before the completion did";
        return a;
      }
      if (!has_usage)
        r.tokens_out = pieces;  // one piece per token, near enough
    } else {
      nlohmann::json j;
      try {
        j = ParseJson(h.body);
      } catch (const nlohmann::json::exception&) {
        a.retryable = true;
        a.error = "malformed JSON in the response";
        return a;
      }
      if (!j.is_object() || !j.contains("choices") ||
          !j["choices"].is_array() || j["choices"].empty()) {
        a.retryable = true;
        a.error = "a response without choices";
        return a;
      }
      bool saw = false;
      ReadChoice(j, chat_, r, &has_usage, &saw);
    }
    r.latency_ms = total_ms;
    r.prefill_ms = ttft_ms >= 0 ? ttft_ms : total_ms;
    r.decode_ms = total_ms - r.prefill_ms;
    a.ok = true;
    return a;
  }

  const Endpoint ep_;
  const OpenAIBackendOptions o_;
  std::shared_ptr<const Tokenizer> tok_;
  const std::string api_key_;
  const bool chat_;
};

class OpenAIBackendSet : public BackendSet {
 public:
  OpenAIBackendSet(OpenAIBackendOptions o, std::shared_ptr<const Tokenizer> tok,
                   std::string api_key)
      : o_(std::move(o)), tok_(std::move(tok)), api_key_(std::move(api_key)) {}

  std::string Fingerprint() override {
    nlohmann::json id = {{"api", o_.api}};
    for (Endpoint& ep : o_.endpoints) {
      id["endpoints"].push_back({{"label", ep.label},
                                 {"url", ep.url},
                                 {"served_model", Resolve(ep)},
                                 {"models", facts_[ep.label]}});
    }
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx",
                  static_cast<unsigned long long>(Fnv1a(id.dump())));
    return buf;
  }
  nlohmann::json Config() const override {
    return {{"backend", "openai"}, {"api", o_.api}};
  }
  nlohmann::json Manifest() const override {
    nlohmann::json eps = nlohmann::json::array();
    for (const Endpoint& ep : o_.endpoints) {
      eps.push_back({{"label", ep.label},
                     {"url", ep.url},
                     {"served_model", ep.served_model}});
    }
    return {{"model", {{"endpoints", eps}}},
            {"run",
             {{"backend", "openai"},
              {"api", o_.api},
              {"concurrency", o_.concurrency},
              {"stream", o_.stream},
              {"tokenizer", o_.tokenizer_dir}}}};
  }
  std::unique_ptr<Backend> Open(const std::string& label) override {
    for (Endpoint& ep : o_.endpoints) {
      if (ep.label != label) continue;
      Resolve(ep);
      return std::make_unique<OpenAIBackend>(ep, o_, tok_, api_key_);
    }
    Fail("--endpoints: no endpoint labelled '{}'", label);
  }

 private:
  // Asks {url}/models what the server serves; fills in the served model
  // when the user named none and keeps the model's stable facts for the
  // fingerprint (not "created", which some servers set per call).
  std::string Resolve(Endpoint& ep) {
    if (facts_.count(ep.label)) return ep.served_model;
    Http http;
    const std::string url = ep.url + "/models";
    HttpResult h;
    std::mt19937_64 rng(std::random_device{}());
    for (int attempt = 0;; ++attempt) {
      h = http.Request(url, nullptr, api_key_, false, o_.connect_timeout_s + 30,
                       o_.connect_timeout_s, nullptr);
      const bool transient = h.code != CURLE_OK ? h.code != CURLE_URL_MALFORMAT
                                                : RetryableStatus(h.status);
      if (!transient || attempt >= o_.retries) break;
      const double backoff =
          std::min(o_.backoff_max_s, o_.backoff_s * std::pow(2.0, attempt)) *
          std::uniform_real_distribution<double>(0.5, 1.0)(rng);
      std::this_thread::sleep_for(
          std::chrono::milliseconds(static_cast<int64_t>(
              std::max(backoff, std::min(h.retry_after_s, 120.0)) * 1000)));
    }
    if (h.code != CURLE_OK) {
      Fail("--endpoints {}={}: cannot reach {}: {}", ep.label, ep.url, url,
           h.curl_error);
    }
    if (h.status != 200) {
      Fail("--endpoints {}={}: GET {} answered HTTP {}: {}", ep.label, ep.url,
           url, h.status, ServerMessage(h.body));
    }
    nlohmann::json j;
    try {
      j = ParseJson(h.body);
    } catch (const nlohmann::json::exception&) {
      Fail("--endpoints {}={}: GET {}: not JSON", ep.label, ep.url, url);
    }
    std::vector<std::string> ids;
    nlohmann::json chosen;
    if (j.contains("data") && j["data"].is_array()) {
      for (const auto& m : j["data"]) {
        const std::string id = StringOr(m, "id");
        if (id.empty()) continue;
        ids.push_back(id);
        if (id == ep.served_model) chosen = m;
      }
    }
    if (ids.empty()) {
      Fail("--endpoints {}={}: GET {} lists no models", ep.label, ep.url, url);
    }
    if (ep.served_model.empty()) {
      if (ids.size() > 1) {
        Fail(
            "--endpoints {}={}: the server has several models ({}); name one "
            "as {}={}#MODEL or with --served-model",
            ep.label, ep.url, fmt::join(ids, ", "), ep.label, ep.url);
      }
      ep.served_model = ids[0];
      chosen = j["data"][0];
    } else if (chosen.is_null()) {
      Fail("--endpoints {}={}: the server does not serve '{}' (it has: {})",
           ep.label, ep.url, ep.served_model, fmt::join(ids, ", "));
    }
    nlohmann::json facts = nlohmann::json::object();
    for (const char* key :
         {"id", "root", "parent", "owned_by", "max_model_len", "meta"}) {
      if (chosen.contains(key)) facts[key] = chosen[key];
    }
    facts_[ep.label] = facts;
    return ep.served_model;
  }

  OpenAIBackendOptions o_;
  std::shared_ptr<const Tokenizer> tok_;
  std::string api_key_;
  std::map<std::string, nlohmann::json> facts_;  // label -> /models facts
};

}  // namespace

std::string NormalizeEndpointUrl(const std::string& url,
                                 const std::string& flag) {
  std::string u = url;
  if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) {
    Fail("{}: '{}' is not an http:// or https:// URL", flag, url);
  }
  while (!u.empty() && u.back() == '/') u.pop_back();
  const size_t host = u.find("://") + 3;
  if (u.find('/', host) == std::string::npos) u += "/v1";  // no path given
  return u;
}

std::vector<Endpoint> ParseEndpoints(const std::string& spec,
                                     const std::string& flag) {
  std::vector<Endpoint> out;
  size_t start = 0;
  while (start <= spec.size()) {
    // Items are separated by commas that start "label=": URLs may hold
    // commas in their query strings only in odd setups; we split on every
    // comma, which is what users write.
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      Fail("{}: '{}' is not label=URL[#served-model]", flag, item);
    }
    Endpoint ep;
    ep.label = item.substr(0, eq);
    std::string url = item.substr(eq + 1);
    const size_t hash = url.find('#');
    if (hash != std::string::npos) {
      ep.served_model = url.substr(hash + 1);
      url = url.substr(0, hash);
    }
    ep.url = NormalizeEndpointUrl(url, flag);
    for (const auto& o : out) {
      if (o.label == ep.label)
        Fail("{}: label '{}' given twice", flag, ep.label);
    }
    out.push_back(ep);
  }
  if (out.empty()) Fail("{}: no endpoint given", flag);
  return out;
}

std::unique_ptr<BackendSet> MakeOpenAIBackendSet(
    const OpenAIBackendOptions& o) {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (o.endpoints.empty()) Fail("--endpoints: no endpoint given");
  if (o.api != "chat" && o.api != "completions") {
    Fail("--api {}: expected chat or completions", o.api);
  }
  if (o.concurrency < 1) Fail("--concurrency must be >= 1");
  if (o.retries < 0) Fail("--retries must be >= 0");
  if (!(o.request_timeout_s > 0)) Fail("--request-timeout must be > 0");
  std::string key;
  if (!o.api_key_env.empty()) {
    const char* v = std::getenv(o.api_key_env.c_str());
    if (!v || !*v) {
      Fail("--api-key-env {}: the environment variable is not set or empty",
           o.api_key_env);
    }
    key = v;
  }
  std::shared_ptr<const Tokenizer> tok;
  if (!o.tokenizer_dir.empty()) {
    if (o.api != "completions") {
      Fail(
          "--tokenizer: only used with --api completions (chat servers "
          "apply their own template)");
    }
    if (!IsDirectory(o.tokenizer_dir))
      Fail("--tokenizer: {}: not a directory", o.tokenizer_dir);
    tok = WithContext("--tokenizer", [&] {
      return std::shared_ptr<const Tokenizer>(Tokenizer::Load(o.tokenizer_dir));
    });
  }
  return std::make_unique<OpenAIBackendSet>(o, std::move(tok), std::move(key));
}

}  // namespace bioquant
