#include "engine/weight_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/quantize.h"
#include "quant/bnb_checkpoint.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"
#include "util/sys.h"

namespace bioquant {
namespace fs = std::filesystem;
namespace {

constexpr int kCacheVersion = 1;
constexpr const char* kManifest = "bioquant-cache.json";

std::string Hex64(uint64_t h) { return fmt::format("{:016x}", h); }

// A fast 64-bit hash of bytes (four independent multiply-xor lanes over
// 8-byte words, then mixed): several GB/s per core, so checking an entry
// costs far less than quantizing it. Detects corruption, not attacks.
uint64_t HashBytes(const uint8_t* p, size_t n, uint64_t seed) {
  constexpr uint64_t kM = 0x9E3779B97F4A7C15ull;
  uint64_t h[4] = {seed ^ 0x243F6A8885A308D3ull, seed ^ 0x13198A2E03707344ull,
                   seed ^ 0xA4093822299F31D0ull, seed ^ 0x082EFA98EC4E6C89ull};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      h[k] = (h[k] ^ w) * kM;
      h[k] ^= h[k] >> 29;
    }
  }
  uint64_t r = n;
  for (int k = 0; k < 4; ++k) r = (r ^ h[k]) * kM;
  for (; i < n; ++i) r = (r ^ p[i]) * 0x100000001B3ull;
  return r ^ (r >> 31);
}

// Hash of a whole file, in 4 MiB chunks split across the pool.
uint64_t HashFile(const std::string& path, ThreadPool* pool) {
  MappedFile f(path);
  constexpr size_t kChunk = 4 << 20;
  const size_t n = f.size();
  const size_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<uint64_t> part(chunks);
  auto range = [&](size_t c0, size_t c1, int) {
    for (size_t c = c0; c < c1; ++c) {
      const size_t b = c * kChunk, e = std::min(n, b + kChunk);
      part[c] = HashBytes(f.data() + b, e - b, c);
    }
  };
  if (pool && chunks > 1) {
    pool->ParallelFor(chunks, range);
  } else {
    range(0, chunks, 0);
  }
  return HashBytes(reinterpret_cast<const uint8_t*>(part.data()),
                   part.size() * 8, n);
}

std::vector<std::string> EntryFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && n != kManifest) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void WriteFileAtomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  WriteFile(tmp, data);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) Fail("{}: cannot rename from {} ({})", path, tmp, ec.message());
}

void RemoveAll(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);  // best effort: a failure only leaves garbage
}

// Temporary build directories older than an hour belong to a killed writer.
void RemoveStaleTemps(const std::string& cache_dir) {
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (const auto& e : fs::directory_iterator(cache_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp-") == std::string::npos) continue;
    std::error_code ec2;
    const auto t = fs::last_write_time(e.path(), ec2);
    if (!ec2 && now - t > std::chrono::hours(1)) RemoveAll(e.path().string());
  }
}

}  // namespace

std::string DefaultWeightCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/bioquant";
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.cache/bioquant";
  return "";
}

std::string WeightCacheFormatKey(const PrecisionSpec& p) {
  std::string k;
  if (p.name == "int8" || p.name == "llm-int8") {
    k = "int8";
  } else if (p.name == "nf4" || p.name == "fp4") {
    k = fmt::format("{}-bs{}-{}", p.name, p.quant.blocksize,
                    p.quant.double_quant ? "dq" : "nodq");
  } else {
    return "";
  }
  if (!p.skip_modules.empty()) {
    std::string all;
    for (const auto& s : p.skip_modules) all += s + "\n";
    k += "-skip" + Hex64(Fnv1a(all)).substr(0, 8);
  }
  return k;
}

std::string CheckpointFingerprint(const std::string& model_dir) {
  uint64_t h = Fnv1a(ReadFile(model_dir + "/config.json"));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(model_dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() &&
        (n.ends_with(".safetensors") || n == "model.safetensors.index.json")) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) Fail("{}: cannot stat", p.string());
    h = Fnv1a(fmt::format("{}|{}|{}.{}|", p.filename().string(), st.st_size,
                          st.st_mtim.tv_sec, st.st_mtim.tv_nsec),
              h);
    // The header and 16 windows spread over the data: a changed tensor of
    // the same size and timestamp is still very likely to be seen.
    const int fd = ::open(p.c_str(), O_RDONLY);
    if (fd < 0) Fail("{}: cannot open", p.string());
    std::string buf(4096, '\0');
    for (int k = 0; k <= 16; ++k) {
      const off_t off = k == 0 ? 0 : (st.st_size / 17) * k;
      const ssize_t got = ::pread(fd, buf.data(), buf.size(), off);
      if (got > 0) h = Fnv1a(buf.substr(0, got), h);
    }
    ::close(fd);
  }
  return Hex64(h);
}

// What changes whenever a file's bytes change: size, mtime and ctime (the
// kernel sets ctime to now on every write and no user call can set it).
std::string StatStamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return fmt::format("{}|{}.{}|{}.{}|{}", st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec,
                     st.st_ino);
}

std::string ValidateWeightCacheEntry(const std::string& dir, ThreadPool* pool) {
  const std::string mpath = dir + "/" + kManifest;
  if (!FileExists(mpath)) return "no manifest (partial entry)";
  nlohmann::json m;
  try {
    m = ParseJson(ReadFile(mpath));
  } catch (const std::exception& e) {
    return fmt::format("unreadable manifest ({})", e.what());
  }
  if (m.value("version", 0) != kCacheVersion) return "other cache version";
  nlohmann::json& files = m["files"];
  if (!files.is_object() || files.empty()) return "manifest lists no files";
  std::vector<std::string> want;
  for (const auto& [name, _] : files.items()) want.push_back(name);
  std::sort(want.begin(), want.end());
  if (want != EntryFiles(dir)) return "files differ from the manifest";
  bool restamp = false;
  for (auto& [name, f] : files.items()) {
    const std::string p = dir + "/" + name;
    std::error_code ec;
    const uint64_t size = fs::file_size(p, ec);
    if (ec || size != f.value("size", uint64_t{0})) {
      return fmt::format("{}: size differs from the manifest", name);
    }
    // Unchanged since the hash was taken: no need to read it all again
    // (hashing a 70B model's entry on every load would cost seconds).
    const std::string stamp = StatStamp(p);
    if (!stamp.empty() && stamp == f.value("stamp", std::string())) continue;
    if (Hex64(HashFile(p, pool)) != f.value("hash", std::string())) {
      return fmt::format("{}: content hash differs from the manifest", name);
    }
    f["stamp"] = stamp;  // e.g. copied elsewhere: same bytes, new stamp
    restamp = true;
  }
  if (restamp) {
    try {
      WriteFileAtomic(mpath, m.dump(1) + "\n");
    } catch (const Error&) {
      // A read-only cache still works; it is hashed again next time.
    }
  }
  return "";
}

WeightCacheResult ResolveWeightCache(const std::string& cache_dir,
                                     const std::string& model_dir,
                                     const ModelConfig& cfg,
                                     const PrecisionSpec& precision,
                                     ThreadPool* pool) {
  WeightCacheResult r;
  r.dir = model_dir;
  const std::string fkey = WeightCacheFormatKey(precision);
  if (cache_dir.empty() || fkey.empty()) return r;
  if (ParseBnbQuantizationConfig(cfg.raw, model_dir + "/config.json")) {
    return r;  // already quantized: loaded as stored
  }
  const std::string key = fmt::format(
      "{}-{}-v{}", CheckpointFingerprint(model_dir), fkey, kCacheVersion);
  const std::string entry = cache_dir + "/" + key;
  if (IsDirectory(entry)) {
    const std::string why = ValidateWeightCacheEntry(entry, pool);
    if (why.empty()) {
      r.dir = entry;
      r.hit = true;
      return r;
    }
    r.note = why;
    RemoveAll(entry);
  }
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec || !IsDirectory(cache_dir)) {
    Fail("--cache-dir {}: cannot create directory ({})", cache_dir,
         ec ? ec.message() : "not a directory");
  }
  RemoveStaleTemps(cache_dir);
  static std::atomic<int> counter{0};
  const std::string tmp =
      fmt::format("{}.tmp-{}-{}", entry, ::getpid(), counter++);
  RemoveAll(tmp);
  try {
    QuantizeOptions q;
    q.model_dir = model_dir;
    q.out_dir = tmp;
    q.precision = precision;
    q.precision.name = fkey == "int8" ? "int8" : precision.name;
    q.pool = pool;
    QuantizeCheckpoint(q);
    nlohmann::json m;
    m["version"] = kCacheVersion;
    m["model_dir"] = model_dir;
    m["key"] = key;
    m["created"] = UtcNowIso();
    m["files"] = nlohmann::json::object();
    for (const std::string& n : EntryFiles(tmp)) {
      const std::string p = tmp + "/" + n;
      m["files"][n] = {{"size", fs::file_size(p)},
                       {"hash", Hex64(HashFile(p, pool))},
                       {"stamp", StatStamp(p)}};
    }
    WriteFileAtomic(tmp + "/" + kManifest, m.dump(1) + "\n");
  } catch (...) {
    RemoveAll(tmp);
    throw;
  }
  fs::rename(tmp, entry, ec);
  if (ec) {
    // Another process finished the same entry first: use theirs if valid.
    RemoveAll(tmp);
    if (!ValidateWeightCacheEntry(entry, pool).empty()) {
      Fail("{}: cannot install cache entry ({})", entry, ec.message());
    }
    r.hit = true;
  } else {
    r.built = true;
  }
  r.dir = entry;
  return r;
}

}  // namespace bioquant
