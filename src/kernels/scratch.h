// Per-thread kernel scratch that only grows: `thread_local Scratch<float> s;`
// then `float* p = s.Get(n);` allocates (64-byte aligned) only when n exceeds
// what this thread already holds, so steady-state calls never allocate.
#pragma once

#include <hwy/aligned_allocator.h>

#include <cstddef>
#include <cstdint>

namespace bioquant::kernels {

template <typename T>
class Scratch {
 public:
  T* Get(int64_t n) {
    if (n > cap_) {
      p_ = hwy::AllocateAligned<T>(static_cast<size_t>(n));
      cap_ = n;
    }
    return p_.get();
  }

 private:
  hwy::AlignedFreeUniquePtr<T[]> p_;
  int64_t cap_ = 0;
};

}  // namespace bioquant::kernels
