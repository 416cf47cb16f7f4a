// bf16 / f16 <-> f32 conversions, bit-exact with PyTorch's CPU casts:
// round-to-nearest-even, f16 subnormals kept, overflow to +-inf, NaN stays
// NaN (bf16 NaN is the canonical 0x7FC0 as in c10::round_to_nearest_even).
// Header-only so hot loops inline them; the SIMD kernels have their own
// vector versions and are tested against these.
#pragma once

#include <cstdint>
#include <cstring>

namespace bioquant {

inline uint32_t F32Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float F32FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// bf16 is the top half of an f32: widening is exact.
inline float Bf16ToF32(uint16_t h) { return F32FromBits(uint32_t{h} << 16); }

inline uint16_t F32ToBf16(float f) {
  const uint32_t u = F32Bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into
  // the exponent is the correct result (up to +-inf).
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float F16ToF32(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in f32.
    const float mag = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return F32FromBits(F32Bits(mag) | sign);
  }
  if (exp == 31) return F32FromBits(sign | 0x7f800000u | (mant << 13));
  return F32FromBits(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t F32ToF16(float f) {
  const uint32_t u = F32Bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // Inf, or NaN with its payload top bits kept quiet
    return a == 0x7f800000u
               ? static_cast<uint16_t>(sign | 0x7c00u)
               : static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {                       // normal f16 (>= 2^-14)
    const uint32_t r = a - (112u << 23);        // rebias exponent 127 -> 15
    return static_cast<uint16_t>(sign |
                                 ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  // f16 subnormal: units of 2^-24. Values below 2^-25 (f32 exponent < 102)
  // round to zero, including ties at exactly 2^-25 (0 is even).
  const uint32_t e = a >> 23;
  if (e < 102) return sign;
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // may become 0x400: ok
  return static_cast<uint16_t>(sign | r);
}

// Rounds an f32 to the nearest bf16 / f16 value and back (what a cast to the
// 16-bit dtype and back yields).
inline float RoundToBf16(float f) { return Bf16ToF32(F32ToBf16(f)); }
inline float RoundToF16(float f) { return F16ToF32(F32ToF16(f)); }

}  // namespace bioquant
