#include "io/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/error.h"

namespace bioquant {

namespace {

constexpr GgmlTypeInfo kGgmlTypes[] = {
    {GgmlType::kF32, "F32", 1, 4},
    {GgmlType::kF16, "F16", 1, 2},
    {GgmlType::kQ4_0, "Q4_0", 32, 18},
    {GgmlType::kQ4_1, "Q4_1", 32, 20},
    {GgmlType::kQ5_0, "Q5_0", 32, 22},
    {GgmlType::kQ5_1, "Q5_1", 32, 24},
    {GgmlType::kQ8_0, "Q8_0", 32, 34},
    {GgmlType::kQ8_1, "Q8_1", 32, 40},
    {GgmlType::kQ2_K, "Q2_K", 256, 84},
    {GgmlType::kQ3_K, "Q3_K", 256, 110},
    {GgmlType::kQ4_K, "Q4_K", 256, 144},
    {GgmlType::kQ5_K, "Q5_K", 256, 176},
    {GgmlType::kQ6_K, "Q6_K", 256, 210},
    {GgmlType::kQ8_K, "Q8_K", 256, 292},
    {GgmlType::kIQ2_XXS, "IQ2_XXS", 256, 66},
    {GgmlType::kIQ2_XS, "IQ2_XS", 256, 74},
    {GgmlType::kIQ3_XXS, "IQ3_XXS", 256, 98},
    {GgmlType::kIQ1_S, "IQ1_S", 256, 50},
    {GgmlType::kIQ4_NL, "IQ4_NL", 32, 18},
    {GgmlType::kIQ3_S, "IQ3_S", 256, 110},
    {GgmlType::kIQ2_S, "IQ2_S", 256, 82},
    {GgmlType::kIQ4_XS, "IQ4_XS", 256, 136},
    {GgmlType::kI8, "I8", 1, 1},
    {GgmlType::kI16, "I16", 1, 2},
    {GgmlType::kI32, "I32", 1, 4},
    {GgmlType::kI64, "I64", 1, 8},
    {GgmlType::kF64, "F64", 1, 8},
    {GgmlType::kIQ1_M, "IQ1_M", 256, 56},
    {GgmlType::kBF16, "BF16", 1, 2},
    {GgmlType::kTQ1_0, "TQ1_0", 256, 54},
    {GgmlType::kTQ2_0, "TQ2_0", 256, 66},
    {GgmlType::kMXFP4, "MXFP4", 32, 17},
};

constexpr const char* kValueTypeNames[] = {
    "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
    "bool", "string", "array", "u64", "i64", "f64"};

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as u32 LE
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;

// Bounds-checked cursor over the header. Every read names what it was
// reading when the file ends early.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* p, size_t n)
      : path_(path), p_(p), n_(n) {}

  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  const uint8_t* Take(size_t n, const char* what) {
    if (n > left()) {
      Fail(
          "{}: truncated file: {} needs {} bytes at offset {} but only {} "
          "remain",
          path_, what, n, pos_, left());
    }
    const uint8_t* p = p_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T Read(const char* what) {
    T v;
    std::memcpy(&v, Take(sizeof(T), what), sizeof(T));  // little-endian host
    return v;
  }
  std::string String(const char* what) {
    const uint64_t len = Read<uint64_t>(what);
    if (len > left()) {
      Fail("{}: {} of length {} at offset {} runs past the end of the file",
           path_, what, len, pos_);
    }
    const uint8_t* p = Take(static_cast<size_t>(len), what);
    return std::string(reinterpret_cast<const char*>(p), len);
  }

 private:
  const std::string& path_;
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

// Smallest encoding of one value of type t: bounds array counts before
// allocating.
size_t MinValueBytes(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kString:
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    case GgufType::kArray:
      return 12;
  }
  return 1;
}

GgufType CheckValueType(uint32_t t, const std::string& path,
                        const std::string& key) {
  if (t > static_cast<uint32_t>(GgufType::kF64)) {
    Fail("{}: metadata {}: unknown value type {}", path, key, t);
  }
  return static_cast<GgufType>(t);
}

GgufValue ReadValue(Cursor& c, GgufType type, const std::string& path,
                    const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  auto set_u = [&](uint64_t x) {
    v.u = x;
    v.i = static_cast<int64_t>(x);
  };
  auto set_i = [&](int64_t x) {
    v.i = x;
    v.u = static_cast<uint64_t>(x);
  };
  switch (type) {
    case GgufType::kU8:
      set_u(c.Read<uint8_t>("u8 value"));
      break;
    case GgufType::kI8:
      set_i(c.Read<int8_t>("i8 value"));
      break;
    case GgufType::kU16:
      set_u(c.Read<uint16_t>("u16 value"));
      break;
    case GgufType::kI16:
      set_i(c.Read<int16_t>("i16 value"));
      break;
    case GgufType::kU32:
      set_u(c.Read<uint32_t>("u32 value"));
      break;
    case GgufType::kI32:
      set_i(c.Read<int32_t>("i32 value"));
      break;
    case GgufType::kU64:
      set_u(c.Read<uint64_t>("u64 value"));
      break;
    case GgufType::kI64:
      set_i(c.Read<int64_t>("i64 value"));
      break;
    case GgufType::kF32:
      v.f = c.Read<float>("f32 value");
      break;
    case GgufType::kF64:
      v.f = c.Read<double>("f64 value");
      break;
    case GgufType::kBool: {
      const uint8_t b = c.Read<uint8_t>("bool value");
      if (b > 1)
        Fail("{}: metadata {}: bool value {} is not 0 or 1", path, key, b);
      v.b = b != 0;
      break;
    }
    case GgufType::kString:
      v.s = c.String("string value");
      break;
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) {
        Fail("{}: metadata {}: arrays nested deeper than {}", path, key,
             kMaxArrayDepth);
      }
      v.elem_type = CheckValueType(c.Read<uint32_t>("array type"), path, key);
      const uint64_t n = c.Read<uint64_t>("array length");
      if (n > c.left() / MinValueBytes(v.elem_type)) {
        Fail("{}: metadata {}: array of {} {} runs past the end of the file",
             path, key, n, GgufTypeName(v.elem_type));
      }
      v.arr.reserve(static_cast<size_t>(n));
      for (uint64_t k = 0; k < n; ++k) {
        v.arr.push_back(ReadValue(c, v.elem_type, path, key, depth + 1));
      }
      break;
    }
  }
  return v;
}

}  // namespace

const GgmlTypeInfo* FindGgmlType(uint32_t type) {
  for (const auto& e : kGgmlTypes) {
    if (static_cast<uint32_t>(e.type) == type) return &e;
  }
  return nullptr;
}

const GgmlTypeInfo& GgmlTypeInfoOf(GgmlType type) {
  const GgmlTypeInfo* e = FindGgmlType(static_cast<uint32_t>(type));
  if (!e) Fail("unknown ggml type {}", static_cast<uint32_t>(type));
  return *e;
}

const char* GgmlTypeName(GgmlType type) {
  const GgmlTypeInfo* e = FindGgmlType(static_cast<uint32_t>(type));
  return e ? e->name : "?";
}

const char* GgufTypeName(GgufType t) {
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kValueTypeNames) ? kValueTypeNames[i] : "?";
}

bool GgufValue::IsInteger() const {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

uint64_t GgufTensor::numel() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

std::string GgufTensor::ShapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

GgufFile::GgufFile(const std::string& path) : map_(path) {
  Cursor c(path, map_.data(), map_.size());
  if (map_.size() < 4) {
    Fail("{}: truncated file ({} bytes), not a GGUF file", path, map_.size());
  }
  const uint32_t magic = c.Read<uint32_t>("magic");
  if (magic != kMagic) {
    Fail("{}: bad magic 0x{:08x} (expected \"GGUF\"); not a GGUF file", path,
         magic);
  }
  version_ = c.Read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    Fail("{}: unsupported GGUF version {} (this reader knows 2 and 3)", path,
         version_);
  }
  const uint64_t n_tensors = c.Read<uint64_t>("tensor count");
  const uint64_t n_kv = c.Read<uint64_t>("metadata count");
  // Each key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes,
  // each tensor entry at least 8 + 4 + 4 + 8.
  if (n_kv > c.left() / 13) {
    Fail("{}: metadata count {} cannot fit in the file", path, n_kv);
  }
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.String("metadata key");
    const GgufType t =
        CheckValueType(c.Read<uint32_t>("metadata value type"), path, key);
    GgufValue v = ReadValue(c, t, path, key, 0);
    if (kv_.count(key)) Fail("{}: duplicate metadata key {}", path, key);
    kv_.emplace(std::move(key), std::move(v));
  }
  if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
    const GgufValue& a = it->second;
    if (a.type != GgufType::kU32 || a.u == 0 || (a.u & (a.u - 1)) != 0) {
      Fail("{}: general.alignment must be a u32 power of two", path);
    }
    alignment_ = a.u;
  }
  if (n_tensors > c.left() / 24) {
    Fail("{}: tensor count {} cannot fit in the file", path, n_tensors);
  }
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = c.String("tensor name");
    WithContext(path + ": tensor " + t.name, [&] {
      const uint32_t n_dims = c.Read<uint32_t>("tensor n_dims");
      if (n_dims == 0 || n_dims > kMaxDims) {
        Fail("{} dimensions (1..{} allowed)", n_dims, kMaxDims);
      }
      uint64_t numel = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t dim = c.Read<uint64_t>("tensor dimension");
        if (dim == 0) Fail("dimension {} is zero", d);
        if (numel > (uint64_t{1} << 62) / dim) Fail("shape overflows");
        numel *= dim;
        t.ne.push_back(dim);
      }
      const uint32_t type = c.Read<uint32_t>("tensor type");
      const GgmlTypeInfo* info = FindGgmlType(type);
      if (!info) Fail("unknown tensor type {}", type);
      t.type = info->type;
      if (t.ne[0] % info->block_elems != 0) {
        Fail("row of {} elements is not a whole number of {} blocks of {}",
             t.ne[0], info->name, info->block_elems);
      }
      t.nbytes =
          static_cast<size_t>(numel / info->block_elems * info->block_bytes);
      t.offset = c.Read<uint64_t>("tensor offset");
      if (t.offset % alignment_ != 0) {
        Fail("offset {} is not a multiple of the alignment {}", t.offset,
             alignment_);
      }
      for (auto it = t.ne.rbegin(); it != t.ne.rend(); ++it) {
        t.shape.push_back(static_cast<int64_t>(*it));
      }
    });
    if (tensor_index_.count(t.name)) {
      Fail("{}: duplicate tensor {}", path, t.name);
    }
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  // The data section starts at the first aligned offset after the header.
  const uint64_t header_end = c.pos();
  const uint64_t data_start =
      (header_end + alignment_ - 1) / alignment_ * alignment_;
  data_offset_ = data_start;
  if (data_start > map_.size() && !tensors_.empty()) {
    Fail(
        "{}: truncated file: data section would start at {} but the file "
        "has {} bytes",
        path, data_start, map_.size());
  }
  const uint64_t data_size =
      data_start <= map_.size() ? map_.size() - data_start : 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      Fail(
          "{}: tensor {}: {} x {} needs bytes [{}, {}) of the data section "
          "but it has {} (truncated file or bad offset)",
          path, t.name, GgmlTypeName(t.type), t.ShapeString(), t.offset,
          t.offset + t.nbytes, data_size);
    }
    t.data = map_.data() + data_start + t.offset;
    ranges.emplace_back(t.offset, t.offset + t.nbytes);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      Fail("{}: tensors overlap at data offsets [{}, {}) and [{}, {})", path,
           ranges[i - 1].first, ranges[i - 1].second, ranges[i].first,
           ranges[i].second);
    }
  }
}

const GgufValue& GgufFile::Get(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) Fail("{}: missing metadata key {}", path(), key);
  return it->second;
}

std::string GgufFile::GetString(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kString) {
    Fail("{}: metadata {} is {}, expected string", path(), key,
         GgufTypeName(v.type));
  }
  return v.s;
}

int64_t GgufFile::GetInt(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (!v.IsInteger()) {
    Fail("{}: metadata {} is {}, expected an integer", path(), key,
         GgufTypeName(v.type));
  }
  if (v.type == GgufType::kU64 && v.u > static_cast<uint64_t>(INT64_MAX)) {
    Fail("{}: metadata {} = {} is out of range", path(), key, v.u);
  }
  return v.i;
}

double GgufFile::GetFloat(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.IsFloat()) return v.f;
  if (v.IsInteger()) return static_cast<double>(v.i);
  Fail("{}: metadata {} is {}, expected a number", path(), key,
       GgufTypeName(v.type));
}

bool GgufFile::GetBool(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kBool) {
    Fail("{}: metadata {} is {}, expected bool", path(), key,
         GgufTypeName(v.type));
  }
  return v.b;
}

std::vector<std::string> GgufFile::GetStringArray(
    const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kArray || v.elem_type != GgufType::kString) {
    Fail("{}: metadata {} is not an array of strings", path(), key);
  }
  std::vector<std::string> out;
  out.reserve(v.arr.size());
  for (const auto& e : v.arr) out.push_back(e.s);
  return out;
}

std::vector<double> GgufFile::GetFloatArray(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kArray ||
      (v.elem_type != GgufType::kF32 && v.elem_type != GgufType::kF64)) {
    Fail("{}: metadata {} is not an array of floats", path(), key);
  }
  std::vector<double> out;
  for (const auto& e : v.arr) out.push_back(e.f);
  return out;
}

std::vector<int64_t> GgufFile::GetIntArray(const std::string& key) const {
  const GgufValue& v = Get(key);
  GgufValue probe;
  probe.type = v.elem_type;
  if (v.type != GgufType::kArray || !probe.IsInteger()) {
    Fail("{}: metadata {} is not an array of integers", path(), key);
  }
  std::vector<int64_t> out;
  for (const auto& e : v.arr) out.push_back(e.i);
  return out;
}

const GgufTensor* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::GetTensor(const std::string& name) const {
  const GgufTensor* t = FindTensor(name);
  if (!t) Fail("{}: missing tensor {}", path(), name);
  return *t;
}

}  // namespace bioquant

namespace bioquant {

namespace {

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void PutString(std::string& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out += s;
}

void PutValue(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kU8:
      Put<uint8_t>(out, v.u);
      break;
    case GgufType::kI8:
      Put<int8_t>(out, v.i);
      break;
    case GgufType::kU16:
      Put<uint16_t>(out, v.u);
      break;
    case GgufType::kI16:
      Put<int16_t>(out, v.i);
      break;
    case GgufType::kU32:
      Put<uint32_t>(out, v.u);
      break;
    case GgufType::kI32:
      Put<int32_t>(out, v.i);
      break;
    case GgufType::kU64:
      Put<uint64_t>(out, v.u);
      break;
    case GgufType::kI64:
      Put<int64_t>(out, v.i);
      break;
    case GgufType::kF32:
      Put<float>(out, static_cast<float>(v.f));
      break;
    case GgufType::kF64:
      Put<double>(out, v.f);
      break;
    case GgufType::kBool:
      Put<uint8_t>(out, v.b ? 1 : 0);
      break;
    case GgufType::kString:
      PutString(out, v.s);
      break;
    case GgufType::kArray:
      Put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      Put<uint64_t>(out, v.arr.size());
      for (const auto& e : v.arr) PutValue(out, e);
      break;
  }
}

}  // namespace

void GgufWriter::Set(const std::string& key, GgufValue v) {
  for (auto& [k, old] : kv_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::SetString(const std::string& key, const std::string& s) {
  GgufValue v;
  v.type = GgufType::kString;
  v.s = s;
  Set(key, std::move(v));
}

void GgufWriter::SetU32(const std::string& key, uint32_t x) {
  GgufValue v;
  v.type = GgufType::kU32;
  v.u = x;
  v.i = x;
  Set(key, std::move(v));
}

void GgufWriter::SetF32(const std::string& key, float x) {
  GgufValue v;
  v.type = GgufType::kF32;
  v.f = x;
  Set(key, std::move(v));
}

void GgufWriter::SetBool(const std::string& key, bool b) {
  GgufValue v;
  v.type = GgufType::kBool;
  v.b = b;
  Set(key, std::move(v));
}

void GgufWriter::SetStringArray(const std::string& key,
                                const std::vector<std::string>& a) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.elem_type = GgufType::kString;
  for (const auto& s : a) {
    GgufValue e;
    e.type = GgufType::kString;
    e.s = s;
    v.arr.push_back(std::move(e));
  }
  Set(key, std::move(v));
}

void GgufWriter::SetF32Array(const std::string& key,
                             const std::vector<float>& a) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.elem_type = GgufType::kF32;
  for (float x : a) {
    GgufValue e;
    e.type = GgufType::kF32;
    e.f = x;
    v.arr.push_back(e);
  }
  Set(key, std::move(v));
}

void GgufWriter::SetI32Array(const std::string& key,
                             const std::vector<int32_t>& a) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.elem_type = GgufType::kI32;
  for (int32_t x : a) {
    GgufValue e;
    e.type = GgufType::kI32;
    e.i = x;
    e.u = static_cast<uint64_t>(static_cast<int64_t>(x));
    v.arr.push_back(e);
  }
  Set(key, std::move(v));
}

void GgufWriter::AddTensor(const std::string& name, GgmlType type,
                           std::vector<uint64_t> ne, const void* data,
                           size_t nbytes) {
  const GgmlTypeInfo& info = GgmlTypeInfoOf(type);
  uint64_t numel = 1;
  for (uint64_t d : ne) numel *= d;
  if (ne.empty() || ne[0] % info.block_elems != 0 ||
      numel / info.block_elems * info.block_bytes != nbytes) {
    Fail("gguf writer: tensor {} has {} bytes, not a {} tensor of that shape",
         name, nbytes, info.name);
  }
  tensors_.push_back({name, type, std::move(ne),
                      std::string(static_cast<const char*>(data), nbytes)});
}

std::string GgufWriter::Serialize() const {
  uint64_t align = 32;
  for (const auto& [k, v] : kv_) {
    if (k == "general.alignment") align = v.u;
  }
  std::string out;
  Put<uint32_t>(out, kMagic);
  Put<uint32_t>(out, 3);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, kv_.size());
  for (const auto& [k, v] : kv_) {
    PutString(out, k);
    Put<uint32_t>(out, static_cast<uint32_t>(v.type));
    PutValue(out, v);
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) Put<uint64_t>(out, d);
    Put<uint32_t>(out, static_cast<uint32_t>(t.type));
    Put<uint64_t>(out, off);
    off = (off + t.bytes.size() + align - 1) / align * align;
  }
  out.resize((out.size() + align - 1) / align * align, '\0');
  for (const auto& t : tensors_) {
    out += t.bytes;
    out.resize((out.size() + align - 1) / align * align, '\0');
  }
  return out;
}

void GgufWriter::Write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  WriteFile(tmp, Serialize());
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    Fail("{}: cannot rename into place ({})", path, std::strerror(errno));
  }
}

}  // namespace bioquant
