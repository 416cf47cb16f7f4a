// bioquant plan: predicted memory per precision on a device, and which
// precision to deploy (the model lives in study/planner.h).
#include <cstdio>

#include "analysis/mixed_plan.h"
#include "cli/cli_util.h"
#include "cli/command.h"
#include "study/planner.h"

namespace bioquant::cli {
namespace {

int RunPlan(int argc, char** argv) {
  CLI::App app("Predict memory per precision and recommend one", "plan");
  std::string model, memory, device = "cpu", run, precisions, analysis;
  PlanOptions o;
  bool json = false, no_double_quant = false;
  int blocksize = 64;
  app.add_option("--model", model, "checkpoint directory or config.json");
  app.add_option("--analysis", analysis,
                 "an `analyze --json` result with sensitivity: propose the "
                 "mixed precision with the least predicted KL that fits "
                 "--memory (weights)");
  app.add_option(
         "--memory", memory,
         "memory budget: 40GiB, 40GB (10^9), 40G (= GiB), 512MiB, bytes")
      ->required();
  app.add_option("--context", o.context,
                 "positions in the KV cache (prompt + output)")
      ->default_val(2048);
  app.add_option("--prefill", o.prefill,
                 "tokens in the largest forward (default: --context)");
  app.add_option("--batch", o.batch, "sequences at once")->default_val(1);
  app.add_option("--device", device,
                 "cpu (bioquant) or gpu (transformers + bitsandbytes)")
      ->default_val("cpu");
  app.add_option("--run", run,
                 "a run directory whose measured accuracy decides");
  app.add_option(
      "--precisions", precisions,
      "comma-separated subset of f32,bf16,f16,int8,llm-int8,nf4,fp4");
  app.add_option("--threads", o.threads, "cpu: worker threads (0 = all cores)")
      ->default_val(0);
  app.add_option("--blocksize", blocksize, "4-bit block size")->default_val(64);
  app.add_flag("--no-double-quant", no_double_quant,
               "4-bit: absmax kept in f32");
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;

  if (!analysis.empty()) {
    if (!model.empty() || !run.empty()) {
      Fail("--analysis plans from the analysis alone; drop --model/--run");
    }
    const MixedPlan mp = PlanMixedPrecision(
        LoadAnalysis(analysis), ParseMemorySize(memory, "--memory"));
    if (json) {
      std::printf("%s\n", mp.ToJson()
                              .dump(-1, ' ', false,
                                    nlohmann::json::error_handler_t::replace)
                              .c_str());
    } else {
      std::printf("%s", mp.ToText().c_str());
    }
    return 0;
  }
  if (model.empty()) Fail("--model is required (or --analysis)");
  o.device = ParsePlanDevice(device);
  o.memory_bytes = ParseMemorySize(memory, "--memory");
  o.quant.blocksize = blocksize;
  o.quant.double_quant = !no_double_quant;
  if (blocksize < 32 || blocksize > 4096 ||
      (blocksize & (blocksize - 1)) != 0) {
    Fail("--blocksize: {} is not supported (32, 64, ..., 4096)", blocksize);
  }
  if (o.threads < 0) Fail("--threads must be >= 0");
  o.precisions = SplitList(precisions);
  if (app.count("--precisions") && o.precisions.empty()) {
    Fail("--precisions: no precision given");
  }

  const PlanModel pm = LoadPlanModel(model, o.device == PlanDevice::kCpu);
  std::vector<MeasuredDelta> measured;
  if (!run.empty()) measured = LoadRunSummary(run);
  const Plan plan = MakePlan(pm, o, run.empty() ? nullptr : &measured);
  if (plan.recommendation == "none") {
    std::fprintf(stderr, "bioquant plan: warning: %s\n", plan.reason.c_str());
  }
  if (json) {
    // ordered_json keeps the documented key order (PrintJson would sort).
    std::printf("%s\n", plan.ToJson()
                            .dump(-1, ' ', false,
                                  nlohmann::json::error_handler_t::replace)
                            .c_str());
  } else {
    std::printf("%s", plan.ToTable().c_str());
  }
  return 0;
}

BIOQUANT_COMMAND("plan", "predicted memory per precision and a recommendation",
                 RunPlan);

}  // namespace
}  // namespace bioquant::cli
