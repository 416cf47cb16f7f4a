// Quantize-on-load kernels (SIMD, one build per Highway target) and the
// scalar reference pieces they are tested against. Every function here gives
// the same bytes as the reference in bnb.h for every input (NaN included:
// a block or row holding a NaN is handed to the scalar reference).
#pragma once

#include <cstdint>

#include "quant/formats.h"

namespace bioquant {

// 4-bit blocks [b0, b1) of x[n] (blocksize bs, even): absmax[b] and the
// packed bytes of those blocks (high nibble first, odd-n padding included).
void Quantize4bitBlocksRef(const float* x, int64_t n, int64_t bs,
                           WeightFormat format, int64_t b0, int64_t b1,
                           float* absmax, uint8_t* packed);
void Quantize4bitBlocksSimd(const float* x, int64_t n, int64_t bs,
                            WeightFormat format, int64_t b0, int64_t b1,
                            float* absmax, uint8_t* packed);

// One int8 row (§4.1): q[cols] and scb = max|fp16(w)|. `w16` is scratch of
// cols floats.
void QuantizeInt8RowRef(const float* w, int64_t cols, float* w16, int8_t* q,
                        float* scb);
void QuantizeInt8RowSimd(const float* w, int64_t cols, float* w16, int8_t* q,
                         float* scb);

// out[i] = QuantizeDynamic(code256, x[i]) for i < n.
void QuantizeDynamicSimd(const float* code256, const float* x, int64_t n,
                         uint8_t* out);

// Widens n bf16 values to f32 (exact).
void Bf16ToF32Simd(const uint16_t* in, int64_t n, float* out);

}  // namespace bioquant
