// .npy files (golden logits, `bioquant logits` output).
#include "fuzz_target.h"
#include "io/npy.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(npy) {
  const std::string path = fuzz::WriteScratch(
      "a.npy", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::Rejects([&] {
    const NpyArray a = ReadNpyF32(path);
    size_t n = 1;
    for (int64_t d : a.shape) n *= static_cast<size_t>(d);
    if (n != a.data.size()) std::abort();  // the reader's own promise
  });
  return 0;
}
