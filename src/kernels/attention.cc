// Streaming-softmax attention for one query position and one GQA group (see
// attention.h). Compiled once per Highway target (foreach_target), dispatched
// at run time.
//
// Per key tile of kTile keys, for up to kMaxQ query rows at once (the heads
// of a GQA group, or of several consecutive prompt tokens):
//   1. scores s[i][j] = scale * q_i · k_j     (K row loaded once per row
//                                              block, vectorised over dims)
//   2. per row: m' = max(m, max_j s), rescale out_i and l_i by exp(m - m'),
//      p[i][j] = exp(s[i][j] - m'), l_i += sum_j p   (vectorised over keys)
//   3. out_i += sum_j p[i][j] v_j             (V row loaded once per row
//                                              block, vectorised over dims)
// and finally out_i /= l_i. The output rows are the accumulator, so scratch
// is the score tile only: kMaxQ x kTile floats on the stack.
//
// Reproducibility: register blocking (rows x keys, rows x dim chunks) only
// decides which register holds a value, never the order of operations on it.
// A dot product is always one vector accumulator over full vectors in dim
// order, the fixed Sum4 tree, then the remaining dims one by one; an output
// element is always one FMA chain over keys in order. Every multiply-add in
// blocked code is an explicit hn::MulAdd, so compiler contraction cannot
// differ between instantiations.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
// After highway.h: re-included once per target by foreach_target.
#include <hwy/contrib/math/math-inl.h>

#include "kernels/attention.h"

// Compiled once, outside the per-target namespace (this file is re-included
// per target by foreach_target).
#ifndef BIOQUANT_KERNELS_ATTENTION_ROWS_
#define BIOQUANT_KERNELS_ATTENTION_ROWS_
namespace bioquant::kernels {
// Query rows that attend to one KV head, each to its own key range [0, len):
// the heads of a GQA group (all the same len), or the heads of several
// consecutive prompt tokens (len growing by one per token), so that each K/V
// tile is loaded once for all of them.
struct AttendRows {
  static constexpr int64_t kMax = 64;  // rows per pass
  const float* k;                      // key j at k + j * kv_stride
  const float* v;
  int64_t kv_stride;
  int64_t head_dim;
  float scale;
  int64_t n;  // rows used, 1..kMax
  const float* q[kMax];
  float* out[kMax];
  int64_t len[kMax];  // >= 1
};
}  // namespace bioquant::kernels
#endif  // BIOQUANT_KERNELS_ATTENTION_ROWS_

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using D1 = hn::CappedTag<float, 1>;  // remainder dims, one at a time

// Keys per tile: 64 keys x 128 dims x 4 B = 32 KiB of K (and of V), which
// stays in L1/L2 while every head block of the group walks over it.
constexpr int64_t kTile = 64;
// Query rows per pass (score tile = 64 x 64 floats = 16 KiB on the stack).
// Prefill fits 64 / group tokens in a pass, which cuts K/V traffic from L3
// that many times; groups above 64 heads take several passes.
constexpr int64_t kMaxQ = AttendRows::kMax;

// Vector accumulators a register block may hold: AVX-512 has 32 registers,
// the other x86 targets 16. Blocks are sized so that loads (K/V rows, q
// rows, broadcast weights) stay well under the FMAs they feed. Chosen by
// capability (512-bit x86 vectors come with 32 registers), not target name.
#if HWY_ARCH_X86 && HWY_MAX_BYTES >= 64
constexpr int kAccRegs = 16;
#else
constexpr int kAccRegs = 8;
#endif

// Horizontal sums of 4 vectors, written to out[0..4). The addition tree of
// each input is the same whichever slot it occupies (and whatever the other
// slots hold), so a dot product's rounding never depends on its neighbours.
// One shuffle tree for 4 sums costs about as much as one SumOfLanes.
#if HWY_TARGET == HWY_SCALAR || HWY_HAVE_SCALABLE
HWY_INLINE void Sum4(DF df, hn::Vec<DF> v0, hn::Vec<DF> v1, hn::Vec<DF> v2,
                     hn::Vec<DF> v3, float* out) {
  out[0] = hn::GetLane(hn::SumOfLanes(df, v0));
  out[1] = hn::GetLane(hn::SumOfLanes(df, v1));
  out[2] = hn::GetLane(hn::SumOfLanes(df, v2));
  out[3] = hn::GetLane(hn::SumOfLanes(df, v3));
}
#else
// Adds the upper half onto the lower half down to one 128-bit block.
template <class D>
HWY_INLINE hn::Vec<hn::Full128<float> > FoldToBlock(D d, hn::Vec<D> v) {
  if constexpr (hn::MaxLanes(D()) > 4) {
    const hn::Half<D> dh;
    return FoldToBlock(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  } else {
    return v;
  }
}

HWY_INLINE void Sum4(DF df, hn::Vec<DF> v0, hn::Vec<DF> v1, hn::Vec<DF> v2,
                     hn::Vec<DF> v3, float* out) {
  // Per 128-bit block: [v0_0 + v0_2, v1_0 + v1_2, v0_1 + v0_3, v1_1 + v1_3].
  const auto a01 =
      hn::Add(hn::InterleaveLower(df, v0, v1), hn::InterleaveUpper(df, v0, v1));
  const auto a23 =
      hn::Add(hn::InterleaveLower(df, v2, v3), hn::InterleaveUpper(df, v2, v3));
  // Pairs of 64 bits: lane t of each block = the block sum of v_t.
  const hn::Repartition<uint64_t, DF> d64;
  const auto w01 = hn::BitCast(d64, a01), w23 = hn::BitCast(d64, a23);
  const auto b = hn::Add(hn::BitCast(df, hn::InterleaveLower(d64, w01, w23)),
                         hn::BitCast(df, hn::InterleaveUpper(d64, w01, w23)));
  hn::StoreU(FoldToBlock(df, b), hn::Full128<float>(), out);
}
#endif

// Scores of kQ heads against kK consecutive keys: s[i * kTile + kk]. One
// vector accumulator per (head, key) over the full vectors of the head dims,
// Sum4, then the remaining dims one by one, then the scale.
template <int kQ, int kK>
HWY_INLINE void ScoreBlock(const float* const* qrows, const float* k,
                           int64_t kv_stride, int64_t dim, float scale,
                           float* s) {
  const DF df;
  const D1 d1;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kK4 = (kK + 3) / 4 * 4;  // slots beyond kK stay zero
  hn::Vec<DF> acc[kQ][kK4];
  for (int i = 0; i < kQ; ++i)
    for (int kk = 0; kk < kK4; ++kk) acc[i][kk] = hn::Zero(df);
  int64_t c = 0;
  for (; c + N <= dim; c += N) {
    hn::Vec<DF> kv[kK];
    for (int kk = 0; kk < kK; ++kk)
      kv[kk] = hn::LoadU(df, k + kk * kv_stride + c);
    for (int i = 0; i < kQ; ++i) {
      const auto qv = hn::LoadU(df, qrows[i] + c);
      for (int kk = 0; kk < kK; ++kk)
        acc[i][kk] = hn::MulAdd(qv, kv[kk], acc[i][kk]);
    }
  }
  for (int i = 0; i < kQ; ++i) {
    for (int k4 = 0; k4 < kK; k4 += 4) {
      float sums[4];
      Sum4(df, acc[i][k4], acc[i][k4 + 1], acc[i][k4 + 2], acc[i][k4 + 3],
           sums);
      for (int kk = k4; kk < kK && kk < k4 + 4; ++kk) {
        auto x = hn::Set(d1, sums[kk - k4]);
        for (int64_t cc = c; cc < dim; ++cc) {
          x = hn::MulAdd(hn::LoadU(d1, qrows[i] + cc),
                         hn::LoadU(d1, k + kk * kv_stride + cc), x);
        }
        s[i * kTile + kk] = hn::GetLane(x) * scale;
      }
    }
  }
}

// Scores of kQ heads against the keys [0, len) of a tile, kQ x kK
// accumulators at a time.
template <int kQ>
HWY_INLINE void ScoreHeads(const float* const* qrows, const float* k,
                           int64_t kv_stride, int64_t len, int64_t dim,
                           float scale, float* s) {
  constexpr int kK = kQ == 1 ? 8 : 4;
  int64_t j = 0;
  for (; j + kK <= len; j += kK) {
    ScoreBlock<kQ, kK>(qrows, k + j * kv_stride, kv_stride, dim, scale, s + j);
  }
  for (; j < len; ++j) {
    ScoreBlock<kQ, 1>(qrows, k + j * kv_stride, kv_stride, dim, scale, s + j);
  }
}

void ScoreTile(const float* const* qrows, int64_t nq, const float* k,
               int64_t kv_stride, int64_t len, int64_t dim, float scale,
               float* s) {
  constexpr int kQ = kAccRegs / 4;  // heads per block, 4 keys each
  int64_t i = 0;
  for (; i + kQ <= nq; i += kQ) {
    ScoreHeads<kQ>(qrows + i, k, kv_stride, len, dim, scale, s + i * kTile);
  }
  float* si = s + i * kTile;
  switch (nq - i) {
    case 3:
      return ScoreHeads<3>(qrows + i, k, kv_stride, len, dim, scale, si);
    case 2:
      return ScoreHeads<2>(qrows + i, k, kv_stride, len, dim, scale, si);
    case 1:
      return ScoreHeads<1>(qrows + i, k, kv_stride, len, dim, scale, si);
    default:
      return;
  }
}

// out rows [c, c + kC * Lanes(d)) += sum_j p[i * kTile + j] * v_j for kQ
// heads. D is DF for full vectors or D1 for the remainder dims.
template <int kQ, int kC, class D>
HWY_INLINE void VBlock(D d, const float* p, const float* v, int64_t kv_stride,
                       int64_t len, float* const* orows, int64_t c) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<D> acc[kQ][kC];
  for (int i = 0; i < kQ; ++i)
    for (int cc = 0; cc < kC; ++cc)
      acc[i][cc] = hn::LoadU(d, orows[i] + c + cc * N);
  for (int64_t j = 0; j < len; ++j) {
    const float* vj = v + j * kv_stride + c;
    hn::Vec<D> vv[kC];
    for (int cc = 0; cc < kC; ++cc) vv[cc] = hn::LoadU(d, vj + cc * N);
    for (int i = 0; i < kQ; ++i) {
      const auto w = hn::Set(d, p[i * kTile + j]);
      for (int cc = 0; cc < kC; ++cc)
        acc[i][cc] = hn::MulAdd(w, vv[cc], acc[i][cc]);
    }
  }
  for (int i = 0; i < kQ; ++i)
    for (int cc = 0; cc < kC; ++cc)
      hn::StoreU(acc[i][cc], d, orows[i] + c + cc * N);
}

template <int kQ>
HWY_INLINE void VHeads(const float* p, const float* v, int64_t kv_stride,
                       int64_t len, int64_t dim, float* const* orows) {
  // Dim chunks per step: kQ * kC <= kAccRegs accumulators, each V load
  // feeding kQ FMAs and each broadcast weight kC.
  constexpr int kC = kQ * 8 <= kAccRegs   ? 8
                     : kQ * 4 <= kAccRegs ? 4
                     : kQ * 2 <= kAccRegs ? 2
                                          : 1;
  const DF df;
  const D1 d1;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t c = 0;
  for (; c + kC * N <= dim; c += kC * N)
    VBlock<kQ, kC>(df, p, v, kv_stride, len, orows, c);
  for (; c + N <= dim; c += N)
    VBlock<kQ, 1>(df, p, v, kv_stride, len, orows, c);
  for (; c < dim; ++c) VBlock<kQ, 1>(d1, p, v, kv_stride, len, orows, c);
}

void VHeadsN(int64_t nb, const float* p, const float* v, int64_t kv_stride,
             int64_t len, int64_t dim, float* const* orows) {
  switch (nb) {
    case 8:
      return VHeads<8>(p, v, kv_stride, len, dim, orows);
    case 7:
      return VHeads<7>(p, v, kv_stride, len, dim, orows);
    case 6:
      return VHeads<6>(p, v, kv_stride, len, dim, orows);
    case 5:
      return VHeads<5>(p, v, kv_stride, len, dim, orows);
    case 4:
      return VHeads<4>(p, v, kv_stride, len, dim, orows);
    case 3:
      return VHeads<3>(p, v, kv_stride, len, dim, orows);
    case 2:
      return VHeads<2>(p, v, kv_stride, len, dim, orows);
    case 1:
      return VHeads<1>(p, v, kv_stride, len, dim, orows);
    default:
      return;
  }
}

// out_i += sum_{j < lens[i]} p[i * kTile + j] v_j. Rows go in blocks of 8
// over the keys every row of the block attends; a row's further keys (a
// later prompt token) follow on their own, continuing the same in-order FMA
// chain through the output row, so the result is that of one block.
void AccumulateTile(const float* p, int64_t nq, const int64_t* lens,
                    const float* v, int64_t kv_stride, int64_t dim,
                    float* const* orows) {
  for (int64_t i = 0; i < nq; i += 8) {
    const int64_t nb = std::min<int64_t>(8, nq - i);
    int64_t common = lens[i];
    for (int64_t b = 1; b < nb; ++b) common = std::min(common, lens[i + b]);
    if (common > 0) {
      VHeadsN(nb, p + i * kTile, v, kv_stride, common, dim, orows + i);
    }
    for (int64_t b = 0; b < nb; ++b) {
      if (lens[i + b] > common) {
        VHeads<1>(p + (i + b) * kTile + common, v + common * kv_stride,
                  kv_stride, lens[i + b] - common, dim, orows + i + b);
      }
    }
  }
}

// row[0, dim) *= f  (f = rescale factor, or 1/l at the end via Div).
template <bool kDivide>
void ScaleRow(float* row, int64_t dim, float f) {
  const DF df;
  const D1 d1;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto vf = hn::Set(df, f);
  const auto vf1 = hn::Set(d1, f);
  int64_t c = 0;
  for (; c + N <= dim; c += N) {
    const auto x = hn::LoadU(df, row + c);
    hn::StoreU(kDivide ? hn::Div(x, vf) : hn::Mul(x, vf), df, row + c);
  }
  for (; c < dim; ++c) {
    const auto x = hn::LoadU(d1, row + c);
    hn::StoreU(kDivide ? hn::Div(x, vf1) : hn::Mul(x, vf1), d1, row + c);
  }
}

// One pass over the keys for up to kMaxQ query rows.
void AttendRowsImpl(const AttendRows& r) {
  const DF df;
  const D1 d1;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  HWY_DASSERT(kTile % N == 0);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t dim = r.head_dim, nq = r.n;

  HWY_ALIGN float s[kMaxQ * kTile];  // scores, then probabilities, of a tile
  float m[kMaxQ];                    // running max score per row
  float l[kMaxQ];                    // running sum of exp(s - m) per row
  int64_t lens[kMaxQ];               // keys of the current tile per row
  int64_t max_len = 0;
  for (int64_t i = 0; i < nq; ++i) {
    std::memset(r.out[i], 0, dim * sizeof(float));
    m[i] = kNegInf;
    l[i] = 0.f;
    max_len = std::max(max_len, r.len[i]);
  }

  for (int64_t j0 = 0; j0 < max_len; j0 += kTile) {
    // Scores for the tile's keys that any row attends; a row ignores those
    // past its own len (they exist in the cache: another row attends them).
    ScoreTile(r.q, nq, r.k + j0 * r.kv_stride, r.kv_stride,
              std::min(kTile, max_len - j0), dim, r.scale, s);

    for (int64_t i = 0; i < nq; ++i) {
      const int64_t len = std::clamp<int64_t>(r.len[i] - j0, 0, kTile);
      lens[i] = len;
      if (len == 0) continue;
      float* si = s + i * kTile;
      // Pad to whole vectors with -inf: exp gives exactly 0 there.
      const int64_t padded = (len + N - 1) / N * N;
      for (int64_t j = len; j < padded; ++j) si[j] = kNegInf;
      auto vmax = hn::Set(df, kNegInf);
      for (int64_t j = 0; j < padded; j += N)
        vmax = hn::Max(vmax, hn::Load(df, si + j));
      const float m_new = std::max(m[i], hn::GetLane(hn::MaxOfLanes(df, vmax)));
      if (m_new > m[i]) {
        if (m[i] != kNegInf) {  // earlier tiles were summed against old max
          const float corr =
              hn::GetLane(hn::Exp(d1, hn::Set(d1, m[i] - m_new)));
          l[i] *= corr;
          ScaleRow<false>(r.out[i], dim, corr);
        }
        m[i] = m_new;
      }
      const auto vm = hn::Set(df, m_new);
      auto vsum = hn::Zero(df);
      for (int64_t j = 0; j < padded; j += N) {
        const auto p = hn::Exp(df, hn::Sub(hn::Load(df, si + j), vm));
        hn::Store(p, df, si + j);
        vsum = hn::Add(vsum, p);
      }
      l[i] += hn::GetLane(hn::SumOfLanes(df, vsum));
    }

    AccumulateTile(s, nq, lens, r.v + j0 * r.kv_stride, r.kv_stride, dim,
                   r.out);
  }
  // l >= 1: the max key contributes exp(0) = 1.
  for (int64_t i = 0; i < nq; ++i) ScaleRow<true>(r.out[i], dim, l[i]);
}

void AttendImpl(const AttendArgs& a) {
  AttendRows r;
  r.k = a.k;
  r.v = a.v;
  r.kv_stride = a.kv_stride;
  r.head_dim = a.head_dim;
  r.scale = a.scale;
  for (int64_t q0 = 0; q0 < a.num_q; q0 += kMaxQ) {
    r.n = std::min(kMaxQ, a.num_q - q0);
    for (int64_t i = 0; i < r.n; ++i) {
      r.q[i] = a.q + (q0 + i) * a.q_stride;
      r.out[i] = a.out + (q0 + i) * a.out_stride;
      r.len[i] = a.len;
    }
    AttendRowsImpl(r);
  }
}

void ExpImpl(const float* x, float* y, int64_t n) {
  const DF df;
  const D1 d1;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::Exp(df, hn::LoadU(df, x + i)), df, y + i);
  for (; i < n; ++i) hn::StoreU(hn::Exp(d1, hn::LoadU(d1, x + i)), d1, y + i);
}

}  // namespace HWY_NAMESPACE
}  // namespace kernels
}  // namespace bioquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/on_target.h"
#include "util/error.h"

namespace bioquant {
namespace kernels {

HWY_EXPORT(AttendImpl);
HWY_EXPORT(AttendRowsImpl);
HWY_EXPORT(ExpImpl);

namespace {
void CheckArgs(const AttendArgs& a) {
  if (a.len < 1 || a.head_dim < 1 || a.num_q < 1) {
    Fail("Attend: need len >= 1, head_dim >= 1, num_q >= 1 (got {}, {}, {})",
         a.len, a.head_dim, a.num_q);
  }
}
}  // namespace

int NumAttendTargets() {
  return static_cast<int>(hwy::SupportedAndGeneratedTargets().size());
}

const char* AttendTargetName(int target_index) {
  return hwy::TargetName(hwy::SupportedAndGeneratedTargets()[target_index]);
}

void AttendOnTarget(int target_index, const AttendArgs& a) {
  CheckArgs(a);
  RunOnTarget(target_index, [&] { HWY_DYNAMIC_DISPATCH(AttendImpl)(a); });
}

void AttendExpOnTarget(int target_index, const float* x, float* y, int64_t n) {
  RunOnTarget(target_index, [&] { HWY_DYNAMIC_DISPATCH(ExpImpl)(x, y, n); });
}

}  // namespace kernels

void Attend(const AttendArgs& a) {
  kernels::CheckArgs(a);
  HWY_DYNAMIC_DISPATCH(kernels::AttendImpl)(a);
}

void AttendRef(const AttendArgs& a) {
  kernels::CheckArgs(a);
  std::vector<double> p(a.len);
  for (int64_t i = 0; i < a.num_q; ++i) {
    const float* q = a.q + i * a.q_stride;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < a.len; ++j) {
      const float* k = a.k + j * a.kv_stride;
      double dot = 0;
      for (int64_t c = 0; c < a.head_dim; ++c) dot += double(q[c]) * k[c];
      p[j] = dot * a.scale;
      mx = std::max(mx, p[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < a.len; ++j) sum += p[j] = std::exp(p[j] - mx);
    float* out = a.out + i * a.out_stride;
    for (int64_t c = 0; c < a.head_dim; ++c) {
      double acc = 0;
      for (int64_t j = 0; j < a.len; ++j)
        acc += p[j] * a.v[j * a.kv_stride + c];
      out[c] = static_cast<float>(acc / sum);
    }
  }
}

void AttendCausal(const CausalArgs& c, int64_t t_begin, int64_t t_end) {
  if (c.head_dim < 1 || c.num_q < 1 || c.pos0 < 0 || c.window < 0) {
    Fail(
        "AttendCausal: need head_dim >= 1, num_q >= 1, pos0 >= 0, "
        "window >= 0 (got {}, {}, {}, {})",
        c.head_dim, c.num_q, c.pos0, c.window);
  }
  auto first_key = [&c](int64_t t) {
    const int64_t p = c.pos0 + t;
    return c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
  };
  // Tokens whose keys start at 0 share K/V tiles: as many tokens per pass as
  // their heads fit in one. Tokens of a slid window have their tiles aligned
  // to their own window start, so they go one by one.
  const int64_t per_pass = kernels::AttendRows::kMax / c.num_q;
  kernels::AttendRows r;
  r.k = c.k;
  r.v = c.v;
  r.kv_stride = c.kv_stride;
  r.head_dim = c.head_dim;
  r.scale = c.scale;
  int64_t t = t_begin;
  while (t < t_end) {
    if (per_pass >= 1 && first_key(t) == 0) {
      r.n = 0;
      for (int64_t tokens = 0;
           tokens < per_pass && t < t_end && first_key(t) == 0; ++tokens, ++t) {
        for (int64_t h = 0; h < c.num_q; ++h, ++r.n) {
          r.q[r.n] = c.q + t * c.q_token_stride + h * c.q_stride;
          r.out[r.n] = c.out + t * c.out_token_stride + h * c.out_stride;
          r.len[r.n] = c.pos0 + t + 1;
        }
      }
      HWY_DYNAMIC_DISPATCH(kernels::AttendRowsImpl)(r);
      continue;
    }
    const int64_t first = first_key(t);
    AttendArgs a;
    a.q = c.q + t * c.q_token_stride;
    a.q_stride = c.q_stride;
    a.num_q = c.num_q;
    a.k = c.k + first * c.kv_stride;
    a.v = c.v + first * c.kv_stride;
    a.kv_stride = c.kv_stride;
    a.len = c.pos0 + t + 1 - first;
    a.head_dim = c.head_dim;
    a.scale = c.scale;
    a.out = c.out + t * c.out_token_stride;
    a.out_stride = c.out_stride;
    HWY_DYNAMIC_DISPATCH(kernels::AttendImpl)(a);
    ++t;
  }
}

}  // namespace bioquant
#endif  // HWY_ONCE
