#include "study/runner.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "study/store.h"
#include "tasks/parse.h"
#include "tasks/prompt.h"
#include "tasks/strategy.h"
#include "tasks/task.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"
#include "util/version.h"

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

// The request for one prompt: rendered with the backend's chat template when
// chat is on and the model has one (a template that refuses a system turn,
// as gemma-2's does, gets the system text folded into the user turn, as
// users of such models do), else the plain prompt text; a backend that
// applies its own template gets the messages alone.
BackendRequest PromptRequest(const Backend& backend, const Prompt& prompt,
                             bool chat, const std::string& date) {
  BackendRequest req;
  if (!prompt.system.empty()) {
    req.messages.push_back({{"role", "system"}, {"content", prompt.system}});
  }
  req.messages.push_back({{"role", "user"}, {"content", prompt.user}});
  if (chat && backend.AppliesChatTemplate()) return req;
  req.text = prompt.text;
  if (!chat) return req;
  try {
    if (!backend.RenderChat(req.messages, date, &req.text)) return req;
  } catch (const Error&) {
    req.messages =
        nlohmann::json::array({{{"role", "user"}, {"content", prompt.text}}});
    backend.RenderChat(req.messages, date, &req.text);
  }
  req.add_special_tokens = false;
  return req;
}

// What identifies the prompt a row was generated from: the text the model
// saw, or the messages a backend rendered itself.
std::string PromptHash(const BackendRequest& r) {
  return Fnv1aHex(r.text.empty() ? r.messages.dump() : r.text);
}

// The stored output: a server's separate reasoning text goes first as a
// <think> block, which the parsers skip as they do a model's own.
std::string RawOutput(const BackendResult& r) {
  if (r.reasoning.empty()) return r.text;
  return "<think>" + r.reasoning + "</think>" + r.text;
}

void WriteManifest(const EvalOptions& o, const BackendSet& backends,
                   const std::string& fingerprint, const nlohmann::json& config,
                   const std::map<std::string, std::string>& task_split) {
  const nlohmann::json b = backends.Manifest();
  nlohmann::json run = {
      {"precisions", o.precisions},
      {"tasks", o.tasks},
      {"strategies", o.strategies},
      {"limit", o.limit},
      {"split_per_task", task_split},
      {"batch", o.batch},
      {"data_dir", std::filesystem::absolute(o.data_dir).string()}};
  if (b.contains("run")) run.update(b["run"]);
  nlohmann::json m = {{"tool", "bioquant"},
                      {"version", Version()},
                      {"git_revision", GitRevision()},
                      {"created_at", UtcNowIso()},
                      {"model", b.value("model", nlohmann::json())},
                      {"model_fingerprint", fingerprint},
                      {"config", config},
                      {"run", run},
                      {"machine",
                       {{"cpu", CpuModelName()},
                        {"logical_cores", LogicalCores()},
                        {"memory_bytes", TotalMemoryBytes()}}}};
  WriteFile(o.out_dir + "/manifest.json", m.dump(2) + "\n");
}

}  // namespace

nlohmann::json EvalConfigJson(const EvalOptions& o,
                              const nlohmann::json& backend_config) {
  nlohmann::json c = {
      {"split", o.split},
      {"seed", o.seed},
      {"max_new_tokens", o.max_new_tokens},
      {"max_new_tokens_cot", o.max_new_tokens_cot},
      {"chat", o.chat},
      {"date", o.date.empty() ? kDefaultDate : o.date},
      {"template_file",
       o.template_file.empty() ? "" : Fnv1aHex(ReadFile(o.template_file))},
      {"demos_file", o.demos_file},
      {"ner_style", o.ner_style}};
  c.update(backend_config);
  return c;
}

EvalSummary RunEval(const EvalOptions& o, BackendSet& backends,
                    const std::atomic<bool>& stop,
                    const std::function<void(const EvalProgress&)>& progress) {
  // Validate everything before the store is touched.
  if (o.data_dir.empty() || !IsDirectory(o.data_dir)) {
    Fail("--data-dir: '{}' is not a directory", o.data_dir);
  }
  if (o.out_dir.empty()) Fail("--out is required");
  if (o.precisions.empty()) Fail("--precisions: no precision given");
  if (o.batch < 1) Fail("--batch {}: must be >= 1", o.batch);
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
  const std::string fingerprint = backends.Fingerprint();
  const nlohmann::json config = EvalConfigJson(o, backends.Config());
  ::mkdir(o.out_dir.c_str(), 0755);
  if (!IsDirectory(o.out_dir))
    Fail("--out: cannot create directory {}", o.out_dir);
  auto store = RunStore::Open(o.out_dir, fingerprint, config, true);
  WriteManifest(o, backends, fingerprint, config, task_split);
  if (!o.predicted_memory.is_null()) {
    store->PutMeta("predicted_memory_json", o.predicted_memory.dump());
  }

  EvalSummary summary;
  summary.warnings = split_warnings;
  const std::string date = o.date.empty() ? kDefaultDate : o.date;
  // Demonstration pools per (task, strategy), built lazily.
  for (const std::string& precision : o.precisions) {
    if (stop) break;
    std::unique_ptr<Backend> backend;  // opened only if work is left
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
        if (!backend) {
          Stopwatch lw;
          backend = backends.Open(precision);
          load_ms = lw.ElapsedMs();
        }
        const int max_new = spec.kind == StrategyKind::kCot || multi
                                ? o.max_new_tokens_cot
                                : o.max_new_tokens;
        // The request of one example (its samples share the prompt).
        auto make_request = [&](const Example& ex) {
          std::vector<Example> demos;
          if (spec.kind == StrategyKind::kFewShot) {
            demos = SelectDemos(*task, spec, ex, pool, o.seed, rank.get());
          }
          const Prompt prompt =
              user_tmpl ? BuildPromptFromTemplate(*user_tmpl, *task, ex, demos)
                        : BuildPrompt(*task, ex, spec, demos);
          return PromptRequest(*backend, prompt, o.chat, date);
        };
        // One Generate call per group of `batch` requests: `batch` examples,
        // or the samples of batch / n self-consistency examples (at least
        // one). Each row is stored the moment its request finishes.
        const size_t group = multi ? std::max(1, o.batch / spec.n)
                                   : static_cast<size_t>(o.batch);
        const std::string compute = backend->Compute();
        Stopwatch sw;
        for (size_t g0 = 0; g0 < todo.size() && !stop; g0 += group) {
          const size_t g1 = std::min(todo.size(), g0 + group);
          std::vector<const Example*> pending_ex;
          std::vector<GenerationRow> pending;
          std::vector<BackendRequest> reqs;
          for (size_t e = g0; e < g1; ++e) {
            const Example* ex = todo[e];
            const BackendRequest base = make_request(*ex);
            for (const SampleSpec& s : samples) {
              GenerationRow row;
              row.key = {precision, task->id, sname,
                         templ,     ex->id,   multi ? s.index + 1 : 0};
              if (store->Has(row.key)) continue;
              row.seed = static_cast<int64_t>(s.seed);
              row.prompt_hash = PromptHash(base);
              pending_ex.push_back(ex);
              pending.push_back(std::move(row));
              BackendRequest req = base;
              req.max_new_tokens = max_new;
              req.temperature = static_cast<float>(s.temperature);
              req.seed = s.seed;
              reqs.push_back(std::move(req));
            }
          }
          std::vector<bool> stored(reqs.size(), false);
          auto keep = [&](size_t k, const BackendResult& r) {
            if (k >= reqs.size() || stored[k]) return;
            const Example& ex = *pending_ex[k];
            GenerationRow& row = pending[k];
            row.latency_ms = r.latency_ms;
            row.compute = compute;
            row.raw_output = RawOutput(r);
            Parsed parsed = ParseOutput(*task, row.raw_output, ex.options,
                                        ParseMode::kFlexible,
                                        NerStyleFromName(o.ner_style));
            if (r.finish_reason == "prompt_too_long") {
              parsed.ok = false;
              parsed.labels.clear();
              parsed.reason = "the prompt exceeds the model's context";
            }
            row.parse_ok = parsed.ok;
            row.parse_reason = parsed.reason;
            row.parsed =
                parsed.ok ? nlohmann::json(parsed.labels) : nlohmann::json();
            row.gold = GoldJson(*task, ex);
            row.tokens_in = r.tokens_in;
            row.tokens_out = r.tokens_out;
            row.prefill_ms = r.prefill_ms;
            row.decode_ms = r.decode_ms;
            store->Put(row);
            stored[k] = true;
            summary.generated++;
          };
          if (!reqs.empty()) {
            const std::vector<BackendResult> results =
                backend->Generate(reqs, keep);
            if (results.size() != reqs.size()) {
              Fail("backend {}: {} results for {} requests", precision,
                   results.size(), reqs.size());
            }
            // A backend that reported nothing through the callback.
            for (size_t k = 0; k < results.size(); ++k) keep(k, results[k]);
          }
          for (size_t e = g0; e < g1; ++e) {
            pr.done++;
            pr.elapsed_s = sw.ElapsedMs() / 1000.0;
            progress(pr);
          }
        }
        MeasurementRow m;
        m.precision = precision;
        m.task = task->id;
        m.strategy = sname;
        m.load_ms = load_ms;
        const auto mem = backend->Memory();
        m.memory_measured = mem.has_value();
        if (mem) {
          m.peak_rss_bytes = static_cast<int64_t>(mem->peak_rss_bytes);
          m.weights_bytes = static_cast<int64_t>(mem->weights_bytes);
          m.kv_cache_bytes = static_cast<int64_t>(mem->kv_cache_bytes);
          m.scratch_bytes = static_cast<int64_t>(mem->scratch_bytes);
          m.memory_source = mem->source;
        }
        m.threads = backend->threads();
        // Requests per Generate call (at most; the last call of a cell
        // may hold fewer).
        m.batch = static_cast<int>(group) * (multi ? spec.n : 1);
        m.examples = static_cast<int64_t>(examples.size());
        store->PutMeasurement(m);
      }
    }
  }
  summary.interrupted = stop;
  return summary;
}

}  // namespace bioquant
