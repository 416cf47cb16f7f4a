// GGUF files (llama.cpp / Ollama checkpoints): header, metadata, tensor
// table, then every tensor of a dequantizable type dequantized (bounded in
// size) — the reader's validation must make every access safe.
#include <vector>

#include "fuzz_target.h"
#include "io/gguf.h"
#include "quant/ggml.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(gguf) {
  const std::string path = fuzz::WriteScratch(
      "m.gguf", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::Rejects([&] {
    GgufFile f(path);
    for (const auto& [key, value] : f.metadata()) (void)key;
    std::vector<float> out;
    for (const GgufTensor& t : f.tensors()) {
      if (!CanDequantizeGgml(t.type) || t.numel() > (1u << 16)) continue;
      out.resize(t.numel());
      DequantizeGgml(t.type, t.data, t.numel(), out.data());
    }
  });
  return 0;
}
