// bioquant logits: f32 logits at every position, as a .npy [positions, vocab].
#include "cli/cli_util.h"
#include "cli/command.h"
#include "io/npy.h"
#include "tokenizer/tokenizer.h"

namespace bioquant::cli {
namespace {

int RunLogits(int argc, char** argv) {
  CLI::App app("Write logits at every position to a .npy file", "logits");
  ModelFlags mf;
  mf.Add(app);
  std::string ids_flag, prompt, out;
  int64_t chunk = 0;
  auto* a =
      app.add_option("--ids", ids_flag, "comma-separated token ids (verbatim)");
  auto* b = app.add_option("--prompt", prompt,
                           "text, tokenized with BOS as configured");
  a->excludes(b);
  app.add_option("--out", out, "output .npy path")->required();
  app.add_option("--chunk", chunk,
                 "feed N tokens per forward call through the KV cache")
      ->default_val(0);
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (ids_flag.empty() && !app.count("--prompt"))
    Fail("one of --ids or --prompt is required");
  if (chunk < 0) Fail("--chunk must be >= 0");
  std::vector<int32_t> ids;
  if (!ids_flag.empty()) ids = ParseIds(ids_flag, "--ids");
  auto engine = Engine::Load(mf.ToOptions());
  if (ids.empty()) ids = engine->RequireTokenizer().Encode(prompt, true);
  const std::vector<float> logits = engine->Logits(ids, chunk);
  WriteNpyF32(out,
              {static_cast<int64_t>(ids.size()), engine->config().vocab_size},
              logits.data());
  return 0;
}

BIOQUANT_COMMAND("logits", "full logits at every position to a .npy file",
                 RunLogits);

}  // namespace
}  // namespace bioquant::cli
