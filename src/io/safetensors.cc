#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/json.h"

namespace bioquant {

namespace {

struct DTypeEntry {
  DType t;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::kF32, "F32", 4},   {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kF64, "F64", 8},
    {DType::kI8, "I8", 1},     {DType::kU8, "U8", 1},
    {DType::kI16, "I16", 2},   {DType::kI32, "I32", 4},
    {DType::kI64, "I64", 8},   {DType::kBool, "BOOL", 1},
};

// A header longer than this is certainly corrupt (real ones are < 1 MiB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

const char* DTypeName(DType t) {
  for (const auto& e : kDTypes) {
    if (e.t == t) return e.name;
  }
  return "?";
}

DType ParseDType(const std::string& name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.t;
  }
  Fail("unsupported dtype '{}'", name);
}

size_t DTypeSize(DType t) {
  for (const auto& e : kDTypes) {
    if (e.t == t) return e.size;
  }
  return 0;
}

void ReleasePages(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  // Only whole pages inside [p, p + n): neighbours may still be in use.
  const uintptr_t b = (a + page - 1) & ~(page - 1), e = (a + n) & ~(page - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

void ReleasePages(const TensorView& t) {
  if (t.mapped) ReleasePages(t.data, t.nbytes);
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  const size_t size = map_.size();
  if (size < 8) Fail("{}: truncated safetensors file ({} bytes)", path, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_.data()[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    Fail("{}: header length {} runs past end of file ({} bytes)", path,
         header_len, size);
  }
  header_json_.assign(reinterpret_cast<const char*>(map_.data() + 8),
                      header_len);
  nlohmann::json header;
  try {
    header = ParseJson(header_json_);
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: malformed JSON header {}", path, JsonErrorWhere(e));
  }
  if (!header.is_object()) Fail("{}: header is not a JSON object", path);
  const uint8_t* data = map_.data() + 8 + header_len;
  const size_t data_size = size - 8 - header_len;

  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) Fail("{}: __metadata__ is not an object", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          Fail("{}: __metadata__.{} is not a string", path, m.key());
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    WithContext(path + ": tensor " + name, [&] {
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
          !v.contains("data_offsets")) {
        Fail("entry needs dtype, shape and data_offsets");
      }
      if (!v["dtype"].is_string()) Fail("dtype is not a string");
      TensorView t;
      t.name = name;
      t.file = path;
      t.dtype = ParseDType(v["dtype"].get<std::string>());
      const auto& shape = v["shape"];
      const auto& off = v["data_offsets"];
      if (!shape.is_array()) Fail("shape is not an array");
      uint64_t numel = 1;
      for (const auto& d : shape) {
        if (!d.is_number_unsigned()) Fail("shape has a non-integer dimension");
        const uint64_t dim = d.get<uint64_t>();
        if (dim != 0 && numel > (1ull << 62) / dim) Fail("shape overflows");
        numel *= dim;
        t.shape.push_back(static_cast<int64_t>(dim));
      }
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
          !off[1].is_number_unsigned()) {
        Fail("data_offsets must be two unsigned integers");
      }
      const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
      if (b > e) Fail("data_offsets [{}, {}] are reversed", b, e);
      if (e > data_size) {
        Fail("data_offsets [{}, {}] out of range (data section is {} bytes)", b,
             e, data_size);
      }
      const uint64_t want = numel * DTypeSize(t.dtype);
      if (e - b != want) {
        Fail("{} x {} needs {} bytes but data_offsets span {}",
             DTypeName(t.dtype), t.ShapeString(), want, e - b);
      }
      t.data = data + b;
      t.nbytes = e - b;
      if (reinterpret_cast<uintptr_t>(t.data) % DTypeSize(t.dtype) != 0) {
        // Misaligned for its element type (a writer that neither pads the
        // header nor orders tensors by element size): an aligned copy.
        auto& copy = aligned_copies_.emplace_back(
            std::make_unique<uint64_t[]>((t.nbytes + 7) / 8));
        std::memcpy(copy.get(), t.data, t.nbytes);
        t.data = reinterpret_cast<const uint8_t*>(copy.get());
        t.mapped = false;
      }
      ranges.emplace_back(b, e);
      tensors_.emplace(name, std::move(t));
    });
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second &&
        ranges[i].first != ranges[i].second) {
      Fail("{}: tensors overlap at data offsets [{}, {}) and [{}, {})", path,
           ranges[i - 1].first, ranges[i - 1].second, ranges[i].first,
           ranges[i].second);
    }
  }
}

std::unique_ptr<TensorStore> TensorStore::OpenFile(const std::string& path) {
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  store->where_ = path;
  store->files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const auto& [name, view] : store->files_.back()->tensors()) {
    store->index_[name] = &view;
  }
  return store;
}

std::unique_ptr<TensorStore> TensorStore::Open(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  if (!FileExists(index_path)) {
    if (!FileExists(single)) {
      Fail("{}: no model.safetensors or model.safetensors.index.json", dir);
    }
    auto store = OpenFile(single);
    store->where_ = dir;
    return store;
  }
  const nlohmann::json index = ReadJsonFile(index_path);
  if (!index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    Fail("{}: missing weight_map object", index_path);
  }
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  store->where_ = dir;
  std::map<std::string, SafetensorsFile*> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end();
       ++it) {
    if (!it.value().is_string()) {
      Fail("{}: weight_map.{} is not a file name", index_path, it.key());
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..") {
      Fail("{}: shard name '{}' must be a plain file name", index_path, shard);
    }
    if (!shards.count(shard)) {
      store->files_.push_back(
          std::make_unique<SafetensorsFile>(dir + "/" + shard));
      shards[shard] = store->files_.back().get();
    }
    const auto& tensors = shards[shard]->tensors();
    auto t = tensors.find(it.key());
    if (t == tensors.end()) {
      Fail("{}: tensor {} is listed in the index but missing from {}",
           index_path, it.key(), shard);
    }
    store->index_[it.key()] = &t->second;
  }
  // Tensors present in shards but not in the index are still usable.
  for (const auto& f : store->files_) {
    for (const auto& [name, view] : f->tensors()) {
      store->index_.emplace(name, &view);
    }
  }
  return store;
}

bool TensorStore::Has(const std::string& name) const {
  return index_.count(name) > 0;
}

const TensorView& TensorStore::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) Fail("{}: missing tensor {}", where_, name);
  return *it->second;
}

std::vector<std::string> TensorStore::Names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, _] : index_) names.push_back(name);
  return names;
}

const std::map<std::string, std::string>& TensorStore::metadata() const {
  static const std::map<std::string, std::string> kEmpty;
  return files_.empty() ? kEmpty : files_.front()->metadata();
}

uint64_t TensorStore::MappedBytes() const {
  uint64_t n = 0;
  for (const auto& f : files_) {
    for (const auto& [_, v] : f->tensors()) n += v.nbytes;
  }
  return n;
}

namespace {

// Indices 0..n-1 ordered by element size, largest first, ties in their
// given order: with an 8-aligned data section every tensor then starts at a
// multiple of its element size.
template <class SizeOf>
std::vector<size_t> AlignedOrder(size_t n, SizeOf size_of) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return size_of(a) > size_of(b); });
  return order;
}

}  // namespace

void SafetensorsWriter::Add(const std::string& name, DType dtype,
                            std::vector<int64_t> shape, const void* data,
                            size_t nbytes) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (static_cast<size_t>(numel) * DTypeSize(dtype) != nbytes) {
    Fail("safetensors writer: tensor {} has {} bytes, shape needs {}", name,
         nbytes, numel * DTypeSize(dtype));
  }
  for (const auto& e : entries_) {
    if (e.name == name) Fail("safetensors writer: duplicate tensor {}", name);
  }
  const size_t begin = data_.size();
  const auto* p = static_cast<const uint8_t*>(data);
  data_.insert(data_.end(), p, p + nbytes);
  entries_.push_back({name, dtype, std::move(shape), begin, data_.size()});
}

void SafetensorsWriter::SetMetadata(const std::string& key,
                                    const std::string& value) {
  metadata_[key] = value;
}

std::vector<std::string> SafetensorsWriter::names() const {
  std::vector<std::string> n;
  for (const auto& e : entries_) n.push_back(e.name);
  return n;
}

void SafetensorsWriter::Write(const std::string& path) const {
  // nlohmann::ordered_json keeps insertion order, so the header lists tensors
  // in the order they were added (as the Rust safetensors crate does by
  // offset).
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = meta;
  }
  // Data laid out by element size, largest first (as the Rust crate does),
  // so every tensor is aligned to its element size in the mapped file.
  const std::vector<size_t> order = AlignedOrder(
      entries_.size(), [&](size_t i) { return DTypeSize(entries_[i].dtype); });
  size_t off = 0;
  for (size_t i : order) {
    const Entry& e = entries_[i];
    header[e.name] = {{"dtype", DTypeName(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {off, off + (e.end - e.begin)}}};
    off += e.end - e.begin;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data section
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) Fail("{}: cannot create ({})", tmp, std::strerror(errno));
  uint8_t len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 &&
            std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (size_t i : order) {
    const Entry& e = entries_[i];
    const size_t n = e.end - e.begin;
    ok = ok && (n == 0 || std::fwrite(data_.data() + e.begin, 1, n, f) == n);
  }
  int err = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());  // never leave a half-written file behind
    Fail("{}: write failed ({})", path, std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    Fail("{}: cannot rename from {} ({})", path, tmp, std::strerror(errno));
  }
}

namespace {

size_t DeclBytes(const SafetensorsStreamWriter::Decl& d) {
  size_t n = DTypeSize(d.dtype);
  for (int64_t x : d.shape) n *= static_cast<size_t>(x);
  return n;
}

}  // namespace

SafetensorsStreamWriter::SafetensorsStreamWriter(
    const std::string& path, std::vector<Decl> decls,
    const std::map<std::string, std::string>& metadata)
    : path_(path), decls_(std::move(decls)) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  // Laid out by element size (aligned, as Write); Append still takes them in
  // declaration order and seeks to each one's place.
  const std::vector<size_t> order = AlignedOrder(
      decls_.size(), [&](size_t i) { return DTypeSize(decls_[i].dtype); });
  offsets_.assign(decls_.size(), 0);
  size_t off = 0;
  for (size_t i : order) {
    const Decl& d = decls_[i];
    const size_t n = DeclBytes(d);
    header[d.name] = {{"dtype", DTypeName(d.dtype)},
                      {"shape", d.shape},
                      {"data_offsets", {off, off + n}}};
    offsets_[i] = off;
    off += n;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  const std::string tmp = path_ + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) Fail("{}: cannot create ({})", tmp, std::strerror(errno));
  file_ = f;
  uint8_t len[8];
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  data_start_ = 8 + h.size();
  if (std::fwrite(len, 1, 8, f) != 8 ||
      std::fwrite(h.data(), 1, h.size(), f) != h.size()) {
    const int err = errno;
    std::fclose(f);  // the destructor does not run for a throwing constructor
    file_ = nullptr;
    std::remove(tmp.c_str());
    Fail("{}: write failed ({})", tmp, std::strerror(err));
  }
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (file_) {
    std::fclose(static_cast<FILE*>(file_));
    std::remove((path_ + ".tmp").c_str());
  }
}

void SafetensorsStreamWriter::Append(const std::string& name, const void* data,
                                     size_t nbytes) {
  if (next_ >= decls_.size() || decls_[next_].name != name) {
    Fail("{}: tensor {} written out of declared order", path_, name);
  }
  if (DeclBytes(decls_[next_]) != nbytes) {
    Fail("{}: tensor {} has {} bytes, declared {}", path_, name, nbytes,
         DeclBytes(decls_[next_]));
  }
  FILE* f = static_cast<FILE*>(file_);
  if (nbytes && (std::fseek(f, static_cast<long>(data_start_ + offsets_[next_]),
                            SEEK_SET) != 0 ||
                 std::fwrite(data, 1, nbytes, f) != nbytes)) {
    Fail("{}: write failed for tensor {} ({})", path_, name,
         std::strerror(errno));
  }
  ++next_;
}

void SafetensorsStreamWriter::Finish() {
  if (next_ != decls_.size()) {
    Fail("{}: only {} of {} tensors written", path_, next_, decls_.size());
  }
  FILE* f = static_cast<FILE*>(file_);
  file_ = nullptr;
  if (std::fclose(f) != 0) {  // buffered data hit a full disk
    const int err = errno;
    std::remove((path_ + ".tmp").c_str());
    Fail("{}: write failed ({})", path_, std::strerror(err));
  }
  if (std::rename((path_ + ".tmp").c_str(), path_.c_str()) != 0) {
    Fail("{}: cannot rename into place ({})", path_, std::strerror(errno));
  }
}

}  // namespace bioquant
