#include "kernels/bf16_dot.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BQ_HAVE_BF16_KERNEL 1
#endif

namespace bioquant::kernels {

#ifdef BQ_HAVE_BF16_KERNEL

bool HaveAvx512Bf16() {
  static const bool have =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return have;
}

namespace {

#define BQ_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

template <int kM>
BQ_BF16_TARGET void Tile(const uint16_t* w, int64_t ldw, const uint16_t* x,
                         int64_t ldx, int64_t c0, int64_t c1, float* acc_mem,
                         bool first) {
  constexpr int kR = kBf16Rows;
  __m512 acc[kR][kM];
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) {
      acc[r][t] = first ? _mm512_setzero_ps()
                        : _mm512_load_ps(acc_mem + (r * kM + t) * 16);
    }
  }
  for (int64_t c = c0; c < c1; c += 32) {
    __m512bh xv[kM];
    for (int t = 0; t < kM; ++t) {
      xv[t] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + t * ldx + c));
    }
    for (int r = 0; r < kR; ++r) {
      const __m512bh wv =
          reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + r * ldw + c));
      for (int t = 0; t < kM; ++t) {
        acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
      }
    }
  }
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) {
      _mm512_store_ps(acc_mem + (r * kM + t) * 16, acc[r][t]);
    }
  }
}

}  // namespace

void Bf16DotTile(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t ldx,
                 int64_t c0, int64_t c1, int km, float* acc, bool first) {
  static_assert(kBf16Toks == 3);
  switch (km) {
    case 1:
      return Tile<1>(w, ldw, x, ldx, c0, c1, acc, first);
    case 2:
      return Tile<2>(w, ldw, x, ldx, c0, c1, acc, first);
    default:
      return Tile<3>(w, ldw, x, ldx, c0, c1, acc, first);
  }
}

#else  // not x86-64 with GNU intrinsics: never called

bool HaveAvx512Bf16() { return false; }
void Bf16DotTile(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t,
                 int64_t, int, float*, bool) {}

#endif

}  // namespace bioquant::kernels
