// config.json -> the model configuration (architecture, shapes, RoPE, ...).
#include <nlohmann/json.hpp>

#include "fuzz_target.h"
#include "model/config.h"
#include "util/json.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(model_config) {
  const auto j = ParseJson(
      std::string_view(reinterpret_cast<const char*>(data), size), false);
  if (j.is_discarded()) return 0;
  fuzz::Rejects([&] { (void)ParseModelConfig(j, "config.json"); });
  return 0;
}
