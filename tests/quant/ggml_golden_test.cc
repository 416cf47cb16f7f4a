// ggml dequantization vs PyPI gguf's numpy reference, bit for bit, on every
// type import-gguf reads (goldens and how they were made:
// tests/quant/ggml_golden/README.md).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "quant/ggml.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

class GgmlGolden : public ::testing::TestWithParam<GgmlType> {};

TEST_P(GgmlGolden, BitExactWithGgufPy) {
  const GgmlType type = GetParam();
  const std::string base =
      testing::SourceDir() + "/tests/quant/ggml_golden/" + GgmlTypeName(type);
  const std::string packed = ReadFile(base + ".bin");
  const std::string want = ReadFile(base + ".f32");
  const size_t n = want.size() / 4;
  const GgmlTypeInfo& info = GgmlTypeInfoOf(type);
  ASSERT_EQ(packed.size(), n / info.block_elems * info.block_bytes);
  ASSERT_GE(n, 64u);
  std::vector<float> got(n, -12345.0f);
  DequantizeGgml(type, reinterpret_cast<const uint8_t*>(packed.data()), n,
                 got.data());
  size_t mismatches = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, want.data() + 4 * i, 4);
    if (a != b && mismatches++ < 5) {
      float w;
      std::memcpy(&w, &b, 4);
      ADD_FAILURE() << GgmlTypeName(type) << " element " << i << ": got "
                    << got[i] << " (0x" << std::hex << a << "), gguf-py " << w
                    << " (0x" << b << ")" << std::dec;
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, GgmlGolden,
    ::testing::Values(GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16,
                      GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0,
                      GgmlType::kQ5_1, GgmlType::kQ8_0, GgmlType::kQ2_K,
                      GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ5_K,
                      GgmlType::kQ6_K),
    [](const auto& info) { return std::string(GgmlTypeName(info.param)); });

TEST(GgmlTest, RejectsUnsupportedTypesAndPartialBlocks) {
  std::vector<uint8_t> buf(512);
  std::vector<float> out(256);
  EXPECT_FALSE(CanDequantizeGgml(GgmlType::kIQ2_XXS));
  EXPECT_TRUE(CanDequantizeGgml(GgmlType::kQ6_K));
  try {
    DequantizeGgml(GgmlType::kIQ2_XXS, buf.data(), 256, out.data());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS cannot be dequantized"),
              std::string::npos);
  }
  EXPECT_THROW(DequantizeGgml(GgmlType::kQ4_K, buf.data(), 100, out.data()),
               Error);
}

}  // namespace
}  // namespace bioquant
