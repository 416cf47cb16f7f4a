#include "serve/openai_api.h"

#include <cmath>
#include <limits>

#include "util/json.h"

namespace bioquant::serve {
namespace {

[[noreturn]] void Bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "invalid_request_error", message, param);
}

// "'temperature' must be a number (got string)".
[[noreturn]] void WrongType(const std::string& key, const char* want,
                            const nlohmann::json& got) {
  Bad(key, "'" + key + "' must be " + want + " (got " + got.type_name() + ")");
}

bool Present(const nlohmann::json& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

float NumberIn(const nlohmann::json& body, const char* key, double lo,
               double hi, float fallback) {
  if (!Present(body, key)) return fallback;
  const auto& v = body[key];
  if (!v.is_number()) WrongType(key, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    Bad(key, "'" + std::string(key) + "' must be between " +
                 nlohmann::json(lo).dump() + " and " +
                 nlohmann::json(hi).dump());
  }
  return static_cast<float>(x);
}

int64_t IntegerAtLeast(const nlohmann::json& v, const std::string& key,
                       int64_t lo) {
  if (!v.is_number_integer()) WrongType(key, "an integer", v);
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() >
          static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    Bad(key, "'" + key + "' is too large");
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo) {
    Bad(key, "'" + key + "' must be >= " + std::to_string(lo));
  }
  return x;
}

// Message content: a string, or a list of parts of which the text parts are
// joined (what the OpenAI API accepts for text-only models).
std::string Content(const nlohmann::json& content, size_t i) {
  const std::string key = "messages[" + std::to_string(i) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    WrongType(key, "a string or a list of parts", content);
  std::string text;
  for (const auto& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" ||
        !part.contains("text") || !part["text"].is_string()) {
      Bad(key, "'" + key + "': only text parts are supported");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

nlohmann::json ErrorJson(const std::string& message, const std::string& type,
                         const std::string& param, const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
            {"code", code.empty() ? nlohmann::json() : nlohmann::json(code)}}}};
}

CompletionParams ParseCompletionRequest(const std::string& body, bool chat,
                                        const ApiLimits& limits) {
  nlohmann::json j;
  try {
    j = ParseJson(body);  // nesting bounded (util/json.h)
  } catch (const nlohmann::json::exception& e) {
    Bad("", std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) Bad("", "the request body must be a JSON object");
  CompletionParams p;
  p.chat = chat;
  if (Present(j, "model")) {
    if (!j["model"].is_string()) WrongType("model", "a string", j["model"]);
    p.model = j["model"].get<std::string>();
  }
  if (chat) {
    if (!Present(j, "messages")) Bad("messages", "'messages' is required");
    const auto& m = j["messages"];
    if (!m.is_array() || m.empty()) {
      Bad("messages", "'messages' must be a non-empty list");
    }
    for (size_t i = 0; i < m.size(); ++i) {
      const std::string key = "messages[" + std::to_string(i) + "]";
      if (!m[i].is_object() || !m[i].contains("role") ||
          !m[i]["role"].is_string()) {
        Bad(key, "'" + key + "' must be an object with a string 'role'");
      }
      const std::string role = m[i]["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant" &&
          role != "developer") {
        Bad(key + ".role", "'" + key + ".role': unsupported role '" + role +
                               "' (system, developer, user, assistant)");
      }
      p.messages.push_back(
          {{"role", role == "developer" ? "system" : role},
           {"content", Content(m[i].value("content", nlohmann::json()), i)}});
    }
  } else {
    if (!Present(j, "prompt")) Bad("prompt", "'prompt' is required");
    const auto& pr = j["prompt"];
    if (pr.is_string()) {
      p.prompt = pr.get<std::string>();
    } else if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) {
      p.prompt = pr[0].get<std::string>();
    } else if (pr.is_array() && !pr.empty() && pr[0].is_number_integer()) {
      for (const auto& t : pr) {
        const int64_t id = IntegerAtLeast(t, "prompt", 0);
        if (id > std::numeric_limits<int32_t>::max()) {
          Bad("prompt", "'prompt': token id out of range");
        }
        p.prompt_ids.push_back(static_cast<int32_t>(id));
      }
      p.prompt_is_ids = true;
    } else {
      Bad("prompt",
          "'prompt' must be a string or a list of token ids (one prompt per "
          "request)");
    }
  }
  if (Present(j, "max_completion_tokens")) {
    p.max_tokens =
        IntegerAtLeast(j["max_completion_tokens"], "max_completion_tokens", 0);
  } else if (Present(j, "max_tokens")) {
    p.max_tokens = IntegerAtLeast(j["max_tokens"], "max_tokens", 0);
  }
  p.temperature = NumberIn(j, "temperature", 0.0, 2.0, 1.0f);
  p.top_p = NumberIn(j, "top_p", 0.0, 1.0, 1.0f);
  if (p.top_p <= 0.0f) Bad("top_p", "'top_p' must be greater than 0");
  if (Present(j, "seed")) {
    const auto& s = j["seed"];
    if (!s.is_number_integer()) WrongType("seed", "an integer", s);
    p.seed = s.is_number_unsigned() ? s.get<uint64_t>()
                                    : static_cast<uint64_t>(s.get<int64_t>());
  }
  if (Present(j, "n")) {
    p.n = static_cast<int>(
        std::min<int64_t>(IntegerAtLeast(j["n"], "n", 1), limits.max_n + 1));
    if (p.n > limits.max_n) {
      Bad("n", "'n' must be <= " + std::to_string(limits.max_n));
    }
  }
  if (Present(j, "stop")) {
    const auto& s = j["stop"];
    if (s.is_string()) {
      p.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (static_cast<int>(s.size()) > limits.max_stop) {
        Bad("stop", "'stop' takes at most " + std::to_string(limits.max_stop) +
                        " strings");
      }
      for (const auto& x : s) {
        if (!x.is_string()) WrongType("stop", "a string or list of strings", x);
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      WrongType("stop", "a string or list of strings", s);
    }
  }
  if (Present(j, "stream")) {
    if (!j["stream"].is_boolean())
      WrongType("stream", "a boolean", j["stream"]);
    p.stream = j["stream"].get<bool>();
  }
  if (Present(j, "ignore_eos")) {
    if (!j["ignore_eos"].is_boolean()) {
      WrongType("ignore_eos", "a boolean", j["ignore_eos"]);
    }
    p.ignore_eos = j["ignore_eos"].get<bool>();
  }
  if (Present(j, "top_k")) {
    // vLLM takes -1 for "off" too.
    const int64_t k = IntegerAtLeast(j["top_k"], "top_k", -1);
    p.top_k =
        static_cast<int>(std::min<int64_t>(std::max<int64_t>(k, 0), 1 << 30));
  }
  if (Present(j, "stream_options")) {
    const auto& so = j["stream_options"];
    if (!so.is_object()) WrongType("stream_options", "an object", so);
    if (Present(so, "include_usage")) {
      if (!so["include_usage"].is_boolean()) {
        WrongType("stream_options.include_usage", "a boolean",
                  so["include_usage"]);
      }
      p.include_usage = so["include_usage"].get<bool>();
    }
  }
  // Features this server does not have: refused, never silently ignored.
  for (const char* key : {"logprobs", "top_logprobs", "echo"}) {
    if (Present(j, key) && j[key] != false && j[key] != 0) {
      Bad(key, std::string("'") + key + "' is not supported by this server");
    }
  }
  for (const char* key : {"tools", "functions", "response_format"}) {
    if (Present(j, key) && !(j[key].is_array() && j[key].empty())) {
      Bad(key, std::string("'") + key + "' is not supported by this server");
    }
  }
  if (Present(j, "best_of") && j["best_of"] != p.n) {
    Bad("best_of", "'best_of' other than n is not supported");
  }
  return p;
}

std::string ApiFinishReason(const std::string& engine_reason) {
  if (engine_reason == "length") return "length";
  return "stop";  // eos, stop string, cancelled
}

nlohmann::json UsageJson(const UsageOut& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

nlohmann::json CompletionJson(bool chat, const std::string& id, int64_t created,
                              const std::string& model,
                              const std::vector<ChoiceOut>& choices,
                              const UsageOut& usage) {
  nlohmann::json cs = nlohmann::json::array();
  for (const auto& c : choices) {
    nlohmann::json o = {{"index", c.index},
                        {"finish_reason", c.finish_reason},
                        {"logprobs", nullptr}};
    if (chat) {
      o["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      o["text"] = c.text;
    }
    cs.push_back(std::move(o));
  }
  return {{"id", id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", cs},
          {"usage", UsageJson(usage)}};
}

nlohmann::json ChunkJson(bool chat, const std::string& id, int64_t created,
                         const std::string& model, int index,
                         const std::string& text, bool first,
                         const std::string& finish_reason) {
  nlohmann::json c = {
      {"index", index},
      {"finish_reason", finish_reason.empty() ? nlohmann::json()
                                              : nlohmann::json(finish_reason)},
      {"logprobs", nullptr}};
  if (chat) {
    nlohmann::json delta = nlohmann::json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    c["delta"] = delta;
  } else {
    c["text"] = text;
  }
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", nlohmann::json::array({c})}};
}

nlohmann::json UsageChunkJson(bool chat, const std::string& id, int64_t created,
                              const std::string& model, const UsageOut& usage) {
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", nlohmann::json::array()},
          {"usage", UsageJson(usage)}};
}

std::string SseEvent(const nlohmann::json& j) {
  return "data: " +
         j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n\n";
}

}  // namespace bioquant::serve
