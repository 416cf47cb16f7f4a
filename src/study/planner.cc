#include "study/planner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>

#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"
#include "util/sys.h"

namespace bioquant {

// Measured on this project's build machine (Debian 12, x86-64, g++ 12,
// Release, 2 threads): `bioquant generate --json` on `bioquant synth --preset
// tiny` (weights, KV cache and scratch under 4 MiB) peaks 13.2-14.0 MiB above
// what this model predicts without a baseline, for bf16/f32/int8/nf4 and for
// prompts of 8..512 tokens: binary and shared-library pages (libcurl and
// OpenSSL for the OpenAI backend and `serve` account for ~6 MiB of it; 7.4
// MiB before they joined), libstdc++/ICU/sentencepiece/PCRE2 start-up data,
// malloc arenas, thread stacks. (Its tokenizer is counted separately, by
// loading it.) Other machines differ by a few MiB, which matters only for
// toy models.
const uint64_t kCpuProcessBaselineBytes = (135ull << 20) / 10;

// nvidia-smi shows 300-500 MiB in use right after PyTorch's first CUDA call
// on A100/H100 with CUDA 12 and lazy module loading (the default since CUDA
// 11.7 / PyTorch 1.13): the driver context plus PyTorch's and cuBLAS's
// kernel images. We take the upper end, per device; it is not visible to
// torch.cuda.max_memory_allocated().
const uint64_t kCudaContextBytes = 500ull << 20;

namespace {

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string Lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

uint64_t BytesOfFormat(WeightFormat f) {
  return f == WeightFormat::kF32 ? 4 : 2;
}

bool IsFloatFormat(WeightFormat f) {
  return f == WeightFormat::kF32 || f == WeightFormat::kBF16 ||
         f == WeightFormat::kF16;
}

// One weight tensor of the decoder, in LoadWeights order.
struct TensorShape {
  enum class Kind { kEmbed, kNorm, kLinear, kBias, kLmHead };
  Kind kind;
  int64_t rows, cols;
  uint64_t numel() const { return uint64_t(rows) * uint64_t(cols); }
};

// The tensors LoadWeights reads, in its order (biases before their weight,
// as LoadLinear reads them).
std::vector<TensorShape> DecoderTensors(const ModelConfig& c) {
  using K = TensorShape::Kind;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  std::vector<TensorShape> t;
  t.push_back({K::kEmbed, c.vocab_size, H});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    t.push_back({K::kNorm, 1, H});
    t.push_back({K::kNorm, 1, H});
    auto lin = [&](int64_t out, int64_t in, bool bias) {
      if (bias) t.push_back({K::kBias, 1, out});
      t.push_back({K::kLinear, out, in});
    };
    lin(c.q_dim(), H, c.qkv_bias);
    lin(c.kv_dim(), H, c.qkv_bias);
    lin(c.kv_dim(), H, c.qkv_bias);
    lin(H, c.q_dim(), c.o_bias);
    lin(I, H, c.mlp_bias);
    lin(I, H, c.mlp_bias);
    lin(H, I, c.mlp_bias);
  }
  t.push_back({K::kNorm, 1, H});
  if (!c.tie_word_embeddings) t.push_back({K::kLmHead, c.vocab_size, H});
  return t;
}

// Capacity after growing a buffer from a first request of `first` positions
// one position at a time to `last`, doubling (KVCache::Reserve; libstdc++'s
// vector growth for the score rows has the same shape).
int64_t DoublingCapacity(int64_t first, int64_t last, int64_t minimum) {
  int64_t cap = std::max(first, minimum);
  while (cap < last) cap = std::max(cap + 1, cap * 2);
  return cap;
}

void CheckConfig(const ModelConfig& c, const std::string& where) {
  if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.intermediate_size <= 0 ||
      c.vocab_size <= 0) {
    Fail(
        "{}: config needs positive hidden_size, num_hidden_layers, "
        "num_attention_heads, num_key_value_heads, intermediate_size and "
        "vocab_size",
        where);
  }
}

PrecisionPlan PredictCpu(const PlanModel& m, const PlanOptions& o,
                         const std::string& precision) {
  const ModelConfig& c = m.config;
  using K = TensorShape::Kind;
  // Same resolution as LoadWeights: the Linear format from the precision
  // name, side tensors (embed, lm_head) in the file dtype when quantized.
  const WeightFormat linear =
      ResolveLinearFormat(precision, TorchDtypeOfFormat(m.file_format));
  const bool quantized = !IsFloatFormat(linear);
  const WeightFormat side = quantized ? m.file_format : linear;
  const uint64_t file_elem = BytesOfFormat(m.file_format);

  uint64_t weights = 0;    // the LoadWeights ledger
  uint64_t owned = 0;      // converted / quantized buffers, norms, biases
  uint64_t in_place = 0;   // used from the mmap
  uint64_t touched = 0;    // file pages read at load time
  uint64_t load_peak = 0;  // owned + touched + transient, at its largest
  uint64_t load_need = 0;  // the same without the (evictable) file pages
  uint64_t max_transient = 0;
  for (const TensorShape& t : DecoderTensors(c)) {
    const uint64_t n = t.numel();
    const uint64_t file_bytes = n * file_elem;
    uint64_t stored = 0, transient = 0;
    bool converted = true;
    switch (t.kind) {
      case K::kNorm:
      case K::kBias:  // SmallF32: widened straight into the kept vector
        stored = n * 4;
        break;
      case K::kEmbed:
      case K::kLmHead:
        stored = PackedBytes(side, t.rows, t.cols);
        converted = side != m.file_format;
        transient = converted ? n * 4 : 0;  // ToF32 before the copy
        break;
      case K::kLinear:
        stored = PackedBytes(linear, t.rows, t.cols, o.quant);
        converted = linear != m.file_format;
        transient = converted ? n * 4 : 0;
        // Quantize4bit's first-level absmax lives until double quant.
        if (quantized && linear != WeightFormat::kInt8Row &&
            o.quant.double_quant) {
          transient += 4 * ((n + o.quant.blocksize - 1) / o.quant.blocksize);
        }
        break;
    }
    weights += stored;
    if (!converted) {
      in_place += stored;
      continue;
    }
    // LoadWeights releases a converted Linear/embedding's checkpoint pages
    // right after converting it (ReleasePages); norms' and biases' pages
    // stay mapped.
    load_peak =
        std::max(load_peak, owned + touched + file_bytes + transient + stored);
    const bool released =
        t.kind == K::kLinear || t.kind == K::kEmbed || t.kind == K::kLmHead;
    if (!released) touched += file_bytes;
    load_need = std::max(load_need, owned + file_bytes + transient + stored);
    max_transient = std::max(max_transient, transient);
    owned += stored;
  }

  const int64_t B = o.batch, ctx = o.context;
  const int64_t P = o.prefill > 0 ? o.prefill : o.context;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const uint64_t kv_cap = DoublingCapacity(P, ctx, 64);
  const uint64_t kv = 2ull * c.num_layers * kv_cap * c.kv_dim() * 4 * B;
  // Decoder::EnsureScratch(P): [P, dim] f32 each.
  const uint64_t scratch =
      4ull * P *
      (2 * H + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * I + std::max(H, I)) * B;
  const int threads = o.threads > 0 ? o.threads : std::max(1, LogicalCores());
  // Per-thread kernel scratch (not in the engine's ledger): the prefill
  // GEMM's decoded panel [8, cols] and 4-bit activation chunk (<= 1 MiB,
  // kernels/gemm-inl.h); attention needs only a fixed stack tile.
  const uint64_t kernel_scratch =
      threads * (4ull * 8 * std::max(H, I) + (1ull << 20));
  const uint64_t logits = 4ull * c.vocab_size * B;   // Generate's [vocab]
  const uint64_t sampler = 8ull * c.vocab_size * B;  // (logit, id) pairs
  const uint64_t activations = scratch + kernel_scratch + logits + sampler;

  // Pages of converted tensors that stay mapped: only norms and biases
  // (Linear and embedding pages are released after conversion).
  const uint64_t reclaimable = touched;
  // What must be resident to run, and the RSS when memory is plentiful
  // (converted tensors' pages stay mapped). At load time nothing of the
  // inference state exists yet; the baseline is there in both.
  const uint64_t need = weights + kv + activations + m.tokenizer_bytes;
  const uint64_t steady = need + reclaimable;
  const uint64_t load_excess = load_need > need ? load_need - need : 0;

  PrecisionPlan p;
  p.precision = precision;
  p.weights = weights;
  p.kv_cache = kv;
  p.activations = activations;
  p.overhead = kCpuProcessBaselineBytes + m.tokenizer_bytes + load_excess;
  p.reclaimable_bytes = reclaimable;
  p.peak_rss_bytes = kCpuProcessBaselineBytes + std::max(steady, load_peak);
  p.detail = {{"linear_format", FormatName(linear)},
              {"embedding_format", FormatName(side)},
              {"weights_resident", owned},
              {"weights_mapped", in_place},
              {"kv_capacity_positions", kv_cap},
              {"scratch", scratch},
              {"kernel_scratch", kernel_scratch},
              {"logits", logits},
              {"sampler", sampler},
              {"process_baseline", kCpuProcessBaselineBytes},
              {"tokenizer", m.tokenizer_bytes},
              {"load_transient", load_excess},
              {"largest_load_temporary", max_transient},
              {"checkpoint_pages_reclaimable", reclaimable}};
  return p;
}

PrecisionPlan PredictGpu(const PlanModel& m, const PlanOptions& o,
                         const std::string& precision) {
  const ModelConfig& c = m.config;
  using K = TensorShape::Kind;
  // transformers loads unquantized modules in torch_dtype; the paper passes
  // a 16-bit one. A float32 (or absent) torch_dtype keeps 4 bytes.
  const WeightFormat torch_format = FormatOfTorchDtype(c.torch_dtype);
  const WeightFormat linear =
      ResolveLinearFormat(precision, TorchDtypeOfFormat(torch_format));
  const bool quantized = !IsFloatFormat(linear);
  // Unquantized tensors and the compute (activation) dtype.
  const WeightFormat side = quantized ? torch_format : linear;
  const uint64_t a = BytesOfFormat(side);

  uint64_t weights = 0, largest_linear = 0;
  for (const TensorShape& t : DecoderTensors(c)) {
    if (t.kind == K::kLinear) {
      weights += PackedBytes(linear, t.rows, t.cols, o.quant);
      largest_linear = std::max(largest_linear, t.numel());
    } else {
      weights += t.numel() * a;  // embed, lm_head, norms, biases
    }
  }

  const uint64_t B = o.batch, T = o.prefill > 0 ? o.prefill : o.context;
  const uint64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const uint64_t qd = c.q_dim(), kvd = c.kv_dim();
  const uint64_t kv = 2ull * c.num_layers * B * o.context * kvd * a;
  const uint64_t BT = B * T;
  const uint64_t residual = 2 * BT * H * a;
  // LlamaRMSNorm upcasts: x.float() and x * rsqrt(...) in f32, then the
  // 16-bit result.
  const uint64_t norm = BT * H * (4 + 4 + a);
  // Normed input, q/k/v, RoPE'd q and k, the SDPA output.
  const uint64_t attention = BT * (H + qd + 2 * kvd + qd + kvd + qd) * a;
  // Normed input, act(gate), up, their product.
  uint64_t mlp = BT * (H + 3 * I) * a;
  uint64_t bnb = 0;
  if (linear == WeightFormat::kNF4 || linear == WeightFormat::kFP4) {
    if (BT > 1) bnb = largest_linear * a;  // dequantize_4bit(W) for prefill
  } else if (linear == WeightFormat::kInt8Row) {
    bnb = BT * H + BT * I * 4;  // int8 input rows + int32 accumulator
  }
  mlp += bnb;
  const uint64_t logits = BT * V * (a + 4);  // lm_head output + .float()
  const uint64_t activations =
      residual + std::max({norm, attention, mlp, logits});

  PrecisionPlan p;
  p.precision = precision;
  p.weights = weights;
  p.kv_cache = kv;
  p.activations = activations;
  p.overhead = kCudaContextBytes;
  p.detail = {{"linear_format", FormatName(linear)},
              {"other_weights_dtype", TorchDtypeOfFormat(side)},
              {"residual_stream", residual},
              {"rmsnorm_phase", norm},
              {"attention_phase", attention},
              {"mlp_phase", mlp},
              {"bnb_transient", bnb},
              {"logits_phase", logits},
              {"cuda_context", kCudaContextBytes}};
  return p;
}

std::string Percent(double x) { return fmt::format("{:.1f}%", 100.0 * x); }

// Loads the checkpoint's tokenizer and returns the peak RSS it added: the
// engine loads it after the weights, so its parse-time peak sits on top of
// them. VmHWM is reset first (Linux: "5" > /proc/self/clear_refs); without
// that, the RSS retained after loading is the (smaller) answer.
uint64_t MeasureTokenizerBytes(const std::string& dir) {
  bool reset = false;
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    reset = std::fputs("5", f) >= 0;
    reset = std::fclose(f) == 0 && reset;
  }
  const uint64_t before = CurrentRssBytes();
  { auto t = Tokenizer::Load(dir); }
  const uint64_t after = reset ? PeakRssBytes() : CurrentRssBytes();
  return after > before ? after - before : 0;
}

// The checkpoint's own dtype as a precision name ("bf16"...).
std::string CheckpointPrecision(const PlanModel& m, PlanDevice d) {
  const WeightFormat f = d == PlanDevice::kGpu
                             ? FormatOfTorchDtype(m.config.torch_dtype)
                             : m.file_format;
  return FormatName(f);
}

}  // namespace

uint64_t ParseMemorySize(const std::string& text, const std::string& flag) {
  const std::string s = Trim(text);
  size_t i = 0;
  while (i < s.size() &&
         (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.'))
    ++i;
  const std::string number = s.substr(0, i);
  const std::string unit = Lower(Trim(s.substr(i)));
  static const std::map<std::string, long double> kUnits = {
      {"", 1.0L},
      {"b", 1.0L},
      {"k", 1024.0L},
      {"kib", 1024.0L},
      {"kb", 1e3L},
      {"m", 1048576.0L},
      {"mib", 1048576.0L},
      {"mb", 1e6L},
      {"g", 1073741824.0L},
      {"gib", 1073741824.0L},
      {"gb", 1e9L},
      {"t", 1099511627776.0L},
      {"tib", 1099511627776.0L},
      {"tb", 1e12L}};
  const auto it = kUnits.find(unit);
  const bool number_ok = !number.empty() && number != "." &&
                         std::count(number.begin(), number.end(), '.') <= 1;
  if (!number_ok || it == kUnits.end()) {
    Fail("{}: '{}' is not a memory size (e.g. 40GiB, 40GB, 512MiB, or bytes)",
         flag, text);
  }
  const long double bytes = std::stold(number) * it->second;
  if (!(bytes >= 1.0L)) Fail("{}: '{}' must be at least one byte", flag, text);
  if (bytes > 1.8e19L) Fail("{}: '{}' is too large", flag, text);
  return static_cast<uint64_t>(std::floor(bytes));
}

std::string FormatBytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (1ull << 30)) return fmt::format("{:.2f} GiB", b / (1ull << 30));
  if (bytes >= (1ull << 20)) return fmt::format("{:.1f} MiB", b / (1ull << 20));
  if (bytes >= (1ull << 10)) return fmt::format("{:.1f} KiB", b / (1ull << 10));
  return fmt::format("{} B", bytes);
}

PlanDevice ParsePlanDevice(const std::string& name) {
  if (name == "cpu") return PlanDevice::kCpu;
  if (name == "gpu") return PlanDevice::kGpu;
  Fail("--device: unknown device '{}' (cpu, gpu)", name);
}

const char* PlanDeviceName(PlanDevice d) {
  return d == PlanDevice::kCpu ? "cpu" : "gpu";
}

const std::vector<std::string>& PlanPrecisions() {
  static const std::vector<std::string> kAll = {
      "f32", "bf16", "f16", "int8", "llm-int8", "nf4", "fp4"};
  return kAll;
}

PlanModel PlanModelFromConfig(const ModelConfig& cfg,
                              const std::string& source) {
  CheckConfig(cfg, source);
  PlanModel m;
  m.config = cfg;
  m.source = source;
  m.file_format = FormatOfTorchDtype(cfg.torch_dtype);
  m.checkpoint_bytes = static_cast<uint64_t>(cfg.ParameterCount()) *
                       BytesOfFormat(m.file_format);
  return m;
}

PlanModel LoadPlanModel(const std::string& path, bool measure_tokenizer) {
  const ModelInfo info = ReadModelInfo(path, "--model");
  PlanModel m = PlanModelFromConfig(info.config, path);
  // With the checkpoint at hand, the file dtype and mapped bytes are facts.
  // A pre-quantized checkpoint is planned from its config (its bnb tensors
  // are not what LoadWeights would build; ReadModelInfo reads no headers).
  if (info.has_weights) {
    m.file_format = info.file_format;
    m.checkpoint_bytes = info.checkpoint_bytes;
    m.has_checkpoint = true;
  }
  if (measure_tokenizer && info.has_tokenizer) {
    m.tokenizer_bytes = MeasureTokenizerBytes(path);
  }
  return m;
}

PrecisionPlan PredictPrecision(const PlanModel& model, const PlanOptions& o,
                               const std::string& precision) {
  if (std::find(PlanPrecisions().begin(), PlanPrecisions().end(), precision) ==
      PlanPrecisions().end()) {
    Fail(
        "--precisions: unknown precision '{}' (f32, bf16, f16, int8, llm-int8, "
        "nf4, fp4)",
        precision);
  }
  if (o.context <= 0) Fail("--context: must be positive, got {}", o.context);
  if (o.batch <= 0) Fail("--batch: must be positive, got {}", o.batch);
  if (o.prefill < 0 || o.prefill > o.context) {
    Fail("--prefill: must be between 1 and --context ({}), got {}", o.context,
         o.prefill);
  }
  PrecisionPlan p = o.device == PlanDevice::kCpu
                        ? PredictCpu(model, o, precision)
                        : PredictGpu(model, o, precision);
  p.total_bytes = p.weights + p.kv_cache + p.activations + p.overhead;
  p.fits = p.total_bytes <= o.memory_bytes;
  return p;
}

std::vector<MeasuredDelta> LoadRunSummary(const std::string& run_dir) {
  if (!IsDirectory(run_dir)) Fail("--run: {} is not a directory", run_dir);
  const std::string path = run_dir + "/summary.json";
  if (!FileExists(path)) {
    Fail(
        "--run: {} not found (written by `bioquant eval` when a run is scored)",
        path);
  }
  nlohmann::json j;
  try {
    j = ParseJson(ReadFile(path));
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: not valid JSON ({})", path, e.what());
  }
  if (!j.is_object() || !j.contains("precisions") ||
      !j["precisions"].is_array()) {
    Fail("{}: expected an object with a \"precisions\" array", path);
  }
  std::vector<MeasuredDelta> out;
  for (const auto& e : j["precisions"]) {
    if (!e.is_object() || !e.contains("precision") ||
        !e["precision"].is_string() || !e.contains("relative_drop") ||
        !e["relative_drop"].is_number()) {
      Fail(
          "{}: each entry of \"precisions\" needs \"precision\" (string) and "
          "\"relative_drop\" (number)",
          path);
    }
    MeasuredDelta d;
    d.precision = e["precision"].get<std::string>();
    d.relative_drop = e["relative_drop"].get<double>();
    if (e.contains("ci_supports_within_5pct") &&
        e["ci_supports_within_5pct"].is_boolean()) {
      d.ci_supports_within_5pct = e["ci_supports_within_5pct"].get<bool>();
    }
    d.backend = j.value("backend", "local");
    if (e.value("memory_measured", true) && e.contains("peak_rss_bytes") &&
        e["peak_rss_bytes"].is_number_unsigned() &&
        e["peak_rss_bytes"].get<uint64_t>() > 0) {
      d.peak_bytes = e["peak_rss_bytes"].get<uint64_t>();
      d.memory_source = e.value("memory_source", "cpu-rss");
    }
    out.push_back(d);
  }
  return out;
}

Plan MakePlan(const PlanModel& model, const PlanOptions& options,
              const std::vector<MeasuredDelta>* measured) {
  Plan plan;
  plan.options = options;
  plan.model = model.source;
  const std::vector<std::string>& names =
      options.precisions.empty() ? PlanPrecisions() : options.precisions;
  if (names.empty()) Fail("--precisions: no precision given");
  for (const auto& n : names) {
    plan.precisions.push_back(PredictPrecision(model, options, n));
  }
  const std::string budget = FormatBytes(options.memory_bytes);
  const int64_t prefill =
      options.prefill > 0 ? options.prefill : options.context;
  if (options.device == PlanDevice::kCpu) {
    plan.assumptions = {
        fmt::format("bioquant's CPU engine; a forward of {} prompt tokens, {} "
                    "positions in the f32 KV cache, batch {} (one engine per "
                    "sequence; weights shared)",
                    prefill, options.context, options.batch),
        fmt::format("checkpoint stored as {}{}", FormatName(model.file_format),
                    model.has_checkpoint
                        ? " (read from its safetensors headers)"
                        : " (from torch_dtype; no checkpoint read)"),
        "reclaimable_bytes: checkpoint pages left mapped after conversion; "
        "counted in peak RSS when memory is plentiful, not needed to run",
        fmt::format("process baseline {} (measured); tokenizer {}",
                    FormatBytes(kCpuProcessBaselineBytes),
                    model.tokenizer_bytes > 0
                        ? FormatBytes(model.tokenizer_bytes) +
                              " (measured by loading it here)"
                        : std::string("not counted (none found)"))};
  } else {
    plan.assumptions = {
        fmt::format(
            "transformers + bitsandbytes on one CUDA device; prefill of "
            "{} tokens, {} positions in the KV cache, batch {}",
            prefill, options.context, options.batch),
        "unquantized modules and activations in torch_dtype (" +
            (model.config.torch_dtype.empty() ? std::string("float32")
                                              : model.config.torch_dtype) +
            "); SDPA attention (no score matrix)",
        "logits for every prompt position, upcast to float32 (transformers <= "
        "4.44; an upper bound for later versions)",
        fmt::format("CUDA context {} per device, not seen by "
                    "torch.cuda.max_memory_allocated",
                    FormatBytes(kCudaContextBytes))};
  }
  auto find = [&](const std::string& n) -> const PrecisionPlan* {
    for (const auto& p : plan.precisions) {
      if (p.precision == n) return &p;
    }
    return nullptr;
  };

  // Faithfulness order: exact precisions (smallest first), then the rest.
  const std::string ckpt = CheckpointPrecision(model, options.device);
  std::vector<const PrecisionPlan*> order;
  for (const auto& n : {std::string("f32"), ckpt}) {
    const auto* p = find(n);
    if (p && std::find(order.begin(), order.end(), p) == order.end())
      order.push_back(p);
  }
  std::sort(order.begin(), order.end(), [](const auto* x, const auto* y) {
    return x->total_bytes < y->total_bytes;
  });
  const size_t exact = order.size();
  for (const auto& n : PlanPrecisions()) {
    const auto* p = find(n);
    if (p && std::find(order.begin(), order.end(), p) == order.end())
      order.push_back(p);
  }

  const PrecisionPlan* faithful = nullptr;
  std::vector<std::string> too_big;
  for (const auto* p : order) {
    if (p->fits) {
      faithful = p;
      break;
    }
    too_big.push_back(
        fmt::format("{} needs {}", p->precision, FormatBytes(p->total_bytes)));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s;
  };
  std::string faithful_reason;
  if (faithful) {
    const bool is_exact = std::find(order.begin(), order.begin() + exact,
                                    faithful) != order.begin() + exact;
    faithful_reason = fmt::format(
        "{} is the most faithful precision that fits: {} of the {} budget{}",
        faithful->precision, FormatBytes(faithful->total_bytes), budget,
        is_exact
            ? fmt::format(" (it stores the checkpoint's {} weights exactly{})",
                          ckpt,
                          options.device == PlanDevice::kGpu
                              ? "; 16-bit is the paper's full precision"
                              : "")
            : "");
    if (!too_big.empty())
      faithful_reason +=
          "; more faithful ones do not fit (" + join(too_big) + ")";
  }

  if (measured) {
    for (const auto& d : *measured) {
      const auto* p = find(d.precision);
      if (!p || !d.peak_bytes) continue;
      MemoryCheck c;
      c.precision = d.precision;
      c.measured_bytes = *d.peak_bytes;
      c.source = d.memory_source;
      c.backend = d.backend;
      const bool gpu_source = d.memory_source.rfind("gpu-", 0) == 0;
      if (options.device == PlanDevice::kCpu) {
        c.predicted_bytes = p->peak_rss_bytes;
        c.comparable = d.backend == "local" && d.memory_source == "cpu-rss";
        c.note = c.comparable
                     ? "predicted peak RSS of bioquant's engine vs its "
                       "measured process peak"
                     : fmt::format(
                           "measured by the {} backend ({}); the cpu "
                           "plan models bioquant's engine",
                           d.backend, d.memory_source);
      } else {
        c.predicted_bytes = p->weights + p->kv_cache + p->activations;
        c.comparable = gpu_source;
        c.note = c.comparable
                     ? "weights + KV cache + activations (torch does not see "
                       "the CUDA context) vs torch.cuda.max_memory_" +
                           d.memory_source.substr(4)
                     : fmt::format(
                           "measured {} by the {} backend; the gpu "
                           "plan models transformers on CUDA",
                           d.memory_source, d.backend);
      }
      plan.measured_memory.push_back(c);
    }
    const PrecisionPlan* best = nullptr;
    const MeasuredDelta* best_delta = nullptr;
    for (const auto& d : *measured) {
      const auto* p = find(d.precision);
      if (!p || !p->fits || d.relative_drop > 0.05) continue;
      if (!best || p->total_bytes < best->total_bytes) {
        best = p;
        best_delta = &d;
      }
    }
    if (best) {
      plan.recommendation = best->precision;
      std::string ci =
          !best_delta->ci_supports_within_5pct.has_value()
              ? "no confidence interval recorded"
          : *best_delta->ci_supports_within_5pct
              ? "its confidence interval supports a drop within 5%"
              : "but its confidence interval does not exclude a drop above 5%";
      plan.reason = fmt::format(
          "{} is the smallest precision that fits ({} of the {} budget) whose "
          "measured relative drop is within 5%: {} ({})",
          best->precision, FormatBytes(best->total_bytes), budget,
          Percent(best_delta->relative_drop), ci);
      return plan;
    }
    if (faithful) {
      plan.recommendation = faithful->precision;
      plan.reason = "no measured precision within a 5% relative drop fits; " +
                    faithful_reason;
      return plan;
    }
  } else if (faithful) {
    plan.recommendation = faithful->precision;
    plan.reason = faithful_reason;
    return plan;
  }
  const PrecisionPlan* smallest = &plan.precisions[0];
  for (const auto& p : plan.precisions) {
    if (p.total_bytes < smallest->total_bytes) smallest = &p;
  }
  plan.recommendation = "none";
  plan.reason = fmt::format(
      "nothing fits: the smallest requirement is {} at {}, above the {} budget",
      smallest->precision, FormatBytes(smallest->total_bytes), budget);
  return plan;
}

nlohmann::ordered_json Plan::ToJson() const {
  nlohmann::ordered_json j;
  j["device"] = PlanDeviceName(options.device);
  j["memory_bytes"] = options.memory_bytes;
  j["model"] = model;
  j["context"] = options.context;
  j["prefill"] = options.prefill > 0 ? options.prefill : options.context;
  j["batch"] = options.batch;
  nlohmann::ordered_json ps = nlohmann::ordered_json::array();
  for (const auto& p : precisions) {
    nlohmann::ordered_json e;
    e["precision"] = p.precision;
    e["total_bytes"] = p.total_bytes;
    e["components"] = {{"weights", p.weights},
                       {"kv_cache", p.kv_cache},
                       {"activations", p.activations},
                       {"overhead", p.overhead}};
    e["fits"] = p.fits;
    if (options.device == PlanDevice::kCpu) {
      e["reclaimable_bytes"] = p.reclaimable_bytes;
      e["predicted_peak_rss_bytes"] = p.peak_rss_bytes;
    }
    e["detail"] = p.detail;
    ps.push_back(e);
  }
  j["precisions"] = ps;
  j["recommendation"] = recommendation;
  j["reason"] = reason;
  j["assumptions"] = assumptions;
  if (!measured_memory.empty()) {
    nlohmann::ordered_json ms = nlohmann::ordered_json::array();
    for (const auto& c : measured_memory) {
      nlohmann::ordered_json e;
      e["precision"] = c.precision;
      e["predicted_bytes"] = c.predicted_bytes;
      e["measured_bytes"] = c.measured_bytes;
      e["measured_over_predicted"] =
          c.predicted_bytes ? static_cast<double>(c.measured_bytes) /
                                  static_cast<double>(c.predicted_bytes)
                            : 0.0;
      e["source"] = c.source;
      e["backend"] = c.backend;
      e["comparable"] = c.comparable;
      e["note"] = c.note;
      ms.push_back(e);
    }
    j["measured_memory"] = ms;
  }
  return j;
}

std::string Plan::ToTable() const {
  std::string s = fmt::format(
      "{} on {}, budget {}, context {} tokens, batch {}\n\n", model,
      PlanDeviceName(options.device), FormatBytes(options.memory_bytes),
      options.context, options.batch);
  s += fmt::format("{:<9} {:>12} {:>12} {:>12} {:>12} {:>12}  {}\n",
                   "precision", "weights", "kv cache", "activations",
                   "overhead", "total", "fits");
  for (const auto& p : precisions) {
    s += fmt::format("{:<9} {:>12} {:>12} {:>12} {:>12} {:>12}  {}\n",
                     p.precision, FormatBytes(p.weights),
                     FormatBytes(p.kv_cache), FormatBytes(p.activations),
                     FormatBytes(p.overhead), FormatBytes(p.total_bytes),
                     p.fits ? "yes" : "no");
  }
  s += fmt::format("\nrecommendation: {}\n{}\n", recommendation, reason);
  if (!measured_memory.empty()) {
    s += fmt::format("\nmeasured by the run ({} backend):\n",
                     measured_memory[0].backend);
    s += fmt::format("{:<9} {:>12} {:>12} {:>9}  {}\n", "precision",
                     "predicted", "measured", "ratio", "what");
    for (const auto& c : measured_memory) {
      s += fmt::format(
          "{:<9} {:>12} {:>12} {:>9}  {}{}\n", c.precision,
          FormatBytes(c.predicted_bytes), FormatBytes(c.measured_bytes),
          c.comparable && c.predicted_bytes
              ? fmt::format("{:.2f}",
                            static_cast<double>(c.measured_bytes) /
                                static_cast<double>(c.predicted_bytes))
              : std::string("–"),
          c.source, c.comparable ? "" : " (not comparable: " + c.note + ")");
    }
  }
  if (!assumptions.empty()) {
    s += "\nassumptions:\n";
    for (const auto& a : assumptions) s += "  - " + a + "\n";
  }
  return s;
}

}  // namespace bioquant
