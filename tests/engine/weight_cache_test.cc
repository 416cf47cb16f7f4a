// Quantized-weights cache: a first load builds an entry, a second maps it,
// with the same logits as quantizing on load; corrupt, truncated, partial
// (no manifest) and killed-write (temporary) entries are never used.
#include "engine/weight_cache.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/engine.h"
#include "engine/synth.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {
namespace fs = std::filesystem;

const std::string& Model() {
  static const std::string dir = [] {
    SynthOptions s;
    s.preset = "tiny";
    s.out_dir = testing::TempDir("wcache") + "/tiny";
    s.dtype = "bf16";
    s.seed = 5;
    WriteSyntheticCheckpoint(s);
    return s.out_dir;
  }();
  return dir;
}

struct Loaded {
  std::string status;
  std::vector<float> logits;
};

Loaded Load(const std::string& cache, const std::string& precision,
            int blocksize = 64) {
  EngineOptions o;
  o.model_dir = Model();
  o.precision.name = precision;
  o.precision.quant.blocksize = blocksize;
  o.threads = 2;
  o.weight_cache_dir = cache;
  auto e = Engine::Load(o);
  return {e->weight_cache_status(), e->Logits({1, 5, 9, 2})};
}

void ExpectSameBits(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
}

std::string OnlyEntry(const std::string& cache) {
  std::string found;
  for (const auto& e : fs::directory_iterator(cache)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp-") == std::string::npos) {
      EXPECT_TRUE(found.empty()) << "two entries: " << found << ", " << n;
      found = e.path().string();
    }
  }
  return found;
}

TEST(WeightCache, BuildThenHitSameLogitsAsQuantizeOnLoad) {
  for (const char* p : {"nf4", "fp4", "int8", "llm-int8"}) {
    SCOPED_TRACE(p);
    const std::string cache = testing::TempDir("wc");
    const Loaded off = Load("", p);
    EXPECT_EQ(off.status, "off");
    const Loaded first = Load(cache, p);
    EXPECT_EQ(first.status, "built");
    const Loaded second = Load(cache, p);
    EXPECT_EQ(second.status, "hit");
    ExpectSameBits(first.logits, off.logits);
    ExpectSameBits(second.logits, off.logits);
    EXPECT_EQ(ValidateWeightCacheEntry(OnlyEntry(cache), nullptr), "");
  }
}

TEST(WeightCache, FloatPrecisionsAndNoDirUseNoCache) {
  const std::string cache = testing::TempDir("wcf");
  EXPECT_EQ(Load(cache, "bf16").status, "off");
  EXPECT_EQ(Load(cache, "f32").status, "off");
  EXPECT_TRUE(fs::is_empty(cache));
}

TEST(WeightCache, KeysSeparateOptionsAndShareInt8) {
  PrecisionSpec a, b;
  a.name = "nf4";
  b.name = "nf4";
  b.quant.blocksize = 128;
  EXPECT_NE(WeightCacheFormatKey(a), WeightCacheFormatKey(b));
  b = a;
  b.quant.double_quant = false;
  EXPECT_NE(WeightCacheFormatKey(a), WeightCacheFormatKey(b));
  b = a;
  b.name = "fp4";
  EXPECT_NE(WeightCacheFormatKey(a), WeightCacheFormatKey(b));
  b = a;
  b.skip_modules = {"down_proj"};
  EXPECT_NE(WeightCacheFormatKey(a), WeightCacheFormatKey(b));
  a.name = "int8";
  b = a;
  b.name = "llm-int8";
  EXPECT_EQ(WeightCacheFormatKey(a), WeightCacheFormatKey(b));
  a.name = "bf16";
  EXPECT_EQ(WeightCacheFormatKey(a), "");
  // A changed checkpoint gets another fingerprint.
  const std::string m = testing::TempDir("wcfp") + "/m";
  fs::copy(Model(), m);
  const std::string fp = CheckpointFingerprint(m);
  EXPECT_EQ(fp, CheckpointFingerprint(m));
  {
    std::fstream f(m + "/model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x55');
  }
  EXPECT_NE(fp, CheckpointFingerprint(m));
}

// Damages the entry with `damage`, then checks it is detected, rebuilt, and
// the rebuilt one gives the same logits.
void CheckRebuilt(const std::function<void(const std::string&)>& damage,
                  const char* expect_reason) {
  const std::string cache = testing::TempDir("wcd");
  const Loaded first = Load(cache, "nf4");
  ASSERT_EQ(first.status, "built");
  const std::string entry = OnlyEntry(cache);
  damage(entry);
  const std::string why = ValidateWeightCacheEntry(entry, nullptr);
  EXPECT_NE(why.find(expect_reason), std::string::npos) << why;
  const Loaded again = Load(cache, "nf4");
  EXPECT_EQ(again.status, "built");
  ExpectSameBits(again.logits, first.logits);
  EXPECT_EQ(ValidateWeightCacheEntry(OnlyEntry(cache), nullptr), "");
  EXPECT_EQ(Load(cache, "nf4").status, "hit");
}

TEST(WeightCache, CorruptEntryIsRebuilt) {
  CheckRebuilt(
      [](const std::string& e) {
        std::fstream f(e + "/model.safetensors",
                       std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(0, std::ios::end);
        const auto n = static_cast<std::streamoff>(f.tellg());
        f.seekp(n / 2);
        f.put('\x7f');
        f.seekp(n / 2 + 1);
        f.put('\x01');
      },
      "hash");
}

TEST(WeightCache, TruncatedFileIsRebuilt) {
  CheckRebuilt(
      [](const std::string& e) {
        const std::string p = e + "/model.safetensors";
        fs::resize_file(p, fs::file_size(p) / 2);
      },
      "size");
}

TEST(WeightCache, EntryWithoutManifestIsRebuilt) {
  CheckRebuilt(
      [](const std::string& e) { fs::remove(e + "/bioquant-cache.json"); },
      "manifest");
  CheckRebuilt(
      [](const std::string& e) {
        WriteFile(e + "/bioquant-cache.json", "{\"version\": 1, \"fil");
      },
      "manifest");
  CheckRebuilt(
      [](const std::string& e) { WriteFile(e + "/extra.safetensors", "x"); },
      "files differ");
}

TEST(WeightCache, KilledWriteLeavesNothingUsable) {
  // A writer killed mid-way leaves only "<key>.tmp-<pid>-<n>": never read.
  const std::string cache = testing::TempDir("wck");
  const Loaded first = Load(cache, "nf4");
  const std::string entry = OnlyEntry(cache);
  const std::string tmp = entry + ".tmp-999999-0";
  fs::rename(entry, tmp);
  fs::resize_file(tmp + "/model.safetensors", 100);
  const Loaded again = Load(cache, "nf4");
  EXPECT_EQ(again.status, "built");
  ExpectSameBits(again.logits, first.logits);
  EXPECT_TRUE(fs::exists(tmp));  // recent: maybe a live writer, kept
  // Once old, the next build removes it.
  fs::last_write_time(tmp,
                      fs::file_time_type::clock::now() - std::chrono::hours(2));
  fs::remove_all(OnlyEntry(cache));
  EXPECT_EQ(Load(cache, "nf4").status, "built");
  EXPECT_FALSE(fs::exists(tmp));
}

TEST(WeightCache, UnwritableCacheDirNamesTheFlag) {
  const std::string base = testing::TempDir("wcu");
  WriteFile(base + "/file", "x");
  try {
    Load(base + "/file/sub", "nf4");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cache-dir"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace bioquant
