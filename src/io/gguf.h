// GGUF (llama.cpp's single-file checkpoint format) over mmap: strict reader.
//
// File layout (all little-endian; versions 2 and 3 are identical on disk):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type
//                 | u64 offset }
//   padding to `general.alignment` (default 32) | data section
// A string is u64 length + bytes (no NUL); an array is u32 element type +
// u64 count + elements (arrays may nest). ne[0] is the innermost (fastest)
// dimension, so the row-major shape is ne reversed. Tensor offsets count from
// the start of the data section and are multiples of the alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "util/file.h"

namespace bioquant {

// ggml tensor types, numbered as in ggml.h. Only some can be dequantized
// (quant/ggml.h); the reader knows every type's block geometry so that it
// can validate sizes of files holding types we cannot import.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;      // "Q4_K", as ggml and gguf-py spell it
  uint32_t block_elems;  // elements per block (1 for plain types)
  uint32_t block_bytes;  // bytes per block
};

// nullptr for a type number we do not know.
const GgmlTypeInfo* FindGgmlType(uint32_t type);
const GgmlTypeInfo& GgmlTypeInfoOf(GgmlType type);
const char* GgmlTypeName(GgmlType type);

// Metadata value types, numbered as in gguf.h.
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* GgufTypeName(GgufType t);

// One metadata value. Integers are widened into `i` (signed types and
// unsigned ones up to 2^63) and `u` (always the raw unsigned bits); floats
// into `f`.
struct GgufValue {
  GgufType type = GgufType::kU8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufType elem_type = GgufType::kU8;  // arrays only
  std::vector<GgufValue> arr;

  bool IsInteger() const;
  bool IsFloat() const {
    return type == GgufType::kF32 || type == GgufType::kF64;
  }
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<uint64_t> ne;       // as stored: ne[0] innermost
  std::vector<int64_t> shape;     // row-major (ne reversed)
  uint64_t offset = 0;            // from the data section's start
  const uint8_t* data = nullptr;  // into the mmap
  size_t nbytes = 0;
  uint64_t numel() const;
  std::string ShapeString() const;  // "[576, 49152]" (row-major)
};

// Validates: magic, version 2 or 3, every read inside the file, string and
// array lengths within the file, known value and tensor types, at most 4
// dimensions with no overflow, rows a whole number of blocks, alignment a
// power of two, offsets aligned and inside the data section, no duplicate
// keys or tensor names, no overlapping tensors. Errors name the file.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Where the data section starts (the header's size, padded).
  uint64_t data_offset() const { return data_offset_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  bool Has(const std::string& key) const { return kv_.count(key) > 0; }
  // Throws Error naming the file and key when absent or of another kind.
  const GgufValue& Get(const std::string& key) const;
  std::string GetString(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;   // any integer type
  double GetFloat(const std::string& key) const;  // f32/f64 or integer
  bool GetBool(const std::string& key) const;
  std::vector<std::string> GetStringArray(const std::string& key) const;
  std::vector<double> GetFloatArray(const std::string& key) const;
  std::vector<int64_t> GetIntArray(const std::string& key) const;

  const GgufTensor* FindTensor(const std::string& name) const;
  const GgufTensor& GetTensor(const std::string& name) const;

 private:
  MappedFile map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace bioquant

namespace bioquant {

// Writes GGUF v3 files: tests build fixtures with it (real checkpoints come
// from llama.cpp's converter). Values and tensors are written in insertion
// order; tensor data is padded to the alignment.
class GgufWriter {
 public:
  void Set(const std::string& key, GgufValue v);
  void SetString(const std::string& key, const std::string& s);
  void SetU32(const std::string& key, uint32_t x);
  void SetF32(const std::string& key, float x);
  void SetBool(const std::string& key, bool b);
  void SetStringArray(const std::string& key,
                      const std::vector<std::string>& a);
  void SetF32Array(const std::string& key, const std::vector<float>& a);
  void SetI32Array(const std::string& key, const std::vector<int32_t>& a);
  // ne: ggml order (ne[0] innermost). bytes must match the type's size.
  void AddTensor(const std::string& name, GgmlType type,
                 std::vector<uint64_t> ne, const void* data, size_t nbytes);
  // The whole file as bytes (alignment from general.alignment or 32).
  std::string Serialize() const;
  void Write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<uint64_t> ne;
    std::string bytes;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace bioquant
