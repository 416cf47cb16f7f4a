#include "study/study.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <tuple>

#include "study/breakdowns.h"
#include "tasks/metrics.h"
#include "tasks/ner_align.h"
#include "tasks/parse.h"
#include "tasks/stats.h"
#include "tasks/task.h"
#include "tasks/vote.h"
#include "util/error.h"

namespace bioquant {
namespace {

// One example's final answer in a cell (after re-parsing and voting).
struct Outcome {
  std::string example_id;
  nlohmann::json gold;  // as stored
  Parsed answer;
  std::vector<std::string> pred_tags;  // NER only
  std::string canonical;               // for the flip rate; "" = unparsed
  bool correct = false;                // for McNemar
  double latency_ms = 0;               // SC: samples summed
};

struct Cell {
  std::string precision, task, strategy, templ, compute;
  const TaskInfo* info = nullptr;
  std::vector<Outcome> outcomes;  // sorted by example id
  std::vector<const GenerationRow*> rows;
};

using CellKey = std::tuple<std::string, std::string, std::string, std::string>;

std::vector<std::string> Strings(const nlohmann::json& j,
                                 const std::string& what) {
  if (!j.is_array()) Fail("{} is not a list", what);
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) Fail("{} holds a non-string", what);
    out.push_back(v.get<std::string>());
  }
  return out;
}

// Gold labels of a non-NER row: a list, or {"labels": [...], "options": {...}}.
std::vector<std::string> GoldLabels(const nlohmann::json& gold,
                                    const std::string& what) {
  if (gold.is_object() && gold.contains("labels"))
    return Strings(gold["labels"], what);
  return Strings(gold, what);
}

std::map<std::string, std::string> GoldOptions(const nlohmann::json& gold) {
  std::map<std::string, std::string> opts;
  if (gold.is_object() && gold.contains("options") &&
      gold["options"].is_object()) {
    for (const auto& [k, v] : gold["options"].items()) {
      if (v.is_string()) opts[k] = v.get<std::string>();
    }
  }
  return opts;
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

// Re-parses and votes one example's rows (all of one cell).
Outcome Decide(const TaskInfo& task,
               const std::vector<const GenerationRow*>& rows,
               const std::string& store_path) {
  Outcome o;
  o.example_id = rows.front()->key.example_id;
  o.gold = rows.front()->gold;
  const std::string what =
      fmt::format("{}: gold of {}/{}/{}", store_path, rows.front()->key.task,
                  rows.front()->key.precision, o.example_id);
  const auto options = GoldOptions(o.gold);
  std::vector<Parsed> samples;
  const GenerationRow* single = nullptr;
  for (const auto* r : rows) {
    o.latency_ms += r->latency_ms;
    if (r->key.sample > 0) {
      samples.push_back(
          ParseOutput(task, r->raw_output, options, ParseMode::kFlexible));
    } else {
      single = r;
    }
  }
  const bool set_valued =
      task.type == TaskType::kNer || task.type == TaskType::kMultiLabel;
  if (!samples.empty()) {
    o.answer = set_valued ? MajorityVoteSet(samples).answer
                          : MajorityVote(samples).answer;
  } else {
    o.answer =
        ParseOutput(task, single->raw_output, options, ParseMode::kFlexible);
  }
  if (task.type == TaskType::kNer) {
    if (!o.gold.is_object() || !o.gold.contains("tokens") ||
        !o.gold.contains("tags")) {
      Fail("{} is not {{\"tokens\": [...], \"tags\": [...]}}", what);
    }
    const auto tokens = Strings(o.gold["tokens"], what + " tokens");
    const auto tags = Strings(o.gold["tags"], what + " tags");
    if (tokens.size() != tags.size())
      Fail("{}: tokens and tags differ in length", what);
    o.pred_tags = MentionsToIob2(
        tokens, o.answer.ok ? o.answer.labels : std::vector<std::string>{});
    o.correct = o.answer.ok && ExtractEntities(tags).size() ==
                                   ExtractEntities(o.pred_tags).size();
    if (o.correct) {
      // Strict: same spans; types are ignored because the predicted tags are
      // bare (single-type tasks).
      auto g = ExtractEntities(tags), p = ExtractEntities(o.pred_tags);
      for (size_t i = 0; i < g.size() && o.correct; ++i) {
        o.correct = g[i].begin == p[i].begin && g[i].end == p[i].end;
      }
    }
    o.canonical = o.answer.ok ? "tags:" + Join(o.pred_tags, " ") : "";
  } else {
    auto gold = GoldLabels(o.gold, what);
    if (gold.empty() && task.type != TaskType::kMultiLabel)
      Fail("{} is empty", what);
    if (task.type == TaskType::kMultiLabel) {
      auto p = o.answer.labels;
      std::sort(p.begin(), p.end());
      std::sort(gold.begin(), gold.end());
      o.correct = o.answer.ok && p == gold;
      o.canonical = o.answer.ok ? "set:" + Join(p, ";") : "";
    } else {
      o.correct = o.answer.ok && !o.answer.labels.empty() &&
                  o.answer.labels[0] == gold[0];
      o.canonical =
          o.answer.ok && !o.answer.labels.empty() ? o.answer.labels[0] : "";
    }
  }
  return o;
}

MetricSet BuildMetrics(const TaskInfo& task,
                       const std::vector<const Outcome*>& outs) {
  switch (task.type) {
    case TaskType::kNer: {
      std::vector<std::vector<std::string>> gold, pred;
      for (const auto* o : outs) {
        gold.push_back(o->gold["tags"].get<std::vector<std::string>>());
        pred.push_back(o->pred_tags);
      }
      return MakeNerMetrics(gold, pred);
    }
    case TaskType::kMultiLabel: {
      std::vector<std::vector<std::string>> gold;
      std::vector<std::optional<std::vector<std::string>>> pred;
      for (const auto* o : outs) {
        gold.push_back(GoldLabels(o->gold, "gold"));
        pred.push_back(o->answer.ok ? std::optional(o->answer.labels)
                                    : std::nullopt);
      }
      return MakeMultiLabelMetrics(gold, pred, task.labels);
    }
    case TaskType::kRelation:
    case TaskType::kQa: {
      std::vector<std::string> gold;
      std::vector<std::optional<std::string>> pred;
      for (const auto* o : outs) {
        gold.push_back(GoldLabels(o->gold, "gold")[0]);
        pred.push_back(o->answer.ok && !o->answer.labels.empty()
                           ? std::optional(o->answer.labels[0])
                           : std::nullopt);
      }
      return task.type == TaskType::kRelation
                 ? MakeRelationMetrics(gold, pred, task.labels,
                                       task.negative_label)
                 : MakeQaMetrics(gold, pred, task.labels);
    }
  }
  Fail("unknown task type");
}

std::vector<const Outcome*> AllOutcomes(const Cell& c) {
  std::vector<const Outcome*> v;
  for (const auto& o : c.outcomes) v.push_back(&o);
  return v;
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / v.size();
}

nlohmann::json CellJson(const Cell& c, const MetricSet& set,
                        const StudyOptions& opts,
                        const std::optional<MeasurementRow>& m) {
  nlohmann::json j;
  j["precision"] = c.precision;
  j["task"] = c.task;
  j["strategy"] = c.strategy;
  j["template"] = c.templ;
  j["type"] = TaskTypeName(c.info->type);
  j["compute"] = c.compute;
  j["examples"] = c.outcomes.size();
  j["rows"] = c.rows.size();
  j["primary_metric"] = set.primary();
  BootstrapOptions b;
  b.seed = opts.seed;
  b.resamples = opts.resamples;
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& v :
       opts.resamples > 0 ? set.Evaluate(b) : set.PointEstimates()) {
    metrics[v.name] = {{"value", v.value},
                       {"ci_low", opts.resamples > 0 ? v.ci_low : v.value},
                       {"ci_high", opts.resamples > 0 ? v.ci_high : v.value}};
  }
  j["metrics"] = metrics;
  size_t unparsed = 0;
  std::map<std::string, int> reasons;
  for (const auto& o : c.outcomes) {
    if (!o.answer.ok) {
      ++unparsed;
      const size_t p = o.answer.reason.find(" (");
      ++reasons[p == std::string::npos ? o.answer.reason
                                       : o.answer.reason.substr(0, p)];
    }
  }
  j["unparsed"] = unparsed;
  j["unparsed_rate"] =
      c.outcomes.empty() ? 0.0 : double(unparsed) / c.outcomes.size();
  j["unparsed_reasons"] = nlohmann::json(reasons);

  std::vector<double> lat;
  for (const auto& o : c.outcomes) lat.push_back(o.latency_ms);
  std::sort(lat.begin(), lat.end());
  j["latency_ms"] = {{"mean", Mean(lat)},
                     {"p50", lat.empty() ? 0.0 : Percentile(lat, 0.5)},
                     {"p95", lat.empty() ? 0.0 : Percentile(lat, 0.95)}};
  double tin = 0, tout = 0, pre = 0, dec = 0;
  for (const auto* r : c.rows) {
    tin += r->tokens_in;
    tout += r->tokens_out;
    pre += r->prefill_ms;
    dec += r->decode_ms;
  }
  j["prefill_tokens_per_s"] = pre > 0 ? tin / pre * 1000.0 : 0.0;
  j["decode_tokens_per_s"] = dec > 0 ? tout / dec * 1000.0 : 0.0;
  const double n = std::max<size_t>(c.rows.size(), 1);
  j["tokens_in"] = {{"mean", tin / n}, {"total", tin}};
  j["tokens_out"] = {{"mean", tout / n}, {"total", tout}};
  if (m) {
    // Byte fields are 0 when the backend could not measure them.
    j["memory"] = {{"measured", m->memory_measured},
                   {"source", m->memory_source},
                   {"load_ms", m->load_ms},
                   {"peak_rss_bytes", m->peak_rss_bytes},
                   {"weights_bytes", m->weights_bytes},
                   {"kv_cache_bytes", m->kv_cache_bytes},
                   {"scratch_bytes", m->scratch_bytes},
                   {"threads", m->threads},
                   {"batch", m->batch}};
  } else {
    j["memory"] = nullptr;
  }
  return j;
}

// What the breakdowns need from the task data, per task.
struct TaskData {
  bool have_train = false;
  std::map<std::string, int64_t> train_counts;  // concept / pair -> count
  std::map<std::string, std::string> pair_of;   // RE: example id -> pair
  std::string why;                              // when !have_train
};

NerScored ToNer(const Outcome& o) {
  NerScored n;
  n.id = o.example_id;
  n.tokens = o.gold["tokens"].get<std::vector<std::string>>();
  n.gold_tags = o.gold["tags"].get<std::vector<std::string>>();
  n.pred_tags = o.pred_tags;
  if (o.answer.ok) n.mentions = o.answer.labels;
  return n;
}

ReScored ToRe(const Outcome& o, const TaskData& d) {
  ReScored r;
  r.id = o.example_id;
  auto it = d.pair_of.find(o.example_id);
  if (it != d.pair_of.end()) r.pair = it->second;
  r.gold = GoldLabels(o.gold, "gold")[0];
  if (o.answer.ok && !o.answer.labels.empty()) r.pred = o.answer.labels[0];
  return r;
}

nlohmann::json Unavailable(const std::string& why) {
  return {{"available", false}, {"reason", why}};
}

BootstrapOptions Boot(const StudyOptions& opts) {
  BootstrapOptions b;
  b.seed = opts.seed;
  b.resamples = opts.resamples;
  return b;
}

// Hallucination and rare-concept breakdowns of one cell.
void CellBreakdowns(const Cell& c, const TaskData* d, const StudyOptions& opts,
                    nlohmann::json& j) {
  const TaskType t = c.info->type;
  if (t == TaskType::kNer) {
    std::vector<NerScored> v;
    for (const auto& o : c.outcomes) v.push_back(ToNer(o));
    j["hallucination"] = Hallucination(v, Boot(opts));
    j["rare_concepts"] = d && d->have_train
                             ? NerRarity(v, d->train_counts, Boot(opts))
                             : Unavailable(d ? d->why : "no task data");
  } else if (t == TaskType::kRelation) {
    if (d && d->have_train) {
      std::vector<ReScored> v;
      for (const auto& o : c.outcomes) v.push_back(ToRe(o, *d));
      j["rare_concepts"] = ReRarity(v, d->train_counts, c.info->labels,
                                    c.info->negative_label, Boot(opts));
    } else {
      j["rare_concepts"] = Unavailable(d ? d->why : "no task data");
    }
  }
}

// The gold of an example as the flips list shows it: NER entity texts,
// else the labels.
nlohmann::json GoldForFlips(const Outcome& o, TaskType t) {
  if (t == TaskType::kNer) {
    std::vector<std::string> out;
    const auto tokens = o.gold["tokens"].get<std::vector<std::string>>();
    for (const auto& s :
         ExtractEntities(o.gold["tags"].get<std::vector<std::string>>())) {
      std::string text;
      for (size_t k = s.begin; k < s.end; ++k)
        text += (k > s.begin ? " " : "") + tokens[k];
      out.push_back(text);
    }
    return out;
  }
  return GoldLabels(o.gold, "gold");
}

// An answer as the flips list shows it: NER mentions, else the canonical
// form; "" when unparsed.
std::string AnswerForFlips(const Outcome& o, TaskType t) {
  if (!o.answer.ok) return "";
  if (t == TaskType::kNer) return Join(o.answer.labels, "; ");
  if (t == TaskType::kMultiLabel) return o.canonical.substr(4);  // "set:"
  return o.canonical;
}

nlohmann::json Compare(const Cell& ref, const Cell& x, const StudyOptions& opts,
                       const TaskData* data) {
  std::map<std::string, const Outcome*> by_id;
  for (const auto& o : ref.outcomes) by_id[o.example_id] = &o;
  std::vector<const Outcome*> ra, xa;
  for (const auto& o : x.outcomes) {
    auto it = by_id.find(o.example_id);
    if (it != by_id.end()) {
      ra.push_back(it->second);
      xa.push_back(&o);
    }
  }
  nlohmann::json j;
  j["precision"] = x.precision;
  j["reference"] = ref.precision;
  j["task"] = x.task;
  j["strategy"] = x.strategy;
  j["template"] = x.templ;
  j["paired_examples"] = ra.size();
  if (ra.empty()) {
    j["criterion"] = "undefined";
    return j;
  }
  const MetricSet sa = BuildMetrics(*ref.info, ra);
  const MetricSet sx = BuildMetrics(*x.info, xa);
  const std::string metric = sa.primary();
  j["metric"] = metric;
  const double va = sa.Value(metric, nullptr), vx = sx.Value(metric, nullptr);
  j["reference_value"] = va;
  j["value"] = vx;
  j["delta"] = vx - va;
  double dlo = vx - va, dhi = vx - va;
  std::vector<double> rel;
  if (opts.resamples > 0) {
    BootstrapOptions b;
    b.seed = opts.seed;
    b.resamples = opts.resamples;
    const PairedDelta d = PairedBootstrapDelta(sa, sx, metric, b);
    dlo = d.ci_low;
    dhi = d.ci_high;
    // The relative drop's interval from the same paired resamples
    // (BootstrapWeights is a pure function of (seed, b, n)).
    for (int i = 0; i < opts.resamples; ++i) {
      const auto w = BootstrapWeights(opts.seed, i, ra.size());
      const double a = sa.Value(metric, &w);
      if (a > 0) rel.push_back((a - sx.Value(metric, &w)) / a);
    }
    std::sort(rel.begin(), rel.end());
  }
  j["delta_ci_low"] = dlo;
  j["delta_ci_high"] = dhi;
  if (va > 0) {
    const double drop = (va - vx) / va;
    const double alpha = (1.0 - BootstrapOptions{}.level) / 2;
    const double lo = rel.empty() ? drop : Percentile(rel, alpha);
    const double hi = rel.empty() ? drop : Percentile(rel, 1.0 - alpha);
    j["relative_drop"] = drop;
    j["relative_drop_ci_low"] = lo;
    j["relative_drop_ci_high"] = hi;
    j["criterion"] = drop > opts.max_relative_drop  ? "violated"
                     : hi <= opts.max_relative_drop ? "supported"
                                                    : "not established";
  } else {
    j["relative_drop"] = nullptr;
    j["relative_drop_ci_low"] = nullptr;
    j["relative_drop_ci_high"] = nullptr;
    j["criterion"] = "undefined";
  }
  std::vector<bool> ca, cx;
  std::vector<std::string> pa, px;
  size_t ua = 0, ux = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    ca.push_back(ra[i]->correct);
    cx.push_back(xa[i]->correct);
    pa.push_back(ra[i]->canonical);
    px.push_back(xa[i]->canonical);
    ua += !ra[i]->answer.ok;
    ux += !xa[i]->answer.ok;
  }
  const McNemarResult mc = McNemarExact(ca, cx);
  j["mcnemar"] = {{"only_reference", mc.only_a},
                  {"only_precision", mc.only_b},
                  {"p_value", mc.p_value}};
  j["flip_rate"] = FlipRate(pa, px);
  j["unparsed_rate_reference"] = double(ua) / ra.size();
  j["unparsed_rate"] = double(ux) / ra.size();
  const TaskType type = x.info->type;
  j["flips"] = nlohmann::json::array();
  size_t flips = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    if (pa[i] == px[i]) continue;
    if (flips++ >= opts.max_flips) continue;
    j["flips"].push_back({{"id", xa[i]->example_id},
                          {"reference_answer", AnswerForFlips(*ra[i], type)},
                          {"answer", AnswerForFlips(*xa[i], type)},
                          {"gold", GoldForFlips(*xa[i], type)}});
  }
  j["flips_total"] = flips;
  if (type == TaskType::kNer) {
    std::vector<NerScored> nr, nx;
    for (size_t i = 0; i < ra.size(); ++i) {
      nr.push_back(ToNer(*ra[i]));
      nx.push_back(ToNer(*xa[i]));
    }
    j["hallucination"] = PairedHallucination(nr, nx, Boot(opts));
    j["rare_concepts"] =
        data && data->have_train
            ? PairedNerRarity(nr, nx, data->train_counts, Boot(opts))
            : Unavailable(data ? data->why : "no task data");
  } else if (type == TaskType::kRelation) {
    if (data && data->have_train) {
      std::vector<ReScored> rr, rx;
      for (size_t i = 0; i < ra.size(); ++i) {
        rr.push_back(ToRe(*ra[i], *data));
        rx.push_back(ToRe(*xa[i], *data));
      }
      j["rare_concepts"] =
          PairedReRarity(rr, rx, data->train_counts, x.info->labels,
                         x.info->negative_label, Boot(opts));
    } else {
      j["rare_concepts"] = Unavailable(data ? data->why : "no task data");
    }
  }
  return j;
}

}  // namespace

int PrecisionRank(const std::string& p) {
  static const char* kOrder[] = {"f32",      "bf16", "f16", "int8",
                                 "llm-int8", "nf4",  "fp4"};
  for (int i = 0; i < 7; ++i) {
    if (p == kOrder[i]) return i;
  }
  return 7;
}

nlohmann::json ScoreRun(const RunStore& store, const StudyOptions& opts) {
  if (opts.resamples < 0) Fail("--resamples must be >= 0");
  const std::vector<GenerationRow> rows = store.Rows();
  std::map<std::string, MeasurementRow> meas;  // "precision\ttask\tstrategy"
  for (const auto& m : store.Measurements()) {
    meas[m.precision + "\t" + m.task + "\t" + m.strategy] = m;
  }

  // Group rows into cells, then examples (rows come sorted by the key).
  std::map<CellKey, Cell> cells;
  for (const auto& r : rows) {
    Cell& c = cells[{r.key.precision, r.key.task, r.key.strategy, r.key.templ}];
    if (!c.info) {
      c.precision = r.key.precision;
      c.task = r.key.task;
      c.strategy = r.key.strategy;
      c.templ = r.key.templ;
      c.compute = r.compute;
      c.info = &WithContext(store.path(), [&]() -> const TaskInfo& {
        return FindTask(r.key.task);
      });
    }
    c.rows.push_back(&r);
  }
  for (auto& [key, c] : cells) {
    size_t i = 0;
    while (i < c.rows.size()) {
      size_t j = i;
      std::vector<const GenerationRow*> ex;
      while (j < c.rows.size() &&
             c.rows[j]->key.example_id == c.rows[i]->key.example_id) {
        ex.push_back(c.rows[j++]);
      }
      c.outcomes.push_back(Decide(*c.info, ex, store.path()));
      i = j;
    }
  }

  std::vector<std::string> precisions, tasks, strategies;
  for (const auto& [key, c] : cells) {
    if (std::find(precisions.begin(), precisions.end(), c.precision) ==
        precisions.end())
      precisions.push_back(c.precision);
    if (std::find(strategies.begin(), strategies.end(), c.strategy) ==
        strategies.end())
      strategies.push_back(c.strategy);
  }
  std::stable_sort(precisions.begin(), precisions.end(),
                   [](const std::string& a, const std::string& b) {
                     return PrecisionRank(a) < PrecisionRank(b);
                   });
  for (const auto& t : AllTasks()) {
    for (const auto& [key, c] : cells) {
      if (c.task == t.id) {
        tasks.push_back(t.id);
        break;
      }
    }
  }
  // Strategies in the order a study usually lists them.
  auto strategy_rank = [](const std::string& s) {
    for (const auto& [prefix, rank] : std::vector<std::pair<std::string, int>>{
             {"zero-shot", 0}, {"few-shot", 1}, {"cot", 2}, {"sc", 3}}) {
      if (s.rfind(prefix, 0) == 0) return rank;
    }
    return 4;
  };
  std::stable_sort(strategies.begin(), strategies.end(),
                   [&](const std::string& a, const std::string& b) {
                     return strategy_rank(a) < strategy_rank(b);
                   });

  nlohmann::json out;
  out["store"] = store.path();
  out["meta"] = store.Meta();
  out["bootstrap"] = {{"seed", opts.seed},
                      {"resamples", opts.resamples},
                      {"level", BootstrapOptions{}.level},
                      {"method", "percentile"}};
  out["reference_precision"] = precisions.empty() ? "" : precisions.front();
  out["precisions"] = precisions;
  out["tasks"] = tasks;
  out["strategies"] = strategies;
  out["criterion"] =
      fmt::format("relative drop <= {:g}%", opts.max_relative_drop * 100);

  // Cells and comparisons in report order: precision, task, strategy.
  std::vector<const Cell*> ordered;
  for (const auto& p : precisions)
    for (const auto& t : tasks)
      for (const auto& s : strategies)
        for (const auto& [key, c] : cells)
          if (c.precision == p && c.task == t && c.strategy == s)
            ordered.push_back(&c);
  out["cells"] = nlohmann::json::array();
  out["comparisons"] = nlohmann::json::array();
  // Task data for the breakdowns: train-split counts, RE sentences.
  std::map<std::string, TaskData> data;
  for (const auto& t : tasks) {
    const TaskInfo& info = FindTask(t);
    if (info.type != TaskType::kNer && info.type != TaskType::kRelation)
      continue;
    TaskData& d = data[t];
    if (opts.data_dir.empty()) {
      d.why = "no task data (report --data-dir)";
      continue;
    }
    const auto splits = AvailableSplits(opts.data_dir, t);
    if (std::find(splits.begin(), splits.end(), "train") == splits.end()) {
      d.why = fmt::format("{} has no train split for {}", opts.data_dir, t);
      continue;
    }
    d.have_train = true;
    for (const Example& e : LoadSplit(opts.data_dir, t, "train")) {
      if (info.type == TaskType::kNer) {
        for (const auto& k : GoldEntityKeys(e.tokens, e.tags))
          d.train_counts[k]++;
      } else {
        const std::string k = RePairKey(e.text);
        if (!k.empty()) d.train_counts[k]++;
      }
    }
    if (info.type == TaskType::kRelation) {
      auto sp = opts.splits.find(t);
      const std::string split = sp != opts.splits.end() ? sp->second : "test";
      if (std::find(splits.begin(), splits.end(), split) != splits.end()) {
        for (const Example& e : LoadSplit(opts.data_dir, t, split))
          d.pair_of[e.id] = RePairKey(e.text);
      }
    }
  }
  auto data_of = [&](const std::string& t) -> const TaskData* {
    auto it = data.find(t);
    return it == data.end() ? nullptr : &it->second;
  };
  for (const Cell* c : ordered) {
    const MetricSet set = BuildMetrics(*c->info, AllOutcomes(*c));
    std::optional<MeasurementRow> m;
    auto it = meas.find(c->precision + "\t" + c->task + "\t" + c->strategy);
    if (it != meas.end()) m = it->second;
    nlohmann::json cj = CellJson(*c, set, opts, m);
    CellBreakdowns(*c, data_of(c->task), opts, cj);
    out["cells"].push_back(std::move(cj));
  }
  if (!precisions.empty()) {
    for (const Cell* c : ordered) {
      if (c->precision == precisions.front()) continue;
      auto ref =
          cells.find({precisions.front(), c->task, c->strategy, c->templ});
      if (ref == cells.end()) continue;
      out["comparisons"].push_back(
          Compare(ref->second, *c, opts, data_of(c->task)));
    }
  }
  out["summary"] = SummaryFromScores(out);
  return out;
}

nlohmann::json SummaryFromScores(const nlohmann::json& scores) {
  nlohmann::json s;
  const std::string ref = scores.value("reference_precision", "");
  s["reference_precision"] = ref;
  s["criterion"] = scores.value("criterion", "relative drop <= 5%");
  {
    const nlohmann::json& meta = scores.value("meta", nlohmann::json());
    const nlohmann::json cfg =
        meta.is_object() ? meta.value("config", nlohmann::json()) : nullptr;
    s["backend"] =
        cfg.is_object() && cfg.contains("backend") && cfg["backend"].is_string()
            ? cfg["backend"].get<std::string>()
            : std::string("local");
  }
  s["precisions"] = nlohmann::json::array();
  const std::string first_strategy =
      scores["strategies"].empty() ? ""
                                   : scores["strategies"][0].get<std::string>();
  for (const auto& pj : scores["precisions"]) {
    const std::string p = pj.get<std::string>();
    nlohmann::json e;
    e["precision"] = p;
    int64_t weights = 0, rss = 0;
    bool any_memory = false, measured = false;
    std::string source;
    std::vector<double> lat, main;
    for (const auto& c : scores["cells"]) {
      if (c["precision"] != p) continue;
      if (c["memory"].is_object()) {
        any_memory = true;
        measured = measured || c["memory"].value("measured", true);
        if (source.empty() || c["memory"].value("measured", true))
          source = c["memory"].value("source", "cpu-rss");
        weights = std::max<int64_t>(
            weights, c["memory"]["weights_bytes"].get<int64_t>());
        rss = std::max<int64_t>(rss,
                                c["memory"]["peak_rss_bytes"].get<int64_t>());
      }
      lat.push_back(c["latency_ms"]["mean"].get<double>());
      main.push_back(
          c["metrics"][c["primary_metric"].get<std::string>()]["value"]);
    }
    std::vector<double> drops;
    bool supported = true;
    nlohmann::json per_task = nlohmann::json::object();
    if (p != ref) {
      for (const auto& cmp : scores["comparisons"]) {
        if (cmp["precision"] != p) continue;
        if (cmp["relative_drop"].is_number())
          drops.push_back(cmp["relative_drop"]);
        supported = supported && cmp["criterion"] == "supported";
        if (cmp["strategy"] == first_strategy &&
            !per_task.contains(cmp["task"])) {
          per_task[cmp["task"].get<std::string>()] = {
              {"relative_drop", cmp["relative_drop"]},
              {"criterion", cmp["criterion"]}};
        }
      }
      // No comparable cell at all: nothing supports the criterion.
      supported = supported && !drops.empty();
    }
    e["relative_drop"] = Mean(drops);
    e["ci_supports_within_5pct"] = supported;
    e["weights_bytes"] = weights;
    e["peak_rss_bytes"] = rss;
    e["memory_measured"] = !any_memory || measured;
    // What peak_rss_bytes measured ("cpu-rss", "gpu-allocated", ...).
    e["memory_source"] = any_memory ? source : "not measured";
    e["latency_ms_mean"] = Mean(lat);
    e["main_metric_mean"] = Mean(main);
    e["tasks"] = per_task;
    s["precisions"].push_back(e);
  }
  return s;
}

void WriteSummary(const nlohmann::json& scores, const std::string& path) {
  std::ofstream f(path);
  if (!f) Fail("{}: cannot write", path);
  f << scores["summary"].dump(2) << "\n";
  if (!f) Fail("{}: write failed", path);
}

}  // namespace bioquant
