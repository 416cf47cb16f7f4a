// bioquant template: renders a chat template (the checkpoint's own, or a
// file) over a messages file, byte-exactly as transformers'
// apply_chat_template would, to stdout with nothing added.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant::cli {
namespace {

// Key order matters to templates (tojson, dict.items()), so keep it.
nlohmann::ordered_json ReadOrderedJson(const std::string& path) {
  const std::string text = ReadFile(path);
  try {
    return ParseJson<nlohmann::ordered_json>(text);
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: malformed JSON {}", path, JsonErrorWhere(e));
  }
}

// A JSON array of messages, or {"messages": [...]}.
nlohmann::ordered_json ReadMessages(const std::string& path) {
  nlohmann::ordered_json j = ReadOrderedJson(path);
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  if (!j.is_array())
    Fail("{}: expected a JSON array of messages or {{\"messages\": [...]}}",
         path);
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_object() || !j[i].contains("role")) {
      Fail("{}: message {} is not an object with a \"role\"", path, i);
    }
  }
  return j;
}

int RunTemplate(int argc, char** argv) {
  CLI::App app("Render a chat template over a messages file", "template");
  std::string model, template_file, messages_file, date, bos, eos, tools_file,
      extra_file;
  bool add_generation_prompt = false;
  auto* model_opt = app.add_option(
      "--model", model,
      "checkpoint (or tokenizer-only) folder with tokenizer_config.json");
  auto* tmpl_opt =
      app.add_option("--template,--chat-template", template_file,
                     "Jinja template file (overrides the model's)");
  app.add_option(
         "--messages", messages_file,
         "JSON file: [{\"role\", \"content\"}, ...] or {\"messages\": [...]}")
      ->required();
  app.add_flag("--add-generation-prompt", add_generation_prompt,
               "end with the assistant header, as for generation");
  app.add_option("--date", date,
                 "YYYY-MM-DD that strftime_now() sees (default: today)");
  app.add_option("--tools", tools_file,
                 "JSON file: the `tools` variable (a list of tool schemas)");
  app.add_option("--extra-context", extra_file,
                 "JSON file: an object of more template variables (documents, "
                 "date_string, ...)");
  app.add_option("--bos-token", bos,
                 "bos_token variable (default: the model's)");
  app.add_option("--eos-token", eos,
                 "eos_token variable (default: the model's)");
  if (const int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (model_opt->count() == 0 && tmpl_opt->count() == 0) {
    std::fprintf(
        stderr,
        "bioquant template: error: give --model DIR or --template FILE\n");
    return 2;
  }

  std::string text, source;
  ChatTemplateOptions opts;
  opts.add_generation_prompt = add_generation_prompt;
  opts.date = date;
  if (!model.empty()) {
    if (!IsDirectory(model)) Fail("--model {}: not a directory", model);
    const ChatTemplateConfig cfg = ReadChatTemplateConfig(model);
    text = cfg.chat_template;
    source = cfg.source;
    opts.bos_token = cfg.bos_token;
    opts.eos_token = cfg.eos_token;
  }
  if (!template_file.empty()) {
    text = ReadFile(template_file);
    source = template_file;
  } else if (text.empty()) {
    Fail("{}: no chat_template in tokenizer_config.json or chat_template.jinja",
         model);
  }
  if (app.count("--bos-token")) opts.bos_token = bos;
  if (app.count("--eos-token")) opts.eos_token = eos;

  if (!extra_file.empty()) {
    opts.extra_context = ReadOrderedJson(extra_file);
    if (!opts.extra_context.is_object())
      Fail("{}: expected a JSON object", extra_file);
  }
  if (!tools_file.empty()) {
    opts.extra_context["tools"] = ReadOrderedJson(tools_file);
    if (!opts.extra_context["tools"].is_array())
      Fail("{}: expected a JSON array", tools_file);
  }
  const nlohmann::ordered_json messages = ReadMessages(messages_file);
  const std::string out = RenderChatTemplate(text, messages, opts, source);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

BIOQUANT_COMMAND("template",
                 "render a chat template over messages (as transformers does)",
                 RunTemplate);

}  // namespace bioquant::cli
