#include "quant/bnb.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "quant/bnb_simd.h"
#include "quant/half.h"
#include "util/error.h"

// Everything here is plain f32 arithmetic with one rounding per operation:
// the build uses ISO C++ (-std=c++20, so GCC does not contract a*b+c into an
// FMA) and the few places where bnb/torch do use an FMA call std::fmaf.

namespace bioquant {
namespace {

// The f32 literals of kernels.cu / functional.py get_4bit_type('nf4').
constexpr std::array<float, 16> kNf4 = {-1.0f,
                                        -0.6961928009986877f,
                                        -0.5250730514526367f,
                                        -0.39491748809814453f,
                                        -0.28444138169288635f,
                                        -0.18477343022823334f,
                                        -0.09105003625154495f,
                                        0.0f,
                                        0.07958029955625534f,
                                        0.16093020141124725f,
                                        0.24611230194568634f,
                                        0.33791524171829224f,
                                        0.44070982933044434f,
                                        0.5626170039176941f,
                                        0.7229568362236023f,
                                        1.0f};

// FP4 magnitudes before the /12 normalisation, indexed by bits 2..0.
constexpr std::array<float, 8> kFp4Magnitude12 = {0.0f, 0.0625f, 8.0f, 12.0f,
                                                  4.0f, 6.0f,    2.0f, 3.0f};

// Magnitude bits by rank (number of thresholds exceeded): the magnitudes in
// ascending order are 0, 1/192, 1/6, 1/4, 1/3, 1/2, 2/3, 1.
constexpr std::array<uint8_t, 8> kFp4BitsByRank = {0b000, 0b001, 0b110, 0b111,
                                                   0b100, 0b101, 0b010, 0b011};

// torch.linspace(start, end, steps, dtype=float32) as torch 1.13's AVX2 CPU
// kernel computes it (this is what produced bnb's DYN map, SPEC §9-U3):
// step = (end - start) / (steps - 1) in f32; elements are produced 16 at a
// time as two 8-lane vectors whose base `start + step*idx` (or
// `end - step*(steps-idx-1)` past the halfway point) is contracted to an FMA
// while the lanes add `k*step` without one; the tail (< 16 elements) uses
// the scalar expression, also an FMA. Checked bit for bit against the DYN of
// shared/oracles/bnb/golden/tables.json by tests/quant.
std::vector<float> TorchLinspaceF32(float start, float end, int64_t steps) {
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  auto base = [&](int64_t idx) {
    return idx < halfway
               ? std::fmaf(step, static_cast<float>(idx), start)
               : std::fmaf(-step, static_cast<float>(steps - idx - 1), end);
  };
  std::vector<float> r(steps);
  constexpr int kLanes = 8;
  int64_t idx = 0;
  for (; idx + 2 * kLanes <= steps;) {
    for (int v = 0; v < 2; ++v, idx += kLanes) {
      const float b = base(idx);
      for (int k = 0; k < kLanes; ++k) {
        const float ks = static_cast<float>(k) * step;
        r[idx + k] = b + ks;
      }
    }
  }
  for (; idx < steps; ++idx) r[idx] = base(idx);
  return r;
}

std::array<float, 256> MakeDynamicMapSigned() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
  // for i in 0..6, 2^i means of linspace(0.1, 1, 2^i + 1) scaled by
  // 10^(i-6) (an f32 multiply: torch casts the Python scalar to f32), each
  // with both signs; plus 0 and 1; sorted.
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const int64_t items = (int64_t{1} << i) + 1;
    const std::vector<float> bnd = TorchLinspaceF32(0.1f, 1.0f, items);
    const float scale = static_cast<float>(std::pow(10.0, i - 6));
    for (int64_t j = 0; j + 1 < items; ++j) {
      const float mean = (bnd[j] + bnd[j + 1]) / 2.0f;
      const float v = scale * mean;
      data.push_back(v);
      data.push_back(-v);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  std::array<float, 256> out;
  std::copy(data.begin(), data.end(), out.begin());
  return out;
}

void CheckFormat4bit(WeightFormat f, const char* what) {
  if (f != WeightFormat::kNF4 && f != WeightFormat::kFP4) {
    Fail("{}: weight format {} is not a 4-bit format (nf4 or fp4)", what,
         FormatName(f));
  }
}

inline uint8_t Code4(WeightFormat f, float s) {
  return f == WeightFormat::kNF4 ? QuantizeNf4(s) : QuantizeFp4(s);
}

}  // namespace

const std::array<float, 16>& Nf4Code() { return kNf4; }

const std::array<float, 15>& Nf4Thresholds() {
  static const std::array<float, 15> t = [] {
    std::array<float, 15> r;
    for (int k = 0; k < 15; ++k) r[k] = (kNf4[k] + kNf4[k + 1]) / 2.0f;
    return r;
  }();
  return t;
}

const std::array<float, 16>& Fp4DequantLut() {
  static const std::array<float, 16> t = [] {
    std::array<float, 16> r;
    for (int c = 0; c < 16; ++c) {
      const float mag = kFp4Magnitude12[c & 7] / 12.0f;
      r[c] = (c & 8) ? -mag : mag;  // code 8 -> -0.0, as the CUDA kernel
    }
    return r;
  }();
  return t;
}

const std::array<float, 16>& Fp4QuantMap() {
  static const std::array<float, 16> t = [] {
    std::array<float, 16> r = Fp4DequantLut();
    r[8] = 0.0f;  // Python's `-0` literal is an integer: +0.0
    return r;
  }();
  return t;
}

const std::array<float, 7>& Fp4AbsThresholds() {
  static const std::array<float, 7> t = {0.00260417f, 0.0859375f, 0.20833333f,
                                         0.29166667f, 0.4166667f, 0.583333f,
                                         0.8333333f};
  return t;
}

const std::array<float, 256>& DynamicMapSigned() {
  static const std::array<float, 256> t = MakeDynamicMapSigned();
  return t;
}

const float* DequantLut(WeightFormat f) {
  CheckFormat4bit(f, "DequantLut");
  return f == WeightFormat::kNF4 ? kNf4.data() : Fp4DequantLut().data();
}

uint8_t QuantizeNf4(float s) {
  // The CUDA decision tree tests `s > t` at every node, so it is a count.
  const auto& t = Nf4Thresholds();
  uint8_t code = 0;
  for (int k = 0; k < 15; ++k) code += s > t[k] ? 1 : 0;
  return code;
}

uint8_t QuantizeFp4(float s) {
  const uint8_t sign = s < 0.0f ? 8 : 0;
  const float a = std::fabs(s);
  const auto& t = Fp4AbsThresholds();
  int rank = 0;
  for (int k = 0; k < 7; ++k) rank += a > t[k] ? 1 : 0;
  return kFp4BitsByRank[rank] + sign;
}

uint8_t QuantizeDynamic(const float* code, float x) {
  int pivot = 127, lo_p = 0, up_p = 255;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int step = 64; step >= 1; step /= 2) {
    if (x > val) {
      lo_p = pivot;
      lower = val;
      pivot += step;
    } else {
      up_p = pivot;
      upper = val;
      pivot -= step;
    }
    val = code[pivot];
  }
  if (up_p == 255) upper = code[255];
  if (lo_p == 0) lower = code[0];
  if (x > val) {
    const float mid = (upper + val) * 0.5f;
    return static_cast<uint8_t>(x > mid ? up_p : pivot);
  }
  const float mid = (lower + val) * 0.5f;
  return static_cast<uint8_t>(x < mid ? lo_p : pivot);
}

bool IsValidBlocksize(int b) {
  return b >= 32 && b <= 4096 && (b & (b - 1)) == 0;
}

float MeanF32(const float* v, int64_t n) {
  if (n == 0) return 0.0f;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += v[i];
  return static_cast<float>(sum / static_cast<double>(n));
}

void DoubleQuantize(const float* absmax, int64_t nblocks, float offset,
                    std::vector<uint8_t>* qabsmax,
                    std::vector<float>* nested_absmax, ThreadPool* pool) {
  constexpr int64_t kNested = 256;
  const float* dyn = DynamicMapSigned().data();
  qabsmax->assign(nblocks, 0);
  const int64_t nn = (nblocks + kNested - 1) / kNested;
  nested_absmax->assign(nn, 0.0f);
  // Nested blocks are independent: split them across the pool.
  auto range = [&](size_t k0, size_t k1, int) {
    float c[kNested];
    for (int64_t k = k0; k < static_cast<int64_t>(k1); ++k) {
      const int64_t b0 = k * kNested, b1 = std::min(nblocks, b0 + kNested);
      float amax = 0.0f;
      for (int64_t i = b0; i < b1; ++i) {
        c[i - b0] = absmax[i] - offset;
        amax = std::fmax(amax, std::fabs(c[i - b0]));
      }
      (*nested_absmax)[k] = amax;
      const float inv = 1.0f / amax;
      for (int64_t i = b0; i < b1; ++i) c[i - b0] *= inv;
      QuantizeDynamicSimd(dyn, c, b1 - b0, qabsmax->data() + b0);
    }
  };
  if (pool && nn > 1) {
    pool->ParallelFor(nn, range);
  } else {
    range(0, nn, 0);
  }
}

void Quantize4bitBlocksRef(const float* x, int64_t n, int64_t bs,
                           WeightFormat format, int64_t b0, int64_t b1,
                           float* absmax, uint8_t* packed) {
  std::vector<uint8_t> codes(bs + 1);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t i0 = b * bs, i1 = std::min(n, i0 + bs);
    float amax = 0.0f;
    for (int64_t i = i0; i < i1; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    absmax[b] = amax;
    // Multiply by the reciprocal, never divide (kernels.cu); an all-zero
    // block gives inv = inf, s = NaN and code 0 everywhere (§1.7).
    const float inv = 1.0f / amax;
    for (int64_t i = i0; i < i1; ++i) {
      codes[i - i0] = Code4(format, x[i] * inv);
    }
    int64_t len = i1 - i0;
    if (len & 1) codes[len++] = Code4(format, 0.0f * inv);  // odd-n padding
    for (int64_t j = 0; j < len; j += 2) {
      packed[(i0 + j) / 2] = static_cast<uint8_t>(codes[j] << 4 | codes[j + 1]);
    }
  }
}

namespace {

Quantized4bit Quantize4bitWith(bool simd, const float* x,
                               std::vector<int64_t> shape, WeightFormat format,
                               const QuantParams& params, DType dtype,
                               std::optional<float> nested_offset,
                               ThreadPool* pool) {
  CheckFormat4bit(format, "Quantize4bit");
  if (!IsValidBlocksize(params.blocksize)) {
    Fail(
        "unsupported 4-bit blocksize {} (bitsandbytes allows 32, 64, 128, "
        "256, 512, 1024, 2048, 4096)",
        params.blocksize);
  }
  Quantized4bit q;
  q.format = format;
  q.dtype = dtype;
  q.blocksize = params.blocksize;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) Fail("Quantize4bit: negative dimension in shape");
    n *= d;
  }
  q.shape = std::move(shape);
  q.numel = n;
  const int64_t bs = params.blocksize;
  const int64_t nb = q.nblocks();
  q.absmax.assign(nb, 0.0f);
  q.packed.assign((n + 1) / 2, 0);
  // Blocks [b0, b1): each writes only its own absmax and bytes (blocksizes
  // are even, so no byte is shared).
  auto blocks = [&](size_t b0, size_t b1, int) {
    (simd ? Quantize4bitBlocksSimd : Quantize4bitBlocksRef)(
        x, n, bs, format, b0, b1, q.absmax.data(), q.packed.data());
  };
  if (pool && nb > 1) {
    pool->ParallelFor(nb, blocks);
  } else {
    blocks(0, nb, 0);
  }
  q.double_quant = params.double_quant;
  if (params.double_quant) {
    q.nested_offset =
        nested_offset ? *nested_offset : MeanF32(q.absmax.data(), nb);
    DoubleQuantize(q.absmax.data(), nb, q.nested_offset, &q.qabsmax,
                   &q.nested_absmax, pool);
    const auto& dyn = DynamicMapSigned();
    q.nested_code.assign(dyn.begin(), dyn.end());
    std::vector<float>().swap(q.absmax);
  }
  return q;
}

}  // namespace

Quantized4bit Quantize4bit(const float* x, std::vector<int64_t> shape,
                           WeightFormat format, const QuantParams& params,
                           DType dtype, std::optional<float> nested_offset,
                           ThreadPool* pool) {
  return Quantize4bitWith(true, x, std::move(shape), format, params, dtype,
                          nested_offset, pool);
}

Quantized4bit Quantize4bitReference(const float* x, std::vector<int64_t> shape,
                                    WeightFormat format,
                                    const QuantParams& params, DType dtype,
                                    std::optional<float> nested_offset) {
  return Quantize4bitWith(false, x, std::move(shape), format, params, dtype,
                          nested_offset, nullptr);
}

Quantized4bit QuantizeTensor4bit(const TensorView& t, WeightFormat format,
                                 const QuantParams& params, ThreadPool* pool) {
  const std::vector<float> x = TensorToF32(t, pool);
  return WithContext(fmt::format("{}: {}", t.file, t.name), [&] {
    return Quantize4bit(x.data(), t.shape, format, params, t.dtype,
                        std::nullopt, pool);
  });
}

QuantizedInt8 QuantizeTensorInt8(const TensorView& t, ThreadPool* pool) {
  if (t.shape.size() != 2) {
    Fail("{}: {}: int8 quantization needs a 2-D [out, in] weight, got {}",
         t.file, t.name, t.ShapeString());
  }
  const std::vector<float> x = TensorToF32(t, pool);
  return QuantizeInt8Rows(x.data(), t.shape[0], t.shape[1], pool);
}

std::vector<float> TensorToF32(const TensorView& t, ThreadPool* pool) {
  std::vector<float> out(t.numel());
  TensorToF32(t, out.data(), pool);
  return out;
}

void TensorToF32(const TensorView& t, float* out, ThreadPool* pool) {
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::kF32:
      if (n > 0) std::memcpy(out, t.data, 4 * n);
      break;
    case DType::kBF16: {
      const auto* in = reinterpret_cast<const uint16_t*>(t.data);
      constexpr int64_t kChunk = 1 << 16;
      const int64_t chunks = (n + kChunk - 1) / kChunk;
      auto range = [&](size_t c0, size_t c1, int) {
        const int64_t i0 = c0 * kChunk;
        const int64_t i1 = std::min<int64_t>(n, c1 * kChunk);
        if (i1 > i0) Bf16ToF32Simd(in + i0, i1 - i0, out + i0);
      };
      if (pool && chunks > 1) {
        pool->ParallelFor(chunks, range);
      } else {
        range(0, chunks, 0);
      }
      break;
    }
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = F16ToF32(h);
      }
      break;
    default:
      Fail("{}: {}: dtype {} is not a float type (F32, BF16, F16)", t.file,
           t.name, DTypeName(t.dtype));
  }
}

WeightMatrix Quantized4bit::View() const {
  WeightMatrix w;
  w.format = format;
  w.rows = shape.size() >= 2 ? shape[0] : 1;
  w.cols = w.rows > 0 ? numel / w.rows : 0;
  w.data = PackedData();
  w.blocksize = blocksize;
  w.code = DequantLut(format);
  if (double_quant) {
    w.qabsmax = qabsmax.data();
    w.nested_code = nested_code.data();
    w.nested_absmax = nested_absmax.data();
    w.nested_offset = nested_offset;
    w.nested_blocksize = 256;
  } else {
    w.absmax = absmax.data();
  }
  return w;
}

float BlockAbsmax(const WeightMatrix& w, int64_t b) {
  if (w.qabsmax == nullptr) return w.absmax[b];
  // dequantize_blockwise, then `absmax += offset`: two f32 roundings.
  const float scaled =
      w.nested_code[w.qabsmax[b]] * w.nested_absmax[b / w.nested_blocksize];
  return scaled + w.nested_offset;
}

void Dequantize4bit(const WeightMatrix& w, float* out) {
  CheckFormat4bit(w.format, "Dequantize4bit");
  for (int64_t r = 0; r < w.rows; ++r) DequantizeRow(w, r, out + r * w.cols);
}

void DequantizeRow(const WeightMatrix& w, int64_t row, float* out) {
  const int64_t cols = w.cols;
  switch (w.format) {
    case WeightFormat::kF32: {
      const float* p = static_cast<const float*>(w.data) + row * cols;
      std::copy(p, p + cols, out);
      return;
    }
    case WeightFormat::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + row * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = Bf16ToF32(p[c]);
      return;
    }
    case WeightFormat::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + row * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = F16ToF32(p[c]);
      return;
    }
    case WeightFormat::kInt8Row: {
      const int8_t* p = static_cast<const int8_t*>(w.data) + row * cols;
      const float scb = w.row_scale[row];
      for (int64_t c = 0; c < cols; ++c) {
        const float t = static_cast<float>(p[c]) * scb;
        out[c] = t * kInv127;
      }
      return;
    }
    case WeightFormat::kNF4:
    case WeightFormat::kFP4: {
      // A row may start mid-block and mid-byte when cols is odd or not a
      // multiple of the blocksize: index by the global flat position.
      const uint8_t* p = static_cast<const uint8_t*>(w.data);
      const int64_t i0 = row * cols;
      int64_t cur_block = -1;
      float amax = 0.0f;
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = i0 + c;
        const int64_t b = i / w.blocksize;
        if (b != cur_block) {
          cur_block = b;
          amax = BlockAbsmax(w, b);
        }
        const uint8_t byte = p[i >> 1];
        const uint8_t code = (i & 1) ? (byte & 0x0f) : (byte >> 4);
        out[c] = w.code[code] * amax;
      }
      return;
    }
  }
}

void QuantizeInt8RowRef(const float* w, int64_t cols, float* w16, int8_t* q,
                        float* scb) {
  float amax = 0.0f;
  for (int64_t c = 0; c < cols; ++c) {
    w16[c] = RoundToF16(w[c]);  // Int8Params casts to fp16 first
    amax = std::fmax(amax, std::fabs(w16[c]));
  }
  *scb = amax;
  const float scale = 127.0f * (1.0f / amax);  // two roundings, as bnb
  for (int64_t c = 0; c < cols; ++c) {
    const float v = w16[c] * scale;
    // NaN (a zero row: 0 * inf) converts to 0 on CUDA.
    const float rounded = std::isnan(v) ? 0.0f : std::nearbyint(v);
    q[c] = static_cast<int8_t>(std::clamp(rounded, -128.0f, 127.0f));
  }
}

namespace {

QuantizedInt8 QuantizeInt8RowsWith(bool simd, const float* w, int64_t rows,
                                   int64_t cols, ThreadPool* pool) {
  QuantizedInt8 q;
  q.rows = rows;
  q.cols = cols;
  q.q.assign(rows * cols, 0);
  q.scb.assign(rows, 0.0f);
  auto row_range = [&](size_t r0, size_t r1, int) {
    std::vector<float> w16(cols);
    for (int64_t r = r0; r < static_cast<int64_t>(r1); ++r) {
      (simd ? QuantizeInt8RowSimd : QuantizeInt8RowRef)(
          w + r * cols, cols, w16.data(), q.q.data() + r * cols, &q.scb[r]);
    }
  };
  if (pool && rows > 1) {
    pool->ParallelFor(rows, row_range);
  } else {
    row_range(0, rows, 0);
  }
  return q;
}

}  // namespace

QuantizedInt8 QuantizeInt8Rows(const float* w, int64_t rows, int64_t cols,
                               ThreadPool* pool) {
  return QuantizeInt8RowsWith(true, w, rows, cols, pool);
}

QuantizedInt8 QuantizeInt8RowsReference(const float* w, int64_t rows,
                                        int64_t cols) {
  return QuantizeInt8RowsWith(false, w, rows, cols, nullptr);
}

WeightMatrix QuantizedInt8::View() const {
  WeightMatrix w;
  w.format = WeightFormat::kInt8Row;
  w.rows = rows;
  w.cols = cols;
  w.data = QData();
  w.row_scale = scb.data();
  return w;
}

double RoundTripRmse(const float* x, int64_t rows, int64_t cols,
                     WeightFormat format, const QuantParams& params) {
  std::vector<float> y(rows * cols);
  switch (format) {
    case WeightFormat::kF32:
      std::copy(x, x + rows * cols, y.begin());
      break;
    case WeightFormat::kBF16:
      for (int64_t i = 0; i < rows * cols; ++i) y[i] = RoundToBf16(x[i]);
      break;
    case WeightFormat::kF16:
      for (int64_t i = 0; i < rows * cols; ++i) y[i] = RoundToF16(x[i]);
      break;
    case WeightFormat::kInt8Row: {
      const QuantizedInt8 q = QuantizeInt8Rows(x, rows, cols);
      const WeightMatrix w = q.View();
      for (int64_t r = 0; r < rows; ++r) DequantizeRow(w, r, &y[r * cols]);
      break;
    }
    case WeightFormat::kNF4:
    case WeightFormat::kFP4: {
      const Quantized4bit q = Quantize4bit(x, {rows, cols}, format, params);
      Dequantize4bit(q.View(), y.data());
      break;
    }
  }
  double se = 0.0;
  for (int64_t i = 0; i < rows * cols; ++i) {
    const double d = static_cast<double>(y[i]) - x[i];
    se += d * d;
  }
  return rows * cols == 0 ? 0.0
                          : std::sqrt(se / static_cast<double>(rows * cols));
}

Int8Activations QuantizeActivationsInt8(const float* x, int64_t m, int64_t k,
                                        float threshold) {
  Int8Activations a;
  a.m = m;
  a.cols = k;
  // Activations in fp16, as MatMul8bitLt casts them.
  a.xh.resize(m * k);
  for (int64_t i = 0; i < m * k; ++i) a.xh[i] = RoundToF16(x[i]);
  const bool sparse = threshold > 0.0f;
  std::vector<char> outlier(k, 0);
  if (sparse) {
    for (int64_t i = 0; i < m * k; ++i) {
      if (std::fabs(a.xh[i]) >= threshold) outlier[i % k] = 1;
    }
  }
  for (int64_t c = 0; c < k; ++c) {
    if (outlier[c]) a.outlier_cols.push_back(c);
  }
  // Row-wise int8: the row absmax skips |x| >= threshold and whole outlier
  // columns are zeroed (they go through the 16-bit path).
  a.ca.assign(m * k, 0);
  a.sca.assign(m, 0.0f);
  for (int64_t t = 0; t < m; ++t) {
    const float* xr = &a.xh[t * k];
    float amax = 0.0f;
    for (int64_t c = 0; c < k; ++c) {
      const float v = std::fabs(xr[c]);
      if (!sparse || v < threshold) amax = std::fmax(amax, v);
    }
    a.sca[t] = amax;
    const float scale = 127.0f * (1.0f / amax);
    for (int64_t c = 0; c < k; ++c) {
      if (outlier[c]) continue;
      const float v = xr[c] * scale;
      const float rounded = std::isnan(v) ? 0.0f : std::nearbyint(v);
      a.ca[t * k + c] =
          static_cast<int8_t>(std::clamp(rounded, -128.0f, 127.0f));
    }
  }
  return a;
}

void LlmInt8OutlierWeights(const Int8Activations& a, const WeightMatrix& w,
                           int64_t r, float* sub_b) {
  const int8_t* cb = static_cast<const int8_t*>(w.data) + r * w.cols;
  for (size_t j = 0; j < a.outlier_cols.size(); ++j) {
    const float t = static_cast<float>(cb[a.outlier_cols[j]]) * w.row_scale[r];
    sub_b[j] = RoundToF16(t * kInv127);
  }
}

float LlmInt8Output(const Int8Activations& a, const WeightMatrix& w, int64_t t,
                    int64_t r, int64_t acc, const float* sub_b,
                    const float* bias) {
  constexpr float kMmDequant = 6.200012e-05f;  // 1/127^2, kernels.cu
  // kdequant_mm_int32_fp16: half(fmaf(acc * rowStat * colStat, C, bias)).
  const float prod = static_cast<float>(acc) * a.sca[t] * w.row_scale[r];
  float out = RoundToF16(std::fmaf(prod, kMmDequant, bias ? bias[r] : 0.0f));
  if (!a.outlier_cols.empty()) {
    // Outlier columns added back in 16-bit (f32 accumulate, fp16 result).
    float sum = out;
    const float* xt = &a.xh[t * a.cols];
    for (size_t j = 0; j < a.outlier_cols.size(); ++j) {
      sum += xt[a.outlier_cols[j]] * sub_b[j];
    }
    out = RoundToF16(sum);
  }
  return out;
}

void LlmInt8MatMulRows(const Int8Activations& a, const WeightMatrix& w,
                       const float* bias, float* y, int64_t r0, int64_t r1) {
  if (w.format != WeightFormat::kInt8Row) {
    Fail("LLM.int8 matmul: weight format {} is not int8", FormatName(w.format));
  }
  if (w.cols != a.cols) {
    Fail("LLM.int8 matmul: activations have {} columns, weight has {}", a.cols,
         w.cols);
  }
  const int64_t k = w.cols;
  const int8_t* cb = static_cast<const int8_t*>(w.data);
  std::vector<float> sub_b(a.outlier_cols.size());
  for (int64_t r = r0; r < r1; ++r) {
    LlmInt8OutlierWeights(a, w, r, sub_b.data());
    for (int64_t t = 0; t < a.m; ++t) {
      int64_t acc = 0;
      for (int64_t c = 0; c < k; ++c) {
        acc += int32_t{a.ca[t * k + c]} * int32_t{cb[r * k + c]};
      }
      y[t * w.rows + r] = LlmInt8Output(a, w, t, r, acc, sub_b.data(), bias);
    }
  }
}

void LlmInt8MatMulRef(const float* x, int64_t m, const WeightMatrix& w,
                      float threshold, const float* bias, float* y) {
  if (w.format != WeightFormat::kInt8Row) {
    Fail("LLM.int8 matmul: weight format {} is not int8", FormatName(w.format));
  }
  const Int8Activations a = QuantizeActivationsInt8(x, m, w.cols, threshold);
  LlmInt8MatMulRows(a, w, bias, y, 0, w.rows);
}

}  // namespace bioquant
