// bf16/f16 conversions against the compiler's own IEEE conversions
// (_Float16 on x86-64 GCC 12) and hand-picked torch results.
#include "quant/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace bioquant {
namespace {

TEST(Half, F16RoundTripsEveryBitPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    const bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
    if (nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      continue;
    }
    EXPECT_EQ(F32ToF16(f), h) << std::hex << h;
  }
}

#if defined(__FLT16_MAX__)
TEST(Half, F16MatchesCompilerConversion) {
  // Every f16 value, plus values between neighbours (ties included), plus
  // random bit patterns across the whole f32 range.
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float a = F16ToF32(static_cast<uint16_t>(h));
    EXPECT_EQ(F32Bits(a),
              F32Bits(static_cast<float>(static_cast<_Float16>(a))));
    const float b = F16ToF32(static_cast<uint16_t>(h + 1));
    for (float v : {(a + b) / 2, std::nextafter((a + b) / 2, 0.0f),
                    std::nextafter((a + b) / 2, 1e9f), -(a + b) / 2}) {
      const _Float16 ref = static_cast<_Float16>(v);
      uint16_t bits;
      std::memcpy(&bits, &ref, 2);
      ASSERT_EQ(F32ToF16(v), bits) << v;
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 1000000; ++i) {
    const float v = F32FromBits(rng());
    if (std::isnan(v)) continue;
    const _Float16 ref = static_cast<_Float16>(v);
    uint16_t bits;
    std::memcpy(&bits, &ref, 2);
    ASSERT_EQ(F32ToF16(v), bits) << v;
  }
}
#endif

TEST(Half, F16Specials) {
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65519.996f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);  // tie rounds to even = inf
  EXPECT_EQ(F32ToF16(-1e30f), 0xfc00);
  EXPECT_EQ(F32ToF16(5.960464477539063e-08f), 0x0001);   // 2^-24
  EXPECT_EQ(F32ToF16(2.9802322387695312e-08f), 0x0000);  // 2^-25 tie -> 0
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(std::nanf("")))));
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
}

TEST(Half, Bf16) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(F32ToBf16(1.00390625f), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625: rounds up.
  EXPECT_EQ(F32ToBf16(1.01171875f), 0x3f82);
  EXPECT_EQ(F32ToBf16(F32FromBits(0x3f808001)), 0x3f81);  // above half
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(F32ToBf16(std::nanf("")), 0x7fc0);
  EXPECT_EQ(F32ToBf16(F32FromBits(0x7f7fffff)), 0x7f80);  // max f32 -> inf
  EXPECT_EQ(F32ToBf16(-0.0f), 0x8000);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(F32ToBf16(f), h);
    EXPECT_EQ(F32Bits(f), h << 16);
  }
}

}  // namespace
}  // namespace bioquant
