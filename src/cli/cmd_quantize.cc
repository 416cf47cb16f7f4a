// bioquant quantize: write a bitsandbytes-format HF checkpoint (nf4, fp4 or
// int8) that transformers and bioquant load as pre-quantized.
#include "cli/cli_util.h"
#include "cli/command.h"
#include "engine/quantize.h"
#include "util/file.h"

namespace bioquant::cli {
namespace {

int RunQuantize(int argc, char** argv) {
  CLI::App app("Write a bitsandbytes-quantized checkpoint", "quantize");
  ModelFlags mf;
  mf.Add(app);
  std::string out, shard_size = "5GB";
  bool json = false;
  app.add_option("--out", out, "output checkpoint directory")->required();
  app.add_option("--max-shard-size", shard_size,
                 "largest safetensors shard (5GB, 500MB, 2GiB, bytes)")
      ->default_val("5GB");
  app.add_flag("--json", json, "print a JSON summary on stdout");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (mf.precision.empty() && mf.precision_map.empty()) {
    Fail("--precision is required (nf4, fp4, int8)");
  }

  QuantizeOptions o;
  const EngineOptions eo = mf.ToOptions();
  o.model_dir = eo.model_dir;
  o.precision = eo.precision;
  o.out_dir = out;
  o.max_shard_bytes = ParseShardSize(shard_size, "--max-shard-size");
  const QuantizeSummary s = QuantizeCheckpoint(o);

  if (json) {
    nlohmann::json j;
    j["model"] = o.model_dir;
    j["out"] = out;
    j["precision"] = s.precision;
    j["blocksize"] = o.precision.quant.blocksize;
    j["double_quant"] = o.precision.quant.double_quant;
    j["quantized_modules"] = s.quantized_modules;
    j["skipped_modules"] = s.skipped_modules;
    j["tensors"] = s.tensors;
    j["total_bytes"] = s.total_bytes;
    j["shards"] = s.shards;
    j["copied"] = s.copied;
    PrintJson(j);
  } else {
    std::fprintf(stderr,
                 "bioquant quantize: wrote %s (%s, %lld modules quantized, "
                 "%zu shard(s), %.1f MB)\n",
                 out.c_str(), s.precision.c_str(),
                 static_cast<long long>(s.quantized_modules), s.shards.size(),
                 s.total_bytes / 1e6);
  }
  return 0;
}

BIOQUANT_COMMAND("quantize", "write a bitsandbytes nf4/fp4/int8 checkpoint",
                 RunQuantize);

}  // namespace
}  // namespace bioquant::cli
