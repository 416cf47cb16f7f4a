// SIMD matmul for int8 row-wise weights (W8A16): each vector of N int8
// weights is widened to f32 and FMA'd with f32 activations; the row scale
// SCB[r] / 127 multiplies the finished sum.
// Compiled once per Highway target (foreach_target), dispatched at run time.
#include <algorithm>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_int8.cc"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/bf16_dot.h"
#include "kernels/matmul_int8.h"
#include "kernels/scratch.h"
#include "quant/bnb.h"
#include "util/error.h"

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

// kR weight rows x kM activation rows, full dot products over cols:
// sum_c q[r, c] * x[t, c] in f32, then times SCB[r] / 127 once per output
// (the scale is per row, so it factors out of the sum; the reference
// multiplies each weight first, which differs only by rounding). Each
// accumulator sees the same operations whatever kM is, so y does not depend
// on how many activation rows are computed together (batch-1 == batch-N).
// The next tile's bytes are prefetched while this one streams (the hardware
// prefetcher stops at each 4 KiB page).
template <int kR, int kM>
HWY_INLINE void Tile(const WeightMatrix& w, int64_t row, const float* x,
                     int64_t t0, float* y) {
  const DF df;
  const hn::RebindToSigned<DF> di32;
  const hn::Rebind<int8_t, DF> di8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = w.cols;
  const int8_t* q = static_cast<const int8_t*>(w.data);
  const int8_t* next = q + (row + kR) * cols;
  hn::Vec<DF> acc[kR][kM];
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kM; ++t) acc[r][t] = hn::Zero(df);
  int64_t c = 0;
  for (; c + N <= cols; c += N) {
    hwy::Prefetch(next + c * kR);
    hn::Vec<DF> xv[kM];
    for (int t = 0; t < kM; ++t) xv[t] = hn::LoadU(df, x + (t0 + t) * cols + c);
    for (int r = 0; r < kR; ++r) {
      const auto wv = hn::ConvertTo(
          df, hn::PromoteTo(di32, hn::LoadU(di8, q + (row + r) * cols + c)));
      for (int t = 0; t < kM; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < kR; ++r) {
    const float s = w.row_scale[row + r] * kInv127;
    for (int t = 0; t < kM; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      for (int64_t cc = c; cc < cols; ++cc) {
        sum += static_cast<float>(q[(row + r) * cols + cc]) *
               x[(t0 + t) * cols + cc];
      }
      y[(t0 + t) * w.rows + row + r] = sum * s;
    }
  }
}

#include "kernels/gemm-inl.h"

void MatMulRowsInt8Impl(const WeightMatrix& w, const float* x, int64_t m,
                        float* y, int64_t r0, int64_t r1, bool bf16) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  if (UseGemm(m, bf16) && w.cols % N == 0) {
    // Many activation rows: decode panels once, register-blocked f32 GEMM
    // (same arithmetic as Tile: integer-valued f32 weights, scale at the end).
    const hn::RebindToSigned<DF> di32;
    const hn::Rebind<int8_t, DF> di8;
    const int64_t cols = w.cols;
    const int8_t* q = static_cast<const int8_t*>(w.data);
    GemmPanels(
        [&](int64_t row, float* out) {
          for (int64_t c = 0; c < cols; c += N) {
            hn::Store(hn::ConvertTo(
                          df, hn::PromoteTo(
                                  di32, hn::LoadU(di8, q + row * cols + c))),
                      df, out + c);
          }
        },
        [](const float*, float*) {},
        [&](int64_t row) { return w.row_scale[row] * kInv127; }, true, bf16,
        w.data, cols, cols, w.rows, x, m, y, r0, r1);
    return;
  }
  constexpr int64_t kTokenChunk = 64;
  for (int64_t tc = 0; tc < m; tc += kTokenChunk) {
    const int64_t te = std::min(m, tc + kTokenChunk);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
      int64_t t = tc;
      for (; t + 4 <= te; t += 4) {
        for (int64_t tt = t; tt < t + 4; tt += kSmallTileToks) {
          Tile<4, kSmallTileToks>(w, r, x, tt, y);
        }
      }
      for (; t < te; ++t) Tile<4, 1>(w, r, x, t, y);
    }
    for (; r < r1; ++r) {
      int64_t t = tc;
      for (; t + 4 <= te; t += 4) Tile<1, 4>(w, r, x, t, y);
      for (; t < te; ++t) Tile<1, 1>(w, r, x, t, y);
    }
  }
}

// LLM.int8: int32 dot products of int8 activation rows with int8 weight
// rows. i8 -> i16, then pairwise i16 products summed into i32 lanes
// (ReorderWidenMulAccumulate = vpmaddwd); |sum| <= 127^2 * cols fits i32.
template <int kR, int kM>
HWY_INLINE void TileI8(const int8_t* ca, const int8_t* cb, int64_t cols,
                       int64_t row, int64_t t0, int64_t* acc_out) {
  const hn::ScalableTag<int32_t> d32;
#if HWY_TARGET == HWY_SCALAR  // one i16 lane per i32 lane
  const hn::Rebind<int16_t, decltype(d32)> d16;
#else  // twice as many i16 lanes, summed pairwise
  const hn::Repartition<int16_t, decltype(d32)> d16;
#endif
  const hn::Rebind<int8_t, decltype(d16)> d8;
  const int64_t N16 = static_cast<int64_t>(hn::Lanes(d16));
  hn::Vec<decltype(d32)> sum0[kR][kM], sum1[kR][kM];
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) sum0[r][t] = sum1[r][t] = hn::Zero(d32);
  }
  int64_t c = 0;
  for (; c + N16 <= cols; c += N16) {
    hn::Vec<decltype(d16)> xv[kM];
    for (int t = 0; t < kM; ++t) {
      xv[t] = hn::PromoteTo(d16, hn::LoadU(d8, ca + (t0 + t) * cols + c));
    }
    for (int r = 0; r < kR; ++r) {
      const auto wv =
          hn::PromoteTo(d16, hn::LoadU(d8, cb + (row + r) * cols + c));
      for (int t = 0; t < kM; ++t) {
        sum0[r][t] = hn::ReorderWidenMulAccumulate(d32, wv, xv[t], sum0[r][t],
                                                   sum1[r][t]);
      }
    }
  }
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) {
      int64_t acc =
          hn::GetLane(hn::SumOfLanes(d32, hn::Add(sum0[r][t], sum1[r][t])));
      for (int64_t cc = c; cc < cols; ++cc) {
        acc += int32_t{ca[(t0 + t) * cols + cc]} *
               int32_t{cb[(row + r) * cols + cc]};
      }
      acc_out[r * kM + t] = acc;
    }
  }
}

void MatMulRowsLlmInt8Impl(const Int8Activations& a, const WeightMatrix& w,
                           const float* bias, float* y, int64_t r0,
                           int64_t r1) {
  const int64_t cols = w.cols, m = a.m;
  const int8_t* ca = a.ca.data();
  const int8_t* cb = static_cast<const int8_t*>(w.data);
  std::vector<float> sub_b(4 * a.outlier_cols.size());
  const size_t no = a.outlier_cols.size();
  int64_t acc[16];
  auto finish = [&](int kR, int kM, int64_t row, int64_t t0) {
    for (int r = 0; r < kR; ++r) {
      for (int t = 0; t < kM; ++t) {
        y[(t0 + t) * w.rows + row + r] =
            LlmInt8Output(a, w, t0 + t, row + r, acc[r * kM + t],
                          sub_b.data() + r * no, bias);
      }
    }
  };
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    for (int i = 0; i < 4; ++i) {
      LlmInt8OutlierWeights(a, w, r + i, sub_b.data() + i * no);
    }
    int64_t t = 0;
    for (; t + 4 <= m; t += 4) {
      TileI8<4, 4>(ca, cb, cols, r, t, acc);
      finish(4, 4, r, t);
    }
    for (; t < m; ++t) {
      TileI8<4, 1>(ca, cb, cols, r, t, acc);
      finish(4, 1, r, t);
    }
  }
  for (; r < r1; ++r) {
    LlmInt8OutlierWeights(a, w, r, sub_b.data());
    for (int64_t t = 0; t < m; ++t) {
      TileI8<1, 1>(ca, cb, cols, r, t, acc);
      finish(1, 1, r, t);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kernels
}  // namespace bioquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/on_target.h"

namespace bioquant {
namespace kernels {

HWY_EXPORT(MatMulRowsInt8Impl);
HWY_EXPORT(MatMulRowsLlmInt8Impl);

namespace {
void CheckInt8(const WeightMatrix& w) {
  if (w.format != WeightFormat::kInt8Row || w.row_scale == nullptr) {
    Fail("matmul: int8 kernel called with weight format {}{}",
         FormatName(w.format), w.row_scale ? "" : " (no row scales)");
  }
}
}  // namespace

void MatMulRowsInt8(const WeightMatrix& w, const float* x, int64_t m, float* y,
                    int64_t r0, int64_t r1, bool bf16) {
  CheckInt8(w);
  HWY_DYNAMIC_DISPATCH(MatMulRowsInt8Impl)(w, x, m, y, r0, r1, bf16);
}

void MatMulRowsInt8OnTarget(int target_index, const WeightMatrix& w,
                            const float* x, int64_t m, float* y, int64_t r0,
                            int64_t r1, bool bf16) {
  CheckInt8(w);
  RunOnTarget(target_index, [&] {
    HWY_DYNAMIC_DISPATCH(MatMulRowsInt8Impl)(w, x, m, y, r0, r1, bf16);
  });
}

namespace {
void CheckLlmInt8(const Int8Activations& a, const WeightMatrix& w) {
  CheckInt8(w);
  if (a.cols != w.cols || static_cast<int64_t>(a.ca.size()) != a.m * a.cols) {
    Fail("LLM.int8 matmul: activations [{}, {}] do not fit weight [{}, {}]",
         a.m, a.cols, w.rows, w.cols);
  }
}
}  // namespace

void MatMulRowsLlmInt8(const Int8Activations& a, const WeightMatrix& w,
                       const float* bias, float* y, int64_t r0, int64_t r1) {
  CheckLlmInt8(a, w);
  HWY_DYNAMIC_DISPATCH(MatMulRowsLlmInt8Impl)(a, w, bias, y, r0, r1);
}

void MatMulRowsLlmInt8OnTarget(int target_index, const Int8Activations& a,
                               const WeightMatrix& w, const float* bias,
                               float* y, int64_t r0, int64_t r1) {
  CheckLlmInt8(a, w);
  RunOnTarget(target_index, [&] {
    HWY_DYNAMIC_DISPATCH(MatMulRowsLlmInt8Impl)(a, w, bias, y, r0, r1);
  });
}

}  // namespace kernels
}  // namespace bioquant
#endif  // HWY_ONCE
