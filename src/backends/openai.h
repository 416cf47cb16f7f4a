// OpenAIBackend: the study against any OpenAI-compatible server (vLLM, TGI,
// llama.cpp's server, Ollama, `bioquant serve`) over HTTP(S) with libcurl.
//
// Each precision label is one deployment: an endpoint (the API's base URL,
// e.g. http://127.0.0.1:8000/v1) and the model name it serves. Requests go
// to {endpoint}/chat/completions (the server applies its chat template to
// the messages) or, with api "completions", to {endpoint}/completions: the
// prompt is rendered here with --tokenizer's chat template and sent as token
// ids (exact: no second BOS), or as plain text without a tokenizer.
//
// Many requests are in flight at once (concurrency) so a server's
// continuous batching stays busy; results are handed back as each finishes.
// Connection errors, timeouts, 429 and 5xx are retried with exponential
// backoff and jitter (Retry-After honoured), a bounded number of times;
// other 4xx end the call at once. The API key is read from an environment
// variable and never written anywhere. Memory is not measured (nullopt).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace bioquant {

struct Endpoint {
  std::string label;         // the precision label of the study
  std::string url;           // base URL, normalized to end in /v1
  std::string served_model;  // "" = the one model the server lists
};

struct OpenAIBackendOptions {
  std::vector<Endpoint> endpoints;
  std::string api = "chat";   // chat | completions
  std::string tokenizer_dir;  // completions: render and tokenize here
  int concurrency = 8;        // requests in flight per call
  int retries = 5;            // further attempts after a transient failure
  double request_timeout_s = 600;
  double connect_timeout_s = 10;
  double backoff_s = 0.5;     // first retry delay (doubles, jittered)
  double backoff_max_s = 30;  // cap (Retry-After may ask for more, to 120)
  std::string api_key_env;    // name of the variable holding the key
  bool stream = true;         // stream responses (measures time to first token)
};

// "bf16=http://a:8000/v1,nf4=http://b:8000/v1#org/model" (--endpoints): each
// label=URL[#served-model]. Throws Error naming `flag`.
std::vector<Endpoint> ParseEndpoints(const std::string& spec,
                                     const std::string& flag);
// http://host:8000 -> http://host:8000/v1; trailing slashes dropped.
std::string NormalizeEndpointUrl(const std::string& url,
                                 const std::string& flag);

// Checks the options (labels unique, URLs http(s), the key's variable set,
// the tokenizer loadable); throws Error naming the flag.
std::unique_ptr<BackendSet> MakeOpenAIBackendSet(const OpenAIBackendOptions& o);

// Server-sent events: feed bytes as they arrive; `on_data` gets the data of
// each complete event ("data:" lines joined with "\n"; comments and other
// fields skipped).
class SseParser {
 public:
  template <typename F>
  void Feed(const char* p, size_t n, F on_data) {
    buf_.append(p, n);
    size_t start = 0;
    for (;;) {
      const size_t nl = buf_.find('\n', start);
      if (nl == std::string::npos) break;
      std::string line = buf_.substr(start, nl - start);
      start = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {  // end of an event
        if (has_data_) on_data(data_);
        data_.clear();
        has_data_ = false;
      } else if (line.rfind("data:", 0) == 0) {
        std::string v = line.substr(5);
        if (!v.empty() && v[0] == ' ') v.erase(0, 1);
        if (has_data_) data_ += "\n";
        data_ += v;
        has_data_ = true;
      }
    }
    buf_.erase(0, start);
  }
  // Bytes of an unfinished line or event are pending.
  bool pending() const { return !buf_.empty() || has_data_; }

 private:
  std::string buf_;
  std::string data_;
  bool has_data_ = false;
};

}  // namespace bioquant
