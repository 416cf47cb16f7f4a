// Which SIMD instruction set the dispatched kernels run on. `bench --isa`
// and the BIOQUANT_ISA environment variable restrict Highway's dynamic
// dispatch so that, e.g., the AVX2 kernels can be measured and profiled on an
// AVX-512 machine. Restricting never enables anything the CPU cannot run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bioquant {

// Restricts dispatch to the best compiled target at or below `name`:
//   native  every target this CPU supports (undoes an earlier restriction)
//   avx512  the best AVX-512 target (AVX3_DL, AVX3, ...)
//   avx2    AVX2 (+FMA, F16C, BMI2)
//   sse4    SSE4.2 (+AES/CLMUL)
//   scalar  the portable fallback (EMU128 or SCALAR)
// Throws Error naming `what` (e.g. "--isa", "BIOQUANT_ISA") when the name is
// unknown or no compiled target of that class runs on this CPU. Applies to
// every later dispatched call, all threads.
void RestrictIsa(const std::string& name, const char* what = "--isa");

// Applies BIOQUANT_ISA when set and non-empty (main calls this first).
void ApplyIsaFromEnvironment();

// The ISA name passed to the last RestrictIsa ("native" when none).
std::string RequestedIsa();

// Highway's name for the target that dispatched kernels use now, as the
// dispatcher itself resolves it (e.g. "AVX2", "AVX3_DL", "EMU128").
std::string ActiveTargetName();

// Names of the compiled targets this CPU supports, best first, ignoring any
// restriction.
std::vector<std::string> AvailableTargetNames();

}  // namespace bioquant
