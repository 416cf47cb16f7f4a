// RestrictIsa: each ISA class the CPU has becomes the dispatched target; an
// unknown or missing one is an error naming the flag; native undoes it.
#include "kernels/isa.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>

#include "util/error.h"

namespace bioquant {
namespace {

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class IsaTest : public ::testing::Test {
 protected:
  void TearDown() override { RestrictIsa("native"); }
};

TEST_F(IsaTest, NativeIsTheBestAvailableTarget) {
  RestrictIsa("native");
  const auto avail = AvailableTargetNames();
  ASSERT_FALSE(avail.empty());
  EXPECT_EQ(ActiveTargetName(), avail.front());
  EXPECT_EQ(RequestedIsa(), "native");
}

TEST_F(IsaTest, EachAvailableClassIsDispatched) {
  const auto avail = AvailableTargetNames();
  struct {
    const char* isa;
    std::vector<std::string> targets;  // acceptable dispatched targets
  } cases[] = {{"avx2", {"AVX2"}},
               {"sse4", {"SSE4"}},
               {"scalar", {"EMU128", "SCALAR"}},
               {"avx512", {"AVX3", "AVX3_DL", "AVX3_ZEN4", "AVX3_SPR"}}};
  int tried = 0;
  for (const auto& c : cases) {
    bool available = false;
    for (const auto& t : c.targets) available |= Has(avail, t);
    if (!available) {
      EXPECT_THROW(RestrictIsa(c.isa), Error) << c.isa;
      continue;
    }
    ++tried;
    RestrictIsa(c.isa);
    EXPECT_EQ(RequestedIsa(), c.isa);
    EXPECT_TRUE(Has(c.targets, ActiveTargetName()))
        << c.isa << " dispatched " << ActiveTargetName();
    // A later restriction replaces, not accumulates.
    RestrictIsa("native");
    EXPECT_EQ(ActiveTargetName(), avail.front());
  }
  EXPECT_GE(tried, 1);
}

TEST_F(IsaTest, UnknownIsaNamesTheFlag) {
  try {
    RestrictIsa("avx9000", "--isa");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--isa"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("avx9000"), std::string::npos);
  }
}

}  // namespace
}  // namespace bioquant

#include "kernels/matmul_4bit.h"

namespace bioquant {
namespace {

// Capability, not target names, picks the 4-bit lookup: every compiled x86
// SIMD target (SSE4, AVX2, AVX-512 and any later one) must use register
// tables; only the 1-lane fallback may skip them.
TEST(IsaKernels, NoX86SimdTargetTakesTheGatherPath) {
  const auto targets = hwy::SupportedAndGeneratedTargets();
  int checked = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string name = hwy::TargetName(targets[i]);
    const int vecs = kernels::Lut16VecsOnTarget(static_cast<int>(i));
    if (name == "SCALAR" || name == "EMU128") continue;
#if HWY_ARCH_X86
    EXPECT_GT(vecs, 0) << name << " decodes 4-bit weights with a gather";
    ++checked;
#endif
  }
#if HWY_ARCH_X86
  EXPECT_GE(checked, 1);
#endif
}

}  // namespace
}  // namespace bioquant
