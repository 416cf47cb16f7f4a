// safetensors over mmap: strict reader (single file or sharded with
// model.safetensors.index.json) and a writer.
//
// File layout: [u64 little-endian header length N][N bytes JSON header]
// [data]. The header maps tensor name -> {dtype, shape, data_offsets:[b, e]}
// with offsets relative to the start of the data section, plus an optional
// "__metadata__" object of string -> string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "util/file.h"

namespace bioquant {

enum class DType { kF32, kF16, kBF16, kF64, kI8, kU8, kI16, kI32, kI64, kBool };

// "F32", "BF16", ... as written in safetensors headers.
const char* DTypeName(DType t);
// Throws Error for names we do not support.
DType ParseDType(const std::string& name);
size_t DTypeSize(DType t);

// A tensor inside a mapped file. `data` points into the mmap, aligned to
// the element size: a tensor the file stores at an offset that is not (the
// format allows any offset) is copied once into an aligned buffer that the
// file object owns (`mapped` false), so every reader may load its elements
// as their own type.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;    // the file it lives in, for error messages
  bool mapped = true;  // false: an aligned copy (see above)

  int64_t numel() const;
  std::string ShapeString() const;  // "[2048, 5632]"
};

// Drops the pages of a read-only mapping from this process's RSS (the file
// stays mapped; touching it again reads it back). Used after a tensor was
// converted or quantized, so loading at nf4 never holds the f16 model.
void ReleasePages(const void* p, size_t n);
// The same for a tensor; nothing for an aligned copy (its pages are not
// backed by the file, so dropping them would lose the data).
void ReleasePages(const TensorView& t);

// One .safetensors file. Validates: header length within the file, JSON,
// known dtypes, shape x dtype == byte size, offsets inside the data section,
// no two tensors overlapping, no gaps left unexplained is NOT required.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // Size of the header (8 + N): what "tensor headers" fingerprinting hashes.
  std::string header_json() const { return header_json_; }

 private:
  MappedFile map_;
  std::vector<std::unique_ptr<uint64_t[]>> aligned_copies_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string header_json_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards
// listed in model.safetensors.index.json (every listed tensor must be found
// in the shard the index names).
class TensorStore {
 public:
  // dir: a checkpoint directory. Throws Error naming the file on problems.
  static std::unique_ptr<TensorStore> Open(const std::string& dir);
  // A single file.
  static std::unique_ptr<TensorStore> OpenFile(const std::string& path);

  bool Has(const std::string& name) const;
  // Throws Error("missing tensor <name> in <dir>") when absent.
  const TensorView& Get(const std::string& name) const;
  std::vector<std::string> Names() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const {
    return files_;
  }
  // Metadata of the first file (transformers writes {"format": "pt"}).
  const std::map<std::string, std::string>& metadata() const;
  uint64_t MappedBytes() const;

 private:
  std::string where_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Builds a safetensors file in memory-friendly fashion: tensors are appended
// (copied); the header is padded to 8 bytes and the data laid out by element
// size, largest first (ties in insertion order), so each tensor is aligned.
class SafetensorsWriter {
 public:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape,
           const void* data, size_t nbytes);
  void SetMetadata(const std::string& key, const std::string& value);
  size_t data_bytes() const { return data_.size(); }
  size_t num_tensors() const { return entries_.size(); }
  std::vector<std::string> names() const;
  // Writes atomically (tmp file + rename). Throws Error naming the path.
  void Write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t begin, end;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
  std::vector<uint8_t> data_;
};

// Writes a file whose tensors are produced one at a time (checkpoints larger
// than memory): the header is fixed up front (data laid out as
// SafetensorsWriter's), then Append() must be called once per declared
// tensor, in declaration order.
class SafetensorsStreamWriter {
 public:
  struct Decl {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsStreamWriter(const std::string& path, std::vector<Decl> decls,
                          const std::map<std::string, std::string>& metadata);
  ~SafetensorsStreamWriter();
  void Append(const std::string& name, const void* data, size_t nbytes);
  // Flushes, checks every tensor was written, renames into place.
  void Finish();

 private:
  std::string path_;
  std::vector<Decl> decls_;
  std::vector<size_t> offsets_;  // per declared tensor, in the data section
  size_t data_start_ = 0;        // 8 + header length
  size_t next_ = 0;
  void* file_ = nullptr;  // FILE*
};

}  // namespace bioquant
