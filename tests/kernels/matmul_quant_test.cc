// int8 / nf4 / fp4 SIMD matmul kernels against the scalar reference
// (DequantizeRow + dot in double) on every Highway target compiled into this
// binary that this CPU can run.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/matmul_4bit.h"
#include "kernels/matmul_int8.h"
#include "quant/bnb.h"
#include "quant/half.h"
#include "util/error.h"

namespace bioquant {
namespace {

// Named error limits (STYLE habit 4). The kernels decode every weight to the
// reference's exact f32 value, so the only difference is f32 accumulation in
// another order than the double-accumulating reference: bounded relative to
// sum |w * x| of each output.
constexpr double kInt8MatMulRelTol = 1e-5;
constexpr double k4bitMatMulRelTol = 1e-5;

struct Case {
  int64_t rows, cols, m;
  int blocksize;
};

std::vector<float> Gaussian(size_t n, unsigned seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& f : v) f = nd(rng);
  return v;
}

using RowsOnTarget = void (*)(int, const WeightMatrix&, const float*, int64_t,
                              float*, int64_t, int64_t, bool);

// Runs the kernel for rows [r0, r1) on every target and compares with the
// reference; outputs outside the range must stay untouched.
void CheckKernel(const char* what, RowsOnTarget fn, const WeightMatrix& w,
                 const std::vector<float>& x, int64_t m, double rel_tol,
                 int64_t r0, int64_t r1, bool bf16 = false) {
  std::vector<float> ref(m * w.rows), scale(m * w.rows), row(w.cols);
  // The reference (and the tolerance scale) from MatMulRef's definition,
  // recomputed here with the per-output magnitude sum |w| |x|.
  MatMulRef(w, x.data(), m, ref.data(),
            bf16 ? ComputeType::kBF16 : ComputeType::kF32);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w, r, row.data());
    for (int64_t t = 0; t < m; ++t) {
      double a = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        a += std::fabs(double{row[c]} * x[t * w.cols + c]);
      }
      scale[t * w.rows + r] = static_cast<float>(a);
    }
  }
  const auto& targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_GE(targets.size(), 1u);
  std::vector<float> got(m * w.rows);
  for (size_t ti = 0; ti < targets.size(); ++ti) {
    std::fill(got.begin(), got.end(), NAN);
    fn(static_cast<int>(ti), w, x.data(), m, got.data(), r0, r1, bf16);
    for (int64_t t = 0; t < m; ++t) {
      for (int64_t r = 0; r < w.rows; ++r) {
        const int64_t i = t * w.rows + r;
        const std::string where =
            std::string(what) + " target " + hwy::TargetName(targets[ti]) +
            " [" + std::to_string(w.rows) + "x" + std::to_string(w.cols) +
            "] m=" + std::to_string(m) + " t=" + std::to_string(t) +
            " r=" + std::to_string(r);
        if (r < r0 || r >= r1) {
          ASSERT_TRUE(std::isnan(got[i])) << where << " written outside range";
          continue;
        }
        ASSERT_NEAR(got[i], ref[i], rel_tol * scale[i] + 1e-30) << where;
      }
    }
  }
}

TEST(MatMulQuantTest, Int8MatchesReferenceOnEveryTarget) {
  std::string names;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    names += std::string(" ") + hwy::TargetName(t);
  }
  std::printf("Highway targets tested:%s\n", names.c_str());
  for (const Case& c : {Case{1, 1, 1, 0}, Case{7, 33, 1, 0}, Case{8, 64, 5, 0},
                        Case{13, 172, 9, 0}, Case{64, 256, 4, 0},
                        Case{5, 1000, 70, 0}, Case{37, 1536, 70, 0}}) {
    const auto wf = Gaussian(c.rows * c.cols, 11 + c.cols, 0.05f);
    const auto x = Gaussian(c.m * c.cols, 17 + c.rows, 1.0f);
    const QuantizedInt8 q = QuantizeInt8Rows(wf.data(), c.rows, c.cols);
    CheckKernel("int8", &kernels::MatMulRowsInt8OnTarget, q.View(), x, c.m,
                kInt8MatMulRelTol, 0, c.rows);
  }
}

TEST(MatMulQuantTest, FourBitMatchesReferenceOnEveryTarget) {
  // Fast path (cols % blocksize == 0) and the per-row fallback (partial
  // blocks across rows, odd numel).
  for (const Case& c :
       {Case{1, 64, 1, 64}, Case{8, 128, 5, 64}, Case{13, 256, 9, 32},
        Case{64, 512, 4, 128}, Case{6, 1024, 70, 1024}, Case{33, 47, 3, 64},
        Case{7, 96, 2, 64}, Case{5, 4096, 1, 4096}, Case{37, 1536, 70, 64}}) {
    for (WeightFormat f : {WeightFormat::kNF4, WeightFormat::kFP4}) {
      for (bool dq : {false, true}) {
        const auto wf = Gaussian(c.rows * c.cols, 3 + c.cols, 0.02f);
        const auto x = Gaussian(c.m * c.cols, 5 + c.rows, 1.0f);
        const Quantized4bit q = Quantize4bit(wf.data(), {c.rows, c.cols}, f,
                                             QuantParams{c.blocksize, dq});
        CheckKernel(FormatName(f), &kernels::MatMulRows4bitOnTarget, q.View(),
                    x, c.m, k4bitMatMulRelTol, 0, c.rows);
      }
    }
  }
}

TEST(MatMulQuantTest, RowRangesAreIndependent) {
  const int64_t rows = 37, cols = 128, m = 6;
  const auto wf = Gaussian(rows * cols, 1, 0.1f);
  const auto x = Gaussian(m * cols, 2, 1.0f);
  const Quantized4bit q4 = Quantize4bit(
      wf.data(), {rows, cols}, WeightFormat::kNF4, QuantParams{64, true});
  const QuantizedInt8 q8 = QuantizeInt8Rows(wf.data(), rows, cols);
  CheckKernel("nf4 range", &kernels::MatMulRows4bitOnTarget, q4.View(), x, m,
              k4bitMatMulRelTol, 5, 30);
  CheckKernel("int8 range", &kernels::MatMulRowsInt8OnTarget, q8.View(), x, m,
              kInt8MatMulRelTol, 3, 21);
  // Splitting rows across calls (threads) gives bit-identical results.
  for (const WeightMatrix& w : {q4.View(), q8.View()}) {
    auto run = [&](int64_t r0, int64_t r1, float* y) {
      if (w.format == WeightFormat::kInt8Row) {
        kernels::MatMulRowsInt8(w, x.data(), m, y, r0, r1);
      } else {
        kernels::MatMulRows4bit(w, x.data(), m, y, r0, r1);
      }
    };
    std::vector<float> a(m * rows), b(m * rows);
    run(0, rows, a.data());
    run(0, 9, b.data());
    run(9, 24, b.data());
    run(24, rows, b.data());
    EXPECT_EQ(a, b) << FormatName(w.format);
  }
}

TEST(MatMulQuantTest, LlmInt8BitIdenticalToReferenceOnEveryTarget) {
  const auto& targets = hwy::SupportedAndGeneratedTargets();
  for (const Case& c : {Case{1, 1, 1, 0}, Case{7, 33, 1, 0}, Case{8, 64, 5, 0},
                        Case{13, 172, 9, 0}, Case{9, 1000, 6, 0}}) {
    const auto wf = Gaussian(c.rows * c.cols, 21 + c.cols, 0.05f);
    auto x = Gaussian(c.m * c.cols, 23 + c.rows, 1.0f);
    x[c.cols / 2] = 9.5f;  // an outlier column (above the 6.0 threshold)
    std::vector<float> bias(c.rows);
    for (int64_t r = 0; r < c.rows; ++r) bias[r] = 0.01f * r;
    const QuantizedInt8 q = QuantizeInt8Rows(wf.data(), c.rows, c.cols);
    const WeightMatrix w = q.View();
    for (float threshold : {6.0f, 0.0f}) {
      const Int8Activations a =
          QuantizeActivationsInt8(x.data(), c.m, c.cols, threshold);
      EXPECT_EQ(a.outlier_cols.empty(), threshold == 0.0f);
      std::vector<float> ref(c.m * c.rows), got(c.m * c.rows);
      LlmInt8MatMulRows(a, w, bias.data(), ref.data(), 0, c.rows);
      for (size_t ti = 0; ti < targets.size(); ++ti) {
        std::fill(got.begin(), got.end(), NAN);
        kernels::MatMulRowsLlmInt8OnTarget(static_cast<int>(ti), a, w,
                                           bias.data(), got.data(), 0, c.rows);
        ASSERT_EQ(0, std::memcmp(got.data(), ref.data(), 4 * got.size()))
            << hwy::TargetName(targets[ti]) << " [" << c.rows << "x" << c.cols
            << "] m=" << c.m << " threshold " << threshold;
      }
    }
  }
}

TEST(MatMulQuantTest, WrongFormatIsAnError) {
  std::vector<float> wf(16, 1.0f), x(4, 1.0f), y(4);
  const WeightMatrix f32{WeightFormat::kF32, 4, 4, wf.data()};
  EXPECT_THROW(kernels::MatMulRows4bit(f32, x.data(), 1, y.data(), 0, 4),
               Error);
  EXPECT_THROW(kernels::MatMulRowsInt8(f32, x.data(), 1, y.data(), 0, 4),
               Error);
}

// f32 weights rounded to a bf16 matrix (owns the bits).
struct Bf16Weights {
  Bf16Weights(const std::vector<float>& w, int64_t r, int64_t c)
      : rows(r), cols(c), bits(w.size()) {
    for (size_t i = 0; i < w.size(); ++i) bits[i] = F32ToBf16(w[i]);
  }
  WeightMatrix View() const {
    WeightMatrix m;
    m.format = WeightFormat::kBF16;
    m.rows = rows;
    m.cols = cols;
    m.data = bits.data();
    return m;
  }
  int64_t rows, cols;
  std::vector<uint16_t> bits;
};

// --compute bf16: every format on every target against the bf16-rounded
// reference (products of bf16 values are exact in f32, so only the f32
// summation differs: the same tolerance as f32 compute). Also checks that
// bf16 compute really differs from f32 compute (the mode is not a no-op).
TEST(MatMulQuantTest, Bf16ComputeMatchesBf16ReferenceOnEveryTarget) {
  const int64_t rows = 37, cols = 1536, m = 40;
  const auto wf = Gaussian(rows * cols, 31, 0.05f);
  const auto x = Gaussian(m * cols, 32, 1.0f);
  const Quantized4bit q4 = Quantize4bit(
      wf.data(), {rows, cols}, WeightFormat::kNF4, QuantParams{64, true});
  const QuantizedInt8 q8 = QuantizeInt8Rows(wf.data(), rows, cols);
  const Bf16Weights bf(wf, rows, cols);
  const WeightMatrix wb = bf.View();
  WeightMatrix w32 = wb;
  w32.format = WeightFormat::kF32;
  w32.data = wf.data();
  CheckKernel("nf4 bf16", &kernels::MatMulRows4bitOnTarget, q4.View(), x, m,
              k4bitMatMulRelTol, 0, rows, true);
  CheckKernel("int8 bf16", &kernels::MatMulRowsInt8OnTarget, q8.View(), x, m,
              kInt8MatMulRelTol, 0, rows, true);
  for (const WeightMatrix& w : {wb, w32}) {
    CheckKernel(FormatName(w.format), &kernels::MatMulRowsFloatOnTarget, w, x,
                m, kInt8MatMulRelTol, 0, rows, true);
    std::vector<float> a(m * rows), b(m * rows);
    MatMul(w, x.data(), m, a.data(), nullptr, ComputeType::kF32);
    MatMul(w, x.data(), m, b.data(), nullptr, ComputeType::kBF16);
    EXPECT_NE(a, b) << FormatName(w.format);
  }
}

// What batched decoding relies on: the output for one activation row is the
// same bits whether it is computed alone or together with others: m = 1
// (decode tiles) vs m = 20 (the prefill GEMM with its 3-, 2- and 1-row
// tiles) vs m = 5 (4- and 1-row decode tiles).
TEST(MatMulQuantTest, OutputOfARowDoesNotDependOnTheOtherRows) {
  const int64_t rows = 21, cols = 1024, m = 20;
  const auto wf = Gaussian(rows * cols, 7, 0.1f);
  const auto x = Gaussian(m * cols, 8, 1.0f);
  const Quantized4bit q4 = Quantize4bit(
      wf.data(), {rows, cols}, WeightFormat::kNF4, QuantParams{64, true});
  const QuantizedInt8 q8 = QuantizeInt8Rows(wf.data(), rows, cols);
  const Bf16Weights bf(wf, rows, cols);
  const WeightMatrix wb = bf.View();
  for (const WeightMatrix& w : {q4.View(), q8.View(), wb}) {
    std::vector<float> all(m * rows), one(rows), each(m * rows);
    MatMul(w, x.data(), m, all.data(), nullptr);
    for (int64_t t = 0; t < m; ++t) {
      MatMul(w, x.data() + t * cols, 1, one.data(), nullptr);
      std::copy(one.begin(), one.end(), each.begin() + t * rows);
    }
    EXPECT_EQ(all, each) << FormatName(w.format);
    std::vector<float> five(5 * rows);
    MatMul(w, x.data() + 3 * cols, 5, five.data(), nullptr);
    EXPECT_TRUE(std::equal(five.begin(), five.end(), all.begin() + 3 * rows))
        << FormatName(w.format);
  }
}

// The same on every compiled target this CPU runs, whose register tiles are
// sized per target (e.g. AVX2's batched-decode tiles are narrower than
// AVX-512's): m = 1 vs m = 8 (a full batched-decode tile), m = 11 (wide and
// narrow tiles and single rows) and m = 20 (the GEMM).
TEST(MatMulQuantTest, BatchInvarianceHoldsOnEveryTarget) {
  const int64_t rows = 13, cols = 512, m = 20;
  const auto wf = Gaussian(rows * cols, 17, 0.1f);
  const auto x = Gaussian(m * cols, 18, 1.0f);
  const Quantized4bit q4 = Quantize4bit(
      wf.data(), {rows, cols}, WeightFormat::kNF4, QuantParams{64, true});
  const QuantizedInt8 q8 = QuantizeInt8Rows(wf.data(), rows, cols);
  const Bf16Weights bf(wf, rows, cols);
  const auto& targets = hwy::SupportedAndGeneratedTargets();
  for (size_t ti = 0; ti < targets.size(); ++ti) {
    const int target = static_cast<int>(ti);
    for (const WeightMatrix& w : {q4.View(), q8.View(), bf.View()}) {
      const RowsOnTarget fn = w.format == WeightFormat::kNF4
                                  ? &kernels::MatMulRows4bitOnTarget
                              : w.format == WeightFormat::kInt8Row
                                  ? &kernels::MatMulRowsInt8OnTarget
                                  : &kernels::MatMulRowsFloatOnTarget;
      std::vector<float> each(m * rows);
      for (int64_t t = 0; t < m; ++t) {
        fn(target, w, x.data() + t * cols, 1, each.data() + t * rows, 0, rows,
           false);
      }
      for (const int64_t mm : {int64_t{8}, int64_t{11}, m}) {
        for (const int64_t t0 : {int64_t{0}, m - mm}) {
          std::vector<float> got(mm * rows);
          fn(target, w, x.data() + t0 * cols, mm, got.data(), 0, rows, false);
          EXPECT_TRUE(
              std::equal(got.begin(), got.end(), each.begin() + t0 * rows))
              << FormatName(w.format) << " m=" << mm << " from row " << t0
              << " on " << hwy::TargetName(targets[ti]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace bioquant
