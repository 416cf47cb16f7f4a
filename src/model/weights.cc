#include "model/weights.h"

#include <algorithm>
#include <cstring>

#include "quant/bnb.h"
#include "quant/bnb_checkpoint.h"
#include "quant/half.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

WeightFormat FormatOfDType(DType t, const TensorView& v) {
  switch (t) {
    case DType::kF32:
      return WeightFormat::kF32;
    case DType::kBF16:
      return WeightFormat::kBF16;
    case DType::kF16:
      return WeightFormat::kF16;
    default:
      Fail("{}: tensor {} has dtype {}; expected F32, BF16 or F16", v.file,
           v.name, DTypeName(t));
  }
}

void CheckShape(const TensorView& v, std::vector<int64_t> want) {
  if (v.shape != want) {
    std::string w = "[";
    for (size_t i = 0; i < want.size(); ++i) {
      w += (i ? ", " : "") + std::to_string(want[i]);
    }
    Fail("{}: tensor {} has shape {} but config.json implies {}]", v.file,
         v.name, v.ShapeString(), w);
  }
}

// Widens a float tensor to f32 (a temporary: one tensor at a time).
std::vector<float> ToF32(const TensorView& v) {
  std::vector<float> out(v.numel());
  const WeightFormat f = FormatOfDType(v.dtype, v);
  WeightMatrix m{f, 1, v.numel(), v.data};
  RowToF32(m, 0, out.data());
  return out;
}

// The tensor widened to f32 in a buffer reused across tensors of a load:
// fresh pages per tensor would cost a page fault per 4 KiB (several seconds
// of system time over a 1B-parameter model).
float* WidenScratch(const TensorView& v, ThreadPool* pool,
                    std::vector<float>* buf) {
  if (buf->size() < static_cast<size_t>(v.numel())) buf->resize(v.numel());
  TensorToF32(v, buf->data(), pool);
  return buf->data();
}

std::vector<float> SmallF32(const TensorStore& s, const std::string& name,
                            std::vector<int64_t> shape) {
  const TensorView& v = s.Get(name);
  CheckShape(v, shape);
  return ToF32(v);
}

// Stores a float tensor as `target` (f32/bf16/f16), in place when possible.
void StoreFloat(const TensorView& v, WeightFormat target, WeightMatrix* w,
                std::shared_ptr<const void>* storage, uint64_t* resident) {
  w->format = target;
  w->rows = v.shape[0];
  w->cols = v.numel() / v.shape[0];
  if (FormatOfDType(v.dtype, v) == target) {
    w->data = v.data;
    *resident = 0;
    return;
  }
  std::vector<float> f = ToF32(v);
  if (target == WeightFormat::kF32) {
    auto buf = std::make_shared<std::vector<float>>(std::move(f));
    w->data = buf->data();
    *storage = buf;
    *resident = buf->size() * 4;
    ReleasePages(v);
    return;
  }
  auto buf = std::make_shared<std::vector<uint16_t>>(f.size());
  for (size_t i = 0; i < f.size(); ++i) {
    (*buf)[i] =
        target == WeightFormat::kBF16 ? F32ToBf16(f[i]) : F32ToF16(f[i]);
  }
  w->data = buf->data();
  *storage = buf;
  *resident = buf->size() * 2;
  ReleasePages(v);
}

Linear LoadLinear(const TensorStore& s, const std::string& name, int64_t out,
                  int64_t in, bool has_bias, WeightFormat target,
                  const PrecisionSpec& p, WeightFormat float_fallback,
                  ThreadPool* pool, std::vector<float>* scratch) {
  Linear l;
  l.name = name;
  const TensorView& v = s.Get(name + ".weight");
  CheckShape(v, {out, in});
  if (has_bias) l.bias = SmallF32(s, name + ".bias", {out});
  if (IsSkippedModule(name, p.skip_modules)) target = float_fallback;
  if (target == WeightFormat::kF32 || target == WeightFormat::kBF16 ||
      target == WeightFormat::kF16) {
    StoreFloat(v, target, &l.w, &l.storage, &l.resident_bytes);
  } else if (target == WeightFormat::kInt8Row) {
    float* f = WidenScratch(v, pool, scratch);
    auto q =
        std::make_shared<QuantizedInt8>(QuantizeInt8Rows(f, out, in, pool));
    l.w = q->View();
    l.storage = q;
    l.resident_bytes = PackedBytes(target, out, in, p.quant);
    ReleasePages(v);
  } else {
    float* f = WidenScratch(v, pool, scratch);
    auto q = std::make_shared<Quantized4bit>(Quantize4bit(
        f, {out, in}, target, p.quant, v.dtype, std::nullopt, pool));
    l.w = q->View();
    l.storage = q;
    l.resident_bytes = PackedBytes(target, out, in, p.quant);
    // The source tensor is no longer needed: keep peak RSS at quantized
    // weights + one tensor (streaming quantize-on-load).
    ReleasePages(v);
  }
  l.bytes = PackedBytes(l.w.format, out, in, p.quant) + l.bias.size() * 4;
  return l;
}

// A Linear of a checkpoint serialized by bitsandbytes: quantized modules are
// read as stored (bit for bit), skipped modules are plain float tensors.
Linear LoadPrequantizedLinear(const TensorStore& s, const std::string& name,
                              int64_t out, int64_t in, bool has_bias,
                              WeightFormat float_format) {
  Linear l;
  l.name = name;
  if (has_bias) l.bias = SmallF32(s, name + ".bias", {out});
  const std::optional<WeightFormat> f = DetectBnbWeight(s, name);
  auto check = [&](int64_t rows, int64_t cols) {
    if (rows != out || cols != in) {
      Fail(
          "{}: tensor {}.weight has quantized shape [{}, {}] but config.json "
          "implies [{}, {}]",
          s.Get(name + ".weight").file, name, rows, cols, out, in);
    }
  };
  if (!f) {
    StoreFloat(s.Get(name + ".weight"), float_format, &l.w, &l.storage,
               &l.resident_bytes);
    check(l.w.rows, l.w.cols);
    l.bytes = PackedBytes(l.w.format, out, in) + l.bias.size() * 4;
    return l;
  }
  QuantParams qp;
  if (*f == WeightFormat::kInt8Row) {
    auto q = std::make_shared<QuantizedInt8>(ReadBnbInt8(s, name, true));
    l.w = q->View();
    l.storage = q;
  } else {
    auto q = std::make_shared<Quantized4bit>(ReadBnb4bit(s, name, true));
    if (q->shape.size() != 2) {
      Fail("{}: {}.weight quant_state shape must be 2-D",
           s.Get(name + ".weight").file, name);
    }
    qp.blocksize = q->blocksize;
    qp.double_quant = q->double_quant;
    l.w = q->View();
    l.storage = q;
  }
  check(l.w.rows, l.w.cols);
  l.resident_bytes = PackedBytes(l.w.format, out, in, qp);
  l.bytes = l.resident_bytes + l.bias.size() * 4;
  return l;
}

}  // namespace

void RowToF32(const WeightMatrix& w, int64_t row, float* out) {
  const int64_t base = row * w.cols;
  switch (w.format) {
    case WeightFormat::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + base, w.cols * 4);
      return;
    case WeightFormat::kBF16: {
      const auto* p = static_cast<const uint16_t*>(w.data) + base;
      for (int64_t c = 0; c < w.cols; ++c) out[c] = Bf16ToF32(p[c]);
      return;
    }
    case WeightFormat::kF16: {
      const auto* p = static_cast<const uint16_t*>(w.data) + base;
      for (int64_t c = 0; c < w.cols; ++c) out[c] = F16ToF32(p[c]);
      return;
    }
    default:
      DequantizeRow(w, row, out);
  }
}

ModelWeights LoadWeights(const std::string& dir, const ModelConfig& cfg,
                         const PrecisionSpec& precision, ThreadPool* pool) {
  const std::optional<BnbConfig> bnb =
      ParseBnbQuantizationConfig(cfg.raw, dir + "/config.json");
  ModelWeights m;
  m.store = TensorStore::Open(dir);
  const TensorStore& s = *m.store;
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  const int64_t V = cfg.vocab_size;

  const TensorView& emb = s.Get("model.embed_tokens.weight");
  CheckShape(emb, {V, H});
  const WeightFormat file_format = FormatOfDType(emb.dtype, emb);
  std::string dtype_name = cfg.torch_dtype;
  if (dtype_name.empty() || dtype_name == "auto") {
    dtype_name = file_format == WeightFormat::kBF16  ? "bfloat16"
                 : file_format == WeightFormat::kF16 ? "float16"
                                                     : "float32";
  }
  WeightFormat linear = ResolveLinearFormat(precision.name, dtype_name);
  if (bnb && !precision.module_map.empty()) {
    Fail(
        "--precision-map: {} is already quantized (a precision map needs a "
        "full-precision checkpoint)",
        dir);
  }
  if (bnb) {
    // A pre-quantized checkpoint runs as stored; llm-int8 may emulate
    // LLM.int8() on an 8-bit one.
    const WeightFormat stored =
        bnb->load_in_8bit ? WeightFormat::kInt8Row : bnb->quant_type;
    if (!precision.name.empty() && linear != stored) {
      Fail("--precision {}: {} is already quantized as {} (omit --precision)",
           precision.name, dir, FormatName(stored));
    }
    linear = stored;
  }
  const bool quantized = linear == WeightFormat::kInt8Row ||
                         linear == WeightFormat::kNF4 ||
                         linear == WeightFormat::kFP4;
  bool any_4bit = linear == WeightFormat::kNF4 || linear == WeightFormat::kFP4;
  for (const PrecisionRule& r : precision.module_map.rules) {
    any_4bit = any_4bit || r.precision == "nf4" || r.precision == "fp4";
  }
  if (!bnb && any_4bit && !IsValidBlocksize(precision.quant.blocksize)) {
    Fail("--blocksize: {} is not supported (32, 64, ..., 4096)",
         precision.quant.blocksize);
  }
  m.linear_format = linear;
  m.precision = !precision.module_map.empty() ? "mixed"
                : precision.name.empty()      ? FormatName(linear)
                                              : precision.name;
  m.llm_int8 = precision.name == "llm-int8";
  m.llm_int8_threshold = precision.llm_int8_threshold;
  // Embeddings and lm_head: converted for float precisions (the paper loads
  // "full precision" in torch_dtype), kept in the file dtype when quantizing
  // (bitsandbytes leaves them alone).
  // With a precision map and no quantized --precision they stay in the
  // file's dtype too.
  const WeightFormat side_format =
      quantized || (!precision.module_map.empty() && precision.name.empty())
          ? file_format
          : linear;
  // A module's format: its precision map rule's, else --precision's.
  auto module_format = [&](const std::string& module) {
    const std::string p = precision.module_map.Lookup(module);
    return p.empty() ? linear : ResolveLinearFormat(p, dtype_name);
  };

  uint64_t resident = 0;
  StoreFloat(emb, side_format, &m.embed, &m.embed_storage, &resident);
  m.resident_bytes += resident;
  m.weights_bytes += PackedBytes(side_format, V, H);

  m.layers.resize(cfg.num_layers);
  std::vector<float> scratch;  // widened tensor, reused; freed at return
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights& L = m.layers[l];
    L.attn_norm = SmallF32(s, p + "input_layernorm.weight", {H});
    L.mlp_norm = SmallF32(s, p + "post_attention_layernorm.weight", {H});
    auto lin = [&](const std::string& n, int64_t out, int64_t in, bool bias) {
      Linear x =
          bnb ? LoadPrequantizedLinear(s, p + n, out, in, bias, side_format)
              : LoadLinear(s, p + n, out, in, bias, module_format(p + n),
                           precision, side_format, pool, &scratch);
      m.weights_bytes += x.bytes;
      m.resident_bytes += x.resident_bytes + x.bias.size() * 4;
      return x;
    };
    L.q = lin("self_attn.q_proj", cfg.q_dim(), H, cfg.qkv_bias);
    L.k = lin("self_attn.k_proj", cfg.kv_dim(), H, cfg.qkv_bias);
    L.v = lin("self_attn.v_proj", cfg.kv_dim(), H, cfg.qkv_bias);
    L.o = lin("self_attn.o_proj", H, cfg.q_dim(), cfg.o_bias);
    L.gate = lin("mlp.gate_proj", I, H, cfg.mlp_bias);
    L.up = lin("mlp.up_proj", I, H, cfg.mlp_bias);
    L.down = lin("mlp.down_proj", H, I, cfg.mlp_bias);
    m.weights_bytes += 2 * H * 4;
    m.resident_bytes += 2 * H * 4;
  }
  m.final_norm = SmallF32(s, "model.norm.weight", {H});
  m.weights_bytes += H * 4;
  m.resident_bytes += H * 4;
  m.lm_head.name = "lm_head";
  if (cfg.tie_word_embeddings || !s.Has("lm_head.weight")) {
    if (!cfg.tie_word_embeddings) {
      Fail("{}: missing tensor lm_head.weight (tie_word_embeddings is false)",
           dir);
    }
    m.lm_head.w = m.embed;
    m.lm_head.storage = m.embed_storage;
  } else {
    const TensorView& head = s.Get("lm_head.weight");
    CheckShape(head, {V, H});
    StoreFloat(head, side_format, &m.lm_head.w, &m.lm_head.storage,
               &m.lm_head.resident_bytes);
    m.resident_bytes += m.lm_head.resident_bytes;
    m.weights_bytes += PackedBytes(side_format, V, H);
  }
  return m;
}

}  // namespace bioquant
