#include "engine/model_info.h"

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant {

WeightFormat FormatOfTorchDtype(const std::string& d) {
  if (d == "bfloat16") return WeightFormat::kBF16;
  if (d == "float16") return WeightFormat::kF16;
  return WeightFormat::kF32;
}

const char* TorchDtypeOfFormat(WeightFormat f) {
  return f == WeightFormat::kBF16  ? "bfloat16"
         : f == WeightFormat::kF16 ? "float16"
                                   : "float32";
}

ModelInfo ReadModelInfo(const std::string& path, const std::string& flag) {
  if (path.empty())
    Fail("{}: a checkpoint directory or config.json is required", flag);
  if (!FileExists(path) && !IsDirectory(path)) {
    Fail("{}: {} does not exist", flag, path);
  }
  ModelInfo m;
  if (!IsDirectory(path)) {
    nlohmann::json j;
    try {
      j = ParseJson(ReadFile(path));
    } catch (const nlohmann::json::exception& e) {
      Fail("{}: {} is not valid JSON ({})", flag, path, e.what());
    }
    m.config = ParseModelConfig(j, path);
    m.file_format = FormatOfTorchDtype(m.config.torch_dtype);
    return m;
  }
  if (!FileExists(path + "/config.json")) {
    Fail("{}: {} has no config.json", flag, path);
  }
  m.config = LoadModelConfig(path);
  m.file_format = FormatOfTorchDtype(m.config.torch_dtype);
  m.has_tokenizer = FileExists(path + "/tokenizer.json") ||
                    FileExists(path + "/tokenizer.model");
  const bool has_st = FileExists(path + "/model.safetensors") ||
                      FileExists(path + "/model.safetensors.index.json");
  if (!has_st || !m.config.quantization_config.is_null()) return m;
  auto store = TensorStore::Open(path);
  const TensorView& emb = store->Get("model.embed_tokens.weight");
  switch (emb.dtype) {
    case DType::kF32:
      m.file_format = WeightFormat::kF32;
      break;
    case DType::kBF16:
      m.file_format = WeightFormat::kBF16;
      break;
    case DType::kF16:
      m.file_format = WeightFormat::kF16;
      break;
    default:
      Fail(
          "{}: model.embed_tokens.weight has dtype {}; expected F32, BF16 or "
          "F16",
          emb.file, DTypeName(emb.dtype));
  }
  m.checkpoint_bytes = store->MappedBytes();
  m.has_weights = true;
  return m;
}

}  // namespace bioquant
