// `bioquant plan`: predicted memory per precision for a model on a device,
// and which precision to deploy. Every byte figure is a sum of named
// components (weights, KV cache, activations, overhead) computed from the
// model's shapes; there is no fudge factor. Weight bytes come from
// quant/formats.h (PackedBytes), the one source of truth for storage sizes.
//
// Two devices are modelled:
//
//  cpu  bioquant's own engine as the code allocates today (model/weights.cc,
//       model/decoder.cc, engine/engine.cc):
//         weights      = the ledger LoadWeights computes (ModelWeights::
//                        weights_bytes), exactly: Linear layers in the
//                        precision's format, embeddings and lm_head in the
//                        checkpoint dtype when quantized (converted for float
//                        precisions), norms and biases f32.
//         kv_cache     = f32 K and V, [layers][capacity, kv_dim] each, times
//                        batch; capacity follows KVCache::Reserve (at least
//                        64, doubling) from a prefill of `prefill` tokens to
//                        `context` positions.
//         activations  = Decoder scratch for a forward of `prefill` tokens
//                        (x, xn, q, k, v, att, gate, up, hidden, f32), the
//                        per-thread attention score rows, the [vocab] f32
//                        logits and the sampler's candidate list, times batch.
//         overhead     = the process baseline (binary, shared libraries,
//                        allocator, thread stacks: measured, see
//                        kCpuProcessBaselineBytes), the tokenizer (measured
//                        by loading it, when DIR has one), the load-time excess
//                        (an f32 copy of the tensor being converted or
//                        quantized, while everything loaded so far is
//                        resident) when that exceeds the steady state.
//       The checkpoint is mmap'd. Tensors converted at load time leave their
//       file pages mapped and resident (clean page cache, counted in RSS,
//       dropped by the kernel under memory pressure): they are reported as
//       `reclaimable_bytes`, not in total_bytes. A process with plenty of
//       memory peaks at about total_bytes + reclaimable_bytes (exactly:
//       `predicted_peak_rss_bytes`, what `generate --json` and `eval`
//       measure); one with less still runs within total_bytes. An embedding
//       table used in place is counted whole, although only looked-up rows are
//       paged in (an upper bound a long study approaches).
//
//  gpu  what transformers + bitsandbytes allocate on one CUDA device for a
//       prefill of `context` tokens (batch `batch`), the paper's setting:
//         weights      = 16-bit (torch_dtype) for bf16/f16, 4 bytes for f32;
//                        bnb formats for the 7 Linear layers per block
//                        (PackedBytes), embeddings, lm_head, norms and
//                        biases in torch_dtype.
//         kv_cache     = [layers, 2, batch, kv_heads, context, head_dim] in
//                        the compute dtype (DynamicCache).
//         activations  = the residual stream (2 x [batch, context, hidden])
//         plus
//                        the largest of three phases that do not overlap:
//                        attention (q, k, v, RoPE outputs, SDPA output; SDPA
//                        with a causal mask materialises no score matrix),
//                        MLP (gate, up and their product, 3 x [b, t, inter],
//                        plus bnb's transients: 4-bit prefill dequantizes the
//                        largest weight to 16-bit; int8 keeps int8 inputs and
//                        an int32 accumulator) and the logits: we assume HF
//                        computes lm_head at every prompt position and
//                        upcasts to float32 ([b, t, vocab] x (2 + 4) bytes),
//                        as LlamaForCausalLM.forward did up to transformers
//                        4.44 (later versions keep only the last position in
//                        generate(), so this is an upper bound).
//         overhead     = one CUDA context (kCudaContextBytes).
//
// Defaults: context 2048 tokens, batch 1. The paper's prompts are short
// biomedical inputs (an abstract, a question, up to 5 few-shot examples) plus
// a generated answer: a few hundred to ~2k tokens, one prompt at a time. With
// these defaults the GPU model lands within 1.5% of the paper's measured
// peaks for Llama-3.3-70B (132.37 GiB 16-bit, 39.38 GiB NF4; planner_test).
//
// Memory sizes (--memory): "40GiB", "40 GB", "40G", "512MiB", "1.5TiB",
// "1048576" (bytes). KB/MB/GB/TB are decimal (10^3 ... 10^12); KiB/MiB/GiB/
// TiB and the bare K/M/G/T are binary (2^10 ... 2^40), as in `free -h` and
// GPU spec sheets. Units are case-insensitive; fractions round down.
//
// Recommendation: the most faithful precision that fits. Precisions that
// store the checkpoint's weights exactly come first (f32 and the checkpoint
// dtype on cpu, where bioquant computes in f32 anyway; on gpu the paper's
// "full precision" is the 16-bit torch_dtype), smallest first; then f32 >
// bf16 > f16 > int8 > llm-int8 > nf4 > fp4. With --run RUN the measured
// accuracy of a study decides instead: the smallest-memory precision whose
// relative drop is <= 5% and that fits. RUN/summary.json (written by
// `bioquant eval`) has the shape
//   {"precisions": [{"precision": "nf4", "relative_drop": 0.02,
//                    "ci_supports_within_5pct": true}, ...]}
// where relative_drop = (reference score - score) / reference score against
// the run's highest precision (0 for the reference itself).
//
// --run also compares the prediction with the peak memory the run measured
// (summary.json's "peak_rss_bytes", "memory_source" and "backend"): the cpu
// plan's predicted_peak_rss_bytes with bioquant's engine's process RSS
// ("cpu-rss", backend local); the gpu plan's weights + KV cache +
// activations (torch does not see the CUDA context) with transformers'
// "gpu-allocated" or "gpu-reserved" peak. Other pairs (transformers on the
// CPU, a server) are listed as measured but not comparable.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/model_info.h"
#include "quant/formats.h"

namespace bioquant {

// Parses a memory size (see above). Throws Error naming `flag` when the text
// is not a positive size.
uint64_t ParseMemorySize(const std::string& text, const std::string& flag);
// 42949672960 -> "40.00 GiB".
std::string FormatBytes(uint64_t bytes);

enum class PlanDevice { kCpu, kGpu };
// "cpu" | "gpu"; throws Error naming --device otherwise.
PlanDevice ParsePlanDevice(const std::string& name);
const char* PlanDeviceName(PlanDevice d);

// Every precision `plan` knows, most faithful first (the brief order).
const std::vector<std::string>& PlanPrecisions();

// What the planner knows about a model: its config and, when the checkpoint's
// safetensors files are at hand, the dtype the embeddings are stored in and
// the mapped file bytes.
struct PlanModel {
  ModelConfig config;
  std::string source;  // the --model argument
  // Storage format of model.embed_tokens.weight in the checkpoint (from the
  // file when present, else from torch_dtype).
  WeightFormat file_format = WeightFormat::kBF16;
  bool has_checkpoint = false;    // safetensors headers were read
  uint64_t checkpoint_bytes = 0;  // sum of safetensors file sizes (or the
                                  // size implied by config + file_format)
  // Peak RSS that loading DIR's tokenizer added, measured by loading it
  // (0 without tokenizer files): real vocabularies cost tens of MiB.
  uint64_t tokenizer_bytes = 0;
};

// --model DIR (config.json [+ safetensors]) or a config.json file. Throws
// Error naming --model when missing or unreadable. `measure_tokenizer`
// loads DIR's tokenizer to measure it (the cpu plan needs it).
PlanModel LoadPlanModel(const std::string& path, bool measure_tokenizer = true);
// From a parsed config (tests, and config.json files).
PlanModel PlanModelFromConfig(const ModelConfig& cfg,
                              const std::string& source);

struct PlanOptions {
  PlanDevice device = PlanDevice::kCpu;
  uint64_t memory_bytes = 0;
  int64_t context = 2048;  // positions in the KV cache
  int64_t prefill = 0;     // tokens in the largest forward; 0 = context
  int64_t batch = 1;
  int threads = 0;    // cpu: attention score rows per thread; 0 = cores
  QuantParams quant;  // 4-bit blocksize / double quant
  std::vector<std::string> precisions;  // empty = PlanPrecisions()
};

struct PrecisionPlan {
  std::string precision;
  uint64_t weights = 0, kv_cache = 0, activations = 0, overhead = 0;
  uint64_t total_bytes = 0;  // weights + kv_cache + activations + overhead
  uint64_t reclaimable_bytes = 0;  // cpu: checkpoint pages left mapped
  // cpu: the process's peak RSS when memory is plentiful (the mapped pages
  // stay): max(steady state incl. reclaimable, load-time peak) + baseline.
  uint64_t peak_rss_bytes = 0;
  bool fits = false;  // total_bytes <= memory
  // Named parts of each component, for the JSON and the table.
  nlohmann::ordered_json detail = nlohmann::ordered_json::object();
};

// One precision's measured accuracy from a study (RUN/summary.json).
struct MeasuredDelta {
  std::string precision;
  double relative_drop = 0;
  std::optional<bool> ci_supports_within_5pct;
  // The run's peak memory for this precision, when it measured one.
  std::optional<uint64_t> peak_bytes;
  std::string memory_source;  // "cpu-rss", "gpu-allocated", "gpu-reserved"
  std::string backend;        // "local", "transformers", "openai"
};

// A prediction next to the run's measurement (--run).
struct MemoryCheck {
  std::string precision;
  uint64_t predicted_bytes = 0;  // the figure comparable with the source
  uint64_t measured_bytes = 0;
  std::string source;   // what was measured
  std::string backend;  // what measured it
  bool comparable = false;
  std::string note;  // why not comparable, or what was compared
};

struct Plan {
  PlanOptions options;
  std::string model;
  std::vector<PrecisionPlan> precisions;
  std::string recommendation;  // a precision name, or "none"
  std::string reason;
  std::vector<std::string> assumptions;
  std::vector<MemoryCheck> measured_memory;  // --run only

  nlohmann::ordered_json ToJson() const;
  std::string ToTable() const;
};

// Predicts every requested precision and recommends one. `measured` (from
// --run) switches the recommendation to the accuracy-aware rule.
Plan MakePlan(const PlanModel& model, const PlanOptions& options,
              const std::vector<MeasuredDelta>* measured = nullptr);

// One precision alone (what MakePlan lists).
PrecisionPlan PredictPrecision(const PlanModel& model, const PlanOptions& o,
                               const std::string& precision);

// Reads RUN/summary.json. Throws Error naming --run / the file when absent or
// malformed.
std::vector<MeasuredDelta> LoadRunSummary(const std::string& run_dir);

// The measured baseline RSS of a bioquant process with a tiny model (see
// planner.cc for how it was measured).
extern const uint64_t kCpuProcessBaselineBytes;
// One CUDA context with PyTorch's kernels loaded lazily.
extern const uint64_t kCudaContextBytes;

}  // namespace bioquant
