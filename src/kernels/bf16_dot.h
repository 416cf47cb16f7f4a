// The AVX512-BF16 micro-kernel of `--compute bf16` prefill (vdpbf16ps: 32
// bf16 products per instruction, summed pairwise into 16 f32 lanes). Highway
// 1.0.3 emulates bf16 dot products with f32 FMAs, so this one kernel is
// written with intrinsics in its own translation unit and called only when
// the CPU reports the feature; every other CPU computes the same bf16-rounded
// products with the f32 GEMM (kernels/gemm-inl.h).
#pragma once

#include <cstdint>

namespace bioquant::kernels {

// True when this CPU executes AVX512-BF16 instructions.
bool HaveAvx512Bf16();

// Register tile of kBf16Rows weight rows x km (1..kBf16Toks) activation
// rows over bf16 columns [c0, c1) (multiples of 32): w row r at w + r * ldw,
// activation row t at x + t * ldx. acc is [kBf16Rows][km][16] f32, zeroed
// first when `first`, else continued. Calls only when HaveAvx512Bf16().
constexpr int kBf16Rows = 8;
constexpr int kBf16Toks = 3;
void Bf16DotTile(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t ldx,
                 int64_t c0, int64_t c1, int km, float* acc, bool first);

}  // namespace bioquant::kernels
