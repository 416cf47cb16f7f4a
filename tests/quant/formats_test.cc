// Format names and exact byte sizes (STYLE habit 2), quantize->dequantize
// error limits per format (STYLE habit 4) and the LLM.int8 reference.
#include "quant/formats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "quant/bnb.h"
#include "quant/half.h"
#include "util/error.h"

namespace bioquant {
namespace {

TEST(Formats, NamesRoundTrip) {
  for (WeightFormat f :
       {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kF16,
        WeightFormat::kInt8Row, WeightFormat::kNF4, WeightFormat::kFP4}) {
    EXPECT_EQ(ParseFormat(FormatName(f)), f);
  }
  EXPECT_STREQ(FormatName(WeightFormat::kInt8Row), "int8");
  EXPECT_STREQ(FormatName(WeightFormat::kNF4), "nf4");
  EXPECT_EQ(NominalBits(WeightFormat::kBF16), 16);
  EXPECT_EQ(NominalBits(WeightFormat::kFP4), 4);
  try {
    ParseFormat("int4");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int4"), std::string::npos);
  }
}

TEST(Formats, PackedBytesExact) {
  EXPECT_EQ(PackedBytes(WeightFormat::kF32, 3, 5), 60u);
  EXPECT_EQ(PackedBytes(WeightFormat::kBF16, 3, 5), 30u);
  EXPECT_EQ(PackedBytes(WeightFormat::kF16, 3, 5), 30u);
  EXPECT_EQ(PackedBytes(WeightFormat::kInt8Row, 3, 5), 15u + 12u);
  // 4096 x 4096 nf4, blocksize 64, double quant: 8 MiB codes, 262144 u8
  // qabsmax, 1024 nested absmax, offset, DYN and quant_map.
  const uint64_t n = 4096ull * 4096;
  EXPECT_EQ(PackedBytes(WeightFormat::kNF4, 4096, 4096),
            n / 2 + n / 64 + 4 * (n / 64 / 256) + 4 + 1024 + 64);
  QuantParams nodq;
  nodq.double_quant = false;
  EXPECT_EQ(PackedBytes(WeightFormat::kFP4, 4096, 4096, nodq),
            n / 2 + 4 * (n / 64) + 64);
  // Odd numel pads to a whole byte; a partial last block has its own absmax.
  QuantParams b128{128, false};
  EXPECT_EQ(PackedBytes(WeightFormat::kNF4, 33, 47, b128), 776u + 4u * 13 + 64);
  // Matches what the quantizer actually allocates.
  std::vector<float> x(33 * 47, 0.5f);
  for (bool dq : {false, true}) {
    QuantParams p{64, dq};
    const Quantized4bit q =
        Quantize4bit(x.data(), {33, 47}, WeightFormat::kNF4, p);
    uint64_t have = q.packed.size() + 16 * 4;
    if (dq) {
      have += q.qabsmax.size() + 4 * q.nested_absmax.size() + 4 +
              4 * q.nested_code.size();
    } else {
      have += 4 * q.absmax.size();
    }
    EXPECT_EQ(PackedBytes(WeightFormat::kNF4, 33, 47, p), have) << dq;
  }
}

// Quantize->dequantize RMSE on N(0, 1) weights (so relative to sigma).
// The reference gives bf16 0.00167, f16 0.000209, int8 0.00744, nf4 0.0922,
// fp4 0.1218 on this seeded data; the limits leave ~15% headroom so a
// regression in a rounding rule or table shows up.
constexpr double kMaxRelRmseBf16 = 0.0019;
constexpr double kMaxRelRmseF16 = 0.00024;
constexpr double kMaxRelRmseInt8 = 0.0085;
constexpr double kMaxRelRmseNf4 = 0.105;
constexpr double kMaxRelRmseFp4 = 0.140;

TEST(Formats, RoundTripRmseLimits) {
  const int64_t rows = 256, cols = 512;
  std::vector<float> x(rows * cols);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : x) v = nd(rng);
  struct Case {
    WeightFormat f;
    double limit;
  };
  for (const Case& c : {Case{WeightFormat::kBF16, kMaxRelRmseBf16},
                        Case{WeightFormat::kF16, kMaxRelRmseF16},
                        Case{WeightFormat::kInt8Row, kMaxRelRmseInt8},
                        Case{WeightFormat::kNF4, kMaxRelRmseNf4},
                        Case{WeightFormat::kFP4, kMaxRelRmseFp4}}) {
    const double rmse = RoundTripRmse(x.data(), rows, cols, c.f);
    EXPECT_LT(rmse, c.limit) << FormatName(c.f);
    EXPECT_GT(rmse, c.limit / 3) << FormatName(c.f) << " suspiciously exact";
  }
  EXPECT_EQ(RoundTripRmse(x.data(), rows, cols, WeightFormat::kF32), 0.0);
  // Double quantization costs a little accuracy, never much.
  const double dq = RoundTripRmse(x.data(), rows, cols, WeightFormat::kNF4,
                                  QuantParams{64, true});
  const double nodq = RoundTripRmse(x.data(), rows, cols, WeightFormat::kNF4,
                                    QuantParams{64, false});
  EXPECT_LE(nodq, dq);
  EXPECT_LT(dq, nodq * 1.02);
  // Bigger blocks, bigger error.
  EXPECT_LT(nodq, RoundTripRmse(x.data(), rows, cols, WeightFormat::kNF4,
                                QuantParams{1024, false}));
}

TEST(Formats, BlocksizesAndErrors) {
  std::vector<float> x(4096 * 3 + 1);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (float& v : x) v = nd(rng);
  for (int bs = 32; bs <= 4096; bs *= 2) {
    const Quantized4bit q =
        Quantize4bit(x.data(), {static_cast<int64_t>(x.size())},
                     WeightFormat::kFP4, QuantParams{bs, true});
    EXPECT_EQ(q.nblocks(), (static_cast<int64_t>(x.size()) + bs - 1) / bs);
    std::vector<float> y(x.size());
    Dequantize4bit(q.View(), y.data());
    // The last block holds one value: it maps to code -1 (x < 0) exactly,
    // times the (double-quantized) block absmax.
    ASSERT_LT(x.back(), 0.0f);
    EXPECT_EQ(y.back(), -BlockAbsmax(q.View(), q.nblocks() - 1));
    EXPECT_NEAR(y.back(), x.back(), 0.1 * std::fabs(x.back()));
    EXPECT_EQ(q.packed.back() & 15, 0);  // padding nibble = code(0.0)
  }
  for (int bs : {0, 16, 48, 8192}) {
    try {
      Quantize4bit(x.data(), {8}, WeightFormat::kNF4, QuantParams{bs, true});
      FAIL() << bs;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("blocksize " + std::to_string(bs)),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(Quantize4bit(x.data(), {8}, WeightFormat::kInt8Row, {}), Error);
}

TEST(Formats, QuantizeTensorViews) {
  // A bf16 "checkpoint tensor": same result as quantizing the widened
  // values, and the dtype is recorded for the quant state.
  std::vector<uint16_t> bits(6 * 64);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> widened(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    bits[i] = F32ToBf16(nd(rng));
    widened[i] = Bf16ToF32(bits[i]);
  }
  TensorView t;
  t.name = "layer.weight";
  t.file = "model.safetensors";
  t.dtype = DType::kBF16;
  t.shape = {6, 64};
  t.data = reinterpret_cast<const uint8_t*>(bits.data());
  t.nbytes = 2 * bits.size();
  const Quantized4bit q = QuantizeTensor4bit(t, WeightFormat::kNF4, {});
  EXPECT_EQ(q.dtype, DType::kBF16);
  EXPECT_EQ(
      q.packed,
      Quantize4bit(widened.data(), {6, 64}, WeightFormat::kNF4, {}).packed);
  EXPECT_EQ(QuantizeTensorInt8(t).q, QuantizeInt8Rows(widened.data(), 6, 64).q);
  try {
    QuantizeTensor4bit(t, WeightFormat::kNF4, QuantParams{100, true});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: layer.weight: "
                                         "unsupported 4-bit blocksize 100"),
              std::string::npos)
        << e.what();
  }
  t.dtype = DType::kI32;
  t.nbytes = 4 * bits.size() / 2;
  t.shape = {3, 64};
  EXPECT_THROW(TensorToF32(t), Error);
}

// ---- LLM.int8 ---------------------------------------------------------------

std::vector<float> DenseRef(const std::vector<float>& x, int64_t m,
                            const WeightMatrix& w) {
  std::vector<float> row(w.cols), y(m * w.rows);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w, r, row.data());
    for (int64_t t = 0; t < m; ++t) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c)
        s += double{x[t * w.cols + c]} * row[c];
      y[t * w.rows + r] = static_cast<float>(s);
    }
  }
  return y;
}

double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    den += double{b[i]} * b[i];
  }
  return std::sqrt(num / den);
}

// Relative error of LLM.int8 vs the dense product with the same int8
// weights: activation quantization (8 bits per row) plus fp16 output.
constexpr double kMaxRelErrLlmInt8 = 0.01;

TEST(LlmInt8, HandComputedExample) {
  // W = [[127, -64], [0, 127]] with SCB [2, 1]; x = [[1, 0.5]].
  QuantizedInt8 q;
  q.rows = 2;
  q.cols = 2;
  q.q = {127, -64, 0, 127};
  q.scb = {2.0f, 1.0f};
  const std::vector<float> x = {1.0f, 0.5f};
  std::vector<float> y(2);
  LlmInt8MatMulRef(x.data(), 1, q.View(), 6.0f, nullptr, y.data());
  // CA = [127, 64] (0.5 * 127 = 63.5 rounds to even), SCA = 1.
  // y0 = (127*127 - 64*64) * 1 * 2 / 127^2, y1 = 64*127 * 1 / 127^2.
  EXPECT_EQ(y[0], RoundToF16((127.0f * 127 - 64 * 64) * 2.0f * 6.200012e-05f));
  EXPECT_EQ(y[1], RoundToF16(64.0f * 127 * 6.200012e-05f));
  EXPECT_NEAR(y[0], 2 * (1.0 - 0.5 * 64 / 127.0), 5e-3);
}

TEST(LlmInt8, OutlierColumnsKeepAccuracy) {
  const int64_t m = 4, k = 256, n = 64;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> wf(n * k), x(m * k);
  for (float& v : wf) v = 0.05f * nd(rng);
  for (float& v : x) v = nd(rng) * 0.5f;
  const QuantizedInt8 q = QuantizeInt8Rows(wf.data(), n, k);
  const WeightMatrix w = q.View();
  std::vector<float> y(m * n);
  LlmInt8MatMulRef(x.data(), m, w, 6.0f, nullptr, y.data());
  EXPECT_LT(RelErr(y, DenseRef(x, m, w)), kMaxRelErrLlmInt8);
  // Two outlier feature columns (like LLM activations): with the 6.0
  // threshold they stay 16-bit; without it every other entry of the row
  // loses precision to the huge absmax.
  x[0 * k + 7] = 60.0f;
  x[2 * k + 100] = -40.0f;
  const std::vector<float> dense = DenseRef(x, m, w);
  LlmInt8MatMulRef(x.data(), m, w, 6.0f, nullptr, y.data());
  const double with_split = RelErr(y, dense);
  EXPECT_LT(with_split, kMaxRelErrLlmInt8);
  LlmInt8MatMulRef(x.data(), m, w, 0.0f, nullptr, y.data());
  const double w8a8 = RelErr(y, dense);
  EXPECT_GT(w8a8, 3 * with_split);
  // Bias is added before the fp16 rounding.
  std::vector<float> bias(n, 0.25f), yb(m * n);
  LlmInt8MatMulRef(x.data(), m, w, 6.0f, bias.data(), yb.data());
  LlmInt8MatMulRef(x.data(), m, w, 6.0f, nullptr, y.data());
  for (int64_t i = 0; i < m * n; ++i) EXPECT_NEAR(yb[i], y[i] + 0.25f, 2e-3);
  // Two-step form with the rows split in two: identical.
  const Int8Activations a = QuantizeActivationsInt8(x.data(), m, k, 6.0f);
  EXPECT_EQ(a.outlier_cols, (std::vector<int64_t>{7, 100}));
  std::vector<float> ys(m * n);
  LlmInt8MatMulRows(a, w, nullptr, ys.data(), 0, 20);
  LlmInt8MatMulRows(a, w, nullptr, ys.data(), 20, n);
  EXPECT_EQ(ys, y);
}

// Quantize-on-load splits blocks (4-bit) and rows (int8) across threads: the
// bytes must be exactly those of the single-threaded quantizer.
TEST(FormatsTest, ThreadedQuantizationGivesTheSameBytes) {
  std::mt19937 rng(17);
  std::normal_distribution<float> g(0.0f, 0.05f);
  const int64_t rows = 67, cols = 320;  // odd rows, several blocks per row
  std::vector<float> w(rows * cols);
  for (float& v : w) v = g(rng);
  ThreadPool pool(3);
  for (WeightFormat f : {WeightFormat::kNF4, WeightFormat::kFP4}) {
    for (bool dq : {false, true}) {
      const QuantParams p{64, dq};
      const Quantized4bit a = Quantize4bit(w.data(), {rows, cols}, f, p);
      const Quantized4bit b = Quantize4bit(w.data(), {rows, cols}, f, p,
                                           DType::kF32, std::nullopt, &pool);
      EXPECT_EQ(a.packed, b.packed);
      EXPECT_EQ(a.absmax, b.absmax);
      EXPECT_EQ(a.qabsmax, b.qabsmax);
      EXPECT_EQ(a.nested_absmax, b.nested_absmax);
    }
  }
  const QuantizedInt8 a = QuantizeInt8Rows(w.data(), rows, cols);
  const QuantizedInt8 b = QuantizeInt8Rows(w.data(), rows, cols, &pool);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.scb, b.scb);
}

}  // namespace
}  // namespace bioquant
