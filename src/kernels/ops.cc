// Scalar parts of ops.h; Dot and Axpy have SIMD versions in ops_simd.cc.
#include "kernels/ops.h"

#include <cmath>

namespace bioquant {

void RmsNorm(const float* x, const float* w, size_t n, double eps, float* out) {
  // Sum of squares in double: the f32 result then matches an f64 reference
  // to the last bit more often than a float accumulator would.
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (size_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

float DotRef(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return static_cast<float>(s);
}

void AxpyRef(float a, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void Softmax(float* x, size_t n) {
  if (n == 0) return;
  float mx = x[0];
  for (size_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

void SiluMul(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace bioquant
