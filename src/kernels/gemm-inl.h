// Prefill path shared by every weight format: a panel of kGemmRows weight
// rows is decoded once into f32 (exact reference values, in the order the
// format's decode-in-registers kernel consumes them), then a register-blocked
// f32 micro-kernel multiplies it with many activation rows. Decoding is paid
// once per panel and token chunk instead of once per token, so quantized
// prefill runs at the speed of unquantized prefill.
//
// Same arithmetic as the per-format small-m tiles: every output is one f32
// accumulator vector fed the same FMAs in the same order (k ascending in
// N-lane steps), reduced with SumOfLanes, then times the format's row scale.
// Keeping partial accumulators in memory between k-chunks does not change a
// bit. So y is identical whichever path computes it, and whatever m is
// (batch-1 == batch-N; chunked prefill == whole prefill).
//
// Included inside HWY_NAMESPACE by each format's translation unit (after
// `namespace hn` is declared); no include guard on purpose
// (foreach_target re-includes it once per target).

using GemmDF = hn::ScalableTag<float>;

// Register tile: kGemmRows weight rows x kGemmToks activation rows, sized
// by capability: x86 with 512-bit vectors (AVX-512 and later) has 32 vector
// registers, every other SIMD target here 16.
#if HWY_ARCH_X86 && HWY_MAX_BYTES >= 64
constexpr int kGemmRows = 8;  // 24 accumulators of 32 zmm
constexpr int kGemmToks = 3;
#else
constexpr int kGemmRows = 4;  // 8 accumulators (16 ymm/xmm registers)
constexpr int kGemmToks = 2;
#endif
// Small-m tiles (decode, batched decode of up to 15 sequences): activation
// rows per tile of 4 weight rows. 4 x 4 accumulators plus 4 activation
// vectors fit 32 registers, not 16 (AVX2 spills them).
#if HWY_ARCH_X86 && HWY_MAX_BYTES >= 64
constexpr int kSmallTileToks = 4;
#else
constexpr int kSmallTileToks = 2;
#endif
// Activation rows per chunk: the chunk (about kGemmChunkBytes) stays in L2
// while all panels pass, and each panel is decoded once per chunk. Columns
// per k-chunk: a panel's k-chunk stays in L1 across token tiles.
constexpr int64_t kGemmChunkBytes = 1 << 20;
constexpr int64_t kGemmMaxTokChunk = 256;
constexpr int64_t kGemmColChunk = 1024;
// Fewer activation rows than this use the decode-in-registers tiles (batched
// decode of 8 sequences is faster there: no panel round trip through L1).
constexpr int64_t kGemmMinTokens = 16;
// --compute bf16 applies from this many activation rows (prefill); fewer
// (decode, batched decode of up to 8 sequences) stay f32, so batch-1 ==
// batch-N holds in both modes.
constexpr int64_t kBf16MinTokens = kGemmMinTokens;

HWY_INLINE bool UseGemm(int64_t m, bool bf16) {
  return bf16 ? m >= kBf16MinTokens : m >= kGemmMinTokens;
}

// acc[r][t] += W[r, c0:c1) * X[t, c0:c1), the accumulators loaded from and
// stored to `accbuf` ([kR][kM][N]) unless `first` / `last`; on `last` the
// finished sums (times scale[r]) go to y[t * ldy + r].
template <int kR, int kM>
HWY_INLINE void GemmTile(const float* HWY_RESTRICT w, int64_t ldw,
                         const float* HWY_RESTRICT x, int64_t ldx, int64_t c0,
                         int64_t c1, float* HWY_RESTRICT accbuf, bool first,
                         bool last, const float* scale, float* y, int64_t ldy,
                         int rows_valid) {
  const GemmDF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<GemmDF> acc[kR][kM];
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t) {
      acc[r][t] =
          first ? hn::Zero(df) : hn::Load(df, accbuf + (r * kM + t) * N);
    }
  }
  for (int64_t c = c0; c < c1; c += N) {
    hn::Vec<GemmDF> xv[kM];
    for (int t = 0; t < kM; ++t) {
      hwy::Prefetch(x + t * ldx + c + 4 * N);  // activations stream from L2
      xv[t] = hn::LoadU(df, x + t * ldx + c);
    }
    for (int r = 0; r < kR; ++r) {
      auto wv = hn::Load(df, w + r * ldw + c);
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
      // Keep wv in a register: g++ otherwise folds the load into each of
      // the kM FMAs, and kR * kM loads per step saturate the load ports.
      asm("" : "+v"(wv.raw));
#endif
      for (int t = 0; t < kM; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
    }
  }
  if (last) {
    for (int r = 0; r < rows_valid; ++r) {
      for (int t = 0; t < kM; ++t) {
        y[t * ldy + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t])) * scale[r];
      }
    }
    return;
  }
  for (int r = 0; r < kR; ++r) {
    for (int t = 0; t < kM; ++t)
      hn::Store(acc[r][t], df, accbuf + (r * kM + t) * N);
  }
}

// f32 -> bf16 bits, round to nearest even (NaN kept a NaN), in u32 lanes.
HWY_INLINE hn::Vec<hn::RebindToUnsigned<GemmDF>> RoundBf16Bits(
    hn::Vec<GemmDF> v) {
  const hn::RebindToUnsigned<GemmDF> du;
  const auto u = hn::BitCast(du, v);
  const auto lsb = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u));
  const auto r =
      hn::ShiftRight<16>(hn::Add(u, hn::Add(hn::Set(du, 0x7fffu), lsb)));
  return hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Set(du, 0x7fc0u),
                        r);
}

// n f32 (n % N == 0) rounded to bf16 in place (as f32 values).
HWY_INLINE void RoundToBf16InPlace(float* p, int64_t n) {
  const GemmDF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t i = 0; i < n; i += N) {
    const auto b = RoundBf16Bits(hn::LoadU(df, p + i));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(b)), df, p + i);
  }
}

// n f32 (n % N == 0) to bf16 bits.
HWY_INLINE void ToBf16(const float* p, int64_t n, uint16_t* out) {
  const GemmDF df;
  const hn::Rebind<uint16_t, GemmDF> d16;
  const hn::RebindToSigned<GemmDF> di;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t i = 0; i < n; i += N) {
    const auto b = hn::BitCast(di, RoundBf16Bits(hn::LoadU(df, p + i)));
    hn::StoreU(hn::DemoteTo(d16, b), d16, out + i);
  }
}

// Rows [r0, r1) of y = x W^T for all m activation rows, in panels of
// kGemmRows (a short last panel is padded with zero rows, never written).
// `decode(row, out)` writes the `cols` f32 weights of one row in the order
// the micro-kernel pairs with `arrange`d activations; `arrange(x_row, out)`
// writes one activation row in that order (identity for most formats);
// `row_scale(row)` multiplies each finished sum. Requires cols % N == 0.
// `raw` + row * raw_row_bytes is where row `row`'s stored bytes start (rows
// are contiguous in every format): the next panel's bytes are prefetched
// while this panel computes, so decoding reads L2, not DRAM.
//
// bf16 = true is `--compute bf16`: weights and activations are rounded to
// bf16 (nearest even) and multiplied with f32 accumulation — vdpbf16ps on
// CPUs with AVX512-BF16 (kernels/bf16_dot.h), else the f32 micro-kernel on
// the rounded values (bf16 products are exact in f32).
template <class Decode, class Arrange, class RowScale>
void GemmPanels(const Decode& decode, const Arrange& arrange,
                const RowScale& row_scale, bool identity_x, bool bf16,
                const void* raw, int64_t raw_row_bytes, int64_t cols,
                int64_t wrows, const float* x, int64_t m, float* y, int64_t r0,
                int64_t r1) {
  const int64_t panels = (r1 - r0 + kGemmRows - 1) / kGemmRows;
  const GemmDF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kR = kGemmRows, kM = kGemmToks;
  const int64_t tok_chunk = std::clamp<int64_t>(
      kGemmChunkBytes / (cols * 4) / kM * kM, kM, kGemmMaxTokChunk);
  // Panel rows 64 bytes more than a multiple of 4 KiB apart would alias in
  // L1 (8 rows on the same sets); pad the stride by one line.
  const int64_t ldw = cols + 64 / static_cast<int64_t>(sizeof(float));
  const int64_t ldb = cols + 32;
  const int64_t tiles = (tok_chunk + kM - 1) / kM;
  // bf16 on a CPU with vdpbf16ps: bf16 copies of the panel and activations.
  const bool dot = bf16 && HaveAvx512Bf16() && N == 16 && kR == kBf16Rows &&
                   kM == kBf16Toks && cols % 32 == 0;
  // Per-thread scratch (kernels/scratch.h): the decoded panel, accumulators,
  // arranged/rounded activations and, for vdpbf16ps, their bf16 copies.
  thread_local Scratch<float> wscratch, accscratch, xscratch;
  thread_local Scratch<uint16_t> w16scratch, x16scratch;
  float* const wbuf = wscratch.Get(kR * ldw);
  float* const accbuf = accscratch.Get(tiles * kR * kM * N);
  float* const xbuf =
      !identity_x || bf16 ? xscratch.Get(tok_chunk * cols) : nullptr;
  uint16_t* const wb16 = dot ? w16scratch.Get(kR * ldb) : nullptr;
  uint16_t* const xb16 = dot ? x16scratch.Get(tok_chunk * cols) : nullptr;
  float scale[kR];
  for (int64_t tc = 0; tc < m; tc += tok_chunk) {
    const int64_t te = std::min(m, tc + tok_chunk);
    const float* xc = x + tc * cols;
    if (!identity_x || bf16) {
      for (int64_t t = tc; t < te; ++t) {
        float* out = xbuf + (t - tc) * cols;
        if (identity_x) {
          std::copy(x + t * cols, x + (t + 1) * cols, out);
        } else {
          arrange(x + t * cols, out);
        }
        if (dot) {
          ToBf16(out, cols, xb16 + (t - tc) * cols);
        } else if (bf16) {
          RoundToBf16InPlace(out, cols);
        }
      }
      xc = xbuf;
    }
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t row = r0 + p * kR;
      const int valid = static_cast<int>(std::min<int64_t>(kR, r1 - row));
      for (int r = valid; r < kR; ++r) {
        std::fill(wbuf + r * ldw, wbuf + r * ldw + cols, 0.0f);
        if (dot) std::fill(wb16 + r * ldb, wb16 + r * ldb + cols, 0);
        scale[r] = 0.0f;
      }
      for (int r = 0; r < valid; ++r) {
        decode(row + r, wbuf + r * ldw);
        if (dot) {
          ToBf16(wbuf + r * ldw, cols, wb16 + r * ldb);
        } else if (bf16) {
          RoundToBf16InPlace(wbuf + r * ldw, cols);
        }
        scale[r] = row_scale(row + r);
      }
      // Prefetch the next panel's stored bytes, spread over this panel's
      // tile calls.
      const char* next = static_cast<const char*>(raw) +
                         (p + 1 < panels ? row + kR : row) * raw_row_bytes;
      const int64_t next_bytes =
          p + 1 < panels ? std::min<int64_t>(kR, r1 - row - kR) * raw_row_bytes
                         : 0;
      const int64_t calls = ((cols + kGemmColChunk - 1) / kGemmColChunk) *
                            ((te - tc + kM - 1) / kM);
      const int64_t pf_per_call = (next_bytes / 64 + calls - 1) / calls;
      int64_t pf = 0;
      auto prefetch = [&] {
        for (int64_t i = 0; i < pf_per_call && pf < next_bytes; ++i, pf += 64) {
          hwy::Prefetch(next + pf);
        }
      };
      for (int64_t c0 = 0; c0 < cols; c0 += kGemmColChunk) {
        const int64_t c1 = std::min(cols, c0 + kGemmColChunk);
        const bool first = c0 == 0, last = c1 == cols;
        int64_t t = tc, tile = 0;
        if (dot) {
          for (; t < te; t += kM, ++tile) {
            prefetch();
            const int km = static_cast<int>(std::min<int64_t>(kM, te - t));
            float* acc = accbuf + tile * kR * kM * N;
            Bf16DotTile(wb16, ldb, xb16 + (t - tc) * cols, cols, c0, c1, km,
                        acc, first);
            if (!last) continue;
            for (int r = 0; r < valid; ++r) {
              for (int i = 0; i < km; ++i) {
                const auto a = hn::Load(df, acc + (r * km + i) * N);
                y[(t + i) * wrows + row + r] =
                    hn::GetLane(hn::SumOfLanes(df, a)) * scale[r];
              }
            }
          }
          continue;
        }
        for (; t + kM <= te; t += kM, ++tile) {
          prefetch();
          GemmTile<kR, kM>(wbuf, ldw, xc + (t - tc) * cols, cols, c0, c1,
                           accbuf + tile * kR * kM * N, first, last, scale,
                           y + t * wrows + row, wrows, valid);
        }
        if (kM > 2 && te - t == 2) {  // 2 rows left: one tile, not two
          prefetch();
          GemmTile<kR, 2>(wbuf, ldw, xc + (t - tc) * cols, cols, c0, c1,
                          accbuf + tile * kR * kM * N, first, last, scale,
                          y + t * wrows + row, wrows, valid);
          t += 2;
          ++tile;
        }
        for (; t < te; ++t, ++tile) {
          prefetch();
          GemmTile<kR, 1>(wbuf, ldw, xc + (t - tc) * cols, cols, c0, c1,
                          accbuf + tile * kR * kM * N, first, last, scale,
                          y + t * wrows + row, wrows, valid);
        }
      }
    }
  }
}
