// SIMD matmul for unquantized weights (f32, bf16, f16): widen each weight
// vector to f32 in registers and FMA against f32 activations.
// Compiled once per Highway target (foreach_target), dispatched at run time.
#include <algorithm>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_float.cc"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/bf16_dot.h"
#include "kernels/matmul.h"
#include "kernels/scratch.h"
#include "quant/half.h"

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Weight formats; sizeof(Tag) is the bytes per weight.
struct F32Tag {
  float v;
};
struct Bf16Tag {
  uint16_t v;
};
struct F16Tag {
  uint16_t v;
};

template <class DF>
HWY_INLINE hn::Vec<DF> LoadWeights(DF df, F32Tag, const void* base, size_t i) {
  return hn::LoadU(df, static_cast<const float*>(base) + i);
}
template <class DF>
HWY_INLINE hn::Vec<DF> LoadWeights(DF df, Bf16Tag, const void* base, size_t i) {
  // bf16 is the high half of an f32: widen to u32 and shift into place.
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  const auto raw = hn::LoadU(du16, static_cast<const uint16_t*>(base) + i);
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, raw)));
}
template <class DF>
HWY_INLINE hn::Vec<DF> LoadWeights(DF df, F16Tag, const void* base, size_t i) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(
      df, hn::LoadU(dh, static_cast<const hwy::float16_t*>(base) + i));
}

HWY_INLINE float ScalarWeight(F32Tag, const void* base, size_t i) {
  return static_cast<const float*>(base)[i];
}
HWY_INLINE float ScalarWeight(Bf16Tag, const void* base, size_t i) {
  const uint32_t bits = uint32_t{static_cast<const uint16_t*>(base)[i]} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
HWY_INLINE float ScalarWeight(F16Tag, const void* base, size_t i) {
  return F16ToF32(static_cast<const uint16_t*>(base)[i]);
}

// One register tile: kR weight rows x kM activation rows, full dot products
// over `cols`. acc[r][t] holds partial sums for y[t][r].
template <int kR, int kM, class Tag>
HWY_INLINE void Tile(Tag tag, const void* w, int64_t cols, int64_t row,
                     const float* x, int64_t t0, int64_t wrows, float* y) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  hn::Vec<decltype(df)> acc[kR][kM];
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kM; ++t) acc[r][t] = hn::Zero(df);
  size_t c = 0;
  for (; c + N <= static_cast<size_t>(cols); c += N) {
    hn::Vec<decltype(df)> xv[kM];
    for (int t = 0; t < kM; ++t) xv[t] = hn::LoadU(df, x + (t0 + t) * cols + c);
    for (int r = 0; r < kR; ++r) {
      const auto wv = LoadWeights(df, tag, w, (row + r) * cols + c);
      for (int t = 0; t < kM; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      for (size_t cc = c; cc < static_cast<size_t>(cols); ++cc) {
        sum += ScalarWeight(tag, w, (row + r) * cols + cc) *
               x[(t0 + t) * cols + cc];
      }
      y[(t0 + t) * wrows + row + r] = sum;
    }
  }
}

#include "kernels/gemm-inl.h"

template <class Tag>
void RowsImpl(Tag tag, const WeightMatrix& w, const float* x, int64_t m,
              float* y, int64_t r0, int64_t r1, bool bf16) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  if (UseGemm(m, bf16) && w.cols % N == 0) {
    // Many activation rows: decode panels once, register-blocked f32 GEMM.
    const int64_t cols = w.cols;
    GemmPanels(
        [&](int64_t row, float* out) {
          for (int64_t c = 0; c < cols; c += N) {
            hn::Store(LoadWeights(df, tag, w.data, row * cols + c), df,
                      out + c);
          }
        },
        [](const float*, float*) {}, [](int64_t) { return 1.0f; }, true, bf16,
        w.data, cols * static_cast<int64_t>(sizeof(Tag)), cols, w.rows, x, m, y,
        r0, r1);
    return;
  }
  if (m == 1) {
    // Decode: 8 weight rows per tile. The rows stream from DRAM side by side;
    // 8 streams read faster than 4 on AVX2 and AVX-512 alike (bf16, 2048
    // columns, 2 threads: 32 vs 29 GB/s on AVX2, 26 vs 24 on AVX-512), and
    // 8 accumulators fit 16 registers. Each output is the same FMA chain
    // whatever the tile, so the bits do not change.
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8)
      Tile<8, 1>(tag, w.data, w.cols, r, x, 0, w.rows, y);
    for (; r < r1; ++r) Tile<1, 1>(tag, w.data, w.cols, r, x, 0, w.rows, y);
    return;
  }
  // Activations are processed in chunks that stay in L2 while the weight
  // rows of this thread stream past them.
  constexpr int64_t kTokenChunk = 64;
  for (int64_t tc = 0; tc < m; tc += kTokenChunk) {
    const int64_t te = std::min(m, tc + kTokenChunk);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
      int64_t t = tc;
      for (; t + 4 <= te; t += 4) {
        for (int64_t tt = t; tt < t + 4; tt += kSmallTileToks) {
          Tile<4, kSmallTileToks>(tag, w.data, w.cols, r, x, tt, w.rows, y);
        }
      }
      for (; t < te; ++t) Tile<4, 1>(tag, w.data, w.cols, r, x, t, w.rows, y);
    }
    for (; r < r1; ++r) {
      int64_t t = tc;
      for (; t + 4 <= te; t += 4)
        Tile<1, 4>(tag, w.data, w.cols, r, x, t, w.rows, y);
      for (; t < te; ++t) Tile<1, 1>(tag, w.data, w.cols, r, x, t, w.rows, y);
    }
  }
}

void MatMulRowsFloatImpl(const WeightMatrix& w, const float* x, int64_t m,
                         float* y, int64_t r0, int64_t r1, bool bf16) {
  switch (w.format) {
    case WeightFormat::kF32:
      return RowsImpl(F32Tag(), w, x, m, y, r0, r1, bf16);
    case WeightFormat::kBF16:
      return RowsImpl(Bf16Tag(), w, x, m, y, r0, r1, bf16);
    case WeightFormat::kF16:
      return RowsImpl(F16Tag(), w, x, m, y, r0, r1, bf16);
    default:
      break;
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

HWY_EXPORT(MatMulRowsFloatImpl);

void MatMulRowsFloat(const WeightMatrix& w, const float* x, int64_t m, float* y,
                     int64_t r0, int64_t r1, bool bf16) {
  HWY_DYNAMIC_DISPATCH(MatMulRowsFloatImpl)(w, x, m, y, r0, r1, bf16);
}

int NumFloatTargets() {
  return static_cast<int>(hwy::SupportedAndGeneratedTargets().size());
}

const char* FloatTargetName(int target_index) {
  return hwy::TargetName(hwy::SupportedAndGeneratedTargets()[target_index]);
}

void MatMulRowsFloatOnTarget(int target_index, const WeightMatrix& w,
                             const float* x, int64_t m, float* y, int64_t r0,
                             int64_t r1, bool bf16) {
  RunOnTarget(target_index, [&] {
    HWY_DYNAMIC_DISPATCH(MatMulRowsFloatImpl)(w, x, m, y, r0, r1, bf16);
  });
}

}  // namespace kernels
}  // namespace bioquant
#endif  // HWY_ONCE
