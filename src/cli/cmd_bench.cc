// bioquant bench: prefill/decode throughput per precision, mean ± sd, with
// the decode roofline (bytes of weights per token vs memory bandwidth).
#include <cstdio>
#include <memory>
#include <vector>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "engine/bench.h"
#include "engine/engine.h"
#include "kernels/isa.h"

namespace bioquant::cli {
namespace {

int RunBenchCommand(int argc, char** argv) {
  CLI::App app("Prefill and decode tokens/s (mean ± sd) per precision",
               "bench");
  std::string model, precisions, computes = "f32", isa;
  int p = 512, n = 128, reps = 5, batch = 1, threads = 0, blocksize = 64;
  bool machine = false, json = false, no_dq = false, interleave = false;
  app.add_option("--model", model,
                 "checkpoint directory (optional with --machine)");
  app.add_option("--precision", precisions,
                 "comma-separated precisions (default: checkpoint dtype)");
  app.add_option("-p", p, "prompt tokens for the prefill test (0 = skip)")
      ->default_val(512);
  app.add_option("-n", n, "decoded tokens for the decode test (0 = skip)")
      ->default_val(128);
  app.add_option("-r", reps, "repetitions after one warm-up")->default_val(5);
  app.add_option("-b", batch,
                 "sequences decoded together in the decode test (tokens/s "
                 "is their aggregate; prefill stays one sequence)")
      ->default_val(1);
  app.add_option("--threads", threads, "worker threads (0 = all cores)")
      ->default_val(0);
  app.add_option("--compute", computes,
                 "comma-separated prefill activation types: f32, bf16 "
                 "(decode always runs f32)")
      ->default_val("f32");
  app.add_option("--blocksize", blocksize, "4-bit block size")->default_val(64);
  app.add_flag("--no-double-quant", no_dq, "4-bit: absmax in f32");
  app.add_flag("--machine", machine,
               "measure read bandwidth and FMA peak first");
  app.add_option("--isa", isa,
                 "SIMD instruction set the kernels may use: native, avx512, "
                 "avx2, sse4, scalar (default: BIOQUANT_ISA or native)");
  app.add_flag("--interleave", interleave,
               "load every precision first, then run them in turn, one "
               "repetition each (fairer ratios on a shared machine; needs "
               "the memory of all of them)");
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (batch < 1) Fail("-b {}: the batch must be >= 1", batch);
  if (reps < 1) Fail("-r {}: the repetitions must be >= 1", reps);
  if (p < 0 || n < 0) Fail("-p/-n: token counts must be >= 0");
  if (model.empty() && !machine)
    Fail("--model is required (or --machine alone)");
  if (!isa.empty()) RestrictIsa(isa, "--isa");
  nlohmann::json out = nlohmann::json::object();
  // The target the dispatcher really uses (the best one at or below --isa).
  out["isa"] = {{"requested", RequestedIsa()},
                {"target", ActiveTargetName()},
                {"available", AvailableTargetNames()}};
  if (!json) {
    std::printf("isa: %s (target %s)\n", RequestedIsa().c_str(),
                ActiveTargetName().c_str());
  }
  MachineLimits lim;
  if (machine) {
    lim = MeasureMachine(threads);
    out["machine"] = {{"read_gb_s", lim.read_gb_s},
                      {"fma_f32_gflops", lim.fma_f32_gflops},
                      {"threads", lim.threads}};
    if (!json) {
      std::printf("machine: read %.1f GB/s, f32 FMA %.1f GFLOP/s, %d threads\n",
                  lim.read_gb_s, lim.fma_f32_gflops, lim.threads);
    }
  }
  out["results"] = nlohmann::json::array();
  if (!model.empty()) {
    std::vector<std::string> list = SplitList(precisions);
    if (list.empty()) list.push_back("");
    if (!json) {
      std::printf("%-9s %-7s %-6s %5s %14s %14s %10s %10s %8s\n", "precision",
                  "compute", "test", "batch", "t/s", "± sd", "best", "GB/s",
                  "roofline");
    }
    std::vector<ComputeType> compute_list;
    for (const std::string& c : SplitList(computes)) {
      compute_list.push_back(ParseComputeType(c, "--compute"));
    }
    if (compute_list.empty()) Fail("--compute: no compute type given");
    const auto print = [&](const BenchResult& r) {
      out["results"].push_back(r.ToJson());
      if (json) return;
      std::printf(
          "%-9s %-7s %-6s %5d %14.2f %14.2f %10.2f %10.2f %8s\n",
          r.precision.c_str(), r.compute.c_str(), r.test.c_str(), r.batch,
          r.tokens_per_s, r.sd, r.best, r.bandwidth_gb_s,
          r.roofline_fraction > 0
              ? fmt::format("{:.0f}%", 100 * r.roofline_fraction).c_str()
              : "-");
    };
    // One engine per precision and compute type. Without --interleave each
    // is loaded, measured and freed in turn (the memory of one at a time);
    // with it all are loaded first and take turns, one repetition each.
    struct Run {
      std::unique_ptr<Engine> engine;
      ComputeType compute;
      std::unique_ptr<BenchSession> session;
    };
    const BenchSpec spec{p, n, batch, lim.read_gb_s};
    const auto load = [&](const std::string& prec, ComputeType compute) {
      EngineOptions eo;
      eo.compute = compute;
      eo.model_dir = model;
      eo.precision.name = prec;
      eo.precision.quant.blocksize = blocksize;
      eo.precision.quant.double_quant = !no_dq;
      eo.threads = threads;
      Run run{Engine::Load(eo), compute, nullptr};
      run.session = std::make_unique<BenchSession>(
          *run.engine, run.engine->weights().precision, spec);
      return run;
    };
    const auto report = [&](const Run& run) {
      for (BenchResult r : run.session->Results()) {
        // Prefill matmuls use the requested compute; decode is always f32.
        if (r.test.rfind("pp", 0) == 0)
          r.compute = ComputeTypeName(run.compute);
        print(r);
      }
    };
    // Measures the loaded runs together, one repetition of each in turn,
    // reports them in load order and frees them.
    std::vector<Run> runs;
    const auto measure = [&] {
      for (int rep = -1; rep < reps; ++rep) {  // rep -1 is the warm-up
        for (Run& run : runs) run.session->RunRep(rep < 0);
      }
      for (const Run& run : runs) report(run);
      runs.clear();
    };
    for (const auto& prec : list) {
      for (ComputeType compute : compute_list) {
        runs.push_back(load(prec, compute));
        if (!interleave) measure();
      }
    }
    measure();
  }
  if (json) PrintJson(out);
  return 0;
}

BIOQUANT_COMMAND("bench",
                 "prefill/decode tokens/s (mean ± sd), bandwidth, roofline",
                 RunBenchCommand);

}  // namespace
}  // namespace bioquant::cli
