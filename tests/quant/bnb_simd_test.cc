// The SIMD quantizers (quant/bnb_simd.h) against the scalar reference on
// every compiled Highway target this CPU runs: same bytes on the golden
// vectors, random tensors and edge cases (threshold ties, zeros, -0,
// denormals, +-max, inf, NaN, odd sizes, every blocksize).
#include "quant/bnb_simd.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "io/safetensors.h"
#include "quant/bnb.h"
#include "quant/half.h"
#include "testing.h"
#include "util/thread_pool.h"

namespace bioquant {
namespace {

template <class Fn>
void ForEachTarget(Fn&& fn) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    hwy::SetSupportedTargetsForTest(t);
    SCOPED_TRACE(hwy::TargetName(t));
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

void Expect4bitSame(const Quantized4bit& a, const Quantized4bit& b) {
  ASSERT_EQ(a.packed.size(), b.packed.size());
  EXPECT_EQ(a.packed, b.packed);
  ASSERT_EQ(a.absmax.size(), b.absmax.size());
  for (size_t i = 0; i < a.absmax.size(); ++i) {
    ASSERT_EQ(F32Bits(a.absmax[i]), F32Bits(b.absmax[i])) << "absmax " << i;
  }
  EXPECT_EQ(a.qabsmax, b.qabsmax);
  ASSERT_EQ(a.nested_absmax.size(), b.nested_absmax.size());
  for (size_t i = 0; i < a.nested_absmax.size(); ++i) {
    ASSERT_EQ(F32Bits(a.nested_absmax[i]), F32Bits(b.nested_absmax[i]));
  }
  EXPECT_EQ(F32Bits(a.nested_offset), F32Bits(b.nested_offset));
}

void ExpectInt8Same(const QuantizedInt8& a, const QuantizedInt8& b) {
  EXPECT_EQ(a.q, b.q);
  ASSERT_EQ(a.scb.size(), b.scb.size());
  for (size_t i = 0; i < a.scb.size(); ++i) {
    ASSERT_EQ(F32Bits(a.scb[i]), F32Bits(b.scb[i])) << "SCB " << i;
  }
}

// Inputs that stress every rule: each NF4/FP4 threshold exactly (blocks
// whose absmax is 1, so s == x) and one ulp either side, code values, zero
// blocks, -0, denormals, +-max, inf, f16 ties and overflow for int8.
std::vector<float> EdgeValues() {
  std::vector<float> v;
  auto around = [&](float t) {
    v.push_back(t);
    v.push_back(std::nextafter(t, 2.0f));
    v.push_back(std::nextafter(t, -2.0f));
    v.push_back(-t);
  };
  for (float t : Nf4Thresholds()) around(t);
  for (float t : Fp4AbsThresholds()) around(t);
  for (float t : Nf4Code()) around(t);
  for (float t : Fp4DequantLut()) around(t);
  v.push_back(1.0f);
  v.push_back(-1.0f);
  for (int i = 0; i < 70; ++i) v.push_back(0.0f);  // an all-zero block
  for (int i = 0; i < 70; ++i) v.push_back(i & 1 ? -0.0f : 1e-41f * i);
  const float mx = std::numeric_limits<float>::max();
  const float dn = std::numeric_limits<float>::denorm_min();
  for (float f : {mx,
                  -mx,
                  dn,
                  -dn,
                  1e-39f,
                  -3e-39f,
                  65504.0f,
                  65519.99f,
                  65520.0f,
                  -65536.0f,
                  6.0e-8f,
                  2.9802322e-08f,
                  5.96e-8f,
                  6.1035156e-05f,
                  6.10e-05f,
                  1.0009765625f,
                  1.00048828125f,
                  1.00146484375f,
                  0.5f,
                  2.5f,
                  -3.5f}) {
    v.push_back(f);
  }
  return v;
}

std::vector<float> Gaussian(size_t n, unsigned seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& f : v) f = nd(rng);
  return v;
}

// Random tensors with edge values sprinkled in at random positions.
std::vector<std::vector<float>> Inputs(size_t n, unsigned seed) {
  std::vector<std::vector<float>> out;
  out.push_back(Gaussian(n, seed, 0.02f));
  out.push_back(Gaussian(n, seed + 1, 3.0f));
  std::vector<float> mixed = Gaussian(n, seed + 2, 1.0f);
  const std::vector<float> e = EdgeValues();
  std::mt19937 rng(seed);
  for (size_t i = 0; i < mixed.size(); ++i) {
    if (rng() % 3 == 0) mixed[i] = e[rng() % e.size()];
  }
  out.push_back(mixed);
  std::vector<float> edges(n);  // the edge list in order, repeated
  for (size_t i = 0; i < n; ++i) edges[i] = e[i % e.size()];
  out.push_back(edges);
  // Quantized values scaled by 1 exactly: every block holds +-1.
  std::vector<float> ties = edges;
  for (size_t i = 0; i < n; i += 32) ties[i] = 1.0f;
  out.push_back(ties);
  return out;
}

TEST(BnbSimd, FourBitMatchesReferenceOnEveryTarget) {
  ThreadPool pool(3);
  struct Shape {
    int64_t rows, cols;
  };
  for (Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{7, 37}, Shape{16, 64},
                  Shape{33, 130}, Shape{5, 4097}}) {
    const size_t n = s.rows * s.cols;
    int k = 0;
    for (const auto& x : Inputs(n, 11 + n)) {
      for (WeightFormat f : {WeightFormat::kNF4, WeightFormat::kFP4}) {
        for (int bs : {32, 64, 128, 256, 4096}) {
          for (bool dq : {false, true}) {
            SCOPED_TRACE(::testing::Message()
                         << s.rows << "x" << s.cols << " input " << k << " "
                         << FormatName(f) << " bs " << bs << " dq " << dq);
            QuantParams p{bs, dq};
            const Quantized4bit ref =
                Quantize4bitReference(x.data(), {s.rows, s.cols}, f, p);
            ForEachTarget([&] {
              Expect4bitSame(Quantize4bit(x.data(), {s.rows, s.cols}, f, p),
                             ref);
              Expect4bitSame(Quantize4bit(x.data(), {s.rows, s.cols}, f, p,
                                          DType::kF32, std::nullopt, &pool),
                             ref);
            });
          }
        }
      }
      ++k;
    }
  }
}

TEST(BnbSimd, NanBlocksFollowTheReference) {
  std::vector<float> x = Gaussian(300, 5, 1.0f);
  x[3] = std::nanf("");
  x[130] = -std::nanf("");
  for (WeightFormat f : {WeightFormat::kNF4, WeightFormat::kFP4}) {
    const Quantized4bit ref = Quantize4bitReference(x.data(), {3, 100}, f, {});
    ForEachTarget([&] {
      Expect4bitSame(Quantize4bit(x.data(), {3, 100}, f, {}), ref);
    });
  }
  const QuantizedInt8 ref = QuantizeInt8RowsReference(x.data(), 3, 100);
  ForEachTarget(
      [&] { ExpectInt8Same(QuantizeInt8Rows(x.data(), 3, 100), ref); });
}

TEST(BnbSimd, Int8MatchesReferenceOnEveryTarget) {
  ThreadPool pool(3);
  struct Shape {
    int64_t rows, cols;
  };
  for (Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{7, 37}, Shape{16, 64},
                  Shape{33, 130}, Shape{5, 1031}}) {
    int k = 0;
    for (const auto& x : Inputs(s.rows * s.cols, 7 + s.cols)) {
      SCOPED_TRACE(::testing::Message()
                   << s.rows << "x" << s.cols << " input " << k++);
      const QuantizedInt8 ref =
          QuantizeInt8RowsReference(x.data(), s.rows, s.cols);
      ForEachTarget([&] {
        ExpectInt8Same(QuantizeInt8Rows(x.data(), s.rows, s.cols), ref);
        ExpectInt8Same(QuantizeInt8Rows(x.data(), s.rows, s.cols, &pool), ref);
      });
    }
  }
}

// Every f32 bit pattern class through RoundToF16, via int8 rows of one
// repeated magnitude: the f16 rounding inside is exercised on 2^20 values.
TEST(BnbSimd, Int8F16RoundingOnManyBitPatterns) {
  std::vector<float> x;
  std::mt19937 rng(3);
  for (int i = 0; i < (1 << 20); ++i) {
    uint32_t u = rng();
    if ((u & 0x7f800000u) == 0x7f800000u) u &= ~0x40000000u;  // no NaN/inf
    x.push_back(F32FromBits(u));
  }
  // Rows of 64 with a fixed absmax of 1 so the codes depend on w16 alone.
  for (size_t i = 0; i < x.size(); i += 64) x[i] = 1.0f;
  const QuantizedInt8 ref =
      QuantizeInt8RowsReference(x.data(), x.size() / 64, 64);
  ForEachTarget([&] {
    ExpectInt8Same(QuantizeInt8Rows(x.data(), x.size() / 64, 64), ref);
  });
}

TEST(BnbSimd, GoldenVectorsOnEveryTarget) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string dir = testing::OracleDir() + "/bnb/golden";
  std::ifstream in(dir + "/manifest.json");
  const nlohmann::json m = nlohmann::json::parse(in);
  int n = 0;
  for (const auto& c : m.at("cases")) {
    if (!c.contains("file")) continue;
    const std::string file = dir + "/" + c.at("file").get<std::string>();
    SCOPED_TRACE(file);
    auto store = TensorStore::OpenFile(file);
    const TensorView& input = store->Get("input");
    const std::vector<float> x = TensorToF32(input);
    if (c.value("kind", "") == "int8_rowwise") {
      const TensorView& cb = store->Get("CB");
      ForEachTarget([&] {
        const QuantizedInt8 q =
            QuantizeInt8Rows(x.data(), input.shape[0], input.shape[1]);
        ASSERT_EQ(q.q.size(), cb.nbytes);
        EXPECT_EQ(0, std::memcmp(q.q.data(), cb.data, cb.nbytes));
        const TensorView& scb = store->Get("SCB");
        ASSERT_EQ(q.scb.size() * 4, scb.nbytes);
        EXPECT_EQ(0, std::memcmp(q.scb.data(), scb.data, scb.nbytes));
      });
      ++n;
      continue;
    }
    if (c.contains("kind")) continue;
    const WeightFormat fmt =
        c.at("quant_type") == "nf4" ? WeightFormat::kNF4 : WeightFormat::kFP4;
    const QuantParams p{c.at("blocksize").get<int>(), false};
    const TensorView& packed = store->Get("packed");
    const TensorView& absmax = store->Get("absmax_fp32");
    ForEachTarget([&] {
      const Quantized4bit q = Quantize4bit(x.data(), input.shape, fmt, p);
      ASSERT_EQ(q.packed.size(), packed.nbytes);
      EXPECT_EQ(0, std::memcmp(q.packed.data(), packed.data, packed.nbytes));
      ASSERT_EQ(q.absmax.size() * 4, absmax.nbytes);
      EXPECT_EQ(0, std::memcmp(q.absmax.data(), absmax.data, absmax.nbytes));
    });
    ++n;
  }
  EXPECT_GT(n, 80);
}

}  // namespace
}  // namespace bioquant

namespace bioquant {
namespace {

// The vector DYN search against QuantizeDynamic: random values, every code
// value, every midpoint and its neighbours (the tie rules), +-1, 0, NaN.
TEST(BnbSimd, DynamicSearchMatchesReferenceOnEveryTarget) {
  const float* dyn = DynamicMapSigned().data();
  std::vector<float> x = Gaussian(5000, 9, 0.4f);
  for (int k = 0; k < 256; ++k) {
    for (float v : {dyn[k], std::nextafter(dyn[k], 2.0f),
                    std::nextafter(dyn[k], -2.0f)}) {
      x.push_back(v);
    }
    if (k < 255) {
      const float mid = (dyn[k] + dyn[k + 1]) * 0.5f;
      x.push_back(mid);
      x.push_back(std::nextafter(mid, 2.0f));
      x.push_back(std::nextafter(mid, -2.0f));
    }
  }
  for (float v : {0.0f, -0.0f, 1.0f, -1.0f, 1.5f, -1.5f, std::nanf("")}) {
    x.push_back(v);
  }
  std::vector<uint8_t> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = QuantizeDynamic(dyn, x[i]);
  ForEachTarget([&] {
    std::vector<uint8_t> got(x.size());
    QuantizeDynamicSimd(dyn, x.data(), x.size(), got.data());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << "x = " << x[i];
    }
  });
}

}  // namespace
}  // namespace bioquant
