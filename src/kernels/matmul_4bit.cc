// SIMD matmul for 4-bit bnb weights (nf4 and fp4 share everything but the
// 16-entry code table, which is data, so one translation unit serves both).
// Compiled once per Highway target (foreach_target), dispatched at run time.
//
// Decoding, per 2N weights starting at an even flat index i (N f32 lanes):
//   N packed bytes -> u32 lanes -> high nibbles (elements i, i+2, ...) and
//   low nibbles (i+1, i+3, ...) -> lookup in the 16-entry code table that
//   was multiplied by the block's f32 absmax once per block (one permute on
//   AVX-512, two on AVX2, a gather and a multiply elsewhere); either way one
//   rounding, exactly the reference DequantizeRow value. The
//   activations are split into even and odd elements to match, so nothing
//   is interleaved; only the summation order differs from the reference.
// Fast path when cols % blocksize == 0 (every real model): rows start on a
// block and byte boundary and no vector straddles two blocks. Otherwise
// (and on the 1-lane HWY_SCALAR target) each row is dequantized by the
// scalar reference and then dotted with SIMD.
#include <algorithm>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_4bit.cc"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/bf16_dot.h"
#include "kernels/matmul_4bit.h"
#include "kernels/scratch.h"
#include "quant/bnb.h"
#include "quant/half.h"
#include "util/error.h"

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

// Per-call state shared by all tiles of one row range.
struct Ctx4 {
  const uint8_t* packed;  // [ceil(rows*cols/2)] two codes per byte
  const float* lut;       // [16] code values
  int64_t cols;
  int64_t blocksize;  // power of two, multiple of 2N on this path
  int block_shift;    // log2(blocksize)
  // Plain absmax [nblocks] f32, or the double-quant statistics.
  const float* absmax;
  const uint8_t* qabsmax;
  const float* nested_code;
  const float* nested_absmax;
  float nested_offset;
  int nested_shift;  // log2(nested_blocksize)
};

// absmax of block b, reconstructed exactly as BlockAbsmax (quant/bnb.h) but
// with shifts instead of divisions: it runs once per block and row.
HWY_INLINE float BlockAmax(const Ctx4& k, int64_t b) {
  if (k.absmax) return k.absmax[b];
  const float scaled =
      k.nested_code[k.qabsmax[b]] * k.nested_absmax[b >> k.nested_shift];
  return scaled + k.nested_offset;
}

#if HWY_TARGET != HWY_SCALAR  // 1-lane vectors: per-row fallback only

// How a 16-entry table is looked up, chosen by capability (lane count),
// never by target name, so a new or other target cannot silently fall to
// the gather: kLutVecs = 16 / lanes table registers (1 with 16+ lanes),
// permutes within each and sign-bit blends between them. Only scalable
// vectors (lane count unknown at compile time) use the gather.
#if HWY_HAVE_SCALABLE
constexpr int kLutVecs = 0;  // gather
#else
constexpr int kLanesF32 = HWY_LANES(float);
constexpr int kLutVecs = kLanesF32 >= 16 ? 1 : 16 / kLanesF32;
static_assert(kLutVecs == 1 || kLutVecs == 2 || kLutVecs == 4,
              "Lut16 handles 1, 2 or 4 table registers");
#endif

// The 16 code values of one block of one row, already multiplied by the
// block's absmax: f32(code * absmax) is exactly the reference DequantizeRow
// value, and the multiply runs once per block instead of once per weight.
struct ScaledLut {
  hn::Vec<DF> v[kLutVecs > 0 ? kLutVecs : 1];  // entries [j*N, (j+1)*N)
  float amax;                                  // for the gather
};

HWY_INLINE ScaledLut ScaleLut(DF df, const float* lut, float amax) {
  ScaledLut t;
  t.amax = amax;
  const auto a = hn::Set(df, amax);
  const size_t N = hn::Lanes(df);
  for (int j = 0; j < (kLutVecs > 0 ? kLutVecs : 1); ++j) {
    t.v[j] = hn::Mul(hn::LoadU(df, lut + j * N), a);
  }
  return t;
}

// Picks `yes` where bit kBit of the u32 code is set: the bit shifted into
// the sign, then one sign-bit blend where the ISA has one (vblendvps comes
// with every x86 target of 256+ bit vectors); elsewhere the sign is spread
// to a full mask first (Highway 1.0.3's SSSE3 IfNegativeThenElse for f32
// assumes blendv and returns wrong lanes).
template <int kBit, class V32>
HWY_INLINE hn::Vec<DF> IfCodeBit(DF df, V32 codes, hn::Vec<DF> yes,
                                 hn::Vec<DF> no) {
  const hn::RebindToSigned<DF> di;
  const auto top = hn::BitCast(di, hn::ShiftLeft<31 - kBit>(codes));
#if HWY_ARCH_X86 && HWY_MAX_BYTES >= 32
  return hn::IfNegativeThenElse(hn::BitCast(df, top), yes, no);
#else
  return hn::IfThenElse(
      hn::MaskFromVec(hn::BitCast(df, hn::BroadcastSignBit(top))), yes, no);
#endif
}

// Scaled value of the code in the low 4 bits of each u32 lane of `codes`
// (higher bits are ignored, so callers need not mask).
template <class V32>
HWY_INLINE hn::Vec<DF> Lut16(DF df, const float* lut, const ScaledLut& t,
                             V32 codes) {
  const hn::RebindToSigned<DF> di;
  const hn::RebindToUnsigned<DF> du;
  if constexpr (kLutVecs == 0) {
    const auto idx = hn::BitCast(di, hn::And(codes, hn::Set(du, 15u)));
    return hn::Mul(hn::GatherIndex(df, lut, idx), hn::Set(df, t.amax));
  } else {
    (void)lut;
    // x86 permutes (vpermps, 8 and 16 lanes) read only the low index bits;
    // elsewhere the index is masked to the lane count first.
#if HWY_ARCH_X86
    constexpr bool kMask = HWY_LANES(float) < 8;
#else
    constexpr bool kMask = true;
#endif
    const auto raw =
        kMask ? hn::And(codes,
                        hn::Set(du, static_cast<uint32_t>(hn::Lanes(df) - 1)))
              : codes;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
    // AVX2 and every better x86 target (vpermps, 8 or 16 lanes): the indices
    // are the lanes themselves, built directly, because IndicesFromVec's
    // debug check (on under the sanitizers) insists on in-range lanes, which
    // vpermps does not need. Elsewhere they are in range (masked above).
    static_assert(!kMask);
    using Idx = decltype(hn::IndicesFromVec(df, hn::Zero(di)));
    const Idx idx{hn::BitCast(di, raw).raw};
#else
    const auto idx = hn::IndicesFromVec(df, hn::BitCast(di, raw));
#endif
    if constexpr (kLutVecs == 1) {
      return hn::TableLookupLanes(t.v[0], idx);
    } else if constexpr (kLutVecs == 2) {
      return IfCodeBit<3>(df, codes, hn::TableLookupLanes(t.v[1], idx),
                          hn::TableLookupLanes(t.v[0], idx));
    } else {
      const auto v01 =
          IfCodeBit<2>(df, codes, hn::TableLookupLanes(t.v[1], idx),
                       hn::TableLookupLanes(t.v[0], idx));
      const auto v23 =
          IfCodeBit<2>(df, codes, hn::TableLookupLanes(t.v[3], idx),
                       hn::TableLookupLanes(t.v[2], idx));
      return IfCodeBit<3>(df, codes, v23, v01);
    }
  }
}

// The 2N weights whose N packed bytes start at `bytes` (an even flat index,
// all in one block), split into the even elements (high nibbles) and the
// odd ones (low nibbles).
HWY_INLINE void DecodePair(DF df, const Ctx4& k, const uint8_t* bytes,
                           const ScaledLut& t, hn::Vec<DF>* even,
                           hn::Vec<DF>* odd) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint8_t, DF> du8;  // N bytes = 2N codes
  const auto b = hn::PromoteTo(du32, hn::LoadU(du8, bytes));
  *even = Lut16(df, k.lut, t, hn::ShiftRight<4>(b));
  *odd = Lut16(df, k.lut, t, b);
}

// One activation row in the order DecodePair returns weights: per 2N
// columns, the N even elements then the N odd ones (cols % 2N == 0).
HWY_INLINE void ArrangeEvenOdd(const float* xt, int64_t cols, float* out) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t c = 0; c < cols; c += 2 * N) {
    const auto lo = hn::LoadU(df, xt + c);
    const auto hi = hn::LoadU(df, xt + c + N);
    hn::Store(hn::ConcatEven(df, hi, lo), df, out + c);
    hn::Store(hn::ConcatOdd(df, hi, lo), df, out + c + N);
  }
}

// Activation rows per batched-decode tile, sized by register count:
// x86 with 512-bit vectors has 32 vector registers, other targets 16.
#if HWY_ARCH_X86 && HWY_MAX_BYTES >= 64
constexpr int kBatchToks = 8;
#else
constexpr int kBatchToks = 4;
#endif
// Weight rows per single-sequence decode tile: with 32 registers, 4 rows
// (one table register each); with 16, 2 (AVX2 holds two table registers
// per row, and 4 rows spilled them: 2 arranged rows decode 1.07x faster
// than the old 4-row tile on AVX2, single thread, 5632 x 2048).
#if HWY_ARCH_X86 && HWY_MAX_BYTES >= 64
constexpr int kDecodeRows = 4;
#else
constexpr int kDecodeRows = 2;
#endif

// Decode tile (1..15 activation rows): kR weight rows x kM activation rows
// whose even/odd halves were arranged once per call (`xa`, as the GEMM
// arranges them), so each weight is decoded once for all kM rows and no
// permutes are spent on the activations. The activations are split into
// even and odd elements to match DecodePair, so no nibble interleaving is
// needed (a dot product does not care about order). Each accumulator sees
// the same FMAs in the same order whatever kR and kM are, and the same as
// the GEMM's, so y does not depend on how many activation rows are computed
// together (batch-1 == batch-N). The next tile's bytes are prefetched while
// this one streams: rows are short (1 KiB at 2048 columns) and the hardware
// prefetcher does not cross the 4 KiB page boundary at each new tile.
template <int kR, int kM>
HWY_INLINE void TileArranged(const Ctx4& k, int64_t row, const float* xa,
                             int64_t t0, int64_t wrows, float* y) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = k.cols;
  hn::Vec<DF> acc[kR][kM];
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kM; ++t) acc[r][t] = hn::Zero(df);
  // Rows start on a byte (cols is even on this path): the byte offsets are
  // computed once per row, not per load.
  const uint8_t* rowbytes[kR];
  for (int r = 0; r < kR; ++r) rowbytes[r] = k.packed + ((row + r) * cols >> 1);
  const uint8_t* next = k.packed + ((row + kR) * cols >> 1);
  int64_t pf = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += k.blocksize) {
    ScaledLut lut[kR];
    for (int r = 0; r < kR; ++r) {
      lut[r] = ScaleLut(df, k.lut,
                        BlockAmax(k, ((row + r) * cols + c0) >> k.block_shift));
    }
    for (int64_t c = c0; c < c0 + k.blocksize; c += 2 * N) {
      hwy::Prefetch(next + pf);
      pf += kR * N;
      hn::Vec<DF> we[kR], wo[kR];
      for (int r = 0; r < kR; ++r) {
        DecodePair(df, k, rowbytes[r] + (c >> 1), lut[r], &we[r], &wo[r]);
      }
      for (int t = 0; t < kM; ++t) {
        const float* xt = xa + (t0 + t) * cols + c;
        const auto xe = hn::Load(df, xt);
        const auto xo = hn::Load(df, xt + N);
        for (int r = 0; r < kR; ++r) {
          acc[r][t] = hn::MulAdd(we[r], xe, acc[r][t]);
          acc[r][t] = hn::MulAdd(wo[r], xo, acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) {
      y[(t0 + t) * wrows + row + r] =
          hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
    }
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

#include "kernels/gemm-inl.h"

inline int Log2(int64_t v) {
  int s = 0;
  while ((int64_t{1} << s) < v) ++s;
  return s;
}

// Dot of one f32 row with every activation row (the slow path).
void DotRows(const float* wrow, int64_t cols, const float* x, int64_t m,
             int64_t row, int64_t wrows, float* y) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * cols;
    auto acc = hn::Zero(df);
    int64_t c = 0;
    for (; c + N <= cols; c += N) {
      acc = hn::MulAdd(hn::LoadU(df, wrow + c), hn::LoadU(df, xt + c), acc);
    }
    float sum = hn::GetLane(hn::SumOfLanes(df, acc));
    for (; c < cols; ++c) sum += wrow[c] * xt[c];
    y[t * wrows + row] = sum;
  }
}

// Table registers the decode uses on this target (0 = the gather path).
int Lut16VecsImpl() {
#if HWY_TARGET == HWY_SCALAR
  return 0;  // 1 lane: per-row dequantize, no table lookup at all
#else
  return kLutVecs;
#endif
}

void MatMulRows4bitImpl(const WeightMatrix& w, const float* x, int64_t m,
                        float* y, int64_t r0, int64_t r1, bool bf16) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t cols = w.cols, bs = w.blocksize;
  if (r0 >= r1 || m <= 0) return;
  const bool pow2 =
      (bs & (bs - 1)) == 0 &&
      (!w.qabsmax || (w.nested_blocksize > 0 &&
                      (w.nested_blocksize & (w.nested_blocksize - 1)) == 0));
  if (cols % bs != 0 || bs % (2 * N) != 0 || N < 2 || !pow2) {
    std::vector<float> row(cols), xr;
    const bool round = bf16 && m >= kBf16MinTokens;  // as the GEMM path
    if (round) {
      xr.assign(x, x + m * cols);
      for (float& v : xr) v = RoundToBf16(v);
      x = xr.data();
    }
    for (int64_t r = r0; r < r1; ++r) {
      DequantizeRow(w, r, row.data());
      if (round) {
        for (float& v : row) v = RoundToBf16(v);
      }
      DotRows(row.data(), cols, x, m, r, w.rows, y);
    }
    return;
  }
#if HWY_TARGET != HWY_SCALAR
  Ctx4 k;
  k.packed = static_cast<const uint8_t*>(w.data);
  k.lut = w.code;
  k.cols = cols;
  k.blocksize = bs;
  k.block_shift = Log2(bs);
  k.absmax = w.qabsmax ? nullptr : w.absmax;
  k.qabsmax = w.qabsmax;
  k.nested_code = w.nested_code;
  k.nested_absmax = w.nested_absmax;
  k.nested_offset = w.nested_offset;
  k.nested_shift = w.qabsmax ? Log2(w.nested_blocksize) : 0;
  if (UseGemm(m, bf16)) {
    // Many activation rows: decode panels once (even elements then odd ones
    // per 2N, as DecodePair returns them), register-blocked f32 GEMM against
    // activations arranged the same way: the same FMAs as TileArranged.
    GemmPanels(
        [&](int64_t row, float* out) {
          const uint8_t* rowbytes = k.packed + (row * cols >> 1);
          for (int64_t c0 = 0; c0 < cols; c0 += bs) {
            const ScaledLut lut = ScaleLut(
                df, k.lut, BlockAmax(k, (row * cols + c0) >> k.block_shift));
            for (int64_t c = c0; c < c0 + bs; c += 2 * N) {
              hn::Vec<DF> we, wo;
              DecodePair(df, k, rowbytes + (c >> 1), lut, &we, &wo);
              hn::Store(we, df, out + c);
              hn::Store(wo, df, out + c + N);
            }
          }
        },
        [&](const float* xt, float* out) { ArrangeEvenOdd(xt, cols, out); },
        [](int64_t) { return 1.0f; }, false, bf16, w.data, cols / 2, cols,
        w.rows, x, m, y, r0, r1);
    return;
  }
  // Decode and batched decode: arrange the activations once per call, then
  // each weight is decoded once for all activation rows of a tile.
  thread_local Scratch<float> xa_scratch;
  float* const xa = xa_scratch.Get(m * cols);
  for (int64_t t = 0; t < m; ++t)
    ArrangeEvenOdd(x + t * cols, cols, xa + t * cols);
  if (m == 1) {
    // One sequence: kDecodeRows independent accumulator chains hide the FMA
    // latency (each chain takes two dependent FMAs per 2N weights).
    int64_t r = r0;
    for (; r + kDecodeRows <= r1; r += kDecodeRows) {
      TileArranged<kDecodeRows, 1>(k, r, xa, 0, w.rows, y);
    }
    for (; r < r1; ++r) TileArranged<1, 1>(k, r, xa, 0, w.rows, y);
    return;
  }
  for (int64_t r = r0; r < r1;) {
    const bool two = r + 2 <= r1;
    int64_t t = 0;
    // 2 x 8 accumulators need 32 vector registers (AVX-512); with 16
    // (AVX2) they spill, and 2 x 4 tiles are 1.45x faster at m = 8.
    for (; kBatchToks == 8 && t + 8 <= m; t += 8) {
      if (two) {
        TileArranged<2, 8>(k, r, xa, t, w.rows, y);
      } else {
        TileArranged<1, 8>(k, r, xa, t, w.rows, y);
      }
    }
    for (; t + 4 <= m; t += 4) {
      if (two) {
        TileArranged<2, 4>(k, r, xa, t, w.rows, y);
      } else {
        TileArranged<1, 4>(k, r, xa, t, w.rows, y);
      }
    }
    for (; t < m; ++t) {
      if (two) {
        TileArranged<2, 1>(k, r, xa, t, w.rows, y);
      } else {
        TileArranged<1, 1>(k, r, xa, t, w.rows, y);
      }
    }
    r += two ? 2 : 1;
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace kernels
}  // namespace bioquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/on_target.h"

namespace bioquant {
namespace kernels {

HWY_EXPORT(MatMulRows4bitImpl);
HWY_EXPORT(Lut16VecsImpl);

int Lut16VecsOnTarget(int target_index) {
  int v = -1;
  RunOnTarget(target_index, [&] { v = HWY_DYNAMIC_DISPATCH(Lut16VecsImpl)(); });
  return v;
}

namespace {
void Check4bit(const WeightMatrix& w) {
  if (w.format != WeightFormat::kNF4 && w.format != WeightFormat::kFP4) {
    Fail("matmul: 4-bit kernel called with weight format {}",
         FormatName(w.format));
  }
  if (w.code == nullptr || (w.absmax == nullptr && w.qabsmax == nullptr)) {
    Fail("matmul: 4-bit weight without code table or absmax");
  }
}
}  // namespace

void MatMulRows4bit(const WeightMatrix& w, const float* x, int64_t m, float* y,
                    int64_t r0, int64_t r1, bool bf16) {
  Check4bit(w);
  HWY_DYNAMIC_DISPATCH(MatMulRows4bitImpl)(w, x, m, y, r0, r1, bf16);
}

void MatMulRows4bitOnTarget(int target_index, const WeightMatrix& w,
                            const float* x, int64_t m, float* y, int64_t r0,
                            int64_t r1, bool bf16) {
  Check4bit(w);
  RunOnTarget(target_index, [&] {
    HWY_DYNAMIC_DISPATCH(MatMulRows4bitImpl)(w, x, m, y, r0, r1, bf16);
  });
}

}  // namespace kernels
}  // namespace bioquant
#endif  // HWY_ONCE
