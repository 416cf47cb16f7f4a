#include "quant/bnb_checkpoint.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "util/error.h"
#include "util/json.h"

namespace bioquant {
namespace {

constexpr int kNestedBlocksize = 256;

// Copies a tensor's elements (any alignment) into a vector of T, checking
// dtype and element count.
template <typename T>
std::vector<T> CopyTensor(const TensorView& t, DType want, int64_t count) {
  if (t.dtype != want) {
    Fail("{}: {}: dtype {} (expected {})", t.file, t.name, DTypeName(t.dtype),
         DTypeName(want));
  }
  if (t.numel() != count) {
    Fail("{}: {}: {} elements {} (expected {})", t.file, t.name, t.numel(),
         t.ShapeString(), count);
  }
  std::vector<T> v(count);
  if (count > 0) std::memcpy(v.data(), t.data, count * sizeof(T));
  return v;
}

// `file` is where the module's weight lives, for the message.
const TensorView& Need(const TensorStore& store, const std::string& name,
                       const std::string& why, const std::string& file) {
  if (!store.Has(name)) Fail("{}: missing tensor {} ({})", file, name, why);
  return store.Get(name);
}

DType ParseTorchDType(const std::string& s, const TensorView& where) {
  if (s == "float32") return DType::kF32;
  if (s == "float16") return DType::kF16;
  if (s == "bfloat16") return DType::kBF16;
  Fail("{}: {}: unsupported dtype \"{}\" in quant_state", where.file,
       where.name, s);
}

// Python repr() of a double: shortest round-trip digits, always with a '.'
// or an exponent (fmt prints 1.0 as "1").
std::string PythonFloatRepr(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

}  // namespace

const char* TorchDTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    default:
      Fail("quant_state: weight dtype {} is not float32, float16 or bfloat16",
           DTypeName(t));
  }
}

std::optional<WeightFormat> DetectBnbWeight(const TensorStore& store,
                                            const std::string& prefix) {
  const std::string w = prefix + ".weight";
  if (store.Has(w + ".quant_state.bitsandbytes__nf4"))
    return WeightFormat::kNF4;
  if (store.Has(w + ".quant_state.bitsandbytes__fp4"))
    return WeightFormat::kFP4;
  if (store.Has(w + ".absmax")) {
    Fail(
        "{}: missing tensor {}.quant_state.bitsandbytes__nf4 (or __fp4): "
        "4-bit weight without its quant state",
        store.Has(w) ? store.Get(w).file : std::string("checkpoint"), w);
  }
  if (store.Has(prefix + ".SCB")) return WeightFormat::kInt8Row;
  return std::nullopt;
}

Quantized4bit ReadBnb4bit(const TensorStore& store, const std::string& prefix,
                          bool borrow) {
  const std::string wname = prefix + ".weight";
  const TensorView& weight = store.Get(wname);  // names the dir if absent
  const std::string qs_nf4 = wname + ".quant_state.bitsandbytes__nf4";
  const std::string qs_fp4 = wname + ".quant_state.bitsandbytes__fp4";
  const bool nf4 = store.Has(qs_nf4);
  if (!nf4 && !store.Has(qs_fp4)) {
    Fail("{}: missing tensor {}.quant_state.bitsandbytes__nf4 (or __fp4)",
         weight.file, wname);
  }
  const TensorView& qs = store.Get(nf4 ? qs_nf4 : qs_fp4);
  if (qs.dtype != DType::kU8) {
    Fail("{}: {}: quant_state must be U8 JSON bytes, got {}", qs.file, qs.name,
         DTypeName(qs.dtype));
  }
  const std::string text(reinterpret_cast<const char*>(qs.data), qs.nbytes);
  nlohmann::json j;
  try {
    j = ParseJson(text);
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: {}: corrupt quant_state JSON ({})", qs.file, qs.name, e.what());
  }
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key)) {
      Fail("{}: {}: quant_state JSON lacks \"{}\"", qs.file, qs.name, key);
    }
    return j.at(key);
  };
  Quantized4bit q;
  q.format = nf4 ? WeightFormat::kNF4 : WeightFormat::kFP4;
  try {
    const std::string qt = field("quant_type").get<std::string>();
    if (qt != (nf4 ? "nf4" : "fp4")) {
      Fail("{}: {}: quant_type \"{}\" does not match the tensor name", qs.file,
           qs.name, qt);
    }
    q.blocksize = field("blocksize").get<int>();
    q.dtype = ParseTorchDType(field("dtype").get<std::string>(), qs);
    q.shape = field("shape").get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: {}: malformed quant_state ({})", qs.file, qs.name, e.what());
  }
  if (!IsValidBlocksize(q.blocksize)) {
    Fail(
        "{}: {}: unsupported blocksize {} (bitsandbytes allows 32..4096, "
        "powers of two)",
        qs.file, qs.name, q.blocksize);
  }
  if (q.shape.empty()) Fail("{}: {}: empty shape", qs.file, qs.name);
  q.numel = 1;
  for (int64_t d : q.shape) {
    if (d <= 0 || d > (int64_t{1} << 40) || q.numel > (int64_t{1} << 50) / d) {
      Fail("{}: {}: bad shape [{}]", qs.file, qs.name,
           fmt::join(q.shape, ", "));
    }
    q.numel *= d;
  }
  // Packed bytes: U8 [(n+1)/2, 1], or the same bytes under another
  // quant_storage dtype; we read them as raw bytes either way.
  const int64_t want_bytes = (q.numel + 1) / 2;
  if (static_cast<int64_t>(weight.nbytes) != want_bytes) {
    Fail("{}: {}: {} bytes {} but shape [{}] needs {} packed bytes",
         weight.file, wname, weight.nbytes, weight.ShapeString(),
         fmt::join(q.shape, ", "), want_bytes);
  }
  if (borrow) {
    q.packed_borrowed = weight.data;
  } else {
    q.packed.assign(weight.data, weight.data + weight.nbytes);
  }

  const int64_t nb = q.nblocks();
  const TensorView& absmax =
      Need(store, wname + ".absmax", "4-bit absmax", weight.file);
  q.double_quant = store.Has(wname + ".nested_absmax");
  if (q.double_quant) {
    q.qabsmax = CopyTensor<uint8_t>(absmax, DType::kU8, nb);
    const int64_t nnb = (nb + kNestedBlocksize - 1) / kNestedBlocksize;
    q.nested_absmax = CopyTensor<float>(store.Get(wname + ".nested_absmax"),
                                        DType::kF32, nnb);
    q.nested_code = CopyTensor<float>(Need(store, wname + ".nested_quant_map",
                                           "double quant code", weight.file),
                                      DType::kF32, 256);
    try {
      if (field("nested_blocksize").get<int>() != kNestedBlocksize) {
        Fail("{}: {}: nested_blocksize {} (bitsandbytes only uses 256)",
             qs.file, qs.name, field("nested_blocksize").get<int>());
      }
      const std::string nd = field("nested_dtype").get<std::string>();
      if (nd != "float32") {
        Fail("{}: {}: nested_dtype \"{}\" (expected float32)", qs.file, qs.name,
             nd);
      }
      // repr() of the f32 offset widened to double: rounding back is exact.
      q.nested_offset =
          static_cast<float>(field("nested_offset").get<double>());
    } catch (const nlohmann::json::exception& e) {
      Fail("{}: {}: malformed quant_state ({})", qs.file, qs.name, e.what());
    }
  } else {
    if (j.contains("nested_offset")) {
      Fail(
          "{}: {}: quant_state has nested_offset but {}.nested_absmax is "
          "missing",
          qs.file, qs.name, wname);
    }
    q.absmax = CopyTensor<float>(absmax, DType::kF32, nb);
  }
  // The CUDA kernels dequantize with their built-in table; a checkpoint whose
  // quant_map disagrees was not made by bitsandbytes' nf4/fp4.
  const std::vector<float> qmap = CopyTensor<float>(
      Need(store, wname + ".quant_map", "4-bit code table", weight.file),
      DType::kF32, 16);
  const float* lut = DequantLut(q.format);
  for (int i = 0; i < 16; ++i) {
    if (qmap[i] != lut[i]) {  // +0 == -0: entry 8 of fp4 is stored as +0
      Fail("{}: {}.quant_map: entry {} is {} but the {} table has {}",
           weight.file, wname, i, qmap[i], FormatName(q.format), lut[i]);
    }
  }
  return q;
}

QuantizedInt8 ReadBnbInt8(const TensorStore& store, const std::string& prefix,
                          bool borrow) {
  const std::string wname = prefix + ".weight";
  const TensorView& weight = store.Get(wname);
  if (weight.dtype != DType::kI8 || weight.shape.size() != 2) {
    Fail("{}: {}: int8 weight must be I8 [out, in], got {} {}", weight.file,
         wname, DTypeName(weight.dtype), weight.ShapeString());
  }
  QuantizedInt8 q;
  q.rows = weight.shape[0];
  q.cols = weight.shape[1];
  if (borrow) {
    q.q_borrowed = reinterpret_cast<const int8_t*>(weight.data);
  } else {
    q.q = CopyTensor<int8_t>(weight, DType::kI8, q.rows * q.cols);
  }
  q.scb = CopyTensor<float>(
      Need(store, prefix + ".SCB", "int8 row scales", weight.file), DType::kF32,
      q.rows);
  if (store.Has(wname + "_format")) {
    const TensorView& f = store.Get(wname + "_format");
    if (f.dtype != DType::kU8 || f.nbytes != 1) {
      Fail("{}: {}: expected a U8 scalar, got {} {}", f.file, f.name,
           DTypeName(f.dtype), f.ShapeString());
    }
    if (f.data[0] != 0) {
      Fail(
          "{}: {}: weight_format {} is a tiled GPU layout; only 0 (row) is "
          "supported",
          f.file, f.name, f.data[0]);
    }
  }
  return q;
}

std::string QuantStateJson(const Quantized4bit& q) {
  std::string s = fmt::format(
      "{{\"quant_type\": \"{}\", \"blocksize\": {}, \"dtype\": \"{}\", "
      "\"shape\": [{}]",
      FormatName(q.format), q.blocksize, TorchDTypeName(q.dtype),
      fmt::join(q.shape, ", "));
  if (q.double_quant) {
    s += fmt::format(
        ", \"nested_blocksize\": {}, \"nested_dtype\": \"float32\", "
        "\"nested_offset\": {}",
        kNestedBlocksize,
        PythonFloatRepr(static_cast<double>(q.nested_offset)));
  }
  return s + "}";
}

void WriteBnbTensors(SafetensorsWriter& writer, const std::string& prefix,
                     const Quantized4bit& q) {
  const std::string w = prefix + ".weight";
  const int64_t nb = q.nblocks();
  writer.Add(w, DType::kU8, {(q.numel + 1) / 2, 1}, q.PackedData(),
             q.PackedSize());
  if (q.double_quant) {
    writer.Add(w + ".absmax", DType::kU8, {nb}, q.qabsmax.data(), nb);
    writer.Add(w + ".nested_absmax", DType::kF32,
               {static_cast<int64_t>(q.nested_absmax.size())},
               q.nested_absmax.data(), 4 * q.nested_absmax.size());
    writer.Add(w + ".nested_quant_map", DType::kF32, {256},
               q.nested_code.data(), 4 * 256);
  } else {
    writer.Add(w + ".absmax", DType::kF32, {nb}, q.absmax.data(), 4 * nb);
  }
  const float* qmap =
      q.format == WeightFormat::kNF4 ? Nf4Code().data() : Fp4QuantMap().data();
  writer.Add(w + ".quant_map", DType::kF32, {16}, qmap, 64);
  const std::string json = QuantStateJson(q);
  writer.Add(w + ".quant_state.bitsandbytes__" + FormatName(q.format),
             DType::kU8, {static_cast<int64_t>(json.size())}, json.data(),
             json.size());
}

void WriteBnbTensors(SafetensorsWriter& writer, const std::string& prefix,
                     const QuantizedInt8& q) {
  writer.Add(prefix + ".weight", DType::kI8, {q.rows, q.cols}, q.QData(),
             static_cast<size_t>(q.rows * q.cols));
  writer.Add(prefix + ".SCB", DType::kF32, {q.rows}, q.scb.data(),
             4 * q.scb.size());
  const uint8_t row_format = 0;
  writer.Add(prefix + ".weight_format", DType::kU8, {}, &row_format, 1);
}

std::optional<BnbConfig> ParseBnbQuantizationConfig(
    const nlohmann::json& config, const std::string& path) {
  if (!config.is_object() || !config.contains("quantization_config")) {
    return std::nullopt;
  }
  const nlohmann::json& q = config.at("quantization_config");
  if (!q.is_object()) Fail("{}: quantization_config is not an object", path);
  BnbConfig c;
  try {
    const std::string method = q.value("quant_method", "bitsandbytes");
    if (method != "bitsandbytes") {
      Fail(
          "{}: quantization_config.quant_method \"{}\" is not supported "
          "(bioquant reads bitsandbytes checkpoints only)",
          path, method);
    }
    c.load_in_4bit = q.value("load_in_4bit", q.value("_load_in_4bit", false));
    c.load_in_8bit = q.value("load_in_8bit", q.value("_load_in_8bit", false));
    if (c.load_in_4bit == c.load_in_8bit) {
      Fail(
          "{}: quantization_config must set exactly one of load_in_4bit and "
          "load_in_8bit",
          path);
    }
    const std::string qt = q.value("bnb_4bit_quant_type", "fp4");
    if (qt != "nf4" && qt != "fp4") {
      Fail(
          "{}: quantization_config.bnb_4bit_quant_type \"{}\" is not nf4 or "
          "fp4",
          path, qt);
    }
    c.quant_type = qt == "nf4" ? WeightFormat::kNF4 : WeightFormat::kFP4;
    c.double_quant = q.value("bnb_4bit_use_double_quant", false);
    if (q.contains("bnb_4bit_compute_dtype") &&
        q.at("bnb_4bit_compute_dtype").is_string()) {
      c.compute_dtype = q.at("bnb_4bit_compute_dtype").get<std::string>();
    }
    if (q.contains("bnb_4bit_quant_storage") &&
        q.at("bnb_4bit_quant_storage").is_string()) {
      c.quant_storage = q.at("bnb_4bit_quant_storage").get<std::string>();
    }
    if (q.contains("llm_int8_skip_modules") &&
        !q.at("llm_int8_skip_modules").is_null()) {
      c.skip_modules =
          q.at("llm_int8_skip_modules").get<std::vector<std::string>>();
    }
    c.threshold = q.value("llm_int8_threshold", 6.0);
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: malformed quantization_config ({})", path, e.what());
  }
  return c;
}

nlohmann::json MakeBnbQuantizationConfig(const BnbConfig& c) {
  nlohmann::json q;
  q["_load_in_4bit"] = c.load_in_4bit;
  q["_load_in_8bit"] = c.load_in_8bit;
  q["bnb_4bit_compute_dtype"] = c.compute_dtype;
  q["bnb_4bit_quant_storage"] = c.quant_storage;
  q["bnb_4bit_quant_type"] = FormatName(c.quant_type);
  q["bnb_4bit_use_double_quant"] = c.double_quant;
  q["llm_int8_enable_fp32_cpu_offload"] = false;
  q["llm_int8_has_fp16_weight"] = false;
  q["llm_int8_skip_modules"] =
      c.skip_modules ? nlohmann::json(*c.skip_modules) : nlohmann::json();
  q["llm_int8_threshold"] = c.threshold;
  q["load_in_4bit"] = c.load_in_4bit;
  q["load_in_8bit"] = c.load_in_8bit;
  q["quant_method"] = "bitsandbytes";
  return q;
}

bool IsSkippedModule(const std::string& name,
                     const std::vector<std::string>& skip_modules) {
  const size_t dot = name.rfind('.');
  const std::string last =
      dot == std::string::npos ? name : name.substr(dot + 1);
  for (const std::string& e : skip_modules) {
    if (e.empty()) continue;
    if (e == last || e == name || name.find(e + ".") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace bioquant
