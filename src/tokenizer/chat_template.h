// Chat templates: renders a checkpoint's own Jinja `chat_template` the way
// transformers' apply_chat_template does (Jinja2 with trim_blocks,
// lstrip_blocks, loopcontrols, raise_exception, strftime_now and
// json.dumps-style tojson), byte for byte. The engine lives in jinja_*.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bioquant {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;
  std::string date = "";  // YYYY-MM-DD fixes strftime_now(); empty = today
  // More template variables (tools, documents, date_string, ...); they
  // override the standard ones of the same name. Ordered, as Python dicts are
  // (a nlohmann::json converts implicitly, with its keys sorted).
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
};

// Renders `template_text` with the variables transformers passes: messages,
// add_generation_prompt, bos_token, eos_token (+ extra_context), and the
// globals raise_exception and strftime_now. Throws bioquant::Error: syntax
// and runtime errors as "<source_name>: line L: ...", raise_exception(msg) as
// "<source_name>: msg".
std::string RenderChatTemplate(
    const std::string& template_text,
    const nlohmann::json& messages /* [{role, content, ...}] */,
    const ChatTemplateOptions& opts,
    const std::string& source_name = "chat_template");
// Same, keeping the messages' key order (what `message.items()` and tojson
// show); nlohmann::json sorts object keys.
std::string RenderChatTemplate(
    const std::string& template_text, const nlohmann::ordered_json& messages,
    const ChatTemplateOptions& opts,
    const std::string& source_name = "chat_template");

std::string RenderChatTemplate(
    const std::string& template_text, const std::vector<ChatMessage>& messages,
    const ChatTemplateOptions& opts,
    const std::string& source_name = "chat_template");

class Tokenizer;

// Renders `messages` the way a checkpoint is prompted: with `template_text`,
// or when that is empty with `tok`'s chat template, and `tok`'s BOS/EOS
// strings (none without a tokenizer). Returns false, leaving *out alone,
// when there is no template. The engine and the backends share it.
bool RenderChatFor(const Tokenizer* tok, const std::string& template_text,
                   const nlohmann::json& messages, bool add_generation_prompt,
                   const std::string& date, std::string* out);

// What a checkpoint folder says about chat formatting.
struct ChatTemplateConfig {
  std::string chat_template;  // empty when the checkpoint has none
  std::string source;         // the file it came from (for error messages)
  std::string bos_token, eos_token;
};

// Reads <dir>/tokenizer_config.json: chat_template (a string, or a list of
// {name, template} of which "default" is taken), else <dir>/chat_template.jinja
// (newer transformers); bos_token / eos_token as strings or {"content": ...}.
// Throws Error when tokenizer_config.json is missing or malformed.
ChatTemplateConfig ReadChatTemplateConfig(const std::string& dir);

}  // namespace bioquant
