// bioquant eval: the study end to end, resumable (see study/runner.h), on
// the local engine (backends/local.h), on transformers + bitsandbytes
// (backends/transformers.h: --backend transformers) or against
// OpenAI-compatible servers (backends/openai.h: --endpoint / --endpoints).
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <optional>

#include "backends/local.h"
#include "backends/openai.h"
#include "backends/transformers.h"
#include "cli/cli_util.h"
#include "cli/command.h"
#include "study/planner.h"
#include "study/runner.h"
#include "study/store.h"
#include "study/study.h"
#include "tasks/task.h"
#include "util/sys.h"

namespace bioquant::cli {
namespace {

std::atomic<bool> g_stop{false};

void OnSigint(int) { g_stop = true; }

// A live bar on a terminal; plain lines every 10 s otherwise (logs, CI).
class ProgressPrinter {
 public:
  ProgressPrinter() : tty_(isatty(STDERR_FILENO)) {}
  void operator()(const EvalProgress& p) {
    const int64_t finished = p.done + p.skipped;
    const double rate = p.elapsed_s > 0 ? p.done / p.elapsed_s : 0;
    const double eta = rate > 0 ? (p.total - finished) / rate : 0;
    const bool cell_done = finished >= p.total;
    if (tty_) {
      const int width = 30;
      const int filled =
          p.total ? static_cast<int>(width * finished / p.total) : width;
      std::fprintf(
          stderr,
          "\r\033[K%-5s %-12s %-16s [%s%s] %lld/%lld %.2f ex/s ETA %.0fs",
          p.precision.c_str(), p.task.c_str(), p.strategy.c_str(),
          std::string(filled, '#').c_str(),
          std::string(width - filled, '.').c_str(),
          static_cast<long long>(finished), static_cast<long long>(p.total),
          rate, eta);
      if (cell_done) std::fprintf(stderr, "\n");
      return;
    }
    if (cell_done || clock_.ElapsedMs() > 10000) {
      clock_.Reset();
      std::fprintf(
          stderr,
          "eval: %s %s %s %lld/%lld (%lld resumed) %.2f ex/s ETA %.0fs\n",
          p.precision.c_str(), p.task.c_str(), p.strategy.c_str(),
          static_cast<long long>(finished), static_cast<long long>(p.total),
          static_cast<long long>(p.skipped), rate, eta);
    }
  }

 private:
  bool tty_;
  Stopwatch clock_;
};

int RunEvalCommand(int argc, char** argv) {
  CLI::App app(
      "Run the study: tasks x strategies x precisions, stored and resumable",
      "eval");
  EvalOptions o;
  LocalBackendOptions lo;
  OpenAIBackendOptions ro;
  TransformersBackendOptions to;
  std::string backend;
  std::string precisions = "bf16,int8,nf4", tasks = "all",
              strategies = "zero-shot";
  std::string skip_modules, precision_map, endpoint, served_model, endpoints,
      model_config;
  bool no_double_quant = false, no_chat = false, no_stream = false;
  int resamples = 1000;
  app.add_option("--model", lo.model_dir,
                 "Hugging Face checkpoint directory (the local engine, or "
                 "--backend transformers)");
  app.add_option("--backend", backend,
                 "local (bioquant's engine; default with --model), "
                 "transformers (transformers + bitsandbytes in a Python "
                 "worker, the paper's stack) or openai (default with "
                 "--endpoint/--endpoints)");
  app.add_option("--python", to.python,
                 "transformers: the Python to run the worker with (default: "
                 "the venv of scripts/pystack.sh if present, else python3)");
  app.add_option("--worker", to.worker,
                 "transformers: the worker script (default: "
                 "bioquant_worker.py beside the binary)");
  app.add_option("--device", to.device, "transformers: auto | cpu | cuda")
      ->default_val("auto");
  app.add_option("--compute-dtype", to.compute_dtype,
                 "transformers: bitsandbytes compute dtype for int8/nf4/fp4 "
                 "(bf16 | f16 | f32)")
      ->default_val("bf16");
  app.add_option("--gpu-memory", to.gpu_memory,
                 "transformers on CUDA: the peak reported, "
                 "max_memory_allocated (allocated, the paper's) or "
                 "max_memory_reserved (reserved)")
      ->default_val("allocated");
  app.add_option("--worker-restarts", to.max_restarts,
                 "transformers: restarts of a crashed worker per batch")
      ->default_val(2);
  app.add_option("--endpoint", endpoint,
                 "an OpenAI-compatible server's base URL "
                 "(http://host:8000/v1) instead of --model");
  app.add_option("--served-model", served_model,
                 "--endpoint: the model name the server serves (default: "
                 "the only one it lists)");
  app.add_option("--endpoints", endpoints,
                 "several deployments compared as precisions: "
                 "label=URL[#served-model],... (e.g. "
                 "bf16=http://a:8000/v1,nf4=http://b:8000/v1)");
  app.add_option("--api", ro.api,
                 "servers: chat (the server applies the chat template) or "
                 "completions (rendered here with --tokenizer)")
      ->default_val("chat");
  app.add_option("--tokenizer", ro.tokenizer_dir,
                 "--api completions: checkpoint directory whose tokenizer "
                 "and chat template render the prompts (sent as token ids)");
  app.add_option("--concurrency", ro.concurrency, "servers: requests in flight")
      ->default_val(8);
  app.add_option("--retries", ro.retries,
                 "servers: retries of a request after a connection error, "
                 "timeout, 429 or 5xx (exponential backoff)")
      ->default_val(5);
  app.add_option("--request-timeout", ro.request_timeout_s,
                 "servers: seconds one request may take")
      ->default_val(600);
  app.add_option("--api-key-env", ro.api_key_env,
                 "servers: environment variable holding the API key (never "
                 "stored)");
  app.add_flag("--no-stream", no_stream,
               "servers: whole responses instead of streamed ones (no "
               "time-to-first-token)");
  app.add_option("--model-config", model_config,
                 "servers: config.json (or checkpoint dir) of the served "
                 "model; the report then shows plan's memory prediction");
  app.add_option("--precisions", precisions,
                 "comma-separated precisions (--endpoint: the one label of "
                 "that deployment)")
      ->default_val("bf16,int8,nf4");
  app.add_option("--tasks", tasks, "all, or comma-separated task ids")
      ->default_val("all");
  app.add_option("--strategies", strategies,
                 "comma-separated: zero-shot, few-shot:K[:random|bm25|rank], "
                 "cot, sc:N[:T]")
      ->default_val("zero-shot");
  app.add_option("--split", o.split, "test | test_sample200 | dev | train")
      ->default_val("test");
  app.add_option("--data-dir", o.data_dir, "folder laid out like examples/data")
      ->required();
  app.add_option("--out", o.out_dir,
                 "run directory (store.sqlite, manifest.json)")
      ->required();
  app.add_option("--limit", o.limit, "first N examples per task (0 = all)")
      ->default_val(0);
  app.add_option("--threads", lo.threads, "worker threads (0 = all cores)")
      ->default_val(0);
  app.add_option("--batch", o.batch,
                 "requests per generation call: examples, or the samples of "
                 "batch/N self-consistency examples (default 4; servers: 2 x "
                 "--concurrency); results do not depend on it");
  app.add_option("--seed", o.seed, "seed for demonstrations and sampling")
      ->default_val(0);
  app.add_option("--max-new-tokens", o.max_new_tokens,
                 "tokens for direct answers")
      ->default_val(128);
  app.add_option("--max-new-tokens-cot", o.max_new_tokens_cot,
                 "tokens for chain-of-thought / self-consistency")
      ->default_val(384);
  app.add_flag("--no-chat", no_chat,
               "plain prompts even when the model has a chat template");
  app.add_option("--date", o.date,
                 "YYYY-MM-DD for strftime_now in chat templates");
  app.add_option("--template", o.template_file,
                 "user prompt template with an {Input} slot");
  app.add_option("--demos", o.demos_file,
                 "few-shot demonstrations file (task's own format)");
  app.add_option("--ner-style", o.ner_style, "list | inline")
      ->default_val("list");
  app.add_option("--blocksize", lo.quant.blocksize, "4-bit block size")
      ->default_val(64);
  app.add_flag("--no-double-quant", no_double_quant,
               "4-bit: absmax kept in f32");
  app.add_option("--skip-modules", skip_modules, "modules kept unquantized");
  app.add_option("--precision-map", precision_map,
                 "per-module precisions for the label 'mixed' in "
                 "--precisions (rules or a file; see README)");
  ModelFlags cache;  // only its --cache-dir / --no-cache
  cache.AddCache(app);
  app.add_option("--resamples", resamples,
                 "bootstrap resamples for the summary")
      ->default_val(1000);
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  const int sources = (app.count("--model") > 0) +
                      (app.count("--endpoint") > 0) +
                      (app.count("--endpoints") > 0);
  if (sources != 1) {
    Fail(
        "give exactly one of --model DIR, --endpoint URL or --endpoints "
        "label=URL,...");
  }
  const bool remote = !app.count("--model");
  if (backend.empty()) backend = remote ? "openai" : "local";
  if (backend != "local" && backend != "openai" && backend != "transformers")
    Fail("--backend {}: expected local, transformers or openai", backend);
  if (remote && backend != "openai")
    Fail("--backend {}: needs --model DIR, not a server", backend);
  if (!remote && backend == "openai")
    Fail("--backend openai: give --endpoint or --endpoints, not --model");
  const bool hf = backend == "transformers";
  for (const char* hf_only :
       {"--python", "--worker", "--device", "--compute-dtype", "--gpu-memory",
        "--worker-restarts"}) {
    if (!hf && app.count(hf_only)) {
      Fail("{}: applies to --backend transformers", hf_only);
    }
  }
  lo.quant.double_quant = !no_double_quant;
  o.chat = !no_chat;
  o.precisions = SplitList(precisions);
  o.strategies = SplitList(strategies);
  lo.precisions = o.precisions;
  lo.skip_modules = SplitList(skip_modules);
  if (!precision_map.empty())
    lo.precision_map = LoadPrecisionMap(precision_map);
  lo.weight_cache_dir = cache.CacheDir();
  if (remote) {
    for (const char* local_only :
         {"--threads", "--blocksize", "--no-double-quant", "--skip-modules",
          "--precision-map", "--cache-dir", "--no-cache"}) {
      if (app.count(local_only)) {
        Fail("{}: applies to the local engine (--model), not to a server",
             local_only);
      }
    }
    if (!endpoints.empty()) {
      if (app.count("--precisions") || app.count("--served-model")) {
        Fail(
            "--endpoints names its labels and models; drop --precisions "
            "and --served-model");
      }
      ro.endpoints = ParseEndpoints(endpoints, "--endpoints");
    } else {
      if (app.count("--precisions") && o.precisions.size() != 1) {
        Fail("--precisions: --endpoint is one deployment; give one label");
      }
      const std::string label =
          app.count("--precisions") ? o.precisions[0] : "served";
      ro.endpoints = {
          {label, NormalizeEndpointUrl(endpoint, "--endpoint"), served_model}};
    }
    o.precisions.clear();
    for (const auto& ep : ro.endpoints) o.precisions.push_back(ep.label);
    ro.stream = !no_stream;
    if (no_chat && ro.api == "chat") {
      Fail(
          "--no-chat: a chat server always applies its template; use --api "
          "completions");
    }
    if (!app.count("--batch")) o.batch = 2 * std::max(1, ro.concurrency);
  } else {
    for (const char* remote_only :
         {"--served-model", "--api", "--tokenizer", "--concurrency",
          "--retries", "--request-timeout", "--api-key-env", "--no-stream",
          "--model-config"}) {
      if (app.count(remote_only)) {
        Fail(
            "{}: applies to servers (--endpoint/--endpoints), not to "
            "--model",
            remote_only);
      }
    }
    if (!app.count("--batch")) o.batch = 4;
  }
  if (hf) {
    for (const char* local_only :
         {"--blocksize", "--no-double-quant", "--skip-modules", "--cache-dir",
          "--no-cache"}) {
      if (app.count(local_only)) {
        Fail(
            "{}: applies to bioquant's engine, not to --backend "
            "transformers",
            local_only);
      }
    }
    to.model_dir = lo.model_dir;
    to.precisions = o.precisions;
    to.threads = lo.threads;
    to.stop = &g_stop;
  }
  if (tasks == "all") {
    for (const auto& t : AllTasks()) {
      if (t.id != "medqa_5opt") o.tasks.push_back(t.id);
    }
  } else {
    o.tasks = SplitList(tasks);
  }
  if (o.limit < 0) Fail("--limit must be >= 0");

  std::signal(SIGINT, OnSigint);
  std::signal(SIGTERM, OnSigint);
  ProgressPrinter printer;
  Stopwatch sw;
  // The memory prediction is read before anything runs, so a bad
  // --model-config fails early.
  std::optional<PlanModel> plan_model;
  if (!model_config.empty()) {
    plan_model = WithContext(
        "--model-config", [&] { return LoadPlanModel(model_config, false); });
  }
  if (plan_model) {
    // What transformers + bitsandbytes would need on one GPU, for the
    // labels that name a precision (the report shows it beside "not
    // measured").
    PlanOptions po;
    po.device = PlanDevice::kGpu;
    nlohmann::json totals = nlohmann::json::object();
    for (const auto& label : o.precisions) {
      const auto& known = PlanPrecisions();
      if (std::find(known.begin(), known.end(), label) == known.end()) continue;
      totals[label] = PredictPrecision(*plan_model, po, label).total_bytes;
    }
    o.predicted_memory = {{"device", "gpu"},
                          {"context", po.context},
                          {"batch", po.batch},
                          {"model", model_config},
                          {"total_bytes", totals}};
  }
  const std::unique_ptr<BackendSet> backends =
      remote ? MakeOpenAIBackendSet(ro)
      : hf   ? MakeTransformersBackendSet(to)
             : MakeLocalBackendSet(lo);
  EvalSummary s;
  try {
    s = RunEval(o, *backends, g_stop,
                [&](const EvalProgress& p) { printer(p); });
  } catch (const Error&) {
    // A worker stopped by Ctrl-C in the middle of a batch: every finished
    // row is stored, as after an interruption between batches.
    if (!g_stop) throw;
    s.interrupted = true;
  }

  for (const auto& w : s.warnings)
    std::fprintf(stderr, "eval: warning: %s\n", w.c_str());
  if (s.interrupted) {
    std::fprintf(stderr,
                 "eval: interrupted after %lld new completions; the store is "
                 "consistent. "
                 "Re-run the same command to resume.\n",
                 static_cast<long long>(s.generated));
    return 130;
  }
  auto store = RunStore::OpenForRead(o.out_dir);
  StudyOptions so;
  so.seed = o.seed;
  so.resamples = resamples;
  if (!remote || !o.data_dir.empty()) so.data_dir = o.data_dir;
  for (const auto& t : o.tasks) so.splits[t] = o.split;
  const nlohmann::json scores = ScoreRun(*store, so);
  WriteFile(o.out_dir + "/scores.json", scores.dump(2) + "\n");
  WriteSummary(scores, o.out_dir + "/summary.json");
  std::fprintf(stderr,
               "eval: done in %.1f s: %lld new completions, %lld resumed; "
               "scores in %s/scores.json "
               "(bioquant report %s)\n",
               sw.ElapsedMs() / 1000.0, static_cast<long long>(s.generated),
               static_cast<long long>(s.resumed), o.out_dir.c_str(),
               o.out_dir.c_str());
  return 0;
}

BIOQUANT_COMMAND("eval",
                 "run the study (tasks x strategies x precisions), resumable",
                 RunEvalCommand);

}  // namespace
}  // namespace bioquant::cli
