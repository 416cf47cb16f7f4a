// bioquant inspect: what a checkpoint is, without loading weights into memory.
#include <map>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "quant/formats.h"

namespace bioquant::cli {
namespace {

int RunInspect(int argc, char** argv) {
  CLI::App app(
      "Describe a checkpoint: architecture, sizes, dtypes, bytes per precision",
      "inspect");
  std::string model;
  bool json = false;
  QuantParams q;
  app.add_option("--model", model, "Hugging Face checkpoint directory")
      ->required();
  app.add_option("--blocksize", q.blocksize,
                 "4-bit block size for the byte table")
      ->default_val(64);
  app.add_flag("--json", json, "print one JSON object");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  const ModelConfig c = LoadModelConfig(model);
  auto store = TensorStore::Open(model);
  std::map<std::string, std::pair<int64_t, uint64_t>>
      per_dtype;  // count, bytes
  int64_t params = 0;
  for (const auto& name : store->Names()) {
    const TensorView& v = store->Get(name);
    auto& e = per_dtype[DTypeName(v.dtype)];
    e.first++;
    e.second += v.nbytes;
    params += v.numel();
  }
  // Bytes per precision: Linear layers in the format, embeddings + lm_head in
  // the checkpoint dtype (bf16 when it is 16-bit), norms f32 (as loaded).
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  struct Shape {
    int64_t rows, cols;
  };
  const std::vector<Shape> linears = {
      {c.q_dim(), H}, {c.kv_dim(), H}, {c.kv_dim(), H}, {H, c.q_dim()},
      {I, H},         {I, H},          {H, I}};
  nlohmann::json bytes = nlohmann::json::object();
  const WeightFormat side = c.torch_dtype == "float32"   ? WeightFormat::kF32
                            : c.torch_dtype == "float16" ? WeightFormat::kF16
                                                         : WeightFormat::kBF16;
  for (WeightFormat f :
       {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kF16,
        WeightFormat::kInt8Row, WeightFormat::kNF4, WeightFormat::kFP4}) {
    const bool quant = f == WeightFormat::kInt8Row || f == WeightFormat::kNF4 ||
                       f == WeightFormat::kFP4;
    const WeightFormat emb = quant ? side : f;
    uint64_t total = 0;
    for (const auto& s : linears) total += PackedBytes(f, s.rows, s.cols, q);
    total *= c.num_layers;
    total += (2 * c.num_layers + 1) * H * 4;
    total += PackedBytes(emb, V, H) * (c.tie_word_embeddings ? 1 : 2);
    bytes[FormatName(f)] = total;
  }
  nlohmann::json out = {
      {"model", model},
      {"architecture", c.architecture},
      {"model_type", c.model_type},
      {"synthetic", c.synthetic},
      {"hidden_size", c.hidden_size},
      {"num_layers", c.num_layers},
      {"num_heads", c.num_heads},
      {"num_kv_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"intermediate_size", c.intermediate_size},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rope_theta", c.rope_theta},
      {"rope_scaling",
       c.rope_scaling.type == RopeScaling::Type::kLlama3 ? "llama3" : "none"},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"qkv_bias", c.qkv_bias},
      {"sliding_window",
       *std::max_element(c.layer_window.begin(), c.layer_window.end())},
      {"torch_dtype", c.torch_dtype},
      {"parameters", params},
      {"parameters_from_config", c.ParameterCount()},
      {"eos_token_ids", c.eos_token_ids},
      {"quantization_config", c.quantization_config},
      {"files", store->files().size()},
      {"file_bytes", store->MappedBytes()},
      {"bytes_per_precision", bytes}};
  nlohmann::json dtypes = nlohmann::json::object();
  for (const auto& [name, e] : per_dtype) {
    dtypes[name] = {{"tensors", e.first}, {"bytes", e.second}};
  }
  out["tensors_per_dtype"] = dtypes;
  if (json) {
    PrintJson(out);
    return 0;
  }
  std::printf(
      "%s (%s), %lld parameters, %lld layers, hidden %lld, heads %lld/%lld "
      "kv\n",
      c.architecture.c_str(), c.torch_dtype.c_str(),
      static_cast<long long>(params), static_cast<long long>(c.num_layers),
      static_cast<long long>(H), static_cast<long long>(c.num_heads),
      static_cast<long long>(c.num_kv_heads));
  for (auto it = bytes.begin(); it != bytes.end(); ++it) {
    std::printf("  %-5s %10.1f MiB\n", it.key().c_str(),
                it.value().get<uint64_t>() / 1048576.0);
  }
  return 0;
}

BIOQUANT_COMMAND("inspect",
                 "architecture, parameter count, dtypes, bytes per precision",
                 RunInspect);

}  // namespace
}  // namespace bioquant::cli
