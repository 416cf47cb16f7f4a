#include "kernels/matmul.h"

#include <algorithm>
#include <vector>

#include "kernels/matmul_4bit.h"
#include "kernels/matmul_int8.h"
#include "quant/bnb.h"
#include "quant/formats.h"
#include "quant/half.h"
#include "util/error.h"

namespace bioquant {
const char* ComputeTypeName(ComputeType c) {
  return c == ComputeType::kBF16 ? "bf16" : "f32";
}

ComputeType ParseComputeType(const std::string& s, const char* flag) {
  if (s == "f32") return ComputeType::kF32;
  if (s == "bf16") return ComputeType::kBF16;
  Fail("{}: unknown compute type '{}' (f32 or bf16)", flag, s);
}

void MatMul(const WeightMatrix& w, const float* x, int64_t m, float* y,
            ThreadPool* pool, ComputeType compute) {
  using RowsFn = void (*)(const WeightMatrix&, const float*, int64_t, float*,
                          int64_t, int64_t, bool);
  const bool bf16 = compute == ComputeType::kBF16;
  RowsFn fn = nullptr;
  switch (w.format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
    case WeightFormat::kF16:
      fn = &kernels::MatMulRowsFloat;
      break;
    case WeightFormat::kInt8Row:
      fn = &kernels::MatMulRowsInt8;
      break;
    case WeightFormat::kNF4:
    case WeightFormat::kFP4:
      fn = &kernels::MatMulRows4bit;
      break;
  }
  if (!pool || pool->size() == 1) {
    fn(w, x, m, y, 0, w.rows, bf16);
    return;
  }
  // Split rows in multiples of 8 (the GEMM panel height on AVX-512, two of
  // the small-m row tiles) across threads.
  const int64_t blocks = (w.rows + 7) / 8;
  pool->ParallelFor(blocks, [&](size_t b, size_t e, int) {
    fn(w, x, m, y, static_cast<int64_t>(b) * 8,
       std::min<int64_t>(w.rows, static_cast<int64_t>(e) * 8), bf16);
  });
}

void MatMulRef(const WeightMatrix& w, const float* x, int64_t m, float* y,
               ComputeType compute) {
  const bool bf16 = compute == ComputeType::kBF16;
  std::vector<float> row(w.cols), xr;
  if (bf16) {
    xr.assign(x, x + m * w.cols);
    for (float& v : xr) v = RoundToBf16(v);
    x = xr.data();
  }
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w, r, row.data());
    // int8 weights are integers (exact in bf16) times a row scale applied
    // to the f32 sum, so only the activations are rounded for them.
    if (bf16 && w.format != WeightFormat::kInt8Row) {
      for (float& v : row) v = RoundToBf16(v);
    }
    for (int64_t t = 0; t < m; ++t) {
      double sum = 0;
      for (int64_t c = 0; c < w.cols; ++c)
        sum += double(row[c]) * x[t * w.cols + c];
      y[t * w.rows + r] = static_cast<float>(sum);
    }
  }
}

}  // namespace bioquant
