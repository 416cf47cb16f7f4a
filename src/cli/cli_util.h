// Helpers shared by the sub-commands: CLI11 parsing with our exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

namespace bioquant::cli {

// Parses argv into app. Returns -1 when the command should continue, or an
// exit code (0 after --help, 2 on a usage error, printed as one line).
inline int ParseArgs(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "bioquant %s: error: %s\n", app.get_name().c_str(),
                 e.what());
    return 2;
  }
  return -1;
}

}  // namespace bioquant::cli

#include <cstdint>
#include <sstream>
#include <vector>

#include "engine/engine.h"
#include "engine/weight_cache.h"
#include "util/error.h"

namespace bioquant::cli {

// Flags every model-loading command shares, declared once (STYLE habit 12).
// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
inline std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

struct ModelFlags {
  std::string model;
  std::string precision;
  int blocksize = 64;
  bool no_double_quant = false;
  std::string skip_modules;
  std::string precision_map;
  int threads = 0;
  float llm_int8_threshold = 6.0f;
  std::string compute = "f32";
  bool allow_context_overflow = false;
  std::string cache_dir;
  bool no_cache = false;
  bool cache_flags = false;  // AddCache was called

  // --cache-dir / --no-cache: the quantized-weights cache
  // (engine/weight_cache.h), for commands that load a model to run it.
  void AddCache(CLI::App& app) {
    cache_flags = true;
    app.add_option("--cache-dir", cache_dir,
                   "quantized-weights cache (default: $XDG_CACHE_HOME/"
                   "bioquant or ~/.cache/bioquant)");
    app.add_flag("--no-cache", no_cache,
                 "quantize on every load; neither read nor write the cache");
  }
  // The cache directory to use ("" = none).
  std::string CacheDir() const {
    if (no_cache || !cache_flags) return "";
    return cache_dir.empty() ? DefaultWeightCacheDir() : cache_dir;
  }

  void Add(CLI::App& app, bool with_precision = true) {
    app.add_option("--model", model, "Hugging Face checkpoint directory")
        ->required();
    if (with_precision) {
      app.add_option("--precision", precision,
                     "f32|bf16|f16|int8|llm-int8|nf4|fp4 (default: the "
                     "checkpoint's dtype)");
      app.add_option("--blocksize", blocksize, "4-bit block size (32..4096)")
          ->default_val(64);
      app.add_flag("--no-double-quant", no_double_quant,
                   "4-bit: keep absmax in f32 (transformers' default)");
      app.add_option("--skip-modules", skip_modules,
                     "comma-separated module names kept unquantized");
      app.add_option("--precision-map", precision_map,
                     "per-module precisions, first match wins: "
                     "'model.layers.7.*=bf16,model.layers.0-5.*=int8,*=nf4' "
                     "or a file of such rules (see README)");
      app.add_option("--llm-int8-threshold", llm_int8_threshold,
                     "llm-int8 outlier threshold")
          ->default_val(6.0f);
    }
    app.add_option("--threads", threads, "worker threads (0 = all cores)")
        ->default_val(0);
    app.add_option("--compute", compute,
                   "prefill activations: f32 (default, exact goldens) or "
                   "bf16 (faster, measured error)")
        ->default_val("f32");
    app.add_flag("--allow-context-overflow", allow_context_overflow,
                 "generate past the model's context (max_position_embeddings)");
  }

  EngineOptions ToOptions() const {
    EngineOptions o;
    o.model_dir = model;
    o.precision.name = precision;
    o.precision.quant.blocksize = blocksize;
    o.precision.quant.double_quant = !no_double_quant;
    o.precision.llm_int8_threshold = llm_int8_threshold;
    o.precision.skip_modules = SplitList(skip_modules);
    if (!precision_map.empty())
      o.precision.module_map = LoadPrecisionMap(precision_map);
    o.threads = threads;
    if (threads < 0) Fail("--threads must be >= 0");
    o.compute = ParseComputeType(compute, "--compute");
    o.allow_context_overflow = allow_context_overflow;
    o.weight_cache_dir = CacheDir();
    return o;
  }
};

// "1,2,3" -> ids; throws Error naming the flag on bad input.
inline std::vector<int32_t> ParseIds(const std::string& s, const char* flag) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) Fail("{}: empty id in '{}'", flag, s);
    item = item.substr(b, e - b + 1);
    try {
      size_t used = 0;
      long long v = std::stoll(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX)
        throw std::invalid_argument("");
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      Fail("{}: '{}' is not a token id", flag, item);
    }
  }
  if (ids.empty()) Fail("{}: no ids given", flag);
  return ids;
}

}  // namespace bioquant::cli

#include <iostream>

namespace bioquant::cli {

// One JSON object on stdout; invalid UTF-8 in model text becomes U+FFFD
// instead of an exception.
inline void PrintJson(const nlohmann::json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
            << "\n";
}

}  // namespace bioquant::cli
