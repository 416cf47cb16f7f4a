// The OpenAI request parser and response builders of `bioquant serve`.
#include "serve/openai_api.h"

#include <gtest/gtest.h>

namespace bioquant::serve {
namespace {

CompletionParams Chat(const std::string& body) {
  return ParseCompletionRequest(body, true);
}

// The HTTP status and param of the error a body gets.
std::pair<int, std::string> Refusal(const std::string& body, bool chat = true) {
  try {
    ParseCompletionRequest(body, chat);
  } catch (const ApiError& e) {
    return {e.status, e.param};
  }
  return {0, ""};
}

TEST(OpenAIApiTest, ParsesAChatRequest) {
  const auto p = Chat(R"({
    "model": "m", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "developer", "content": [{"type": "text", "text": "a"},
                                        {"type": "text", "text": "b"}]},
      {"role": "user", "content": "Hi"}],
    "max_tokens": 12, "temperature": 0.5, "top_p": 0.9, "seed": 7, "n": 2,
    "stop": ["\n", "User:"], "stream": true,
    "stream_options": {"include_usage": true}, "ignore_eos": true,
    "top_k": 40, "frequency_penalty": 0})");
  EXPECT_EQ(p.model, "m");
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[1]["role"], "system");  // developer = system
  EXPECT_EQ(p.messages[1]["content"], "ab");
  EXPECT_EQ(*p.max_tokens, 12);
  EXPECT_FLOAT_EQ(p.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(*p.seed, 7u);
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n", "User:"}));
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.top_k, 40);
}

TEST(OpenAIApiTest, DefaultsAreOpenAIs) {
  const auto p = Chat(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_FALSE(p.max_tokens.has_value());
  EXPECT_FLOAT_EQ(p.temperature, 1.0f);
  EXPECT_FLOAT_EQ(p.top_p, 1.0f);
  EXPECT_FALSE(p.seed.has_value());
  EXPECT_EQ(p.n, 1);
  EXPECT_FALSE(p.stream);
  const auto q = ParseCompletionRequest(
      R"({"prompt": "x", "max_completion_tokens": 5, "max_tokens": 9,
          "stop": "END"})",
      false);
  EXPECT_EQ(*q.max_tokens, 5);  // max_completion_tokens wins
  EXPECT_EQ(q.stop, (std::vector<std::string>{"END"}));
  EXPECT_EQ(q.prompt, "x");
  const auto ids = ParseCompletionRequest(R"({"prompt": [1, 2, 3]})", false);
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
}

TEST(OpenAIApiTest, RefusesWhatItCannotDoNamingTheField) {
  const std::string msg = R"("messages": [{"role": "user", "content": "x"}])";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", ""},
      {"3", ""},
      {"{}", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": [{"content": "x"}]})", "messages[0]"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})",
       "messages[0].role"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content"},
      {"{" + msg + R"(, "max_tokens": -1})", "max_tokens"},
      {"{" + msg + R"(, "max_tokens": 1.5})", "max_tokens"},
      {"{" + msg + R"(, "temperature": 3})", "temperature"},
      {"{" + msg + R"(, "top_p": 0})", "top_p"},
      {"{" + msg + R"(, "n": 0})", "n"},
      {"{" + msg + R"(, "n": 17})", "n"},
      {"{" + msg + R"(, "stop": ["a","b","c","d","e"]})", "stop"},
      {"{" + msg + R"(, "stop": 5})", "stop"},
      {"{" + msg + R"(, "seed": "x"})", "seed"},
      {"{" + msg + R"(, "stream": "yes"})", "stream"},
      {"{" + msg + R"(, "logprobs": true})", "logprobs"},
      {"{" + msg + R"(, "tools": [{"type": "function"}]})", "tools"},
      {"{" + msg + R"(, "best_of": 3})", "best_of"},
      {"{" + msg + R"(, "model": 5})", "model"},
      // Nested past util/json.h's bound (a stack-overflow attempt).
      {"{" + msg + R"(, "user": )" + std::string(100000, '[') +
           std::string(100000, ']') + "}",
       ""},
  };
  for (const auto& [body, param] : cases) {
    const auto [status, got] = Refusal(body);
    EXPECT_EQ(status, 400) << body;
    EXPECT_EQ(got, param) << body;
  }
  EXPECT_EQ(Refusal(R"({"prompt": {"a": 1}})", false).second, "prompt");
  EXPECT_EQ(Refusal(R"({"prompt": [1, -2]})", false).second, "prompt");
  EXPECT_EQ(Refusal(R"({"prompt": ["a", "b"]})", false).second, "prompt");
}

TEST(OpenAIApiTest, ResponsesHaveOpenAIsShape) {
  const auto whole =
      CompletionJson(true, "chatcmpl-1", 99, "m",
                     {{0, "yes", "stop"}, {1, "no", "length"}}, {10, 4});
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][1]["message"]["content"], "no");
  EXPECT_EQ(whole["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(whole["usage"]["total_tokens"], 14);
  const auto text =
      CompletionJson(false, "cmpl-1", 99, "m", {{0, "x", "stop"}}, {1, 1});
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "x");
  const auto first = ChunkJson(true, "c", 1, "m", 0, "", true, "");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const auto last = ChunkJson(true, "c", 1, "m", 0, "", false, "stop");
  EXPECT_EQ(last["choices"][0]["delta"], nlohmann::json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(UsageChunkJson(true, "c", 1, "m", {3, 2})["choices"].size(), 0u);
  EXPECT_EQ(SseEvent({{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(ApiFinishReason("eos"), "stop");
  EXPECT_EQ(ApiFinishReason("length"), "length");
  const auto e = ErrorJson("bad", "invalid_request_error", "n");
  EXPECT_EQ(e["error"]["param"], "n");
  EXPECT_TRUE(e["error"]["code"].is_null());
}

}  // namespace
}  // namespace bioquant::serve
