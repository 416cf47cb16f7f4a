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

// Register tile: kGemmRows weight rows x kGemmToks activation rows.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int kGemmRows = 8;  // 24 accumulators of 32 zmm
constexpr int kGemmToks = 3;
#else
constexpr int kGemmRows = 4;  // 8 accumulators (16 ymm/xmm registers)
constexpr int kGemmToks = 2;
#endif
// Activation rows per chunk: the chunk (about kGemmChunkBytes) stays in L2
// while all panels pass, and each panel is decoded once per chunk. Columns
// per k-chunk: a panel's k-chunk stays in L1 across token tiles.
constexpr int64_t kGemmChunkBytes = 1 << 20;
constexpr int64_t kGemmMaxTokChunk = 256;
constexpr int64_t kGemmColChunk = 1024;
// Fewer activation rows than this use the decode-in-registers tiles.
constexpr int64_t kGemmMinTokens = 8;

// acc[r][t] += W[r, c0:c1) * X[t, c0:c1), the accumulators loaded from and
// stored to `accbuf` ([kR][kM][N]) unless `first` / `last`; on `last` the
// finished sums (times scale[r]) go to y[t * ldy + r].
template <int kR, int kM>
HWY_INLINE void GemmTile(const float* HWY_RESTRICT w, int64_t ldw,
                         const float* HWY_RESTRICT x, int64_t ldx, int64_t c0,
                         int64_t c1, float* HWY_RESTRICT accbuf, bool first,
                         bool last, const float* scale, float* y, int64_t ldy) {
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
    for (int r = 0; r < kR; ++r) {
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

// Rows [r0, r0 + panels * kGemmRows) of y = x W^T for all m activation rows.
// `decode(row, out)` writes the `cols` f32 weights of one row in the order
// the micro-kernel pairs with `arrange`d activations; `arrange(x_row, out)`
// writes one activation row in that order (identity for most formats);
// `row_scale(row)` multiplies each finished sum. Requires cols % N == 0.
// `raw` + row * raw_row_bytes is where row `row`'s stored bytes start (rows
// are contiguous in every format): the next panel's bytes are prefetched
// while this panel computes, so decoding reads L2, not DRAM.
template <class Decode, class Arrange, class RowScale>
void GemmPanels(const Decode& decode, const Arrange& arrange,
                const RowScale& row_scale, bool identity_x, const void* raw,
                int64_t raw_row_bytes, int64_t cols, int64_t wrows,
                const float* x, int64_t m, float* y, int64_t r0,
                int64_t panels) {
  const GemmDF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int kR = kGemmRows, kM = kGemmToks;
  // Per-thread scratch, grown on demand and kept (no per-call allocation in
  // steady state): the decoded panel, arranged activations, accumulators.
  thread_local hwy::AlignedFreeUniquePtr<float[]> wbuf, xbuf, accbuf;
  thread_local int64_t wcap = 0, xcap = 0, acccap = 0;
  auto grow = [](hwy::AlignedFreeUniquePtr<float[]>& p, int64_t& cap,
                 int64_t need) {
    if (need > cap) {
      p = hwy::AllocateAligned<float>(static_cast<size_t>(need));
      cap = need;
    }
  };
  const int64_t tok_chunk = std::clamp<int64_t>(
      kGemmChunkBytes / (cols * 4) / kM * kM, kM, kGemmMaxTokChunk);
  // Panel rows 64 bytes more than a multiple of 4 KiB apart would alias in
  // L1 (8 rows on the same sets); pad the stride by one line.
  const int64_t ldw = cols + 64 / static_cast<int64_t>(sizeof(float));
  grow(wbuf, wcap, kR * ldw);
  const int64_t tiles = (tok_chunk + kM - 1) / kM;
  grow(accbuf, acccap, tiles * kR * kM * N);
  if (!identity_x) grow(xbuf, xcap, tok_chunk * cols);
  float scale[kR];
  for (int64_t tc = 0; tc < m; tc += tok_chunk) {
    const int64_t te = std::min(m, tc + tok_chunk);
    const float* xc = x + tc * cols;
    if (!identity_x) {
      for (int64_t t = tc; t < te; ++t) {
        arrange(x + t * cols, xbuf.get() + (t - tc) * cols);
      }
      xc = xbuf.get();
    }
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t row = r0 + p * kR;
      for (int r = 0; r < kR; ++r) {
        decode(row + r, wbuf.get() + r * ldw);
        scale[r] = row_scale(row + r);
      }
      // Prefetch the next panel's stored bytes, spread over this panel's
      // tile calls.
      const char* next = static_cast<const char*>(raw) +
                         (p + 1 < panels ? row + kR : row) * raw_row_bytes;
      const int64_t next_bytes = p + 1 < panels ? kR * raw_row_bytes : 0;
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
        for (; t + kM <= te; t += kM, ++tile) {
          prefetch();
          GemmTile<kR, kM>(wbuf.get(), ldw, xc + (t - tc) * cols, cols, c0, c1,
                           accbuf.get() + tile * kR * kM * N, first, last,
                           scale, y + t * wrows + row, wrows);
        }
        for (; t < te; ++t, ++tile) {
          prefetch();
          GemmTile<kR, 1>(wbuf.get(), ldw, xc + (t - tc) * cols, cols, c0, c1,
                          accbuf.get() + tile * kR * kM * N, first, last, scale,
                          y + t * wrows + row, wrows);
        }
      }
    }
  }
}
