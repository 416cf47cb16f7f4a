// `bioquant serve`: an OpenAI-compatible HTTP server (cpp-httplib) over one
// Engine with continuous batching (serve/scheduler.h).
//
// Routes: GET /health, GET /metrics (Prometheus text), GET /v1/models,
// POST /v1/chat/completions and /v1/completions (streamed as server-sent
// events with "stream": true). With an API key every route but /health
// needs "Authorization: Bearer <key>". Errors are OpenAI-style JSON
// ({"error": {"message", "type", "param", "code"}}) with 400 (bad request,
// prompt or max_tokens beyond the context), 401, 404 (route or model),
// 413 (body over --max-body-bytes), 429 (queue full), 503 (shutting down).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/engine.h"

namespace httplib {
class Server;
}

namespace bioquant::serve {

class Scheduler;
class Metrics;

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (Bind returns it)
  std::string api_key;     // empty: no authentication
  std::string model_name;  // what /v1/models lists and requests name
  int max_batch = 8;       // sequences decoding together
  int max_queue = 256;     // sequences waiting; more get 429
  int64_t context = 0;     // positions per sequence; 0 = the model's
  uint64_t max_body_bytes = 4ull << 20;
  std::string date;  // strftime_now in chat templates; "" = today
};

class Server {
 public:
  Server(Engine& engine, const ServeOptions& o);
  ~Server();

  // Binds the socket; returns the port. Throws Error naming --host/--port.
  int Bind();
  // Serves until Shutdown() is called (from another thread); returns when
  // every request in flight has been answered.
  void Run();
  // Stops taking requests (503), lets queued and running ones finish and
  // their responses go out, then stops listening. Any thread.
  void Shutdown();

  // The context a request is checked against.
  int64_t context() const { return context_; }

 private:
  void Routes();

  Engine& engine_;
  ServeOptions o_;
  int64_t context_ = 0;
  int64_t created_ = 0;  // unix time the server started (/v1/models)
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Metrics> metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};  // completions not yet fully answered
  std::atomic<uint64_t> next_id_{0};
};

}  // namespace bioquant::serve
