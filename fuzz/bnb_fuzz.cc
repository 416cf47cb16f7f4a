// A bitsandbytes checkpoint: config.json's quantization_config, then the
// quantized tensor set (weight + absmax / nested statistics / quant_map /
// quant_state JSON, or int8 CB + SCB) of every module in a safetensors
// file, each read both copied and in place, and dequantized.
// Input: config.json bytes, NUL, model.safetensors bytes.
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "io/safetensors.h"
#include "quant/bnb.h"
#include "quant/bnb_checkpoint.h"
#include "util/json.h"

using namespace bioquant;

namespace {

// Row 0 and the last row through the reference dequantizer: every offset
// the reader accepted must lie inside the tensors it validated.
void DequantizeEnds(const WeightMatrix& w) {
  if (w.rows <= 0 || w.cols <= 0) return;
  std::vector<float> row(static_cast<size_t>(w.cols));
  DequantizeRow(w, 0, row.data());
  DequantizeRow(w, w.rows - 1, row.data());
  volatile float sink = row[0] + row.back();
  (void)sink;
}

}  // namespace

BIOQUANT_FUZZ_TARGET(bnb) {
  const auto [config_text, tensors] = fuzz::SplitAtNul(data, size);
  const nlohmann::json config = ParseJson(config_text, false);
  if (!config.is_discarded()) {
    fuzz::Rejects([&] {
      const auto c = ParseBnbQuantizationConfig(config, "config.json");
      if (c) (void)MakeBnbQuantizationConfig(*c).dump();
    });
  }
  const std::string path = fuzz::WriteScratch("bnb.safetensors", tensors);
  fuzz::Rejects([&] {
    auto store = TensorStore::OpenFile(path);
    std::vector<std::string> prefixes;
    for (const auto& f : store->files()) {
      for (const auto& [name, t] : f->tensors()) {
        const std::string suffix = ".weight";
        if (name.size() > suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) ==
                0) {
          prefixes.push_back(name.substr(0, name.size() - suffix.size()));
        }
      }
    }
    for (const std::string& p : prefixes) {
      fuzz::Rejects([&] {
        const auto format = DetectBnbWeight(*store, p);
        if (!format) return;
        for (const bool borrow : {false, true}) {
          if (*format == WeightFormat::kInt8Row) {
            const QuantizedInt8 q = ReadBnbInt8(*store, p, borrow);
            DequantizeEnds(q.View());
          } else {
            const Quantized4bit q = ReadBnb4bit(*store, p, borrow);
            DequantizeEnds(q.View());
          }
        }
      });
    }
  });
  return 0;
}
