#include "analysis/analysis.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "engine/fidelity.h"
#include "model/decoder.h"
#include "quant/bnb.h"
#include "tasks/task.h"
#include "util/error.h"
#include "util/sys.h"

namespace bioquant {
namespace {

// A few sentences in the register of the benchmarks (abstracts, questions):
// the default calibration text when no task data is given.
constexpr const char* kBuiltinCalibration =
    "Metformin is the first-line pharmacological treatment for type 2 "
    "diabetes mellitus. In a randomized controlled trial of 1,024 patients, "
    "cisplatin-induced nephrotoxicity was reduced by magnesium "
    "supplementation. Mutations in the BRCA1 and BRCA2 genes confer a high "
    "risk of hereditary breast and ovarian cancer. The kinase inhibitor "
    "imatinib binds to the ATP-binding site of BCR-ABL and blocks its "
    "activity. Question: Does vitamin D supplementation reduce the incidence "
    "of respiratory infections in children? Answer: yes. Acetaminophen "
    "overdose is the leading cause of acute liver failure; N-acetylcysteine "
    "restores glutathione stores. Interleukin-6 signalling through STAT3 "
    "promotes tumour growth in hepatocellular carcinoma.";

const char* const kModuleTypes[] = {"self_attn.q_proj", "self_attn.k_proj",
                                    "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",
                                    "mlp.down_proj"};

Linear* ModuleOf(LayerWeights& L, int t) {
  Linear* all[] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
  return all[t];
}

// Per-module activation statistics gathered by the decoder hook.
struct ActStats {
  std::vector<double> col_sumsq;  // [cols]
  std::vector<float> col_absmax;  // [cols]
  int64_t tokens = 0;
};

// A quantized copy of a module's weights: the Linear to swap in.
Linear QuantizedLinear(const Linear& ref, const float* w, WeightFormat f,
                       const QuantParams& qp, ThreadPool* pool) {
  Linear l;
  l.name = ref.name;
  l.bias = ref.bias;
  const int64_t rows = ref.w.rows, cols = ref.w.cols;
  if (f == WeightFormat::kInt8Row) {
    auto q =
        std::make_shared<QuantizedInt8>(QuantizeInt8Rows(w, rows, cols, pool));
    l.w = q->View();
    l.storage = q;
  } else {
    auto q = std::make_shared<Quantized4bit>(
        Quantize4bit(w, {rows, cols}, f, qp, DType::kF32, std::nullopt, pool));
    l.w = q->View();
    l.storage = q;
  }
  l.bytes = PackedBytes(f, rows, cols, qp) + l.bias.size() * 4;
  l.resident_bytes = l.bytes;
  return l;
}

// Mean KL and top-1 agreement of `q` logits against the reference rows.
void CompareLogits(const std::vector<float>& ref,
                   const std::vector<double>& ref_lse,
                   const std::vector<float>& q, int64_t n, int64_t V,
                   double* kl, double* top1) {
  double sum = 0;
  int64_t agree = 0;
  for (int64_t t = 0; t < n; ++t) {
    const float* p = ref.data() + t * V;
    const float* x = q.data() + t * V;
    sum += KlDivergence(p, ref_lse[t], x, LogSumExp(x, V), V);
    agree += ArgMax(p, V) == ArgMax(x, V);
  }
  *kl = sum / n;
  *top1 = static_cast<double>(agree) / n;
}

// Indices of `v` sorted by value, largest first (stable).
std::vector<int64_t> RankDesc(const std::vector<double>& v) {
  std::vector<int64_t> idx(v.size());
  for (size_t i = 0; i < v.size(); ++i) idx[i] = static_cast<int64_t>(i);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  return idx;
}

}  // namespace

SensitivityMode ParseSensitivityMode(const std::string& s) {
  if (s == "none") return SensitivityMode::kNone;
  if (s == "blocks") return SensitivityMode::kBlocks;
  if (s == "modules") return SensitivityMode::kModules;
  Fail("--sensitivity: '{}' is not one of none, blocks, modules", s);
}

std::string CalibrationText(const std::string& data_dir, std::string* source) {
  std::string text;
  if (!data_dir.empty()) {
    for (const TaskInfo& t : AllTasks()) {
      const auto splits = AvailableSplits(data_dir, t.id);
      std::string split;
      for (const char* want : {"train", "dev", "test", "test_sample200"}) {
        if (split.empty() &&
            std::find(splits.begin(), splits.end(), want) != splits.end()) {
          split = want;
        }
      }
      if (split.empty()) continue;
      const auto ex = LoadSplit(data_dir, t.id, split);
      for (size_t i = 0; i < ex.size() && i < 2; ++i) {
        if (!ex[i].context.empty()) text += ex[i].context + "\n";
        text += ex[i].text + "\n";
      }
    }
  }
  if (text.empty()) {
    *source = "built-in biomedical paragraphs";
    return kBuiltinCalibration;
  }
  *source = "task data in " + data_dir;
  return text;
}

WeightStats ComputeWeightStats(const float* w, int64_t rows, int64_t cols) {
  WeightStats s;
  const double n = static_cast<double>(rows) * cols;
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  std::vector<double> row_max(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w + r * cols;
    double a1 = 0, a2 = 0, a3 = 0, a4 = 0, m = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double v = x[c], v2 = v * v;
      a1 += v;
      a2 += v2;
      a3 += v2 * v;
      a4 += v2 * v2;
      m = std::max(m, std::fabs(v));
    }
    s1 += a1;
    s2 += a2;
    s3 += a3;
    s4 += a4;
    row_max[r] = m;
    s.absmax = std::max(s.absmax, m);
  }
  const double mu = s1 / n, e2 = s2 / n, e3 = s3 / n, e4 = s4 / n;
  const double var = std::max(0.0, e2 - mu * mu);
  const double m4 = e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu * mu * mu * mu;
  s.std = std::sqrt(var);
  s.excess_kurtosis = var > 0 ? m4 / (var * var) - 3.0 : 0.0;
  int64_t beyond = 0;
  const double lim = 6 * s.std;
  for (int64_t i = 0; i < rows * cols; ++i) {
    beyond += std::fabs(w[i] - mu) > lim;
  }
  s.frac_beyond_6sigma = beyond / n;
  std::vector<double> sorted = row_max;
  std::nth_element(sorted.begin(), sorted.begin() + rows / 2, sorted.end());
  const double median = sorted[rows / 2];
  s.row_absmax_spread = median > 0 ? s.absmax / median : 0.0;
  return s;
}

QuantError ComputeQuantError(const float* w, const float* wq, int64_t rows,
                             int64_t cols, const std::vector<double>& col_rms) {
  double ref = 0, err = 0, aw = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double v = w[r * cols + c], d = wq[r * cols + c] - v;
      const double a = col_rms.empty() ? 1.0 : col_rms[c];
      ref += v * v;
      err += d * d;
      aw += d * d * a * a;
    }
  }
  QuantError q;
  q.rel_frobenius = ref > 0 ? std::sqrt(err / ref) : 0.0;
  q.snr_db = err > 0 ? 10 * std::log10(ref / err) : INFINITY;
  q.act_weighted = std::sqrt(aw / rows);
  return q;
}

nlohmann::json Analyze(const AnalysisOptions& o,
                       const std::vector<int32_t>& ids_in) {
  Stopwatch total;
  if (o.precisions.empty()) Fail("--precision: no precision given");
  if (o.max_tokens < 2) Fail("--max-tokens must be >= 2");
  std::vector<int32_t> ids = ids_in;
  if (static_cast<int64_t>(ids.size()) > o.max_tokens) ids.resize(o.max_tokens);
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 2) Fail("analyze: the calibration text has fewer than 2 tokens");

  const ModelConfig cfg = LoadModelConfig(o.model.model_dir);
  ThreadPool pool(o.model.threads);
  const QuantParams qp = o.model.precision.quant;
  PrecisionSpec ref_spec;
  ref_spec.name = o.model.precision.name;
  ref_spec.quant = qp;
  ModelWeights w = LoadWeights(o.model.model_dir, cfg, ref_spec, &pool);
  if (w.linear_format == WeightFormat::kInt8Row ||
      w.linear_format == WeightFormat::kNF4 ||
      w.linear_format == WeightFormat::kFP4) {
    Fail(
        "analyze: the reference must be a float precision (the checkpoint is "
        "or --reference is {})",
        w.precision);
  }
  // Precisions analysed, resolved to storage formats.
  std::vector<std::string> precs;
  std::vector<WeightFormat> formats;
  for (const std::string& p : o.precisions) {
    const WeightFormat f = ResolveLinearFormat(p, cfg.torch_dtype);
    if (f != WeightFormat::kInt8Row && f != WeightFormat::kNF4 &&
        f != WeightFormat::kFP4) {
      Fail("--precision: {} is not a quantized precision (int8, nf4, fp4)", p);
    }
    precs.push_back(p == "llm-int8" ? "int8" : p);
    formats.push_back(f);
  }
  if (qp.blocksize < 32 || !IsValidBlocksize(qp.blocksize)) {
    Fail("--blocksize: {} is not supported (32, 64, ..., 4096)", qp.blocksize);
  }
  const int64_t L = cfg.num_layers, V = cfg.vocab_size;
  const int kTypes = 7;

  // 1. Reference forward: logits and per-module input statistics.
  Decoder dec(cfg, w, &pool, o.model.compute);
  std::map<const Linear*, ActStats> acts;
  dec.SetLinearHook([&](const Linear& l, const float* x, int64_t rows) {
    ActStats& a = acts[&l];
    if (a.col_sumsq.empty()) {
      a.col_sumsq.assign(l.w.cols, 0.0);
      a.col_absmax.assign(l.w.cols, 0.0f);
    }
    for (int64_t t = 0; t < rows; ++t) {
      const float* r = x + t * l.w.cols;
      for (int64_t c = 0; c < l.w.cols; ++c) {
        a.col_sumsq[c] += static_cast<double>(r[c]) * r[c];
        a.col_absmax[c] = std::max(a.col_absmax[c], std::fabs(r[c]));
      }
    }
    a.tokens += rows;
  });
  Stopwatch sw;
  std::vector<float> ref_logits(n * V);
  {
    KVCache cache = dec.NewCache();
    dec.Forward(ids.data(), n, cache, ref_logits.data(), true);
  }
  dec.SetLinearHook({});
  std::vector<double> ref_lse(n);
  for (int64_t t = 0; t < n; ++t) ref_lse[t] = LogSumExp(&ref_logits[t * V], V);
  const double forward_s = sw.ElapsedMs() / 1000;

  // 2. Per module: weight statistics, quantization error per precision
  // (quantized copies kept for the sensitivity passes).
  sw.Reset();
  const bool keep = o.sensitivity != SensitivityMode::kNone;
  // quantized[p][layer * 7 + type]
  std::vector<std::vector<Linear>> quantized(precs.size());
  nlohmann::json modules = nlohmann::json::array();
  std::vector<double> block_outlier(L, 0), block_beyond(L, 0);
  std::vector<std::vector<double>> block_aw(precs.size(),
                                            std::vector<double>(L, 0));
  std::vector<std::vector<double>> block_rel(precs.size(),
                                             std::vector<double>(L, 0));
  std::vector<double> block_ref_sq(L, 0);
  std::vector<int64_t> block_outlier_cols(L, 0);
  std::vector<double> block_act_absmax(L, 0);
  uint64_t linear_bytes = 0;
  std::vector<float> f32, deq;
  for (int64_t l = 0; l < L; ++l) {
    for (int t = 0; t < kTypes; ++t) {
      const Linear& lin = *ModuleOf(w.layers[l], t);
      const int64_t rows = lin.w.rows, cols = lin.w.cols;
      linear_bytes += lin.bytes;
      f32.resize(rows * cols);
      for (int64_t r = 0; r < rows; ++r) RowToF32(lin.w, r, &f32[r * cols]);
      const WeightStats ws = ComputeWeightStats(f32.data(), rows, cols);
      const ActStats& a = acts[&lin];
      std::vector<double> col_rms(cols, 0.0);
      int64_t outlier_cols = 0;
      float act_max = 0;
      for (int64_t c = 0; c < cols; ++c) {
        col_rms[c] = a.tokens ? std::sqrt(a.col_sumsq[c] / a.tokens) : 0.0;
        outlier_cols += a.col_absmax[c] > o.outlier_threshold;
        act_max = std::max(act_max, a.col_absmax[c]);
      }
      nlohmann::json m = {
          {"name", lin.name},
          {"layer", l},
          {"type", kModuleTypes[t]},
          {"rows", rows},
          {"cols", cols},
          {"weights",
           {{"absmax", ws.absmax},
            {"std", ws.std},
            {"excess_kurtosis", ws.excess_kurtosis},
            {"frac_beyond_6sigma", ws.frac_beyond_6sigma},
            {"row_absmax_spread", ws.row_absmax_spread}}},
          {"activations",
           {{"outlier_columns", outlier_cols}, {"absmax", act_max}}}};
      m["bytes"][w.precision] = lin.bytes;
      block_outlier[l] =
          std::max(block_outlier[l], ws.std > 0 ? ws.absmax / ws.std : 0.0);
      block_beyond[l] += ws.frac_beyond_6sigma * rows * cols;
      block_outlier_cols[l] += outlier_cols;
      block_act_absmax[l] = std::max<double>(block_act_absmax[l], act_max);
      double ref_sq = 0;
      for (float v : f32) ref_sq += static_cast<double>(v) * v;
      block_ref_sq[l] += ref_sq;
      deq.resize(rows * cols);
      for (size_t p = 0; p < precs.size(); ++p) {
        Linear q = QuantizedLinear(lin, f32.data(), formats[p], qp, &pool);
        for (int64_t r = 0; r < rows; ++r)
          DequantizeRow(q.w, r, &deq[r * cols]);
        const QuantError e =
            ComputeQuantError(f32.data(), deq.data(), rows, cols, col_rms);
        m["quant_error"][precs[p]] = {
            {"rel_frobenius", e.rel_frobenius},
            {"snr_db", std::isfinite(e.snr_db) ? nlohmann::json(e.snr_db)
                                               : nlohmann::json(nullptr)},
            {"act_weighted", e.act_weighted}};
        m["bytes"][precs[p]] = q.bytes;
        block_aw[p][l] += e.act_weighted * e.act_weighted * rows;
        block_rel[p][l] +=
            e.rel_frobenius * e.rel_frobenius * ref_sq;  // = ||dW||^2
        if (keep) quantized[p].push_back(std::move(q));
      }
      modules.push_back(std::move(m));
    }
  }
  const double stats_s = sw.ElapsedMs() / 1000;

  // Block aggregates: the block's modules taken together.
  nlohmann::json blocks = nlohmann::json::array();
  int64_t block_weights = 0;
  for (int t = 0; t < kTypes; ++t) {
    block_weights +=
        ModuleOf(w.layers[0], t)->w.rows * ModuleOf(w.layers[0], t)->w.cols;
  }
  int64_t block_rows = 0;
  for (int t = 0; t < kTypes; ++t)
    block_rows += ModuleOf(w.layers[0], t)->w.rows;
  std::vector<std::vector<double>> aw_block(precs.size(),
                                            std::vector<double>(L)),
      rel_block(precs.size(), std::vector<double>(L));
  for (int64_t l = 0; l < L; ++l) {
    nlohmann::json b = {{"layer", l},
                        {"weight_outlier_ratio", block_outlier[l]},
                        {"frac_beyond_6sigma",
                         block_beyond[l] / static_cast<double>(block_weights)},
                        {"activation_outlier_columns", block_outlier_cols[l]},
                        {"activation_absmax", block_act_absmax[l]}};
    for (size_t p = 0; p < precs.size(); ++p) {
      aw_block[p][l] = std::sqrt(block_aw[p][l] / block_rows);
      rel_block[p][l] = block_ref_sq[l] > 0
                            ? std::sqrt(block_rel[p][l] / block_ref_sq[l])
                            : 0.0;
      b["act_weighted_error"][precs[p]] = aw_block[p][l];
      b["rel_frobenius"][precs[p]] = rel_block[p][l];
    }
    blocks.push_back(std::move(b));
  }

  // 3. Sensitivity: one part at a time quantized, the rest at the reference.
  sw.Reset();
  nlohmann::json parts = nlohmann::json::array();
  std::vector<double> main_kl;
  if (keep) {
    const bool by_block = o.sensitivity == SensitivityMode::kBlocks;
    const int64_t nparts = by_block ? L : kTypes;
    std::vector<float> logits(n * V);
    for (int64_t part = 0; part < nparts; ++part) {
      // (layer, type) pairs of this part.
      std::vector<std::pair<int64_t, int>> members;
      for (int64_t l = 0; l < L; ++l) {
        for (int t = 0; t < kTypes; ++t) {
          if (by_block ? l == part : t == part) members.push_back({l, t});
        }
      }
      nlohmann::json pj;
      pj["part"] = by_block ? fmt::format("model.layers.{}", part)
                            : std::string(kModuleTypes[part]);
      pj["pattern"] = by_block ? fmt::format("model.layers.{}.*", part)
                               : fmt::format("*.{}", kModuleTypes[part]);
      uint64_t ref_bytes = 0;
      for (auto [l, t] : members) ref_bytes += ModuleOf(w.layers[l], t)->bytes;
      pj["bytes"][w.precision] = ref_bytes;
      for (size_t p = 0; p < precs.size(); ++p) {
        std::vector<Linear> saved;
        uint64_t bytes = 0;
        for (auto [l, t] : members) {
          Linear* slot = ModuleOf(w.layers[l], t);
          saved.push_back(*slot);
          *slot = quantized[p][l * kTypes + t];
          bytes += slot->bytes;
        }
        KVCache cache = dec.NewCache();
        dec.Forward(ids.data(), n, cache, logits.data(), true);
        for (size_t k = 0; k < members.size(); ++k) {
          *ModuleOf(w.layers[members[k].first], members[k].second) = saved[k];
        }
        double kl = 0, top1 = 0;
        CompareLogits(ref_logits, ref_lse, logits, n, V, &kl, &top1);
        pj["kl"][precs[p]] = kl;
        pj["top1"][precs[p]] = top1;
        pj["bytes"][precs[p]] = bytes;
        if (p == 0) main_kl.push_back(kl);
      }
      parts.push_back(std::move(pj));
    }
  }
  const double sensitivity_s = sw.ElapsedMs() / 1000;

  // Rankings (block indices / part indices, most affected first) by the
  // main precision.
  nlohmann::json rankings;
  rankings["weight_outliers"] = RankDesc(block_outlier);
  rankings["quant_error"] = RankDesc(aw_block[0]);
  rankings["quant_error_relative"] = RankDesc(rel_block[0]);
  nlohmann::json top5 = nlohmann::json::array();
  if (keep) {
    const auto order = RankDesc(main_kl);
    rankings["sensitivity"] = order;
    for (size_t i = 0; i < order.size() && i < 5; ++i) {
      const auto& pj = parts[order[i]];
      top5.push_back({{"part", pj["part"]},
                      {"kl", pj["kl"][precs[0]]},
                      {"top1", pj["top1"][precs[0]]}});
    }
  }
  nlohmann::json r = {
      {"model", o.model.model_dir},
      {"reference", w.precision},
      {"precisions", precs},
      {"blocksize", qp.blocksize},
      {"double_quant", qp.double_quant},
      {"num_layers", L},
      {"calibration", {{"tokens", n}}},
      {"threshold", o.outlier_threshold},
      {"modules", std::move(modules)},
      {"blocks", std::move(blocks)},
      // Weights outside the decoder's Linears (embeddings, lm_head, norms)
      // in the dtype a quantized or mixed load keeps them in.
      {"fixed_bytes", w.weights_bytes - linear_bytes},
      {"sensitivity",
       {{"mode", o.sensitivity == SensitivityMode::kBlocks    ? "blocks"
                 : o.sensitivity == SensitivityMode::kModules ? "modules"
                                                              : "none"},
        {"parts", std::move(parts)}}},
      {"rankings", std::move(rankings)},
      {"top5", std::move(top5)},
      {"seconds",
       {{"reference_forward", forward_s},
        {"weights_and_error", stats_s},
        {"sensitivity", sensitivity_s},
        {"total", total.ElapsedMs() / 1000}}}};
  return r;
}

}  // namespace bioquant
