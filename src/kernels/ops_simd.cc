// SIMD Dot and Axpy (attention inner loops), one build per Highway target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/ops_simd.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float DotImpl(const float* a, const float* b, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto s0 = hn::Zero(df), s1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(df, a + i + N), hn::LoadU(df, b + i + N), s1);
  }
  for (; i + N <= n; i += N) {
    s0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), s0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void AxpyImpl(float a, const float* x, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto va = hn::Set(df, a);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df,
               y + i);
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

double FmaPeakImpl(int64_t iters) {
  const hn::ScalableTag<float> df;
  // 12 independent accumulators hide the FMA latency (4 cycles x 2 ports on
  // Zen 4 needs >= 8).
  // Distinct start values: identical chains would be merged by the compiler.
  auto a0 = hn::Set(df, 1.00f), a1 = hn::Set(df, 1.01f),
       a2 = hn::Set(df, 1.02f);
  auto a3 = hn::Set(df, 1.03f), a4 = hn::Set(df, 1.04f),
       a5 = hn::Set(df, 1.05f);
  auto a6 = hn::Set(df, 1.06f), a7 = hn::Set(df, 1.07f),
       a8 = hn::Set(df, 1.08f);
  auto a9 = hn::Set(df, 1.09f), a10 = hn::Set(df, 1.10f),
       a11 = hn::Set(df, 1.11f);
  const auto m = hn::Set(df, 0.999999f), c = hn::Set(df, 1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, m, c);
    a1 = hn::MulAdd(a1, m, c);
    a2 = hn::MulAdd(a2, m, c);
    a3 = hn::MulAdd(a3, m, c);
    a4 = hn::MulAdd(a4, m, c);
    a5 = hn::MulAdd(a5, m, c);
    a6 = hn::MulAdd(a6, m, c);
    a7 = hn::MulAdd(a7, m, c);
    a8 = hn::MulAdd(a8, m, c);
    a9 = hn::MulAdd(a9, m, c);
    a10 = hn::MulAdd(a10, m, c);
    a11 = hn::MulAdd(a11, m, c);
  }
  auto s = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)),
                   hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  s = hn::Add(s, hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  // Keep every lane alive (reading only lane 0 lets the compiler narrow the
  // chains to scalars and report several times the real peak).
  volatile float sink = hn::GetLane(hn::SumOfLanes(df, s));
  (void)sink;
  return 2.0 * 12 * hn::Lanes(df) * static_cast<double>(iters);
}

}  // namespace HWY_NAMESPACE
}  // namespace bioquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bioquant {
HWY_EXPORT(DotImpl);
HWY_EXPORT(AxpyImpl);
HWY_EXPORT(FmaPeakImpl);

double FmaPeakFlops(int64_t iters) {
  return HWY_DYNAMIC_DISPATCH(FmaPeakImpl)(iters);
}

float Dot(const float* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n);
}
void Axpy(float a, const float* x, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyImpl)(a, x, y, n);
}
}  // namespace bioquant
#endif
