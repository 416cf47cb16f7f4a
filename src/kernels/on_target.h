// Test hook shared by the per-format kernels: run one dispatched call on a
// specific compiled Highway target (index into
// hwy::SupportedAndGeneratedTargets()), then restore normal dispatch.
#pragma once

#include <hwy/targets.h>

#include <cstdint>

namespace bioquant::kernels {

template <class Fn>
void RunOnTarget(int target_index, Fn&& fn) {
  const int64_t target = hwy::SupportedAndGeneratedTargets()[target_index];
  hwy::SetSupportedTargetsForTest(target);
  fn();
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace bioquant::kernels
