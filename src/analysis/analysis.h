// `bioquant analyze`: where quantization hurts a model, module by module and
// block by block — the layer-wise analysis the study this project
// reproduces left open.
//
// For every quantized Linear (the seven of each decoder block):
//   weights      absmax, standard deviation, excess kurtosis, share of
//                weights beyond 6 sigma, spread of per-row absmax
//                (max / median) — of the checkpoint's own values;
//   quant error  of each precision P against those values, from the exact
//                dequantized weights (quant/bnb.h): relative Frobenius error
//                ||W' - W|| / ||W||, SNR in dB, and the activation-weighted
//                error sqrt(sum_ij (W'_ij - W_ij)^2 a_j^2 / rows), where a_j
//                is the RMS of input column j on the calibration text: the
//                RMS change of the module's output, in output units. The
//                relative error is blind to outliers (they inflate ||W|| as
//                much as the error, so an outlier block looks *best*); the
//                activation-weighted one is what the next layer sees.
//   activations  on the calibration text: input columns whose magnitude
//                exceeds LLM.int8's threshold (6.0) on any token, and the
//                largest magnitude (a hook in the decoder's forward).
// Sensitivity (blocks: one decoder block at a time; modules: one module type
// across all blocks): only that part is quantized to P, everything else
// stays at the reference precision; mean KL(reference || part-quantized) of
// the next-token distributions over the calibration positions and top-1
// agreement. One reference model is loaded; quantized copies of a part's
// weights are swapped in and out, so nothing is loaded twice.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace bioquant {

enum class SensitivityMode { kNone, kBlocks, kModules };
// "none" | "blocks" | "modules"; throws naming --sensitivity.
SensitivityMode ParseSensitivityMode(const std::string& s);

struct AnalysisOptions {
  // model_dir, threads, quant params (blocksize, double quant); the
  // precision name is the reference ("" = the checkpoint's dtype).
  EngineOptions model;
  // Precisions analysed (int8, nf4, fp4); the first is the main one (its
  // sensitivity ranks the parts). llm-int8's weights are int8's.
  std::vector<std::string> precisions = {"nf4"};
  SensitivityMode sensitivity = SensitivityMode::kNone;
  int64_t max_tokens = 64;  // calibration tokens used
  float outlier_threshold = 6.0f;
};

// The calibration text: a few paragraphs of the task data under data_dir
// (train, else dev, else test split; up to two examples per task), or a
// built-in biomedical paragraph set when data_dir is "" or holds none.
// *source says which.
std::string CalibrationText(const std::string& data_dir, std::string* source);

// Moments of a set of weights (double accumulation).
struct WeightStats {
  double absmax = 0, std = 0, excess_kurtosis = 0;
  double frac_beyond_6sigma = 0;
  double row_absmax_spread = 0;  // max / median of per-row absmax
};
// Of a row-major [rows, cols] f32 matrix.
WeightStats ComputeWeightStats(const float* w, int64_t rows, int64_t cols);

struct QuantError {
  double rel_frobenius = 0;  // ||W' - W||_F / ||W||_F
  double snr_db = 0;         // 10 log10(||W||^2 / ||W' - W||^2)
  double act_weighted = 0;   // sqrt(sum (W'-W)_ij^2 a_j^2 / rows)
};
// w and wq [rows, cols]; col_rms [cols] (empty: all ones).
QuantError ComputeQuantError(const float* w, const float* wq, int64_t rows,
                             int64_t cols, const std::vector<double>& col_rms);

// Runs the analysis on the calibration token ids; returns the JSON object
// `analyze --json` prints (documented in README "bioquant analyze"):
// {"model", "reference", "precisions", "calibration": {"tokens"},
//  "threshold", "modules": [...], "blocks": [...], "fixed_bytes",
//  "sensitivity": {"mode", "parts": [{"part", "pattern", "bytes": {prec},
//  "kl": {P}, "top1": {P}}]}, "rankings": {"weight_outliers",
//  "quant_error", "quant_error_relative", "sensitivity"}, "top5",
//  "seconds": {...}}
nlohmann::json Analyze(const AnalysisOptions& o,
                       const std::vector<int32_t>& calibration_ids);

// Markdown / HTML (inline SVG) rendering of an Analyze result.
std::string RenderAnalysisMarkdown(const nlohmann::json& a);
std::string RenderAnalysisHtml(const nlohmann::json& a);

}  // namespace bioquant
