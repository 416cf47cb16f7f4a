#include "kernels/matmul.h"

#include <algorithm>
#include <vector>

#include "quant/formats.h"
#include "quant/half.h"
#include "util/error.h"

namespace bioquant {
namespace {

float ScalarAt(const WeightMatrix& w, int64_t r, int64_t c);

}  // namespace

void MatMul(const WeightMatrix& w, const float* x, int64_t m, float* y,
            ThreadPool* pool) {
  using RowsFn = void (*)(const WeightMatrix&, const float*, int64_t, float*,
                          int64_t, int64_t);
  RowsFn fn = nullptr;
  switch (w.format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      fn = &kernels::MatMulRowsFloat;
      break;
    default:
      Fail("matmul: no kernel for weight format {} yet", FormatName(w.format));
  }
  if (!pool || pool->size() == 1) {
    fn(w, x, m, y, 0, w.rows);
    return;
  }
  // Split rows in multiples of 4 (the kernels' row tile) across threads.
  const int64_t blocks = (w.rows + 3) / 4;
  pool->ParallelFor(blocks, [&](size_t b, size_t e, int) {
    fn(w, x, m, y, static_cast<int64_t>(b) * 4,
       std::min<int64_t>(w.rows, static_cast<int64_t>(e) * 4));
  });
}

void MatMulRef(const WeightMatrix& w, const float* x, int64_t m, float* y) {
  std::vector<float> row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) row[c] = ScalarAt(w, r, c);
    for (int64_t t = 0; t < m; ++t) {
      double sum = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum += double(row[c]) * x[t * w.cols + c];
      y[t * w.rows + r] = static_cast<float>(sum);
    }
  }
}

namespace {

float ScalarAt(const WeightMatrix& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  switch (w.format) {
    case WeightFormat::kF32:
      return static_cast<const float*>(w.data)[i];
    case WeightFormat::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(w.data)[i]);
    case WeightFormat::kF16:
      return F16ToF32(static_cast<const uint16_t*>(w.data)[i]);
    default:
      Fail("matmul reference: weight format {} not handled", FormatName(w.format));
  }
}

}  // namespace
}  // namespace bioquant
