// bioquant generate: text (or ids) in, generated text, ids, timings, memory
// out.
#include <cstdio>
#include <iostream>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

namespace bioquant::cli {
namespace {

int RunGenerate(int argc, char** argv) {
  CLI::App app("Generate text with a model", "generate");
  ModelFlags mf;
  mf.Add(app);
  mf.AddCache(app);
  std::string prompt, prompt_ids, system, chat_template_file, date;
  bool chat = false, ignore_eos = false, json = false;
  int max_new = 128;
  SamplingParams sp;
  std::vector<std::string> stop;
  auto* p1 = app.add_option("--prompt", prompt, "prompt text");
  auto* p2 = app.add_option("--prompt-ids", prompt_ids,
                            "comma-separated token ids, used verbatim");
  p1->excludes(p2);
  app.add_flag("--chat", chat,
               "render the prompt with the model's chat template");
  app.add_option("--system", system, "system message (with --chat)");
  app.add_option("--chat-template", chat_template_file,
                 "Jinja file overriding the model's template");
  app.add_option("--date", date,
                 "YYYY-MM-DD returned by strftime_now in templates");
  app.add_option("--max-new-tokens", max_new, "tokens to generate")
      ->default_val(128);
  app.add_option("--temperature", sp.temperature, "0 = greedy")
      ->default_val(0.0f);
  app.add_option("--top-k", sp.top_k, "0 = off")->default_val(0);
  app.add_option("--top-p", sp.top_p, "1 = off")->default_val(1.0f);
  app.add_option("--seed", sp.seed, "sampling seed")->default_val(0);
  app.add_option("--stop", stop, "stop string (repeatable)");
  app.add_flag("--ignore-eos", ignore_eos,
               "do not stop at end-of-sequence tokens");
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (prompt_ids.empty() && !app.count("--prompt")) {
    Fail("one of --prompt or --prompt-ids is required");
  }
  if (!prompt_ids.empty() && chat)
    Fail("--chat needs --prompt, not --prompt-ids");
  std::string tmpl;
  if (!chat_template_file.empty()) tmpl = ReadFile(chat_template_file);

  auto engine = Engine::Load(mf.ToOptions());
  GenerateRequest req;
  if (!prompt_ids.empty()) {
    req.prompt_ids = ParseIds(prompt_ids, "--prompt-ids");
  } else {
    const Tokenizer& tok = engine->RequireTokenizer();
    std::string text = prompt;
    bool add_special = true;
    if (chat) {
      nlohmann::json messages = nlohmann::json::array();
      if (!system.empty())
        messages.push_back({{"role", "system"}, {"content", system}});
      messages.push_back({{"role", "user"}, {"content", prompt}});
      std::string rendered;
      if (engine->RenderChat(messages, true, date, tmpl, &rendered)) {
        text = rendered;
        add_special = false;  // templates write BOS themselves
      } else {
        std::fprintf(stderr,
                     "bioquant generate: warning: %s has no chat template; "
                     "using the plain prompt\n",
                     mf.model.c_str());
      }
    }
    req.prompt_ids = tok.Encode(text, add_special);
  }
  req.max_new_tokens = max_new;
  req.sampling = sp;
  req.stop = stop;
  req.ignore_eos = ignore_eos;
  if (!json) {
    req.on_text = [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  const GenerateResult r = engine->Generate(req);
  if (r.context_limited) {
    std::fprintf(stderr,
                 "bioquant generate: warning: stopped at the model's context "
                 "of %lld positions (prompt %zu + %zu generated); "
                 "--allow-context-overflow runs past it\n",
                 static_cast<long long>(engine->context_length()),
                 req.prompt_ids.size(), r.output_ids.size());
  }
  if (!json) {
    std::printf("\n");
    std::fprintf(
        stderr,
        "[%s] prefill %lld tok %.1f tok/s, decode %lld tok %.1f tok/s, "
        "finish: %s\n",
        engine->weights().precision.c_str(),
        static_cast<long long>(r.timings.prefill_tokens),
        r.timings.prefill_tokens_per_s(),
        static_cast<long long>(r.timings.decode_tokens),
        r.timings.decode_tokens_per_s(), r.finish_reason.c_str());
    return 0;
  }
  const MemoryLedger mem = engine->Memory();
  nlohmann::json out = {
      {"model", mf.model},
      {"precision", engine->weights().precision},
      {"prompt_ids", req.prompt_ids},
      {"output_ids", r.output_ids},
      {"text", r.text},
      {"finish_reason", r.finish_reason},
      {"context_limited", r.context_limited},
      {"threads", engine->threads()},
      {"timings",
       {{"load_ms", r.timings.load_ms},
        {"weight_cache", engine->weight_cache_status()},
        {"prefill_ms", r.timings.prefill_ms},
        {"decode_ms", r.timings.decode_ms},
        {"prefill_tokens", r.timings.prefill_tokens},
        {"decode_tokens", r.timings.decode_tokens},
        {"prefill_tokens_per_s", r.timings.prefill_tokens_per_s()},
        {"decode_tokens_per_s", r.timings.decode_tokens_per_s()}}},
      {"memory", mem.ToJson()}};
  PrintJson(out);
  return 0;
}

BIOQUANT_COMMAND("generate",
                 "generate text (greedy or sampled) with timings and memory",
                 RunGenerate);

}  // namespace
}  // namespace bioquant::cli
