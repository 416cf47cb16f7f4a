#include "quant/ggml.h"

#include <cstring>

#include "quant/half.h"
#include "util/error.h"

namespace bioquant {

namespace {

constexpr int kQK = 32;    // elements per block of the legacy types
constexpr int kQKK = 256;  // elements per K-quant super-block

float F16At(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

// Legacy 32-element blocks. Nibble order: byte j holds element j in its low
// nibble and element j + 16 in its high nibble. Q5's fifth bits are a u32
// whose bit j belongs to element j.

// block_q4_0 { f16 d; u8 qs[16]; }: x = d * (q - 8)
void DequantQ4_0(const uint8_t* b, float* y) {
  const float d = F16At(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

// block_q4_1 { f16 d; f16 m; u8 qs[16]; }: x = d * q + m
void DequantQ4_1(const uint8_t* b, float* y) {
  const float d = F16At(b), m = F16At(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }: x = d * (q - 16)
void DequantQ5_0(const uint8_t* b, float* y) {
  const float d = F16At(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + 16] = d * static_cast<float>(hi - 16);
  }
}

// block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }: x = d * q + m
void DequantQ5_1(const uint8_t* b, float* y) {
  const float d = F16At(b), m = F16At(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + 16] = d * static_cast<float>(hi) + m;
  }
}

// block_q8_0 { f16 d; i8 qs[32]; }: x = d * q
void DequantQ8_0(const uint8_t* b, float* y) {
  const float d = F16At(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// K-quants: 256-element super-blocks of 16 (Q2/Q3/Q6) or 8 (Q4/Q5)
// sub-blocks. The 2-bit planes are laid out per 128 elements: byte l of a
// 32-byte group holds elements l, l+32, l+64, l+96 at shifts 0, 2, 4, 6.

// block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }
// scales[s]: low nibble scale, high nibble min of sub-block s (16 elements).
// x = (d * sc) * q - (dmin * mn)
void DequantQ2_K(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = F16At(b + 80), dmin = F16At(b + 82);
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, j = (i % 128) / 32, l = i % 32;
    const int q = (qs[h * 32 + l] >> (2 * j)) & 3;
    const uint8_t s = scales[i / 16];
    const float dl = d * static_cast<float>(s & 0x0F);
    const float ml = dmin * static_cast<float>(s >> 4);
    y[i] = dl * static_cast<float>(q) - ml;
  }
}

// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }
// 16 signed 6-bit scales: low 4 bits of scale s in scales[s % 8] (nibble
// s / 8), high 2 bits in scales[8 + s % 4] (bits 2 * (s / 4)); minus 32.
// hmask bit (i / 32) of byte i % 32 set means "no -4 offset".
// x = (d * sc) * (q2 - (hbit ? 0 : 4))
void DequantQ3_K(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = F16At(b + 108);
  float dl[16];
  for (int s = 0; s < 16; ++s) {
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0F;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 0x03;
    dl[s] = d * static_cast<float>((lo | (hi << 4)) - 32);
  }
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, j = (i % 128) / 32, l = i % 32;
    const int q2 = (qs[h * 32 + l] >> (2 * j)) & 3;
    const int hbit = (hmask[l] >> (i / 32)) & 1;
    y[i] = dl[i / 16] * static_cast<float>(q2 - ((hbit ^ 1) << 2));
  }
}

// The 12-byte packing of eight 6-bit scales and mins shared by Q4_K/Q5_K:
// bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7;
// bytes 4-7 the same for mins; bytes 8-11 the low 4 bits of scale 4+k (low
// nibble) and min 4+k (high nibble).
void ScaleMinK4(const uint8_t* q, int s, int* sc, int* mn) {
  if (s < 4) {
    *sc = q[s] & 63;
    *mn = q[s + 4] & 63;
  } else {
    *sc = (q[s + 4] & 0x0F) | ((q[s - 4] >> 2) & 0x30);
    *mn = (q[s + 4] >> 4) | ((q[s] >> 2) & 0x30);
  }
}

// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
// 8 sub-blocks of 32: byte c*32 + l holds element c*64 + l (low nibble) and
// c*64 + 32 + l (high). x = (d * sc) * q - (dmin * mn)
void DequantQ4_K(const uint8_t* b, float* y) {
  const float d = F16At(b), dmin = F16At(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    ScaleMinK4(scales, s, &sc, &mn);
    const float ds = d * static_cast<float>(sc);
    const float ms = dmin * static_cast<float>(mn);
    const int c = s / 2, shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      const int q = (qs[c * 32 + l] >> shift) & 0x0F;
      y[s * 32 + l] = ds * static_cast<float>(q) - ms;
    }
  }
}

// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
// As Q4_K plus a fifth bit: bit s of qh[l] for element s*32 + l.
void DequantQ5_K(const uint8_t* b, float* y) {
  const float d = F16At(b), dmin = F16At(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    ScaleMinK4(scales, s, &sc, &mn);
    const float ds = d * static_cast<float>(sc);
    const float ms = dmin * static_cast<float>(mn);
    const int c = s / 2, shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      const int q =
          ((qs[c * 32 + l] >> shift) & 0x0F) | (((qh[l] >> s) & 1) << 4);
      y[s * 32 + l] = ds * static_cast<float>(q) - ms;
    }
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }
// Per 128 elements (h): ql byte h*64 + m holds element h*128 + m (low
// nibble) and h*128 + 64 + m (high); qh byte h*32 + l holds the top 2 bits
// of h*128 + l + 32*j at shift 2*j. x = (d * sc) * (q - 32)
void DequantQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = F16At(b + 208);
  for (int i = 0; i < kQKK; ++i) {
    const int h = i / 128, r = i % 128;
    const int lo = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int hi = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
    const float ds = d * static_cast<float>(scales[i / 16]);
    y[i] = ds * static_cast<float>((lo | (hi << 4)) - 32);
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn BlockFnOf(GgmlType type) {
  switch (type) {
    case GgmlType::kQ4_0:
      return DequantQ4_0;
    case GgmlType::kQ4_1:
      return DequantQ4_1;
    case GgmlType::kQ5_0:
      return DequantQ5_0;
    case GgmlType::kQ5_1:
      return DequantQ5_1;
    case GgmlType::kQ8_0:
      return DequantQ8_0;
    case GgmlType::kQ2_K:
      return DequantQ2_K;
    case GgmlType::kQ3_K:
      return DequantQ3_K;
    case GgmlType::kQ4_K:
      return DequantQ4_K;
    case GgmlType::kQ5_K:
      return DequantQ5_K;
    case GgmlType::kQ6_K:
      return DequantQ6_K;
    default:
      return nullptr;
  }
}

}  // namespace

bool CanDequantizeGgml(GgmlType type) {
  return type == GgmlType::kF32 || type == GgmlType::kF16 ||
         type == GgmlType::kBF16 || BlockFnOf(type) != nullptr;
}

void DequantizeGgml(GgmlType type, const uint8_t* src, size_t n, float* dst) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case GgmlType::kF16:
      for (size_t i = 0; i < n; ++i) dst[i] = F16At(src + 2 * i);
      return;
    case GgmlType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Bf16ToF32(h);
      }
      return;
    default:
      break;
  }
  const BlockFn fn = BlockFnOf(type);
  if (!fn) Fail("ggml type {} cannot be dequantized", GgmlTypeName(type));
  const GgmlTypeInfo& info = GgmlTypeInfoOf(type);
  if (n % info.block_elems != 0) {
    Fail("{} elements are not a whole number of {} blocks", n, info.name);
  }
  for (size_t blk = 0; blk < n / info.block_elems; ++blk) {
    fn(src + blk * info.block_bytes, dst + blk * info.block_elems);
  }
}

}  // namespace bioquant
