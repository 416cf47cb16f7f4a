// SIMD matmul for int8 row-wise weights (bnb SCB layout) with f32
// activations, weight-only W8A16 (the `int8` precision), and the W8A8
// LLM.int8 path (the `llm-int8` precision) below:
//   y[t * w.rows + r] = sum_c x[t * w.cols + c] * W[r, c]   for r in [r0, r1)
// W[r, c] = f32(f32(q * SCB[r]) * f32(1/127)), exactly the reference value.
#pragma once

#include <cstdint>

#include "quant/bnb.h"
#include "quant/formats.h"

namespace bioquant {
namespace kernels {

// w.format must be kInt8Row (throws Error otherwise).
void MatMulRowsInt8(const WeightMatrix& w, const float* x, int64_t m, float* y,
                    int64_t r0, int64_t r1, bool bf16 = false);

// Test hook: the kernel compiled for hwy::SupportedAndGeneratedTargets()
// [target_index].
void MatMulRowsInt8OnTarget(int target_index, const WeightMatrix& w,
                            const float* x, int64_t m, float* y, int64_t r0,
                            int64_t r1, bool bf16 = false);

// LLM.int8 (§4.3 of the bnb SPEC): int8 activations `a` (quantized once per
// call by QuantizeActivationsInt8) times int8 weights with int32
// accumulation, then bnb's dequantization and 16-bit outlier columns.
// Bit-identical to LlmInt8MatMulRows (quant/bnb.h): integer sums are exact
// and the float epilogue is shared. y[t * w.rows + r] for r in [r0, r1).
void MatMulRowsLlmInt8(const Int8Activations& a, const WeightMatrix& w,
                       const float* bias, float* y, int64_t r0, int64_t r1);
void MatMulRowsLlmInt8OnTarget(int target_index, const Int8Activations& a,
                               const WeightMatrix& w, const float* bias,
                               float* y, int64_t r0, int64_t r1);

}  // namespace kernels
}  // namespace bioquant
