// bitsandbytes-serialized weights in Hugging Face checkpoints (SPEC §3, §4.2):
// reading a quantized Linear's tensors into owned buffers, writing them back
// with the exact names, dtypes, shapes and quant-state JSON transformers
// produces, and the config.json `quantization_config` block.
//
// Tensors per 4-bit module P (e.g. "model.layers.0.mlp.down_proj"):
//   P.weight                                U8  [(n+1)/2, 1] packed codes
//   P.weight.absmax                         F32 [nblocks] | U8 with double
//   quant P.weight.quant_map                      F32 [16]
//   P.weight.nested_absmax                  F32 [ceil(nblocks/256)] (dq only)
//   P.weight.nested_quant_map               F32 [256]               (dq only)
//   P.weight.quant_state.bitsandbytes__nf4  U8  [len] JSON (or __fp4)
// int8 module: P.weight I8 [out, in], P.SCB F32 [out], P.weight_format U8 []
// (0 = row-major). Biases are never quantized and are not handled here.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/bnb.h"
#include "quant/formats.h"

namespace bioquant {

// kNF4 / kFP4 / kInt8Row when module `prefix` (no trailing dot) is stored
// bnb-quantized in `store`, nullopt when P.weight is a plain float tensor.
// A 4-bit module is recognised by its quant_state tensor or its absmax (so a
// missing quant_state is reported, not mistaken for a float weight).
std::optional<WeightFormat> DetectBnbWeight(const TensorStore& store,
                                            const std::string& prefix);

// Reads and validates a 4-bit module: every tensor is copied; absmax length,
// dtypes, blocksize, quant_map, nested statistics and the quant-state JSON
// are checked. Throws Error "<file>: <tensor>: <problem>".
// The dequant table is bnb's built-in LUT (the CUDA kernel ignores the
// stored quant_map; it must equal the table); the nested code is the
// checkpoint's nested_quant_map and the offset its stored nested_offset.
// With `borrow`, the packed codes (the module's bulk) are not copied: the
// result points into the store's mapping, which must outlive it (a model
// loads in place, as it does unquantized weights of the checkpoint's dtype).
Quantized4bit ReadBnb4bit(const TensorStore& store, const std::string& prefix,
                          bool borrow = false);

// Reads an int8 module (weight + SCB [+ weight_format]); `borrow` as above
// for the int8 weight.
QuantizedInt8 ReadBnbInt8(const TensorStore& store, const std::string& prefix,
                          bool borrow = false);

// The quant-state JSON transformers writes (json.dumps key order and
// separators), e.g. {"quant_type": "nf4", "blocksize": 64, "dtype":
// "bfloat16", "shape": [96, 64], "nested_blocksize": 256, "nested_dtype":
// "float32", "nested_offset": 0.1319529265165329}.
std::string QuantStateJson(const Quantized4bit& q);

// Appends P.weight and its statistics (see the table above).
void WriteBnbTensors(SafetensorsWriter& writer, const std::string& prefix,
                     const Quantized4bit& q);
void WriteBnbTensors(SafetensorsWriter& writer, const std::string& prefix,
                     const QuantizedInt8& q);

// config.json "quantization_config" of a bitsandbytes checkpoint.
struct BnbConfig {
  bool load_in_4bit = false;
  bool load_in_8bit = false;
  WeightFormat quant_type = WeightFormat::kNF4;  // 4-bit: kNF4 or kFP4
  bool double_quant = false;
  std::string compute_dtype = "float32";  // bnb_4bit_compute_dtype
  std::string quant_storage = "uint8";
  std::optional<std::vector<std::string>> skip_modules;  // null when absent
  double threshold = 6.0;                                // llm_int8_threshold
};

// nullopt when config.json has no quantization_config. Throws Error naming
// `path` for another quant_method (gptq, awq, ...), for neither or both of
// load_in_4bit / load_in_8bit, or for an unknown bnb_4bit_quant_type.
// Missing optional keys take transformers' defaults.
std::optional<BnbConfig> ParseBnbQuantizationConfig(
    const nlohmann::json& config, const std::string& path);

// The block save_pretrained writes (keys sorted, as in SPEC §3.3).
nlohmann::json MakeBnbQuantizationConfig(const BnbConfig& c);

// transformers' llm_int8_skip_modules rule: an entry matches a module whose
// last name component or full name equals it, or whose name contains it
// followed by "." ("layers.1" does not match layers.10).
bool IsSkippedModule(const std::string& name,
                     const std::vector<std::string>& skip_modules);

// "float32" / "float16" / "bfloat16" (torch dtype names of the quant state).
const char* TorchDTypeName(DType t);

}  // namespace bioquant
