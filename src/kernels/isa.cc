// Restricting Highway's dispatch (see isa.h). Highway numbers x86 targets so
// that a lower bit is a better target; restricting to class C disables every
// target better than C's best one this CPU supports, which keeps the worse
// ones as the fallback Highway needs.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/isa.cc"
#include "kernels/isa.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace bioquant {
namespace HWY_NAMESPACE {
// The target this copy was compiled for: what the dispatcher picked.
int64_t CompiledTarget() { return HWY_TARGET; }
}  // namespace HWY_NAMESPACE
}  // namespace bioquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cstdlib>
#include <mutex>

#include "util/error.h"

namespace bioquant {
HWY_EXPORT(CompiledTarget);
namespace {

std::mutex g_mu;
std::string g_requested = "native";

// The compiled targets this CPU runs, best first. First computed while no
// restriction is in force (RestrictIsa lifts it before the first call).
const std::vector<int64_t>& CpuTargets() {
  static const std::vector<int64_t> t = hwy::SupportedAndGeneratedTargets();
  return t;
}

// Bits of HWY_TARGETS (compiled) that belong to an ISA class.
int64_t ClassMask(const std::string& name) {
#if HWY_ARCH_X86
  // Every AVX-512 target Highway has or will have sorts at or above AVX3
  // (AVX3_DL, AVX3_ZEN4, AVX3_SPR are lower bits), so "AVX3 or better".
  if (name == "avx512") return HWY_TARGETS & ((HWY_AVX3 << 1) - 1);
  if (name == "avx2") return HWY_TARGETS & HWY_AVX2;
  if (name == "sse4") return HWY_TARGETS & HWY_SSE4;
#endif
  if (name == "scalar") return HWY_TARGETS & (HWY_EMU128 | HWY_SCALAR);
  return -1;
}

}  // namespace

void RestrictIsa(const std::string& name, const char* what) {
  std::lock_guard<std::mutex> lock(g_mu);
  CpuTargets();  // computed before any restriction takes effect
  if (name == "native" || name.empty()) {
    hwy::DisableTargets(0);
    g_requested = "native";
    return;
  }
  const int64_t cls = ClassMask(name);
  if (cls < 0) {
    Fail("{}: unknown ISA '{}' (native, avx512, avx2, sse4, scalar)", what,
         name);
  }
  hwy::DisableTargets(0);  // undo an earlier restriction first
  int64_t usable = 0;
  for (int64_t t : CpuTargets()) usable |= t & cls;
  if (usable == 0) {
    std::string have;
    for (const std::string& t : AvailableTargetNames()) {
      have += (have.empty() ? "" : ", ") + t;
    }
    Fail("{}: ISA '{}' is not available on this CPU/build (available: {})",
         what, name, have);
  }
  const int64_t best = usable & -usable;  // lowest bit = best target
  hwy::DisableTargets(best - 1);          // every better target
  g_requested = name;
}

void ApplyIsaFromEnvironment() {
  const char* env = std::getenv("BIOQUANT_ISA");
  if (env != nullptr && *env != '\0') RestrictIsa(env, "BIOQUANT_ISA");
}

std::string RequestedIsa() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_requested;
}

std::string ActiveTargetName() {
  return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CompiledTarget)());
}

std::vector<std::string> AvailableTargetNames() {
  std::vector<std::string> out;
  for (int64_t t : CpuTargets()) {
    out.push_back(hwy::TargetName(t));
  }
  return out;
}

}  // namespace bioquant
#endif  // HWY_ONCE
