// bioquant synth: a random-weight checkpoint for tests, demos and benchmarks.
#include "cli/cli_util.h"
#include "cli/command.h"
#include "engine/synth.h"

namespace bioquant::cli {
namespace {

int RunSynth(int argc, char** argv) {
  CLI::App app("Write a synthetic (random-weight) checkpoint", "synth");
  SynthOptions o;
  app.add_option(
         "--preset", o.preset,
         "tiny | qwen2-tiny | mistral-tiny | tinyllama-1.1b | llama3-8b")
      ->default_val("tiny");
  app.add_option("--out", o.out_dir, "output directory")->required();
  app.add_option("--dtype", o.dtype, "bf16 | f16 | f32")->default_val("bf16");
  app.add_option("--seed", o.seed, "random seed")->default_val(0);
  app.add_option("--std", o.init_std, "standard deviation of matrix weights")
      ->default_val(0.02);
  app.add_option("--outlier-block", o.outlier_block,
                 "give this decoder block's Linear weights outlier input "
                 "columns (-1 = none)")
      ->default_val(-1);
  app.add_option("--outlier-scale", o.outlier_scale,
                 "factor of the outlier columns")
      ->default_val(20.0);
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  const int64_t params = WriteSyntheticCheckpoint(o);
  std::fprintf(stderr, "bioquant synth: wrote %s (%s, %lld parameters, %s)\n",
               o.out_dir.c_str(), o.preset.c_str(),
               static_cast<long long>(params), o.dtype.c_str());
  return 0;
}

BIOQUANT_COMMAND("synth",
                 "write a random-weight checkpoint (tests, demos, benchmarks)",
                 RunSynth);

}  // namespace
}  // namespace bioquant::cli
