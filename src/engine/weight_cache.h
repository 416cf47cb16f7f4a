// Quantized-weights cache: the first load of a full-precision checkpoint at
// int8 / llm-int8 / nf4 / fp4 writes the quantized checkpoint (the same
// bitsandbytes files `bioquant quantize` writes) under a cache directory;
// later loads map those files instead of quantizing again.
//
// Entry layout: <cache_dir>/<key>/
//   config.json, model*.safetensors[, index]   as QuantizeCheckpoint writes
//   bioquant-cache.json                        written last (see below)
// key = "<fingerprint>-<weights>-v1": the checkpoint fingerprint (config.json,
// each weight file's name, size, mtime, safetensors header and 16 sampled
// 4 KiB windows of its data) and the stored weights ("int8", or
// "nf4-bs64-dq" / "fp4-bs128-nodq", plus a hash of --skip-modules).
// int8 and llm-int8 share an entry: the weights are the same.
//
// Integrity: an entry is built in "<key>.tmp-<pid>-<n>" and renamed into
// place only after bioquant-cache.json (format version, every file's size
// and 64-bit content hash, and its stat stamp: size, mtime, ctime, inode)
// has been written with its own temp+rename. A reader checks the manifest
// against the files before using an entry: sizes always, content hashes
// only for files whose stamp changed since the hash was taken (any write
// sets ctime to now; then the manifest is restamped when the bytes still
// match), so a hit reads no weights; a missing, partial or corrupt entry is
// removed and rebuilt, never used. Temporary directories left by a killed
// writer are ignored, and removed once older than an hour.
#pragma once

#include <string>

#include "model/config.h"
#include "model/weights.h"
#include "util/thread_pool.h"

namespace bioquant {

// $XDG_CACHE_HOME/bioquant, else $HOME/.cache/bioquant ("" when neither is
// set: no cache).
std::string DefaultWeightCacheDir();

// The stored-weights part of the key, or "" when `p` needs no cache (float
// precisions, the checkpoint dtype).
std::string WeightCacheFormatKey(const PrecisionSpec& p);

// Fingerprint of a checkpoint directory's contents (16 hex digits).
std::string CheckpointFingerprint(const std::string& model_dir);

struct WeightCacheResult {
  std::string dir;     // directory to load the weights from
  bool hit = false;    // an existing valid entry was used
  bool built = false;  // a new entry was written this call
  std::string note;    // why an entry was rebuilt (corrupt, partial), if any
};

// Returns the cache entry for (model_dir, precision) under cache_dir,
// building it first when missing or invalid. Returns model_dir itself (no
// cache) when cache_dir is empty, the precision is not quantized, or the
// checkpoint is already a bitsandbytes one. `pool` speeds up quantizing and
// hashing. Errors name the cache directory.
WeightCacheResult ResolveWeightCache(const std::string& cache_dir,
                                     const std::string& model_dir,
                                     const ModelConfig& cfg,
                                     const PrecisionSpec& precision,
                                     ThreadPool* pool);

// Checks an entry directory against its manifest; "" when valid, else the
// reason (for tests and the rebuild note).
std::string ValidateWeightCacheEntry(const std::string& entry_dir,
                                     ThreadPool* pool);

}  // namespace bioquant
