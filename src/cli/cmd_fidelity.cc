// bioquant fidelity: KL divergence, top-1 agreement and perplexity of a
// precision against a reference precision on a text.
#include "cli/cli_util.h"
#include "cli/command.h"
#include "engine/fidelity.h"
#include "util/file.h"

namespace bioquant::cli {
namespace {

int RunFidelity(int argc, char** argv) {
  CLI::App app("Compare a precision with a reference precision on a text",
               "fidelity");
  ModelFlags mf;
  mf.Add(app);
  FidelityOptions o;
  std::string text_file, prompt;
  bool json = false;
  app.add_option("--reference", o.reference,
                 "reference precision (f32, bf16, f16, ...)")
      ->default_val("bf16");
  auto* a = app.add_option("--text-file", text_file, "UTF-8 text to score");
  auto* b = app.add_option("--prompt", prompt, "text to score");
  a->excludes(b);
  app.add_option("--max-tokens", o.max_tokens,
                 "score only the first N tokens (0 = all)")
      ->default_val(0);
  app.add_option("--ctx", o.ctx,
                 "window length in tokens (0 = the model's context, at most "
                 "4096)")
      ->default_val(0);
  app.add_option("--chunk", o.chunk, "tokens per forward call (0 = window)")
      ->default_val(0);
  app.add_flag("--json", json, "print one JSON object on stdout");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (text_file.empty() && !app.count("--prompt")) {
    Fail("one of --text-file or --prompt is required");
  }
  if (mf.precision.empty() && mf.precision_map.empty()) {
    Fail("--precision (or --precision-map) is required");
  }
  if (o.ctx < 0) Fail("--ctx must be >= 0");
  o.model = mf.ToOptions();
  const std::string text = text_file.empty() ? prompt : ReadFile(text_file);
  const FidelityResult r = MeasureFidelity(o, text);
  if (json) {
    PrintJson(r.ToJson());
  } else {
    std::printf(
        "%s vs %s: %lld tokens, mean KLD %.6g, max KLD %.6g, top-1 agreement "
        "%.4f, ppl %.4f (reference %.4f)\n",
        r.precision.c_str(), r.reference.c_str(),
        static_cast<long long>(r.tokens), r.mean_kld, r.max_kld,
        r.top1_agreement, r.ppl, r.ppl_reference);
  }
  return 0;
}

BIOQUANT_COMMAND("fidelity",
                 "KL divergence, top-1 agreement and perplexity vs a reference "
                 "precision",
                 RunFidelity);

}  // namespace
}  // namespace bioquant::cli
