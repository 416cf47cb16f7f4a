// One header owns every weight storage format (STYLE habit 2): stable name,
// bits per weight, exact packed bytes. The planner, the memory ledger, the
// loader and reports all read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bioquant {

enum class WeightFormat { kF32, kBF16, kF16, kInt8Row, kNF4, kFP4 };

// Stable names written to files and reports: "f32" "bf16" "f16" "int8" "nf4"
// "fp4".
const char* FormatName(WeightFormat f);
// Throws Error for an unknown name.
WeightFormat ParseFormat(const std::string& name);

// The storage format a precision name (--precision, a user contract: "f32"
// "bf16" "f16" "int8" "llm-int8" "nf4" "fp4") resolves to for the Linear
// layers, given the checkpoint's dtype name ("bfloat16"...); "" means the
// checkpoint's own dtype. Throws Error naming --precision for unknown names.
WeightFormat ResolveLinearFormat(const std::string& precision,
                                 const std::string& checkpoint_dtype);

struct QuantParams {
  int blocksize = 64;        // 4-bit only; bnb allows 32..4096 (powers of 2)
  bool double_quant = true;  // 4-bit only: absmax quantized to 8 bits
};

// Exact bytes of a [rows, cols] matrix stored in format f, including every
// statistic a loaded model keeps resident (absmax, nested absmax/offset,
// code tables, int8 row scales).
uint64_t PackedBytes(WeightFormat f, int64_t rows, int64_t cols,
                     const QuantParams& q = {});

// Nominal bits per weight (without statistics): 32, 16, 16, 8, 4, 4.
int NominalBits(WeightFormat f);

// A 2-D weight W[rows = out_features, cols = in_features] in its storage
// format. Non-owning: points into an mmap or into buffers owned by the model.
struct WeightMatrix {
  WeightFormat format = WeightFormat::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  // f32/bf16/f16: row-major [rows, cols].
  // int8: int8 row-major [rows, cols];
  //   w[r][c] = f32(f32(q * row_scale[r]) * f32(1/127)) (bnb, two roundings).
  // nf4/fp4: the flattened row-major tensor packed two codes per byte, HIGH
  //   nibble = even flat index, ceil(rows*cols/2) bytes (bnb layout).
  const void* data = nullptr;
  const float* row_scale = nullptr;  // int8: SCB [rows] f32

  // 4-bit statistics. Block b covers flat indices [b*blocksize,
  // (b+1)*blocksize).
  int blocksize = 64;
  const float* code = nullptr;  // [16] value table (nf4 or fp4 quant_map)
  // Plain absmax [nblocks] f32 (no double quant) ...
  const float* absmax = nullptr;
  // ... or double-quantized: absmax[b] = nested_code[qabsmax[b]] *
  //   nested_absmax[b / nested_blocksize] + nested_offset.
  const uint8_t* qabsmax = nullptr;      // [nblocks]
  const float* nested_code = nullptr;    // [256]
  const float* nested_absmax = nullptr;  // [ceil(nblocks / nested_blocksize)]
  float nested_offset = 0.0f;
  int nested_blocksize = 256;

  int64_t nblocks() const { return (rows * cols + blocksize - 1) / blocksize; }
};

}  // namespace bioquant
