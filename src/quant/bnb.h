// bitsandbytes weight formats, scalar reference (STYLE habit 3): NF4 / FP4
// blockwise 4-bit with optional double quantization, int8 row-wise absmax
// (LLM.int8 weights) and the LLM.int8 activation path. Bit-exact with the
// bnb CUDA kernels as specified in shared/oracles/bnb/SPEC.md (section
// numbers below refer to it). The SIMD kernels are tested against
// DequantizeRow.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/formats.h"
#include "util/thread_pool.h"

namespace bioquant {

// ---- Code tables -----------------------------------------------------------

// NF4 value of each code (§1.4), ascending: code 0 = -1, 7 = 0, 15 = 1.
const std::array<float, 16>& Nf4Code();
// The 15 NF4 decision thresholds t_k (f32 midpoints of neighbouring codes).
const std::array<float, 15>& Nf4Thresholds();
// FP4 value of each code as the CUDA dequant kernel sees it (§1.5):
// bit 3 = sign, bits 2..0 index the magnitude; code 8 is -0.0.
const std::array<float, 16>& Fp4DequantLut();
// The FP4 quant_map serialized in checkpoints: as above but entry 8 is +0.0.
const std::array<float, 16>& Fp4QuantMap();
// The 7 FP4 magnitude thresholds exactly as the CUDA source literals (not the
// exact midpoints: 0.583333f is 6 ulp below 7/12).
const std::array<float, 7>& Fp4AbsThresholds();
// DYN = create_dynamic_map(signed=True, 7, 8): 256 sorted f32 values used to
// quantize the absmax vector with double quantization (§2.2).
const std::array<float, 256>& DynamicMapSigned();

// The code table a 4-bit dequantizer uses for `f` (kNF4 or kFP4).
const float* DequantLut(WeightFormat f);

// Single-value quantizers on a scaled value s = x * (1/absmax).
uint8_t QuantizeNf4(float s);  // #{k : s > t_k}; NaN -> 0
uint8_t QuantizeFp4(float s);  // sign bit 8 if s < 0 (not for -0 or NaN)
// dQuantize<0> of kernels.cu: nearest entry of the sorted code[256] with
// f32 midpoints and the path-dependent tie rule of the CUDA binary search.
uint8_t QuantizeDynamic(const float* code256, float x);

// 32, 64, ..., 4096 (§1.2).
bool IsValidBlocksize(int blocksize);

// ---- 4-bit blockwise -------------------------------------------------------

// A 4-bit tensor with every statistic it owns. Layout per SPEC §1.6 / §2:
// the tensor is flattened row-major (n = numel), block b covers flat indices
// [b*blocksize, min(n, (b+1)*blocksize)).
struct Quantized4bit {
  WeightFormat format = WeightFormat::kNF4;  // kNF4 or kFP4
  std::vector<int64_t> shape;                // original shape, e.g. [out, in]
  DType dtype = DType::kF32;  // dtype of the weight that was quantized
  int64_t numel = 0;
  int blocksize = 64;
  // [ceil(n/2)] u8: element 2j in the HIGH nibble of byte j, 2j+1 in the low
  // nibble; for odd n the last low nibble is the code of 0.0 (padding).
  std::vector<uint8_t> packed;
  // Or, for a checkpoint read in place (ReadBnb4bit with borrow), the same
  // bytes in the checkpoint's mapping (packed stays empty; the mapping must
  // outlive this). Read the codes through PackedData()/PackedSize().
  const uint8_t* packed_borrowed = nullptr;
  // [nblocks] f32 max|x| per block; empty with double quant (the first-level
  // absmax is not part of that format and would cost 0.5 bit per weight).
  std::vector<float> absmax;
  bool double_quant = false;
  std::vector<uint8_t> qabsmax;      // [nblocks] DYN codes of absmax - offset
  std::vector<float> nested_absmax;  // [ceil(nblocks/256)] f32
  float nested_offset = 0.0f;        // f32 mean of absmax
  std::vector<float> nested_code;    // [256] DYN (or the checkpoint's map)

  int64_t nblocks() const { return (numel + blocksize - 1) / blocksize; }
  const uint8_t* PackedData() const {
    return packed_borrowed ? packed_borrowed : packed.data();
  }
  size_t PackedSize() const {
    return packed_borrowed ? static_cast<size_t>((numel + 1) / 2)
                           : packed.size();
  }
  // A [rows, cols] view: rows = shape[0], cols = numel / rows (1-D: [1, n]).
  WeightMatrix View() const;
};

// Quantizes n = prod(shape) f32 values (bf16/f16 inputs are widened exactly
// by the caller; `dtype` records what they were). `nested_offset`, when set,
// replaces the computed mean of absmax (SPEC §9-U2: tests inject the offset
// stored in a golden file). Throws Error for an unsupported blocksize/format.
// Blocks are independent, so `pool` (optional) splits them across threads;
// the result is the same bytes either way. Runs the SIMD quantizer of
// quant/bnb_simd.h (bit-identical with Quantize4bitReference).
Quantized4bit Quantize4bit(const float* x, std::vector<int64_t> shape,
                           WeightFormat format, const QuantParams& params,
                           DType dtype = DType::kF32,
                           std::optional<float> nested_offset = std::nullopt,
                           ThreadPool* pool = nullptr);

// The scalar reference the SIMD quantizer above is tested against (same
// bytes; single-threaded).
Quantized4bit Quantize4bitReference(
    const float* x, std::vector<int64_t> shape, WeightFormat format,
    const QuantParams& params, DType dtype = DType::kF32,
    std::optional<float> nested_offset = std::nullopt);

// Quantizes a checkpoint tensor (F32/BF16/F16, widened exactly; the quant
// state records its dtype). Errors name the tensor and file.
Quantized4bit QuantizeTensor4bit(const TensorView& t, WeightFormat format,
                                 const QuantParams& params,
                                 ThreadPool* pool = nullptr);

// Any float tensor (F32, BF16, F16; widening is exact) as f32. Throws Error
// naming the tensor and file for other dtypes. bf16 is widened with SIMD,
// split across `pool` when given.
std::vector<float> TensorToF32(const TensorView& t, ThreadPool* pool = nullptr);
// The same into out[t.numel()] (a buffer the caller reuses: fresh pages for
// every tensor of a model cost more page faults than the widening itself).
void TensorToF32(const TensorView& t, float* out, ThreadPool* pool = nullptr);

// The offset double quantization subtracts: mean(absmax) as an f32. Computed
// in double and rounded once; torch's f32 reduction can differ in the last
// ulp (SPEC §9-U2), which checkpoints make irrelevant (the offset is stored).
float MeanF32(const float* v, int64_t n);

// Quantizes absmax[nblocks] - offset with DYN in blocks of 256 (§2.1);
// `pool` (optional) splits the blocks of 256, same bytes.
void DoubleQuantize(const float* absmax, int64_t nblocks, float offset,
                    std::vector<uint8_t>* qabsmax,
                    std::vector<float>* nested_absmax,
                    ThreadPool* pool = nullptr);

// The f32 absmax of block b as every dequantizer sees it (§2.4):
//   f32(f32(nested_code[q[b]] * nested_absmax[b/256]) + offset), or absmax[b].
float BlockAbsmax(const WeightMatrix& w, int64_t block);

// Whole 4-bit tensor, flattened: out[numel] f32 = LUT[code] * absmax (§1.8).
// Round to bf16/f16 with half.h to get bnb's 16-bit output.
void Dequantize4bit(const WeightMatrix& w, float* out);

// ---- int8 row-wise (LLM.int8 weights, §4.1) ---------------------------------

struct QuantizedInt8 {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;   // CB [rows, cols] row-major
  std::vector<float> scb;  // SCB [rows] f32 = max|fp16(W[r, :])|
  // Or CB in a checkpoint's mapping (ReadBnbInt8 with borrow; q empty).
  const int8_t* q_borrowed = nullptr;
  const int8_t* QData() const { return q_borrowed ? q_borrowed : q.data(); }
  WeightMatrix View() const;
};

// W is cast to fp16 first (as Int8Params does), then per row:
// scale = 127 * f32(1/SCB) (two roundings), CB = rint(f32(w16) * scale).
// Rows are independent: `pool` (optional) splits them, same bytes.
// SIMD (quant/bnb_simd.h); QuantizeInt8RowsReference is the scalar
// reference it is tested against.
QuantizedInt8 QuantizeInt8Rows(const float* w, int64_t rows, int64_t cols,
                               ThreadPool* pool = nullptr);
QuantizedInt8 QuantizeInt8RowsReference(const float* w, int64_t rows,
                                        int64_t cols);
// A 2-D [out, in] checkpoint tensor (F32/BF16/F16).
QuantizedInt8 QuantizeTensorInt8(const TensorView& t,
                                 ThreadPool* pool = nullptr);

// 1/127 as f32: W' = f32(f32(CB * SCB) * kInv127).
inline constexpr float kInv127 = 0.007874015718698502f;

// ---- every format ----------------------------------------------------------

// Row `row` of W as f32 (out[cols]); the reference the SIMD kernels are
// tested against. f32/bf16/f16 exact, int8 per §4.1, nf4/fp4 per §1.8.
void DequantizeRow(const WeightMatrix& w, int64_t row, float* out);

// RMSE between x and its quantize->dequantize round trip (quantization tests,
// STYLE habit 4). For 4-bit uses Quantize4bit with `params`.
double RoundTripRmse(const float* x, int64_t rows, int64_t cols,
                     WeightFormat format, const QuantParams& params = {});

// ---- LLM.int8 matmul (§4.3) -------------------------------------------------

// y[m, w.rows] = x[m, w.cols] · W^T the way bnb's Linear8bitLt computes it:
// x is cast to fp16; columns holding any |x| >= threshold are outliers and are
// multiplied in 16-bit against the dequantized weight columns (rounded to
// fp16); the rest is quantized per row to int8 (absmax over the non-outlier
// entries, scale 127 * (1/absmax)) and multiplied in int32, then dequantized
// as fp16(fmaf(acc * SCA * SCB, 6.200012e-05f, bias)) like the CUDA kernel.
// threshold 0 disables the outlier split (plain W8A8). bias: [w.rows] or
// null. The output values are fp16-rounded (bnb's output dtype is fp16).
// Throws Error if w is not kInt8Row.
void LlmInt8MatMulRef(const float* x, int64_t m, const WeightMatrix& w,
                      float threshold, const float* bias, float* y);

// The same in two steps, so a caller can quantize the activations once and
// split the weight rows across threads.
struct Int8Activations {
  int64_t m = 0, cols = 0;
  std::vector<float> xh;              // [m, cols] x rounded to fp16
  std::vector<int8_t> ca;             // [m, cols] int8, outlier columns 0
  std::vector<float> sca;             // [m] row absmax (non-outliers)
  std::vector<int64_t> outlier_cols;  // ascending column indices
};
Int8Activations QuantizeActivationsInt8(const float* x, int64_t m, int64_t cols,
                                        float threshold);
// y[t * w.rows + r] for r in [r0, r1).
void LlmInt8MatMulRows(const Int8Activations& a, const WeightMatrix& w,
                       const float* bias, float* y, int64_t r0, int64_t r1);
// The parts around the int32 GEMM, shared with the SIMD kernel
// (kernels/matmul_int8.h) so both give the same bits:
// sub_b[j] = fp16(W'[r, outlier_cols[j]]), [outlier_cols.size()].
void LlmInt8OutlierWeights(const Int8Activations& a, const WeightMatrix& w,
                           int64_t r, float* sub_b);
// y[t, r] from the int32 accumulator acc = sum_c CA[t, c] * CB[r, c].
float LlmInt8Output(const Int8Activations& a, const WeightMatrix& w, int64_t t,
                    int64_t r, int64_t acc, const float* sub_b,
                    const float* bias);

}  // namespace bioquant
