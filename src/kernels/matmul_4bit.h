// SIMD matmul for bnb 4-bit weights (nf4, fp4; plain or double-quantized
// absmax), fused dequantize-and-multiply with f32 activations:
//   y[t * w.rows + r] = sum_c x[t * w.cols + c] * W[r, c]   for r in [r0, r1)
// Same row-range contract as kernels::MatMulRowsFloat (kernels/matmul.h) so
// the caller splits rows across threads. Each weight is decoded to exactly
// the f32 value of the scalar reference (DequantizeRow in quant/bnb.h); only
// the summation order differs.
#pragma once

#include <cstdint>

#include "quant/formats.h"

namespace bioquant {
namespace kernels {

// w.format must be kNF4 or kFP4 (throws Error otherwise).
void MatMulRows4bit(const WeightMatrix& w, const float* x, int64_t m, float* y,
                    int64_t r0, int64_t r1, bool bf16 = false);

// Test hook: the kernel compiled for hwy::SupportedAndGeneratedTargets()
// [target_index].
void MatMulRows4bitOnTarget(int target_index, const WeightMatrix& w,
                            const float* x, int64_t m, float* y, int64_t r0,
                            int64_t r1, bool bf16 = false);

// Test hook: how many table registers the 4-bit decode on that target uses
// (1, 2 or 4; 0 = the gather / per-row fallback).
int Lut16VecsOnTarget(int target_index);

}  // namespace kernels
}  // namespace bioquant
