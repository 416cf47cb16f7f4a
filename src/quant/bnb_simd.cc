// SIMD quantizers of bnb_simd.h. Bit-exactness with the scalar reference
// rests on doing the same IEEE operations in the same order: one f32
// multiply by the reciprocal, then comparisons against the same f32
// thresholds (counting them is the reference's definition of the code, so
// no search order or tie rule can differ), and RNE rounding done in integer
// arithmetic exactly like half.h. Nothing depends on vector width.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/bnb_simd.cc"
#include "quant/bnb_simd.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>

#include "quant/bnb.h"
#include "quant/half.h"

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;

// Code of s = x * inv per lane (NF4: #{k : s > t_k}; FP4: magnitude rank
// mapped to its bits plus the sign bit), as i32 lanes.
template <bool kNf4>
HWY_INLINE hn::Vec<DI> Codes(DF df, hn::Vec<DF> s, const float* thr) {
  const DI di;
  auto cnt = hn::Zero(di);
  if constexpr (kNf4) {
    for (int k = 0; k < 15; ++k) {
      // A true mask is all ones (-1): subtracting it counts.
      cnt = hn::Sub(
          cnt,
          hn::BitCast(di, hn::VecFromMask(df, hn::Gt(s, hn::Set(df, thr[k])))));
    }
    return cnt;
  } else {
    const auto a = hn::Abs(s);
    for (int k = 0; k < 7; ++k) {
      cnt = hn::Sub(
          cnt,
          hn::BitCast(di, hn::VecFromMask(df, hn::Gt(a, hn::Set(df, thr[k])))));
    }
    // Bits by rank {0, 1, 6, 7, 4, 5, 2, 3}: rank r >= 2 has bits
    // (8 - (r & 6)) | (r & 1).
    const auto hi =
        hn::Or(hn::Sub(hn::Set(di, 8), hn::And(cnt, hn::Set(di, 6))),
               hn::And(cnt, hn::Set(di, 1)));
    const auto bits = hn::IfThenElse(hn::Lt(cnt, hn::Set(di, 2)), cnt, hi);
    // Sign bit for s < 0 (not -0, not NaN).
    const auto neg = hn::RebindMask(di, hn::Lt(s, hn::Zero(df)));
    return hn::Or(bits, hn::IfThenElseZero(neg, hn::Set(di, 8)));
  }
}

template <bool kNf4>
void Blocks(const float* x, int64_t n, int64_t bs, WeightFormat format,
            int64_t b0, int64_t b1, float* absmax, uint8_t* packed) {
  const DF df;
  const DI di;
  const hn::Rebind<uint8_t, DI> du8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const float* thr = kNf4 ? Nf4Thresholds().data() : Fp4AbsThresholds().data();
  HWY_ALIGN uint8_t codes[4096 + 64];  // blocksize <= 4096 (+ padding)
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t i0 = b * bs, i1 = std::min(n, i0 + bs);
    const int64_t len = i1 - i0;
    const float* xb = x + i0;
    auto vmax = hn::Zero(df);
    auto nan = hn::Zero(df);
    int64_t i = 0;
    for (; i + N <= len; i += N) {
      const auto v = hn::LoadU(df, xb + i);
      vmax = hn::Max(vmax, hn::Abs(v));
      nan = hn::Or(nan, hn::VecFromMask(df, hn::IsNaN(v)));
    }
    float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    bool has_nan = !hn::AllFalse(df, hn::MaskFromVec(nan));
    for (int64_t j = i; j < len; ++j) {
      has_nan |= std::isnan(xb[j]);
      amax = std::fmax(amax, std::fabs(xb[j]));
    }
    if (has_nan) {  // rare: the reference's fmax/NaN rules, block by block
      Quantize4bitBlocksRef(x, n, bs, format, b, b + 1, absmax, packed);
      continue;
    }
    absmax[b] = amax;
    const float inv = 1.0f / amax;
    const auto vinv = hn::Set(df, inv);
    for (i = 0; i + N <= len; i += N) {
      const auto c = Codes<kNf4>(df, hn::Mul(hn::LoadU(df, xb + i), vinv), thr);
      hn::StoreU(hn::DemoteTo(du8, c), du8, codes + i);
    }
    for (; i < len; ++i) {
      const float s = xb[i] * inv;
      codes[i] = kNf4 ? QuantizeNf4(s) : QuantizeFp4(s);
    }
    int64_t plen = len;
    if (plen & 1) {
      codes[plen++] = kNf4 ? QuantizeNf4(0.0f * inv) : QuantizeFp4(0.0f * inv);
    }
    uint8_t* out = packed + i0 / 2;
    for (int64_t j = 0; j < plen; j += 2) {
      out[j / 2] = static_cast<uint8_t>(codes[j] << 4 | codes[j + 1]);
    }
  }
}

void Quantize4bitBlocksImpl(const float* x, int64_t n, int64_t bs,
                            WeightFormat format, int64_t b0, int64_t b1,
                            float* absmax, uint8_t* packed) {
  if (format == WeightFormat::kNF4) {
    Blocks<true>(x, n, bs, format, b0, b1, absmax, packed);
  } else {
    Blocks<false>(x, n, bs, format, b0, b1, absmax, packed);
  }
}

// f32 -> nearest f16 value -> f32, for finite non-NaN lanes, exactly as
// half.h's RoundToF16 (RNE, subnormals kept, >= 65520 -> inf).
HWY_INLINE hn::Vec<DF> RoundToF16Vec(DF df, hn::Vec<DF> v) {
  const DI di;
  const auto bits = hn::BitCast(di, v);
  const auto sign =
      hn::And(bits, hn::Set(di, static_cast<int32_t>(0x80000000u)));
  const auto a =
      hn::AndNot(hn::Set(di, static_cast<int32_t>(0x80000000u)), bits);
  // Normal f16 range: round the f32 mantissa to 10 bits in place (a carry
  // into the exponent is the right answer).
  const auto lsb = hn::And(hn::ShiftRight<13>(a), hn::Set(di, 1));
  const auto rn = hn::And(hn::Add(hn::Add(a, hn::Set(di, 0xfff)), lsb),
                          hn::Set(di, ~0x1fff));
  // Subnormal f16 range (|v| < 2^-14): multiples of 2^-24, RNE through the
  // f32 addition of 0.5 (whose ulp is 2^-24).
  const auto half = hn::Set(df, 0.5f);
  const auto sub =
      hn::BitCast(di, hn::Sub(hn::Add(hn::BitCast(df, a), half), half));
  auto r = hn::IfThenElse(hn::Lt(a, hn::Set(di, 0x38800000)), sub, rn);
  r = hn::IfThenElse(hn::Lt(a, hn::Set(di, 0x477ff000)), r,
                     hn::Set(di, 0x7f800000));  // overflow (and inf) -> inf
  return hn::BitCast(df, hn::Or(r, sign));
}

void QuantizeInt8RowImpl(const float* w, int64_t cols, float* w16, int8_t* q,
                         float* scb) {
  const DF df;
  const DI di;
  const hn::Rebind<int8_t, DI> di8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto vmax = hn::Zero(df);
  auto nan = hn::Zero(df);
  int64_t c = 0;
  for (; c + N <= cols; c += N) {
    const auto v = hn::LoadU(df, w + c);
    nan = hn::Or(nan, hn::VecFromMask(df, hn::IsNaN(v)));
    const auto h = RoundToF16Vec(df, v);
    hn::StoreU(h, df, w16 + c);
    vmax = hn::Max(vmax, hn::Abs(h));
  }
  float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
  bool has_nan = !hn::AllFalse(df, hn::MaskFromVec(nan));
  for (; c < cols; ++c) {
    has_nan |= std::isnan(w[c]);
    w16[c] = RoundToF16(w[c]);
    amax = std::fmax(amax, std::fabs(w16[c]));
  }
  if (has_nan) {
    QuantizeInt8RowRef(w, cols, w16, q, scb);
    return;
  }
  *scb = amax;
  const float scale = 127.0f * (1.0f / amax);  // two roundings, as bnb
  const auto vs = hn::Set(df, scale);
  const auto lo = hn::Set(df, -128.0f), hi = hn::Set(df, 127.0f);
  for (c = 0; c + N <= cols; c += N) {
    const auto v = hn::Mul(hn::LoadU(df, w16 + c), vs);
    // NaN (a zero row: 0 * inf) -> 0, as on CUDA; Round is RNE like
    // nearbyint in the default rounding mode.
    auto r = hn::IfThenElseZero(hn::Eq(v, v), hn::Round(v));
    r = hn::Min(hn::Max(r, lo), hi);
    hn::StoreU(hn::DemoteTo(di8, hn::ConvertTo(di, r)), di8, q + c);
  }
  for (; c < cols; ++c) {
    const float v = w16[c] * scale;
    const float rounded = std::isnan(v) ? 0.0f : std::nearbyint(v);
    q[c] = static_cast<int8_t>(std::clamp(rounded, -128.0f, 127.0f));
  }
}

// QuantizeDynamic (bnb.cc) lane by lane: the same binary search, the same
// comparisons and midpoints, so the same path-dependent tie rule.
void QuantizeDynamicImpl(const float* code, const float* x, int64_t n,
                         uint8_t* out) {
  const DF df;
  const DI di;
  const hn::Rebind<uint8_t, DI> du8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto xv = hn::LoadU(df, x + i);
    auto pivot = hn::Set(di, 127), lo_p = hn::Zero(di), up_p = hn::Set(di, 255);
    auto lower = hn::Set(df, -1.0f), upper = hn::Set(df, 1.0f);
    auto val = hn::GatherIndex(df, code, pivot);
    for (int step = 64; step >= 1; step /= 2) {
      const auto gt = hn::Gt(xv, val);
      const auto gti = hn::RebindMask(di, gt);
      lo_p = hn::IfThenElse(gti, pivot, lo_p);
      lower = hn::IfThenElse(gt, val, lower);
      up_p = hn::IfThenElse(gti, up_p, pivot);
      upper = hn::IfThenElse(gt, upper, val);
      pivot = hn::IfThenElse(gti, hn::Add(pivot, hn::Set(di, step)),
                             hn::Sub(pivot, hn::Set(di, step)));
      val = hn::GatherIndex(df, code, pivot);
    }
    upper = hn::IfThenElse(hn::RebindMask(df, hn::Eq(up_p, hn::Set(di, 255))),
                           hn::Set(df, code[255]), upper);
    lower = hn::IfThenElse(hn::RebindMask(df, hn::Eq(lo_p, hn::Zero(di))),
                           hn::Set(df, code[0]), lower);
    const auto half = hn::Set(df, 0.5f);
    const auto gt = hn::Gt(xv, val);
    const auto mid_up = hn::Mul(hn::Add(upper, val), half);
    const auto mid_lo = hn::Mul(hn::Add(lower, val), half);
    const auto up_res =
        hn::IfThenElse(hn::RebindMask(di, hn::Gt(xv, mid_up)), up_p, pivot);
    const auto lo_res =
        hn::IfThenElse(hn::RebindMask(di, hn::Lt(xv, mid_lo)), lo_p, pivot);
    const auto r = hn::IfThenElse(hn::RebindMask(di, gt), up_res, lo_res);
    hn::StoreU(hn::DemoteTo(du8, r), du8, out + i);
  }
  for (; i < n; ++i) out[i] = QuantizeDynamic(code, x[i]);
}

void Bf16ToF32Impl(const uint16_t* in, int64_t n, float* out) {
  const DF df;
  const hn::Rebind<uint16_t, DF> du16;
  const hn::RebindToUnsigned<DF> du32;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto u = hn::PromoteTo(du32, hn::LoadU(du16, in + i));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(u)), df, out + i);
  }
  for (; i < n; ++i) out[i] = Bf16ToF32(in[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace bioquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bioquant {
HWY_EXPORT(Quantize4bitBlocksImpl);
HWY_EXPORT(QuantizeInt8RowImpl);
HWY_EXPORT(Bf16ToF32Impl);
HWY_EXPORT(QuantizeDynamicImpl);

void QuantizeDynamicSimd(const float* code256, const float* x, int64_t n,
                         uint8_t* out) {
  HWY_DYNAMIC_DISPATCH(QuantizeDynamicImpl)(code256, x, n, out);
}

void Quantize4bitBlocksSimd(const float* x, int64_t n, int64_t bs,
                            WeightFormat format, int64_t b0, int64_t b1,
                            float* absmax, uint8_t* packed) {
  HWY_DYNAMIC_DISPATCH(Quantize4bitBlocksImpl)
  (x, n, bs, format, b0, b1, absmax, packed);
}

void QuantizeInt8RowSimd(const float* w, int64_t cols, float* w16, int8_t* q,
                         float* scb) {
  HWY_DYNAMIC_DISPATCH(QuantizeInt8RowImpl)(w, cols, w16, q, scb);
}

void Bf16ToF32Simd(const uint16_t* in, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(Bf16ToF32Impl)(in, n, out);
}

}  // namespace bioquant
#endif  // HWY_ONCE
