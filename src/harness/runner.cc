#include "harness/runner.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "engine/engine.h"
#include "harness/parse.h"
#include "harness/prompt.h"
#include "harness/store.h"
#include "harness/strategy.h"
#include "harness/task.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"

namespace bioquant {
namespace {

// The date templates see: fixed, so a rerun renders the same prompt.
constexpr char kDefaultDate[] = "2025-01-01";

nlohmann::json GoldJson(const TaskInfo& task, const Example& ex) {
  if (task.type == TaskType::kNer)
    return {{"tokens", ex.tokens}, {"tags", ex.tags}};
  if (task.type == TaskType::kQa && IsLetterQa(task)) {
    return {{"labels", ex.gold}, {"options", ex.options}};
  }
  return ex.gold;
}

std::string ComputeName(const ModelWeights& w) {
  switch (w.linear_format) {
    case WeightFormat::kInt8Row:
      return w.llm_int8 ? "llm-int8" : "w8a32";
    case WeightFormat::kNF4:
    case WeightFormat::kFP4:
      return "w4a32";
    default:
      return "f32";
  }
}

void WriteManifest(const EvalOptions& o, const std::string& fingerprint,
                   const nlohmann::json& config,
                   const std::map<std::string, std::string>& task_split) {
  nlohmann::json m = {{"tool", "bioquant"},
                      {"version", BIOQUANT_VERSION},
                      {"git_revision", BIOQUANT_GIT_REV},
                      {"created_at", UtcNowIso()},
                      {"model", o.model_dir},
                      {"model_fingerprint", fingerprint},
                      {"config", config},
                      {"run",
                       {{"precisions", o.precisions},
                        {"tasks", o.tasks},
                        {"strategies", o.strategies},
                        {"limit", o.limit},
                        {"split_per_task", task_split},
                        {"threads", o.threads},
                        {"batch", o.batch},
                        {"prefix_cache_bytes", o.prefix_cache_bytes}}},
                      {"machine",
                       {{"cpu", CpuModelName()},
                        {"logical_cores", LogicalCores()},
                        {"memory_bytes", TotalMemoryBytes()}}}};
  WriteFile(o.out_dir + "/manifest.json", m.dump(2) + "\n");
}

}  // namespace

nlohmann::json EvalConfigJson(const EvalOptions& o) {
  return {{"split", o.split},
          {"seed", o.seed},
          {"max_new_tokens", o.max_new_tokens},
          {"max_new_tokens_cot", o.max_new_tokens_cot},
          {"chat", o.chat},
          {"date", o.date.empty() ? kDefaultDate : o.date},
          {"template_file",
           o.template_file.empty() ? "" : Fnv1aHex(ReadFile(o.template_file))},
          {"demos_file", o.demos_file},
          {"ner_style", o.ner_style},
          {"blocksize", o.quant.blocksize},
          {"double_quant", o.quant.double_quant},
          {"skip_modules", o.skip_modules}};
}

std::string ModelFingerprint(const std::string& model_dir) {
  uint64_t h = Fnv1a(ReadFile(model_dir + "/config.json"));
  auto store = TensorStore::Open(model_dir);
  for (const auto& f : store->files()) h = Fnv1a(f->header_json(), h);
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(h));
  return buf;
}

EvalSummary RunEval(const EvalOptions& o, const std::atomic<bool>& stop,
                    const std::function<void(const EvalProgress&)>& progress) {
  // Validate everything before the store is touched.
  if (o.model_dir.empty()) Fail("--model is required");
  if (!IsDirectory(o.model_dir))
    Fail("--model: {}: model directory not found", o.model_dir);
  if (o.data_dir.empty() || !IsDirectory(o.data_dir)) {
    Fail("--data-dir: '{}' is not a directory", o.data_dir);
  }
  if (o.out_dir.empty()) Fail("--out is required");
  if (o.precisions.empty()) Fail("--precisions: no precision given");
  if (o.batch < 1) Fail("--batch {}: must be >= 1", o.batch);
  for (const auto& p : o.precisions) ResolveLinearFormat(p, "bfloat16");
  std::vector<const TaskInfo*> tasks;
  for (const auto& t : o.tasks) tasks.push_back(&FindTask(t));
  std::vector<StrategySpec> strategies;
  for (const auto& s : o.strategies) {
    strategies.push_back(
        WithContext("--strategies", [&] { return ParseStrategy(s); }));
  }
  if (tasks.empty() || strategies.empty())
    Fail("--tasks/--strategies: nothing to run");
  for (const auto& s : strategies) {
    if (s.kind == StrategyKind::kSelfConsistency && s.n < 2) {
      Fail(
          "--strategies: {} votes over one sample; use sc:N with N >= 2 (or "
          "cot)",
          StrategyName(s));
    }
  }
  std::unique_ptr<UserTemplate> user_tmpl;
  if (!o.template_file.empty()) {
    user_tmpl =
        std::make_unique<UserTemplate>(LoadUserTemplate(o.template_file));
  }
  // Data first (a missing file fails before any model is loaded).
  std::map<std::string, std::vector<Example>> data;
  std::map<std::string, std::string> task_split;
  std::vector<std::string> split_warnings;
  for (const TaskInfo* t : tasks) {
    // The public releases lack some splits (ChemProt has only the 200-pair
    // test subset, MedQA no subset): fall back between test and
    // test_sample200 with a warning rather than drop the task.
    std::string split = o.split;
    const auto avail = AvailableSplits(o.data_dir, t->id);
    const bool has =
        std::find(avail.begin(), avail.end(), split) != avail.end();
    if (!has && (split == "test" || split == "test_sample200")) {
      const std::string other = split == "test" ? "test_sample200" : "test";
      if (std::find(avail.begin(), avail.end(), other) != avail.end()) {
        split_warnings.push_back(
            fmt::format("{}: no '{}' split in {}; using '{}'", t->id, split,
                        o.data_dir, other));
        split = other;
      }
    }
    task_split[t->id] = split;
    auto ex = LoadSplit(o.data_dir, t->id, split);
    if (o.limit > 0 && static_cast<int64_t>(ex.size()) > o.limit)
      ex.resize(o.limit);
    data[t->id] = std::move(ex);
  }
  const ModelConfig probe = LoadModelConfig(o.model_dir);
  (void)probe;
  const std::string fingerprint = ModelFingerprint(o.model_dir);
  const nlohmann::json config = EvalConfigJson(o);
  ::mkdir(o.out_dir.c_str(), 0755);
  if (!IsDirectory(o.out_dir))
    Fail("--out: cannot create directory {}", o.out_dir);
  auto store = RunStore::Open(o.out_dir, fingerprint, config, true);
  WriteManifest(o, fingerprint, config, task_split);

  EvalSummary summary;
  summary.warnings = split_warnings;
  const std::string date = o.date.empty() ? kDefaultDate : o.date;
  // Demonstration pools per (task, strategy), built lazily.
  for (const std::string& precision : o.precisions) {
    if (stop) break;
    EngineOptions eo;
    eo.model_dir = o.model_dir;
    eo.precision.name = precision;
    eo.precision.quant = o.quant;
    eo.precision.skip_modules = o.skip_modules;
    eo.threads = o.threads;
    eo.prefix_cache_bytes = o.prefix_cache_bytes;
    ResetPeakRss();
    std::unique_ptr<Engine> engine;  // loaded only if something is left to do
    double load_ms = 0;
    for (const TaskInfo* task : tasks) {
      const std::vector<Example>& examples = data[task->id];
      for (size_t si = 0; si < strategies.size(); ++si) {
        if (stop) break;
        const StrategySpec& spec = strategies[si];
        const std::string sname = StrategyName(spec);
        const std::string templ =
            user_tmpl ? user_tmpl->id : BuiltinTemplateId(*task, spec);
        const std::vector<SampleSpec> samples = Samples(spec, o.seed);
        const bool multi = spec.kind == StrategyKind::kSelfConsistency;
        const std::set<std::string> done = store->DoneExamples(
            precision, task->id, sname, templ, multi ? spec.n : 1);
        std::vector<const Example*> todo;
        for (const auto& ex : examples) {
          if (!done.count(ex.id)) todo.push_back(&ex);
        }
        EvalProgress pr{precision,
                        task->id,
                        sname,
                        0,
                        static_cast<int64_t>(examples.size() - todo.size()),
                        static_cast<int64_t>(examples.size()),
                        0};
        summary.resumed += pr.skipped;
        if (todo.empty()) {
          progress(pr);
          continue;
        }
        DemoPool pool;
        std::unique_ptr<RankFile> rank;
        if (spec.kind == StrategyKind::kFewShot) {
          try {
            pool = LoadDemoPool(o.data_dir, *task, o.demos_file, spec);
            if (spec.selection == DemoSelection::kRank) {
              rank = std::make_unique<RankFile>(
                  RankFile::Load(o.data_dir + "/" + task->id +
                                 "/fewshot_similarity_rank.json"));
            }
          } catch (const Error& e) {
            summary.warnings.push_back(
                fmt::format("{} {}: skipped: {}", task->id, sname, e.what()));
            continue;
          }
        }
        if (!engine) {
          Stopwatch lw;
          engine = Engine::Load(eo);
          load_ms = lw.ElapsedMs();
        }
        const bool use_chat = o.chat && engine->tokenizer() &&
                              !engine->tokenizer()->chat_template().empty();
        const int max_new = spec.kind == StrategyKind::kCot || multi
                                ? o.max_new_tokens_cot
                                : o.max_new_tokens;
        // The prompt ids of one example (its samples share them).
        auto encode = [&](const Example& ex, std::string* text) {
          std::vector<Example> demos;
          if (spec.kind == StrategyKind::kFewShot) {
            demos = SelectDemos(*task, spec, ex, pool, o.seed, rank.get());
          }
          const Prompt prompt =
              user_tmpl ? BuildPromptFromTemplate(*user_tmpl, *task, ex, demos)
                        : BuildPrompt(*task, ex, spec, demos);
          *text = prompt.text;
          bool add_special = true;
          if (use_chat) {
            nlohmann::json messages = nlohmann::json::array();
            if (!prompt.system.empty()) {
              messages.push_back(
                  {{"role", "system"}, {"content", prompt.system}});
            }
            messages.push_back({{"role", "user"}, {"content", prompt.user}});
            try {
              engine->RenderChat(messages, true, date, "", text);
            } catch (const Error&) {
              // Templates that refuse a system message (gemma-2): fold it
              // into the user turn, as users of such models do.
              messages = nlohmann::json::array(
                  {{{"role", "user"}, {"content", prompt.text}}});
              engine->RenderChat(messages, true, date, "", text);
            }
            add_special = false;
          }
          return engine->RequireTokenizer().Encode(*text, add_special);
        };
        // One GenerateBatch call per group: `batch` examples, or the samples
        // of one self-consistency example.
        const size_t group = multi ? 1 : static_cast<size_t>(o.batch);
        Stopwatch sw;
        for (size_t g0 = 0; g0 < todo.size() && !stop; g0 += group) {
          const size_t g1 = std::min(todo.size(), g0 + group);
          struct Pending {
            const Example* ex;
            std::string text;  // the prompt as rendered
            int64_t tokens_in;
            GenerationRow row;
          };
          std::vector<Pending> pending;
          std::vector<GenerateRequest> reqs;
          for (size_t e = g0; e < g1; ++e) {
            const Example* ex = todo[e];
            std::string text;
            const std::vector<int32_t> ids = encode(*ex, &text);
            for (const SampleSpec& s : samples) {
              GenerationRow row;
              row.key = {precision, task->id, sname,
                         templ,     ex->id,   multi ? s.index + 1 : 0};
              if (store->Has(row.key)) continue;
              row.seed = static_cast<int64_t>(s.seed);
              pending.push_back(
                  {ex, text, static_cast<int64_t>(ids.size()), row});
              GenerateRequest req;
              req.prompt_ids = ids;
              req.max_new_tokens = max_new;
              req.sampling.temperature = static_cast<float>(s.temperature);
              req.sampling.seed = s.seed;
              reqs.push_back(std::move(req));
            }
          }
          Stopwatch gw;
          const std::vector<GenerateResult> results =
              reqs.empty() ? std::vector<GenerateResult>()
                           : engine->GenerateBatch(reqs);
          // Rows of one call share its wall time: latency_ms is the call's
          // time divided by the rows it produced (per-row prefill_ms and
          // decode_ms are the request's own, see engine/engine.h Timings).
          const double latency_ms =
              gw.ElapsedMs() / std::max<size_t>(1, results.size());
          for (size_t k = 0; k < results.size(); ++k) {
            const GenerateResult& r = results[k];
            const Example& ex = *pending[k].ex;
            GenerationRow& row = pending[k].row;
            row.latency_ms = latency_ms;
            row.compute = ComputeName(engine->weights());
            row.prompt_hash = Fnv1aHex(pending[k].text);
            row.raw_output = r.text;
            const Parsed parsed =
                ParseOutput(*task, r.text, ex.options, ParseMode::kFlexible,
                            NerStyleFromName(o.ner_style));
            row.parse_ok = parsed.ok;
            row.parse_reason = parsed.reason;
            row.parsed =
                parsed.ok ? nlohmann::json(parsed.labels) : nlohmann::json();
            row.gold = GoldJson(*task, ex);
            row.tokens_in = pending[k].tokens_in;
            row.tokens_out = static_cast<int64_t>(r.output_ids.size());
            row.prefill_ms = r.timings.prefill_ms;
            row.decode_ms = r.timings.decode_ms;
            store->Put(row);
            summary.generated++;
          }
          for (size_t e = g0; e < g1; ++e) {
            pr.done++;
            pr.elapsed_s = sw.ElapsedMs() / 1000.0;
            progress(pr);
          }
        }
        const MemoryLedger mem = engine->Memory();
        MeasurementRow m;
        m.precision = precision;
        m.task = task->id;
        m.strategy = sname;
        m.load_ms = load_ms;
        m.peak_rss_bytes = static_cast<int64_t>(mem.peak_rss_bytes);
        m.weights_bytes = static_cast<int64_t>(mem.weights_bytes);
        m.kv_cache_bytes = static_cast<int64_t>(mem.kv_cache_bytes);
        m.scratch_bytes = static_cast<int64_t>(mem.scratch_bytes);
        m.threads = engine->threads();
        // Requests per GenerateBatch call (at most; the last call of a cell
        // may hold fewer).
        m.batch = multi ? spec.n : o.batch;
        m.examples = static_cast<int64_t>(examples.size());
        store->PutMeasurement(m);
      }
    }
  }
  summary.interrupted = stop;
  return summary;
}

}  // namespace bioquant
