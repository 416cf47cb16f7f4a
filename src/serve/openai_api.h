// The OpenAI HTTP API as `bioquant serve` speaks it: request bodies of
// /v1/chat/completions and /v1/completions parsed and checked into
// CompletionParams, and the JSON of responses, streamed chunks and errors.
// Pure functions (no engine, no sockets): unit-tested and fuzzed apart.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace bioquant::serve {

// An error the client caused or must see, with its HTTP status and OpenAI
// error type ("invalid_request_error", "authentication_error", ...).
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, const std::string& message,
           std::string param = "", std::string code = "")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;
  std::string param;
  std::string code;
};

// {"error": {"message", "type", "param", "code"}} (param/code null when
// empty), as OpenAI returns it.
nlohmann::json ErrorJson(const std::string& message, const std::string& type,
                         const std::string& param = "",
                         const std::string& code = "");

struct CompletionParams {
  bool chat = true;
  std::string model;  // as the client named it ("" when absent)
  // chat: [{"role", "content": string}] (content parts joined)
  nlohmann::json messages = nlohmann::json::array();
  // completions: the prompt as text, or as token ids
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  std::optional<int64_t> max_tokens;  // absent: up to the context
  float temperature = 1.0f;           // OpenAI's default
  float top_p = 1.0f;
  std::optional<uint64_t> seed;
  int n = 1;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Extensions vLLM also accepts: keep generating past end-of-sequence
  // tokens, and top-k sampling (0 = off).
  bool ignore_eos = false;
  int top_k = 0;
};

// Limits a request is checked against (from the server's flags).
struct ApiLimits {
  int max_n = 16;
  int max_stop = 4;
};

// Parses a request body. Throws ApiError (400) naming the offending field;
// unknown fields are ignored, unsupported features (logprobs, tools, echo,
// best_of > n) are refused.
CompletionParams ParseCompletionRequest(const std::string& body, bool chat,
                                        const ApiLimits& limits = {});

// OpenAI's finish_reason for an engine's ("eos"/"stop" -> "stop", "length").
std::string ApiFinishReason(const std::string& engine_reason);

struct ChoiceOut {
  int index = 0;
  std::string text;
  std::string finish_reason;  // OpenAI's
};

struct UsageOut {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

nlohmann::json UsageJson(const UsageOut& u);

// A whole (non-streamed) response: chat.completion or text_completion.
nlohmann::json CompletionJson(bool chat, const std::string& id, int64_t created,
                              const std::string& model,
                              const std::vector<ChoiceOut>& choices,
                              const UsageOut& usage);

// One streamed chunk: a piece of choice `index`'s text, and/or its
// finish_reason (empty: not finished). Chat chunks carry "delta"
// (the first one of a choice also its role), completion chunks "text".
nlohmann::json ChunkJson(bool chat, const std::string& id, int64_t created,
                         const std::string& model, int index,
                         const std::string& text, bool first,
                         const std::string& finish_reason);
// The last chunk when the client asked for usage: no choices.
nlohmann::json UsageChunkJson(bool chat, const std::string& id, int64_t created,
                              const std::string& model, const UsageOut& usage);

// "data: <json>\n\n" (server-sent event).
std::string SseEvent(const nlohmann::json& j);

}  // namespace bioquant::serve
