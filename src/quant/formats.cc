#include "quant/formats.h"

#include "util/error.h"

namespace bioquant {

const char* FormatName(WeightFormat f) {
  switch (f) {
    case WeightFormat::kF32:
      return "f32";
    case WeightFormat::kBF16:
      return "bf16";
    case WeightFormat::kF16:
      return "f16";
    case WeightFormat::kInt8Row:
      return "int8";
    case WeightFormat::kNF4:
      return "nf4";
    case WeightFormat::kFP4:
      return "fp4";
  }
  return "?";
}

WeightFormat ParseFormat(const std::string& name) {
  for (WeightFormat f :
       {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kF16,
        WeightFormat::kInt8Row, WeightFormat::kNF4, WeightFormat::kFP4}) {
    if (name == FormatName(f)) return f;
  }
  Fail(
      "unknown weight format \"{}\" (expected f32, bf16, f16, int8, nf4 or "
      "fp4)",
      name);
}

int NominalBits(WeightFormat f) {
  switch (f) {
    case WeightFormat::kF32:
      return 32;
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      return 16;
    case WeightFormat::kInt8Row:
      return 8;
    case WeightFormat::kNF4:
    case WeightFormat::kFP4:
      return 4;
  }
  return 0;
}

// n = rows * cols. Bytes resident for one matrix (what bnb keeps on device):
//   f32: 4n            bf16, f16: 2n
//   int8: n (CB) + 4*rows (SCB, f32 per output row)
//   nf4/fp4, nb = ceil(n / blocksize):
//     packed codes ceil(n/2) (odd n: the last low nibble is padding)
//     + 64 (quant_map, 16 x f32)
//     + no double quant: 4*nb (absmax f32 per block)
//     + double quant: nb (qabsmax u8 per block) + 4*ceil(nb/256) (nested
//       absmax f32 per 256 blocks) + 4 (nested offset f32) + 1024 (nested
//       code, 256 x f32)
uint64_t PackedBytes(WeightFormat f, int64_t rows, int64_t cols,
                     const QuantParams& q) {
  if (rows < 0 || cols < 0)
    Fail("PackedBytes: negative shape [{}, {}]", rows, cols);
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
  switch (f) {
    case WeightFormat::kF32:
      return 4 * n;
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      return 2 * n;
    case WeightFormat::kInt8Row:
      return n + 4 * static_cast<uint64_t>(rows);
    case WeightFormat::kNF4:
    case WeightFormat::kFP4: {
      if (q.blocksize <= 0)
        Fail("PackedBytes: blocksize {} must be positive", q.blocksize);
      const uint64_t bs = static_cast<uint64_t>(q.blocksize);
      const uint64_t nb = (n + bs - 1) / bs;
      uint64_t bytes = (n + 1) / 2 + 16 * 4;
      if (q.double_quant) {
        bytes += nb + 4 * ((nb + 255) / 256) + 4 + 256 * 4;
      } else {
        bytes += 4 * nb;
      }
      return bytes;
    }
  }
  return 0;
}

WeightFormat ResolveLinearFormat(const std::string& precision,
                                 const std::string& checkpoint_dtype) {
  if (precision.empty()) {
    if (checkpoint_dtype == "bfloat16") return WeightFormat::kBF16;
    if (checkpoint_dtype == "float16") return WeightFormat::kF16;
    return WeightFormat::kF32;
  }
  if (precision == "llm-int8") return WeightFormat::kInt8Row;
  try {
    return ParseFormat(precision);
  } catch (const Error&) {
    Fail(
        "--precision: unknown precision '{}' (f32, bf16, f16, int8, llm-int8, "
        "nf4, fp4)",
        precision);
  }
}

}  // namespace bioquant
