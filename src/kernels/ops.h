// Element-wise and reduction ops of the decoder, f32. Each SIMD op has a
// scalar *Ref twin that tests compare against on every compiled target.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bioquant {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]   (HF LlamaRMSNorm, f32)
void RmsNorm(const float* x, const float* w, size_t n, double eps, float* out);

// Dot product of two f32 vectors (attention scores).
float Dot(const float* a, const float* b, size_t n);
float DotRef(const float* a, const float* b, size_t n);
// y[i] += a * x[i] (attention-weighted sum of values).
void Axpy(float a, const float* x, float* y, size_t n);
void AxpyRef(float a, const float* x, float* y, size_t n);

// In place: softmax over x[0..n) in f32 with max subtraction.
void Softmax(float* x, size_t n);

// Runs `iters` rounds of independent f32 FMA chains held in registers and
// returns the flops done (2 per lane per FMA): the machine's FMA peak when
// timed (bioquant bench --machine).
double FmaPeakFlops(int64_t iters);

// out[i] = silu(gate[i]) * up[i]  (SwiGLU)
void SiluMul(const float* gate, const float* up, float* out, size_t n);

}  // namespace bioquant
