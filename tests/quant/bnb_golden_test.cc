// Bit-exact checks against the bitsandbytes golden vectors in
// ../shared/oracles/bnb/golden (see its README): every 4-bit and int8 case,
// plus the code tables.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/bnb.h"
#include "quant/half.h"
#include "testing.h"

namespace bioquant {
namespace {

std::string GoldenDir() { return testing::OracleDir() + "/bnb/golden"; }

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

uint32_t ParseHex(const std::string& s) {
  return static_cast<uint32_t>(std::stoul(s, nullptr, 16));
}

// Compares raw bytes and reports the first differing element.
void ExpectBytes(const std::string& what, const void* got, size_t got_bytes,
                 const TensorView& want, size_t elem = 1) {
  ASSERT_EQ(got_bytes, want.nbytes) << what << ": byte size";
  const uint8_t* g = static_cast<const uint8_t*>(got);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got_bytes; i += elem) {
    if (std::memcmp(g + i, want.data + i, elem) != 0) {
      if (bad++ == 0) first = i / elem;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements differ, first at "
                     << first;
}

void ExpectF32Bits(const std::string& what, const std::vector<float>& got,
                   const TensorView& want) {
  ASSERT_EQ(want.dtype, DType::kF32) << what;
  ExpectBytes(what, got.data(), got.size() * 4, want, 4);
}

TEST(BnbTables, MatchGolden) {
  BIOQUANT_REQUIRE_SHARED();
  const nlohmann::json t = ReadJson(GoldenDir() + "/tables.json");
  auto check = [&](const char* key, const float* v, size_t n) {
    const auto& hex = t.at(key);
    ASSERT_EQ(hex.size(), n) << key;
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(F32Bits(v[i]), ParseHex(hex[i].get<std::string>()))
          << key << "[" << i << "]";
    }
  };
  check("nf4_code_hex", Nf4Code().data(), 16);
  check("nf4_thresholds_hex", Nf4Thresholds().data(), 15);
  check("fp4_quant_map_hex", Fp4QuantMap().data(), 16);
  check("fp4_cuda_lut16_hex", Fp4DequantLut().data(), 16);
  check("fp4_abs_thresholds_hex", Fp4AbsThresholds().data(), 7);
  check("dynamic_map_signed_hex", DynamicMapSigned().data(), 256);
}

TEST(BnbTables, DynamicSearchTieRules) {
  const float* dyn = DynamicMapSigned().data();
  EXPECT_EQ(QuantizeDynamic(dyn, -2.0f), 0);
  EXPECT_EQ(QuantizeDynamic(dyn, -1.0f), 0);
  EXPECT_EQ(QuantizeDynamic(dyn, 2.0f), 255);
  EXPECT_EQ(QuantizeDynamic(dyn, 0.0f), 127);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(QuantizeDynamic(dyn, dyn[i]), i);
  // Nearest code away from ties.
  for (int i = 0; i + 1 < 256; ++i) {
    const float mid = (dyn[i] + dyn[i + 1]) * 0.5f;
    EXPECT_EQ(QuantizeDynamic(dyn, std::nextafter(mid, -2.0f)), i) << i;
    EXPECT_EQ(QuantizeDynamic(dyn, std::nextafter(mid, 2.0f)), i + 1) << i;
  }
}

TEST(BnbTables, Fp4AndNf4Rules) {
  // Ties go to the lower NF4 code; FP4 ties to the smaller magnitude.
  const auto& t = Nf4Thresholds();
  for (int k = 0; k < 15; ++k) {
    EXPECT_EQ(QuantizeNf4(t[k]), k);
    EXPECT_EQ(QuantizeNf4(std::nextafter(t[k], 2.0f)), k + 1);
  }
  EXPECT_EQ(QuantizeNf4(std::nanf("")), 0);
  EXPECT_EQ(QuantizeFp4(0.583333f), 0b0101);  // 1/2, not 2/3
  EXPECT_EQ(QuantizeFp4(-0.583333f), 0b1101);
  EXPECT_EQ(QuantizeFp4(7.0f / 12.0f), 0b0010);  // above the literal
  EXPECT_EQ(QuantizeFp4(-0.0f), 0);
  EXPECT_EQ(QuantizeFp4(-1e-6f), 8);
  EXPECT_EQ(QuantizeFp4(1.0000001f), 0b0011);
}

// ---- 4-bit cases -----------------------------------------------------------

struct Counts {
  int cases = 0;
};

void Check4bitCase(const nlohmann::json& c) {
  const std::string file = GoldenDir() + "/" + c.at("file").get<std::string>();
  SCOPED_TRACE(file);
  auto store = TensorStore::OpenFile(file);
  const TensorView& input = store->Get("input");
  const std::vector<float> x = TensorToF32(input);
  const WeightFormat fmt =
      c.at("quant_type") == "nf4" ? WeightFormat::kNF4 : WeightFormat::kFP4;
  QuantParams p;
  p.blocksize = c.at("blocksize");
  p.double_quant = c.at("double_quant");
  std::optional<float> offset;
  if (p.double_quant) {
    const std::vector<float> off = TensorToF32(store->Get("nested_offset"));
    ASSERT_EQ(off.size(), 1u);
    offset = off[0];
    // Our own mean may differ from torch's f32 reduction in the last ulp
    // only (SPEC §9-U2).
    Quantized4bit own = Quantize4bit(x.data(), input.shape, fmt, p);
    const int64_t ulps =
        std::abs(static_cast<int64_t>(F32Bits(own.nested_offset)) -
                 static_cast<int64_t>(F32Bits(off[0])));
    EXPECT_LE(ulps, 1) << "offset " << own.nested_offset << " vs " << off[0];
    EXPECT_EQ(F32Bits(off[0]),
              ParseHex(c.at("nested_offset_hex").get<std::string>()));
  }
  const Quantized4bit q =
      Quantize4bit(x.data(), input.shape, fmt, p, input.dtype, offset);
  EXPECT_EQ(q.nblocks(), c.at("n_blocks").get<int64_t>());

  const TensorView& packed = store->Get("packed");
  EXPECT_EQ(packed.shape, (std::vector<int64_t>{(q.numel + 1) / 2, 1}));
  ExpectBytes("packed", q.packed.data(), q.packed.size(), packed);

  std::vector<uint8_t> codes(q.numel);
  for (int64_t i = 0; i < q.numel; ++i) {
    codes[i] = (i & 1) ? (q.packed[i / 2] & 15) : (q.packed[i / 2] >> 4);
  }
  ExpectBytes("codes", codes.data(), codes.size(), store->Get("codes"));
  if (p.double_quant) {
    // The first-level absmax is not kept with double quant: it is the one
    // of the same quantization without it.
    EXPECT_TRUE(q.absmax.empty());
    const Quantized4bit plain = Quantize4bit(x.data(), input.shape, fmt,
                                             QuantParams{p.blocksize, false});
    ExpectF32Bits("absmax_fp32", plain.absmax, store->Get("absmax_fp32"));
    EXPECT_EQ(plain.packed, q.packed);
  } else {
    ExpectF32Bits("absmax_fp32", q.absmax, store->Get("absmax_fp32"));
  }
  if (p.double_quant) {
    ExpectBytes("qabsmax", q.qabsmax.data(), q.qabsmax.size(),
                store->Get("qabsmax"));
    ExpectF32Bits("nested_absmax", q.nested_absmax,
                  store->Get("nested_absmax"));
    EXPECT_EQ(static_cast<int64_t>(q.nested_absmax.size()),
              c.at("n_nested_blocks").get<int64_t>());
  }
  const WeightMatrix w = q.View();
  std::vector<float> amax(q.nblocks());
  for (int64_t b = 0; b < q.nblocks(); ++b) amax[b] = BlockAbsmax(w, b);
  ExpectF32Bits("absmax_dequant_fp32", amax, store->Get("absmax_dequant_fp32"));

  std::vector<float> deq(q.numel);
  Dequantize4bit(w, deq.data());
  ExpectF32Bits("dequant_fp32", deq, store->Get("dequant_fp32"));
  const TensorView& deq16 = store->Get("dequant");
  ASSERT_EQ(deq16.dtype, input.dtype);
  if (input.dtype == DType::kBF16) {
    std::vector<uint16_t> h(q.numel);
    for (int64_t i = 0; i < q.numel; ++i) h[i] = F32ToBf16(deq[i]);
    ExpectBytes("dequant bf16", h.data(), h.size() * 2, deq16, 2);
  } else {
    ExpectF32Bits("dequant f32", deq, deq16);
  }
  // DequantizeRow agrees with the whole-tensor path on every row.
  std::vector<float> row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w, r, row.data());
    ASSERT_EQ(0, std::memcmp(row.data(), &deq[r * w.cols], w.cols * 4)) << r;
  }
}

TEST(BnbGolden, FourBitCasesBitExact) {
  BIOQUANT_REQUIRE_SHARED();
  const nlohmann::json m = ReadJson(GoldenDir() + "/manifest.json");
  int n = 0;
  for (const auto& c : m.at("cases")) {
    if (c.contains("kind")) continue;
    Check4bitCase(c);
    ++n;
  }
  EXPECT_EQ(n, 80);
}

TEST(BnbGolden, Int8CasesBitExact) {
  BIOQUANT_REQUIRE_SHARED();
  const nlohmann::json m = ReadJson(GoldenDir() + "/manifest.json");
  int n = 0;
  for (const auto& c : m.at("cases")) {
    if (c.value("kind", "") != "int8_rowwise") continue;
    ++n;
    const std::string file =
        GoldenDir() + "/" + c.at("file").get<std::string>();
    SCOPED_TRACE(file);
    auto store = TensorStore::OpenFile(file);
    const TensorView& input = store->Get("input");
    ASSERT_EQ(input.shape.size(), 2u);
    const std::vector<float> x = TensorToF32(input);
    const QuantizedInt8 q =
        QuantizeInt8Rows(x.data(), input.shape[0], input.shape[1]);
    const TensorView& cb = store->Get("CB");
    EXPECT_EQ(cb.dtype, DType::kI8);
    ExpectBytes("CB", q.q.data(), q.q.size(), cb);
    ExpectF32Bits("SCB", q.scb, store->Get("SCB"));
    // The fp16 cast bnb applies first.
    const std::vector<float> x16 = TensorToF32(store->Get("input_fp16"));
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(F32Bits(RoundToF16(x[i])), F32Bits(x16[i])) << i;
    }
    std::vector<float> deq(q.rows * q.cols);
    const WeightMatrix w = q.View();
    for (int64_t r = 0; r < q.rows; ++r) {
      DequantizeRow(w, r, &deq[r * q.cols]);
    }
    ExpectF32Bits("dequant_fp32", deq, store->Get("dequant_fp32"));
  }
  EXPECT_EQ(n, 12);
}

}  // namespace
}  // namespace bioquant
