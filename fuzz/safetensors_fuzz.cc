// safetensors header + tensor table (a checkpoint's model.safetensors).
#include "fuzz_target.h"
#include "io/safetensors.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(safetensors) {
  const std::string path = fuzz::WriteScratch(
      "model.safetensors",
      std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::Rejects([&] {
    auto store = TensorStore::OpenFile(path);
    // Every tensor the reader accepted lies inside the file.
    unsigned sum = 0;
    for (const auto& f : store->files()) {
      for (const auto& [name, t] : f->tensors()) {
        if (t.nbytes) sum += t.data[0] + t.data[t.nbytes - 1];
      }
    }
    volatile unsigned sink = sum;
    (void)sink;
  });
  return 0;
}
