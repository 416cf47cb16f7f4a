// ggml tensor types -> f32: the scalar reference dequantization of the types
// GGUF checkpoints use (block layouts from ggml-common.h). Bit-exact with
// PyPI gguf's gguf.quants.dequantize (tests/quant/ggml_golden_test.cc): each
// value is computed with the same f32 operations in the same order, e.g.
// Q4_1 is (d * q) + m, two roundings, never a fused multiply-add (this file
// is compiled with -ffp-contract=off).
//
// These are an import format, not a compute format: the engine never
// multiplies by ggml blocks; `import-gguf` dequantizes them once into an HF
// checkpoint (quant/formats.h owns the formats the engine computes with).
#pragma once

#include <cstddef>
#include <cstdint>

#include "io/gguf.h"

namespace bioquant {

// True for the types DequantizeGgml handles: F32, F16, BF16, Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool CanDequantizeGgml(GgmlType type);

// Dequantizes n elements (a whole number of blocks) starting at src into
// dst. Throws Error naming the type when unsupported or n is not a whole
// number of blocks.
void DequantizeGgml(GgmlType type, const uint8_t* src, size_t n, float* dst);

}  // namespace bioquant
