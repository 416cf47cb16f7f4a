// Minimal .npy (format 1.0) for float32 C-order arrays: what `bioquant logits`
// writes and what the golden files in shared/oracles are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bioquant {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major
};

void WriteNpyF32(const std::string& path, const std::vector<int64_t>& shape,
                 const float* data);
// Reads '<f4' (and '<f8', converted) C-order arrays; throws Error naming the
// file otherwise.
NpyArray ReadNpyF32(const std::string& path);

}  // namespace bioquant
