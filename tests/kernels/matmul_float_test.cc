// The float-format SIMD matmul against the scalar reference, on every Highway
// target compiled into this binary that this CPU can run.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "quant/half.h"

namespace bioquant {
namespace {

// Named error limits (STYLE habit 4): the SIMD path sums in f32 in another
// order than the double-accumulating reference.
constexpr float kFloatMatMulRelTol = 2e-5f;  // of sum |w*x|

struct Case {
  int64_t rows, cols, m;
};

void Check(WeightFormat f, const Case& c) {
  std::mt19937 rng(static_cast<unsigned>(c.rows * 131 + c.cols * 7 + c.m));
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> wf(c.rows * c.cols), x(c.m * c.cols);
  for (auto& v : wf) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  std::vector<uint16_t> w16(wf.size());
  WeightMatrix w;
  w.format = f;
  w.rows = c.rows;
  w.cols = c.cols;
  if (f == WeightFormat::kF32) {
    w.data = wf.data();
  } else {
    for (size_t i = 0; i < wf.size(); ++i)
      w16[i] = f == WeightFormat::kBF16 ? F32ToBf16(wf[i]) : F32ToF16(wf[i]);
    w.data = w16.data();
  }
  std::vector<float> ref(c.m * c.rows), got(c.m * c.rows);
  MatMulRef(w, x.data(), c.m, ref.data());
  // Scale for the tolerance: sum |w| |x| per output.
  for (int t = 0; t < kernels::NumFloatTargets(); ++t) {
    std::fill(got.begin(), got.end(), NAN);
    kernels::MatMulRowsFloatOnTarget(t, w, x.data(), c.m, got.data(), 0,
                                     c.rows);
    for (int64_t i = 0; i < c.m * c.rows; ++i) {
      const float tol =
          kFloatMatMulRelTol * std::sqrt(float(c.cols)) * 4 + 1e-6f;
      ASSERT_NEAR(got[i], ref[i], tol)
          << FormatName(f) << " target " << kernels::FloatTargetName(t)
          << " shape " << c.rows << "x" << c.cols << " m=" << c.m << " i=" << i;
    }
  }
}

TEST(MatMulFloatTest, MatchesReferenceOnEveryTarget) {
  ASSERT_GE(kernels::NumFloatTargets(), 1);
  for (WeightFormat f :
       {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kF16}) {
    for (Case c :
         {Case{1, 1, 1}, Case{7, 33, 1}, Case{8, 64, 5}, Case{13, 172, 9},
          Case{64, 256, 4}, Case{5, 1000, 70}, Case{37, 1536, 70}}) {
      Check(f, c);
    }
  }
}

TEST(MatMulFloatTest, ThreadedEqualsSingleThreaded) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int64_t rows = 37, cols = 96, m = 6;
  std::vector<float> wf(rows * cols), x(m * cols);
  for (auto& v : wf) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  WeightMatrix w{WeightFormat::kF32, rows, cols, wf.data()};
  std::vector<float> a(m * rows), b(m * rows);
  MatMul(w, x.data(), m, a.data(), nullptr);
  ThreadPool pool(3);
  MatMul(w, x.data(), m, b.data(), &pool);
  EXPECT_EQ(a, b);
}

TEST(OpsTest, DotAndAxpyMatchReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (size_t n : {0u, 1u, 15u, 16u, 64u, 131u}) {
    std::vector<float> a(n), b(n), y1(n), y2(n);
    for (size_t i = 0; i < n; ++i) {
      a[i] = nd(rng);
      b[i] = nd(rng);
      y1[i] = y2[i] = nd(rng);
    }
    EXPECT_NEAR(Dot(a.data(), b.data(), n), DotRef(a.data(), b.data(), n),
                1e-5 * (n + 1));
    Axpy(0.37f, a.data(), y1.data(), n);
    AxpyRef(0.37f, a.data(), y2.data(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(y1[i], y2[i], 1e-6);
  }
}

TEST(OpsTest, RmsNormAndSoftmax) {
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f};
  float out[4];
  RmsNorm(x, w, 4, 0.0, out);
  const float inv = 1.0f / std::sqrt(30.0f / 4);
  EXPECT_NEAR(out[0], 1 * inv, 1e-6);
  EXPECT_NEAR(out[2], 6 * inv, 1e-6);
  EXPECT_NEAR(out[3], 2 * inv, 1e-6);
  float s[3] = {-3, -3, -3 + std::log(2.0f)};
  Softmax(s, 3);
  EXPECT_NEAR(s[0], 0.25, 1e-6);
  EXPECT_NEAR(s[2], 0.5, 1e-6);
}

}  // namespace
}  // namespace bioquant
