#include "tokenizer/chat_template.h"

#include <cstdio>
#include <ctime>

#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

using jinja::CallArgs;
using jinja::Value;
using jinja::ValueDict;

// The moment strftime_now() formats: midnight of `date` (YYYY-MM-DD) or now.
std::tm TimeFor(const std::string& date) {
  std::tm tm{};
  if (date.empty()) {
    const std::time_t now = std::time(nullptr);
    localtime_r(&now, &tm);
    return tm;
  }
  int y = 0, m = 0, d = 0;
  char tail = 0;
  if (date.size() != 10 ||
      std::sscanf(date.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
      m < 1 || m > 12 || d < 1 || d > 31) {
    Fail("date '{}' is not YYYY-MM-DD", date);
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  tm.tm_isdst = -1;
  std::tm check = tm;
  timegm(&check);  // normalises and fills tm_wday / tm_yday
  if (check.tm_mday != d) Fail("date '{}' is not a calendar date", date);
  return check;
}

template <typename Json>
std::string Render(const std::string& template_text, const Json& messages,
                   const ChatTemplateOptions& opts,
                   const std::string& source_name) {
  if (!messages.is_array())
    Fail("{}: messages must be a JSON array", source_name);
  if (!opts.extra_context.is_object())
    Fail("{}: extra_context must be a JSON object", source_name);
  const std::tm now = TimeFor(opts.date);
  jinja::Template tmpl(template_text, source_name);

  ValueDict globals;
  globals.Set("messages", Value::FromJson(messages));
  globals.Set("add_generation_prompt", Value::Bool(opts.add_generation_prompt));
  globals.Set("bos_token", Value::Str(opts.bos_token));
  globals.Set("eos_token", Value::Str(opts.eos_token));
  for (auto it = opts.extra_context.begin(); it != opts.extra_context.end();
       ++it) {
    globals.Set(it.key(), Value::FromJson(it.value()));
  }
  globals.Set("raise_exception",
              Value::Func("raise_exception", [](CallArgs& a) -> Value {
                const Value* msg = a.Get(0, "message");
                throw jinja::RaisedException{msg ? msg->Str() : ""};
              }));
  globals.Set("strftime_now", Value::Func("strftime_now", [now](CallArgs& a) {
                const Value* f = a.Get(0, "format");
                if (!f || !f->IsString())
                  throw jinja::TemplateError{"strftime_now needs a format"};
                if (f->AsString().empty()) return Value::Str("");
                char buf[512];
                const size_t n = std::strftime(buf, sizeof(buf),
                                               f->AsString().c_str(), &now);
                return Value::Str(std::string(buf, n));
              }));
  return tmpl.Render(globals);
}

// A special token in tokenizer_config.json: "<s>", {"content": "<s>", ...}
// (transformers' AddedToken) or null.
std::string TokenText(const nlohmann::json& config, const char* key,
                      const std::string& path) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") &&
      (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  Fail("{}: {} must be a string or an object with \"content\"", path, key);
}

}  // namespace

std::string RenderChatTemplate(const std::string& template_text,
                               const nlohmann::json& messages,
                               const ChatTemplateOptions& opts,
                               const std::string& source_name) {
  return Render(template_text, messages, opts, source_name);
}

std::string RenderChatTemplate(const std::string& template_text,
                               const nlohmann::ordered_json& messages,
                               const ChatTemplateOptions& opts,
                               const std::string& source_name) {
  return Render(template_text, messages, opts, source_name);
}

std::string RenderChatTemplate(const std::string& template_text,
                               const std::vector<ChatMessage>& messages,
                               const ChatTemplateOptions& opts,
                               const std::string& source_name) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& m : messages)
    list.push_back({{"role", m.role}, {"content", m.content}});
  return Render(template_text, list, opts, source_name);
}

ChatTemplateConfig ReadChatTemplateConfig(const std::string& dir) {
  const std::string path = dir + "/tokenizer_config.json";
  const nlohmann::json config = ReadJsonFile(path);
  if (!config.is_object()) Fail("{}: expected a JSON object", path);
  ChatTemplateConfig out;
  out.bos_token = TokenText(config, "bos_token", path);
  out.eos_token = TokenText(config, "eos_token", path);
  const auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) {
    out.chat_template = it->get<std::string>();
    out.source = path;
  } else if (it != config.end() && it->is_array()) {
    for (const auto& t : *it) {
      if (t.is_object() && t.value("name", "") == "default" &&
          t.contains("template") && t["template"].is_string()) {
        out.chat_template = t["template"].get<std::string>();
        out.source = path;
      }
    }
    if (out.chat_template.empty())
      Fail("{}: chat_template list has no \"default\" entry", path);
  } else if (it != config.end() && !it->is_null()) {
    Fail("{}: chat_template must be a string or a list of {{name, template}}",
         path);
  }
  if (out.chat_template.empty() && FileExists(dir + "/chat_template.jinja")) {
    out.source = dir + "/chat_template.jinja";
    out.chat_template = ReadFile(out.source);
  }
  return out;
}

bool RenderChatFor(const Tokenizer* tok, const std::string& template_text,
                   const nlohmann::json& messages, bool add_generation_prompt,
                   const std::string& date, std::string* out) {
  std::string tmpl = template_text;
  if (tmpl.empty() && tok) tmpl = tok->chat_template();
  if (tmpl.empty()) return false;
  ChatTemplateOptions o;
  o.add_generation_prompt = add_generation_prompt;
  o.date = date;
  if (tok) {
    o.bos_token = tok->bos_token();
    o.eos_token = tok->eos_token();
  }
  *out = RenderChatTemplate(tmpl, messages, o, "chat_template");
  return true;
}

}  // namespace bioquant
