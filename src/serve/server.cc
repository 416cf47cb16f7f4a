#include "serve/server.h"

#include <httplib.h>

#include <chrono>
#include <random>
#include <thread>

#include "serve/metrics.h"
#include "serve/openai_api.h"
#include "serve/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/sys.h"

namespace bioquant::serve {
namespace {

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SendError(httplib::Response& res, int status, const std::string& type,
               const std::string& message, const std::string& param = "",
               const std::string& code = "") {
  res.status = status;
  res.set_content(ErrorJson(message, type, param, code).dump(),
                  "application/json");
}

// Equal strings, in time that does not depend on where they differ.
bool SameSecret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

// The longest suffix of `text` that begins one of `stops` without
// completing it: text the stream holds back, since a stop string completed
// by a later piece cuts it off.
size_t StopHoldback(const std::string& text,
                    const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t n = std::min(text.size(), s.size() - 1); n > hold; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

// What one completion request has received so far, and its response bytes:
// SSE chunks as pieces arrive (streaming) or the whole JSON at the end.
struct Reply {
  Reply(bool chat, std::string id, int64_t created, std::string model,
        const CompletionParams& p, int64_t prompt_tokens)
      : chat(chat),
        stream(p.stream),
        include_usage(p.include_usage),
        id(std::move(id)),
        created(created),
        model(std::move(model)),
        stops(p.stop),
        text(p.n),
        sent(p.n, 0),
        started(p.n, false),
        choices(p.n),
        usage{prompt_tokens, 0} {}

  // The bytes an event adds to the response (streaming), or "" (a whole
  // response is written by Finish). `first_token` is called once, when the
  // first text goes out.
  template <typename F>
  std::string Take(const Ticket::Event& e, F first_token) {
    const int c = e.choice;
    if (!e.result) {
      text[c] += e.text;
      // Text that may begin a stop string waits for the next piece.
      const size_t safe = text[c].size() - StopHoldback(text[c], stops);
      if (safe <= sent[c]) return "";
      const std::string piece = text[c].substr(sent[c], safe - sent[c]);
      sent[c] = safe;
      return Piece(c, piece, "", first_token);
    }
    const GenerateResult& r = *e.result;
    if (r.finish_reason == "error") {
      status = 500;
      error = r.text;
      return "";
    }
    usage.completion_tokens += static_cast<int64_t>(r.output_ids.size());
    choices[c] = {c, r.text, ApiFinishReason(r.finish_reason)};
    if (!stream) return "";
    // What is left of the final text (a stop string cut off, the
    // decoder's last bytes), then the finish reason.
    const std::string rest =
        r.text.size() > sent[c] ? r.text.substr(sent[c]) : std::string();
    sent[c] = r.text.size();
    std::string bytes;
    if (!rest.empty()) bytes += Piece(c, rest, "", first_token);
    return bytes + Piece(c, "", choices[c].finish_reason, first_token);
  }

  // The end of the response.
  std::string Finish() const {
    if (!stream) {
      if (!error.empty()) return ErrorJson(error, "server_error").dump();
      return CompletionJson(chat, id, created, model, choices, usage)
          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string bytes;
    if (!error.empty()) bytes += SseEvent(ErrorJson(error, "server_error"));
    if (include_usage) {
      bytes += SseEvent(UsageChunkJson(chat, id, created, model, usage));
    }
    return bytes + "data: [DONE]\n\n";
  }

  template <typename F>
  std::string Piece(int c, const std::string& t, const std::string& finish,
                    F first_token) {
    const bool first = !started[c];
    started[c] = true;
    if (!t.empty() && !first_token_seen) {
      first_token_seen = true;
      first_token();
    }
    return SseEvent(ChunkJson(chat, id, created, model, c, t, first, finish));
  }

  const bool chat, stream, include_usage;
  const std::string id;
  const int64_t created;
  const std::string model;
  const std::vector<std::string> stops;
  std::vector<std::string> text;  // per choice, as streamed so far
  std::vector<size_t> sent;       // bytes of it written
  std::vector<bool> started;      // a chunk went out (chat: with the role)
  std::vector<ChoiceOut> choices;
  UsageOut usage;
  bool first_token_seen = false;
  bool finished = false;  // the response was written whole
  int status = 200;       // what /metrics counts
  std::string error;      // an engine failure (a whole response: its body)
};

}  // namespace

Server::Server(Engine& engine, const ServeOptions& o)
    : engine_(engine), o_(o), created_(UnixNow()) {
  if (o_.max_batch < 1) Fail("--max-batch must be >= 1");
  if (o_.max_queue < 1) Fail("--max-queue must be >= 1");
  if (o_.context < 0) Fail("--ctx must be >= 0");
  const int64_t model_ctx = engine.context_length();
  context_ = o_.context > 0 ? o_.context : model_ctx;
  if (o_.context > 0 && model_ctx > 0 && o_.context > model_ctx) {
    Fail("--ctx {}: the model's context is {} positions", o_.context,
         model_ctx);
  }
  if (context_ <= 0) {
    Fail(
        "--ctx: the model's config.json has no max_position_embeddings; give "
        "--ctx");
  }
  engine.RequireTokenizer();  // prompts are text
  scheduler_ = std::make_unique<Scheduler>(
      engine, SchedulerOptions{o_.max_batch, o_.max_queue});
  metrics_ = std::make_unique<Metrics>();
  http_ = std::make_unique<httplib::Server>();
  // Every request that can be in flight gets a thread (streaming handlers
  // hold theirs), plus a few for /health and /metrics.
  const size_t threads =
      static_cast<size_t>(std::min(1024, o_.max_batch + o_.max_queue + 4));
  http_->new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  http_->set_payload_max_length(o_.max_body_bytes);
  http_->set_read_timeout(30);
  http_->set_write_timeout(30);
  Routes();
}

Server::~Server() = default;

int Server::Bind() {
  const int port = o_.port == 0
                       ? http_->bind_to_any_port(o_.host)
                       : (http_->bind_to_port(o_.host, o_.port) ? o_.port : -1);
  if (port < 0) {
    Fail(
        "--host {} --port {}: cannot listen there (in use, or not an "
        "address of this machine)",
        o_.host, o_.port);
  }
  return port;
}

void Server::Run() { http_->listen_after_bind(); }

void Server::Shutdown() {
  draining_ = true;
  scheduler_->Drain();
  // Responses of finished sequences may still be on their way out.
  while (in_flight_ > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  http_->stop();
}

void Server::Routes() {
  httplib::Server& s = *http_;
  s.set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (o_.api_key.empty() || req.path == "/health") {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        const std::string auth = req.get_header_value("Authorization");
        if (auth.rfind("Bearer ", 0) == 0 &&
            SameSecret(auth.substr(7), o_.api_key)) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        SendError(res, 401, "authentication_error",
                  auth.empty() ? "missing Authorization: Bearer <key>"
                               : "invalid API key",
                  "", "invalid_api_key");
        metrics_->Request(req.path, 401);
        return httplib::Server::HandlerResponse::Handled;
      });
  s.set_error_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;  // a handler's own error
        if (res.status == 413) {
          SendError(res, 413, "invalid_request_error",
                    fmt::format("request body over {} bytes (--max-body-bytes)",
                                o_.max_body_bytes));
        } else if (res.status == 404) {
          SendError(res, 404, "invalid_request_error",
                    fmt::format("no route {} {}", req.method, req.path), "",
                    "not_found");
        } else {
          SendError(res, res.status, "invalid_request_error",
                    fmt::format("HTTP {}", res.status));
        }
        metrics_->Request(req.path, res.status);
      });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_) {
      SendError(res, 503, "server_error", "shutting down");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  s.Get("/metrics",
        [this](const httplib::Request& req, httplib::Response& res) {
          res.set_content(metrics_->Render(scheduler_->stats()),
                          "text/plain; version=0.0.4");
          metrics_->Request(req.path, 200);
        });
  s.Get("/v1/models",
        [this](const httplib::Request& req, httplib::Response& res) {
          const nlohmann::json model = {{"id", o_.model_name},
                                        {"object", "model"},
                                        {"created", created_},
                                        {"owned_by", "bioquant"},
                                        {"max_model_len", context_}};
          res.set_content(
              nlohmann::json({{"object", "list"}, {"data", {model}}}).dump(),
              "application/json");
          metrics_->Request(req.path, 200);
        });
  for (const bool chat : {true, false}) {
    const std::string route = chat ? "/v1/chat/completions" : "/v1/completions";
    s.Post(route, [this, chat, route](const httplib::Request& req,
                                      httplib::Response& res) {
      Stopwatch clock;
      ++in_flight_;
      // Decremented when the response is fully written (streaming) or
      // when this handler returns (whole responses).
      bool handed_off = false;
      try {
        if (draining_) {
          throw ApiError(503, "server_error", "the server is shutting down");
        }
        const CompletionParams p = ParseCompletionRequest(req.body, chat);
        if (!p.model.empty() && p.model != o_.model_name) {
          throw ApiError(404, "invalid_request_error",
                         fmt::format("the model '{}' does not exist (this "
                                     "server has '{}')",
                                     p.model, o_.model_name),
                         "model", "model_not_found");
        }
        // The prompt's tokens.
        const Tokenizer& tok = engine_.RequireTokenizer();
        std::vector<int32_t> ids;
        if (chat) {
          std::string text;
          bool rendered = false;
          try {
            rendered = engine_.RenderChat(p.messages, true, o_.date, "", &text);
          } catch (const Error& e) {
            throw ApiError(400, "invalid_request_error",
                           std::string("chat template: ") + e.what(),
                           "messages");
          }
          if (!rendered) {
            throw ApiError(400, "invalid_request_error",
                           "this model has no chat template; use "
                           "/v1/completions",
                           "messages");
          }
          ids = tok.Encode(text, false);
        } else if (p.prompt_is_ids) {
          ids = p.prompt_ids;
          for (int32_t id : ids) {
            if (id >= engine_.config().vocab_size) {
              throw ApiError(400, "invalid_request_error",
                             fmt::format("token id {} is outside the "
                                         "vocabulary ({} tokens)",
                                         id, engine_.config().vocab_size),
                             "prompt");
            }
          }
        } else {
          ids = tok.Encode(p.prompt, true);
        }
        const int64_t n_prompt = static_cast<int64_t>(ids.size());
        if (n_prompt == 0) {
          throw ApiError(400, "invalid_request_error", "the prompt is empty",
                         chat ? "messages" : "prompt");
        }
        if (n_prompt >= context_) {
          throw ApiError(
              400, "invalid_request_error",
              fmt::format("the prompt has {} tokens; this model's context is "
                          "{} positions",
                          n_prompt, context_),
              chat ? "messages" : "prompt", "context_length_exceeded");
        }
        const int64_t room = context_ - n_prompt;
        const int64_t max_tokens = p.max_tokens.value_or(room);
        if (max_tokens > room) {
          throw ApiError(
              400, "invalid_request_error",
              fmt::format("max_tokens {} + {} prompt tokens exceed this "
                          "model's context of {} positions",
                          max_tokens, n_prompt, context_),
              "max_tokens", "context_length_exceeded");
        }
        const uint64_t seed =
            p.seed ? *p.seed : std::random_device{}() * 2654435761ull;
        std::vector<GenerateRequest> reqs(p.n);
        for (int i = 0; i < p.n; ++i) {
          reqs[i].prompt_ids = ids;
          reqs[i].max_new_tokens = static_cast<int>(max_tokens);
          reqs[i].sampling.temperature = p.temperature;
          reqs[i].sampling.top_p = p.top_p;
          reqs[i].sampling.top_k = p.top_k;
          reqs[i].ignore_eos = p.ignore_eos;
          reqs[i].sampling.seed = seed + static_cast<uint64_t>(i);
          reqs[i].stop = p.stop;
        }
        std::shared_ptr<Ticket> ticket =
            scheduler_->Submit(std::move(reqs), p.stream);
        if (!ticket) {
          throw ApiError(429, "rate_limit_error",
                         fmt::format("the queue is full ({} sequences "
                                     "waiting; --max-queue)",
                                     o_.max_queue));
        }
        const std::string id =
            fmt::format("{}-{:x}{:06d}", chat ? "chatcmpl" : "cmpl", created_,
                        static_cast<int>(next_id_++ % 1000000));
        auto out = std::make_shared<Reply>(chat, id, UnixNow(), o_.model_name,
                                           p, n_prompt);
        handed_off = true;
        // Both forms go out through one chunked provider: it notices a
        // client that went away (a failed write: a streamed piece, an SSE
        // comment, or, for a whole response, a space before the JSON every
        // second) and cancels its sequences, freeing their slots.
        res.set_chunked_content_provider(
            p.stream ? "text/event-stream" : "application/json",
            [this, out, ticket, clock](size_t, httplib::DataSink& sink) {
              bool done = false;
              const auto ev = ticket->Wait(std::chrono::seconds(1), &done);
              // (A zero-length chunk would end the response: skip it.)
              auto write = [&](const std::string& data) {
                return data.empty() || sink.write(data.data(), data.size());
              };
              if (ev.empty() && !done) {
                return write(out->stream ? ": keep-alive\n\n" : " ");
              }
              for (const auto& e : ev) {
                if (!write(out->Take(e, [&] {
                      metrics_->TimeToFirstToken(clock.ElapsedMs() / 1000.0);
                    }))) {
                  return false;
                }
              }
              if (!done) return true;
              write(out->Finish());
              sink.done();
              out->finished = true;
              return true;
            },
            [this, ticket, out, route, clock](bool) {
              if (!out->finished) ticket->Cancel();  // the client went away
              metrics_->Request(route, out->status);
              metrics_->Latency(clock.ElapsedMs() / 1000.0);
              --in_flight_;
            });
      } catch (const ApiError& e) {
        SendError(res, e.status, e.type, e.what(), e.param, e.code);
        metrics_->Request(route, e.status);
      } catch (const std::exception& e) {
        SendError(res, 500, "server_error", e.what());
        metrics_->Request(route, 500);
      }
      if (!handed_off) --in_flight_;
    });
  }
}

}  // namespace bioquant::serve
