// Matrix multiplication against weights in any storage format:
//   y[m, w.rows] = x[m, w.cols] · Wᵀ      (x, y f32 row-major)
// Decode is m = 1 (matrix-vector); prefill is m = prompt length.
// Dispatch on the weight format happens here, once per call (STYLE habit 5);
// each format's SIMD kernel lives in its own translation unit.
#pragma once

#include <cstdint>
#include <string>

#include "quant/formats.h"
#include "util/thread_pool.h"

namespace bioquant {

// Activation precision of the matmuls. kF32 (default) keeps every golden at
// its tolerance. kBF16 (`--compute bf16`, opt-in speed mode) rounds weights
// and activations to bf16 (nearest even) and accumulates in f32, like
// PyTorch's bf16 matmul; it applies to prefill (m >= 16 rows on the GEMM
// path); decode stays f32.
enum class ComputeType { kF32, kBF16 };
const char* ComputeTypeName(ComputeType c);
// "f32" | "bf16"; throws Error naming `flag` otherwise.
ComputeType ParseComputeType(const std::string& s, const char* flag);

// SIMD path (Highway, best target of this CPU), rows split across the pool.
void MatMul(const WeightMatrix& w, const float* x, int64_t m, float* y,
            ThreadPool* pool, ComputeType compute = ComputeType::kF32);

// Scalar reference: dequantize each row to f32 (then round it and x to bf16
// for kBF16), then dot in double.
void MatMulRef(const WeightMatrix& w, const float* x, int64_t m, float* y,
               ComputeType compute = ComputeType::kF32);

namespace kernels {

// Per-format SIMD kernels over the row range [r0, r1) of W, for all m rows of
// x: y[i * w.rows + r] for r in [r0, r1). Exported per Highway target.
void MatMulRowsFloat(const WeightMatrix& w, const float* x, int64_t m, float* y,
                     int64_t r0, int64_t r1,
                     bool bf16 = false);  // f32, bf16, f16

// Test hooks: run the float kernel on one specific compiled target.
// Returns the number of compiled targets; `target_index` selects one.
int NumFloatTargets();
const char* FloatTargetName(int target_index);
void MatMulRowsFloatOnTarget(int target_index, const WeightMatrix& w,
                             const float* x, int64_t m, float* y, int64_t r0,
                             int64_t r1, bool bf16 = false);

}  // namespace kernels
}  // namespace bioquant
