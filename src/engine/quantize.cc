#include "engine/quantize.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "io/safetensors.h"
#include "model/config.h"
#include "quant/bnb.h"
#include "quant/bnb_checkpoint.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace fs = std::filesystem;
namespace {

// Tensor names in model order: digit runs compare as numbers, so layer 2
// comes before layer 10 (the order a reader of the index expects).
bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie])))
        ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je])))
        ++je;
      const std::string na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// Files a checkpoint directory carries besides weights and config.json that
// loading the quantized model needs (tokenizer, chat template, generation
// defaults). Weights in other formats (*.bin, *.pt) are not copied.
bool IsSideFile(const std::string& name) {
  static const char* kPrefixes[] = {"tokenizer",     "special_tokens_map",
                                    "added_tokens",  "generation_config",
                                    "vocab",         "merges",
                                    "chat_template", "preprocessor_config"};
  for (const char* p : kPrefixes) {
    if (name.rfind(p, 0) == 0) return true;
  }
  return false;
}

// Drops the pages of an input tensor that has been consumed. They are clean
// pages of a read-only private file mapping, so the kernel simply re-reads
// them if they are touched again; without this every input byte stays
// counted in the process's RSS and peak RSS grows to the whole input model.

// Bytes WriteBnbTensors appends for a 4-bit module (shard accounting).
uint64_t Bnb4bitBytes(const Quantized4bit& q) {
  uint64_t n = q.PackedSize() + 16 * 4 + QuantStateJson(q).size();
  if (q.double_quant) {
    n += q.qabsmax.size() + q.nested_absmax.size() * 4 + 256 * 4;
  } else {
    n += q.absmax.size() * 4;
  }
  return n;
}

// Fills shards one after another: tensors are copied into an in-memory
// SafetensorsWriter, which is written out and dropped once the next module
// would push it past the limit (the greedy rule of transformers'
// split_torch_state_dict_into_shards; a module larger than the limit gets a
// shard of its own). Shards get temporary names until their count is known.
class ShardSink {
 public:
  ShardSink(std::string dir, uint64_t max_bytes)
      : dir_(std::move(dir)), max_bytes_(max_bytes) {}

  // Call before adding `bytes` worth of tensors that must share a shard.
  void Reserve(uint64_t bytes) {
    if (writer_.num_tensors() > 0 &&
        writer_.data_bytes() + bytes > max_bytes_) {
      Flush();
    }
  }
  SafetensorsWriter& writer() { return writer_; }

  void Flush() {
    if (writer_.num_tensors() == 0) return;
    const std::string tmp = fmt::format("{}/.bioquant-shard-{:05d}.safetensors",
                                        dir_, temp_names_.size() + 1);
    writer_.SetMetadata("format", "pt");
    writer_.Write(tmp);
    for (const std::string& n : writer_.names()) {
      weight_map_[n] = temp_names_.size();
    }
    total_bytes_ += writer_.data_bytes();
    tensors_ += writer_.num_tensors();
    temp_names_.push_back(tmp);
    writer_ = SafetensorsWriter();  // releases the shard's memory
  }

  // Renames the shards to their final names and writes the index when there
  // is more than one. Returns the file names.
  std::vector<std::string> Finish() {
    Flush();
    const size_t n = temp_names_.size();
    std::vector<std::string> names;
    for (size_t i = 0; i < n; ++i) {
      names.push_back(
          n == 1 ? std::string("model.safetensors")
                 : fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n));
      std::error_code ec;
      fs::rename(temp_names_[i], dir_ + "/" + names.back(), ec);
      if (ec) {
        Fail("{}/{}: cannot rename from {} ({})", dir_, names.back(),
             temp_names_[i], ec.message());
      }
    }
    if (n > 1) {
      nlohmann::json index;
      index["metadata"]["total_size"] = total_bytes_;
      nlohmann::json map = nlohmann::json::object();
      for (const auto& [tensor, shard] : weight_map_) {
        map[tensor] = names[shard];
      }
      index["weight_map"] = map;
      WriteFile(dir_ + "/model.safetensors.index.json", index.dump(2) + "\n");
    }
    return names;
  }

  uint64_t total_bytes() const { return total_bytes_; }
  int64_t tensors() const { return tensors_; }

 private:
  std::string dir_;
  uint64_t max_bytes_;
  SafetensorsWriter writer_;
  std::vector<std::string> temp_names_;
  std::map<std::string, size_t> weight_map_;
  uint64_t total_bytes_ = 0;
  int64_t tensors_ = 0;
};

// The quantization_config transformers would record for this run.
BnbConfig MakeConfig(const PrecisionSpec& p, WeightFormat format,
                     const std::string& torch_dtype) {
  BnbConfig c;
  if (format == WeightFormat::kInt8Row) {
    // BitsAndBytesConfig(load_in_8bit=True): the 4-bit keys keep their
    // defaults (fp4, no double quant, float32 compute).
    c.load_in_8bit = true;
    c.quant_type = WeightFormat::kFP4;
    c.double_quant = false;
    c.compute_dtype = "float32";
  } else {
    c.load_in_4bit = true;
    c.quant_type = format;
    c.double_quant = p.quant.double_quant;
    // Compute in the model's dtype, as the paper's bf16 + nf4 setup does.
    c.compute_dtype = torch_dtype.empty() ? "float32" : torch_dtype;
  }
  if (!p.skip_modules.empty()) c.skip_modules = p.skip_modules;
  c.threshold = p.llm_int8_threshold;
  return c;
}

}  // namespace

uint64_t ParseShardSize(const std::string& s, const char* flag) {
  // Units as transformers.utils.hub.convert_file_size_to_int: decimal
  // KB/MB/GB, binary KiB/MiB/GiB, or a plain byte count.
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"GIB", 1ull << 30}, {"MIB", 1ull << 20}, {"KIB", 1ull << 10},
      {"GB", 1000000000},  {"MB", 1000000},     {"KB", 1000}};
  std::string u;
  for (char c : s)
    u += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  uint64_t mult = 1;
  std::string num = u;
  for (const auto& [suffix, m] : kUnits) {
    const std::string suf(suffix);
    if (u.size() > suf.size() &&
        u.compare(u.size() - suf.size(), suf.size(), suf) == 0) {
      mult = m;
      num = u.substr(0, u.size() - suf.size());
      break;
    }
  }
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(num, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (num.empty() || used != num.size() || !(v > 0)) {
    Fail("{}: '{}' is not a size (e.g. 5GB, 500MB, 2GiB or a byte count)", flag,
         s);
  }
  return static_cast<uint64_t>(v * static_cast<double>(mult));
}

QuantizeSummary QuantizeCheckpoint(const QuantizeOptions& o) {
  // A precision map becomes --precision plus skipped modules: a
  // bitsandbytes checkpoint holds one quantized format, the rest in float.
  PrecisionSpec p = o.precision;
  const auto is_quant = [](const std::string& n) {
    return n == "int8" || n == "nf4" || n == "fp4";
  };
  if (!p.module_map.empty()) {
    std::string q = p.name == "llm-int8" ? "int8" : p.name;
    for (const PrecisionRule& r : p.module_map.rules) {
      if (!is_quant(r.precision)) continue;
      if (!q.empty() && q != r.precision) {
        Fail(
            "--precision-map: a bitsandbytes checkpoint holds one quantized "
            "format, but the map (with --precision) names {} and {}",
            q, r.precision);
      }
      q = r.precision;
    }
    if (p.name.empty()) p.name = q;
  }
  WeightFormat format;
  if (p.name == "nf4" || p.name == "fp4") {
    format = ParseFormat(p.name);
    if (!IsValidBlocksize(p.quant.blocksize)) {
      Fail("--blocksize: {} is not supported (32, 64, ..., 4096)",
           p.quant.blocksize);
    }
  } else if (p.name == "int8" || p.name == "llm-int8") {
    format = WeightFormat::kInt8Row;
  } else {
    Fail(
        "--precision: '{}' cannot be written as a bitsandbytes checkpoint "
        "(nf4, fp4, int8)",
        p.name);
  }
  if (o.out_dir.empty()) Fail("--out: no output directory given");
  if (o.max_shard_bytes == 0) Fail("--max-shard-size must be > 0");

  const std::string config_path = o.model_dir + "/config.json";
  const ModelConfig cfg = LoadModelConfig(o.model_dir);
  if (ParseBnbQuantizationConfig(cfg.raw, config_path)) {
    Fail(
        "{}: already a bitsandbytes checkpoint (quantization_config); "
        "quantize a full-precision one",
        config_path);
  }
  auto store = TensorStore::Open(o.model_dir);

  // The output directory: new or empty of checkpoint files, and not the input.
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec || !IsDirectory(o.out_dir)) {
    Fail("--out {}: cannot create directory ({})", o.out_dir,
         ec ? ec.message() : "not a directory");
  }
  if (fs::equivalent(o.out_dir, o.model_dir, ec)) {
    Fail("--out {}: is the input checkpoint directory", o.out_dir);
  }
  for (const auto& e : fs::directory_iterator(o.out_dir)) {
    const std::string n = e.path().filename().string();
    if (n == "config.json" || n.ends_with(".safetensors") ||
        n == "model.safetensors.index.json") {
      Fail(
          "--out {}: already holds a checkpoint ({}); choose an empty "
          "directory",
          o.out_dir, n);
    }
  }

  // Which tensors are Linear weights to quantize: the decoder blocks' seven.
  static const char* kLinears[] = {"self_attn.q_proj", "self_attn.k_proj",
                                   "self_attn.v_proj", "self_attn.o_proj",
                                   "mlp.gate_proj",    "mlp.up_proj",
                                   "mlp.down_proj"};
  QuantizeSummary sum;
  sum.precision = p.name;
  std::set<std::string> quantize;  // module prefixes
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    for (const char* lin : kLinears) {
      const std::string m = fmt::format("model.layers.{}.{}", l, lin);
      store->Get(m + ".weight");  // missing -> error naming the checkpoint
      const std::string mp = p.module_map.Lookup(m);
      if (!mp.empty() && !is_quant(mp)) p.skip_modules.push_back(m);
      if (IsSkippedModule(m, p.skip_modules)) {
        ++sum.skipped_modules;
      } else {
        quantize.insert(m);
      }
    }
  }

  std::vector<std::string> names = store->Names();
  std::sort(names.begin(), names.end(), NaturalLess);
  ShardSink sink(o.out_dir, o.max_shard_bytes);
  for (const std::string& name : names) {
    const TensorView& t = store->Get(name);
    const std::string module =
        name.ends_with(".weight") ? name.substr(0, name.size() - 7) : "";
    if (!module.empty() && quantize.count(module)) {
      if (t.shape.size() != 2) {
        Fail("{}: {}: a Linear weight must be 2-D [out, in], got {}", t.file,
             name, t.ShapeString());
      }
      if (format == WeightFormat::kInt8Row) {
        const QuantizedInt8 q = QuantizeTensorInt8(t, o.pool);
        sink.Reserve(q.q.size() + 4 * q.scb.size() + 1);
        WriteBnbTensors(sink.writer(), module, q);
      } else {
        Quantized4bit q = QuantizeTensor4bit(t, format, p.quant, o.pool);
        sink.Reserve(Bnb4bitBytes(q));
        WriteBnbTensors(sink.writer(), module, q);
      }
      ++sum.quantized_modules;
    } else {
      sink.Reserve(t.nbytes);
      sink.writer().Add(name, t.dtype, t.shape, t.data, t.nbytes);
    }
    ReleasePages(t);
  }
  sum.shards = sink.Finish();
  sum.tensors = sink.tensors();
  sum.total_bytes = sink.total_bytes();

  // config.json: the input's, plus the block save_pretrained adds (keys
  // sorted, 2-space indent, like PretrainedConfig.to_json_string).
  nlohmann::json config = cfg.raw;
  config["quantization_config"] =
      MakeBnbQuantizationConfig(MakeConfig(p, format, cfg.torch_dtype));
  WriteFile(o.out_dir + "/config.json", config.dump(2) + "\n");

  for (const auto& e : fs::directory_iterator(o.model_dir)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || !IsSideFile(n)) continue;
    fs::copy_file(e.path(), fs::path(o.out_dir) / n,
                  fs::copy_options::overwrite_existing, ec);
    if (ec) {
      Fail("{}: cannot copy to {} ({})", e.path().string(), o.out_dir,
           ec.message());
    }
    sum.copied.push_back(n);
  }
  std::sort(sum.copied.begin(), sum.copied.end());
  return sum;
}

}  // namespace bioquant
