// safetensors reader/writer: round trip, sharding, and every kind of corrupt
// file giving one error that names the file and the problem.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "io/npy.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

std::string RawFile(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  s += header;
  s += std::string(data_bytes, '\x01');
  return s;
}

std::string ErrorOf(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SafetensorsTest, WriteReadRoundTrip) {
  const std::string dir = testing::TempDir("st");
  SafetensorsWriter w;
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t b[3] = {0x3f80, 0x4000, 0xc040};
  const int8_t c[2] = {-3, 7};
  w.Add("a", DType::kF32, {2, 3}, a, sizeof(a));
  w.Add("b", DType::kBF16, {3}, b, sizeof(b));
  w.Add("c", DType::kI8, {2}, c, sizeof(c));
  w.SetMetadata("format", "pt");
  w.Write(dir + "/model.safetensors");
  auto store = TensorStore::Open(dir);
  ASSERT_EQ(store->Names().size(), 3u);
  const TensorView& ta = store->Get("a");
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(ta.data, a, sizeof(a)), 0);
  EXPECT_EQ(store->Get("b").dtype, DType::kBF16);
  EXPECT_EQ(store->Get("c").nbytes, 2u);
  EXPECT_EQ(store->metadata().at("format"), "pt");
  // Data section is 8-byte aligned (header padded).
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ta.data) % 8, 0u);
  EXPECT_THROW(w.Add("a", DType::kF32, {1}, a, 4), Error);
  EXPECT_THROW(w.Add("z", DType::kF32, {2}, a, 4), Error);
}

TEST(SafetensorsTest, ShardedIndex) {
  const std::string dir = testing::TempDir("shard");
  const float x[2] = {1, 2}, y[1] = {3};
  SafetensorsWriter w1, w2;
  w1.Add("x", DType::kF32, {2}, x, sizeof(x));
  w2.Add("y", DType::kF32, {1}, y, sizeof(y));
  w1.Write(dir + "/model-00001-of-00002.safetensors");
  w2.Write(dir + "/model-00002-of-00002.safetensors");
  WriteFile(
      dir + "/model.safetensors.index.json",
      R"({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors",
                "y": "model-00002-of-00002.safetensors"}})");
  auto store = TensorStore::Open(dir);
  EXPECT_EQ(store->files().size(), 2u);
  EXPECT_FLOAT_EQ(reinterpret_cast<const float*>(store->Get("y").data)[0],
                  3.0f);
  // An index naming a tensor its shard lacks.
  WriteFile(dir + "/model.safetensors.index.json",
            R"({"weight_map": {"x": "model-00002-of-00002.safetensors"}})");
  try {
    TensorStore::Open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing from model-00002-of-00002"),
              std::string::npos)
        << e.what();
  }
}

TEST(SafetensorsTest, MissingTensorNamesIt) {
  const std::string dir = testing::TempDir("miss");
  SafetensorsWriter w;
  const float x = 1;
  w.Add("x", DType::kF32, {1}, &x, 4);
  w.Write(dir + "/model.safetensors");
  auto store = TensorStore::Open(dir);
  try {
    store->Get("model.norm.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor model.norm.weight"),
              std::string::npos);
  }
}

struct BadCase {
  const char* what;
  std::string bytes;
  const char* expect;  // substring of the error
};

TEST(SafetensorsTest, CorruptFilesGiveOneLineErrors) {
  const std::string dir = testing::TempDir("bad");
  const std::vector<BadCase> cases = {
      {"empty", "", "truncated"},
      {"short", std::string("\x10\x00\x00", 3), "truncated"},
      {"header past end",
       RawFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4)
           .substr(0, 20),
       "runs past end of file"},
      {"bad json", RawFile("{not json", 0), "malformed JSON"},
      {"not object", RawFile("[1,2]", 0), "not a JSON object"},
      {"bad dtype",
       RawFile(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1),
       "unsupported dtype 'Q4'"},
      {"size mismatch",
       RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4),
       "needs 8 bytes"},
      {"out of range",
       RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
       "out of range"},
      {"overlap",
       RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12),
       "overlap"},
      {"reversed",
       RawFile(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 4),
       "reversed"},
      {"missing field", RawFile(R"({"a":{"dtype":"F32","shape":[1]}})", 4),
       "data_offsets"},
  };
  for (const auto& c : cases) {
    const std::string path = dir + "/bad.safetensors";
    WriteFile(path, c.bytes);
    const std::string err = ErrorOf(path);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.what << ": " << err;
    EXPECT_NE(err.find(path), std::string::npos) << c.what << ": " << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << c.what;
  }
  EXPECT_NE(ErrorOf(dir + "/nope.safetensors").find("cannot open"),
            std::string::npos);
}

TEST(SafetensorsTest, StreamWriterMatchesDeclarations) {
  const std::string dir = testing::TempDir("stream");
  const float a[2] = {1, 2};
  {
    SafetensorsStreamWriter w(
        dir + "/s.safetensors",
        {{"a", DType::kF32, {2}}, {"b", DType::kF32, {1}}}, {});
    EXPECT_THROW(w.Append("b", a, 4), Error);  // out of order
    w.Append("a", a, 8);
    EXPECT_THROW(w.Finish(), Error);  // b never written
  }
  SafetensorsStreamWriter w(dir + "/s.safetensors", {{"a", DType::kF32, {2}}},
                            {});
  w.Append("a", a, 8);
  w.Finish();
  SafetensorsFile f(dir + "/s.safetensors");
  EXPECT_EQ(f.tensors().at("a").nbytes, 8u);
}

// An odd-sized int8 tensor added first would put the wider ones after it at
// odd offsets: both writers lay data out by element size, largest first, so
// every tensor is aligned to its element size (and the values survive).
TEST(SafetensorsTest, WritersAlignEveryTensor) {
  const std::string dir = testing::TempDir("st_align");
  const int8_t c[3] = {-3, 7, 9};
  const uint16_t b[3] = {0x3f80, 0x4000, 0xc040};
  const float a[2] = {1.5f, -2.0f};
  SafetensorsWriter w;
  w.Add("c", DType::kI8, {3}, c, sizeof(c));
  w.Add("b", DType::kBF16, {3}, b, sizeof(b));
  w.Add("a", DType::kF32, {2}, a, sizeof(a));
  w.Write(dir + "/w.safetensors");
  {
    SafetensorsStreamWriter sw(dir + "/s.safetensors",
                               {{"c", DType::kI8, {3}},
                                {"b", DType::kBF16, {3}},
                                {"a", DType::kF32, {2}}},
                               {});
    sw.Append("c", c, sizeof(c));
    sw.Append("b", b, sizeof(b));
    sw.Append("a", a, sizeof(a));
    sw.Finish();
  }
  for (const char* file : {"/w.safetensors", "/s.safetensors"}) {
    SafetensorsFile f(dir + file);
    for (const auto& [name, t] : f.tensors()) {
      EXPECT_TRUE(t.mapped) << file << " " << name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % DTypeSize(t.dtype), 0u)
          << file << " " << name;
    }
    EXPECT_EQ(std::memcmp(f.tensors().at("c").data, c, sizeof(c)), 0);
    EXPECT_EQ(std::memcmp(f.tensors().at("b").data, b, sizeof(b)), 0);
    EXPECT_EQ(std::memcmp(f.tensors().at("a").data, a, sizeof(a)), 0);
  }
}

// The format allows any offset: a file (from another writer) whose bf16
// tensor sits at an odd offset is read through an aligned copy, which
// ReleasePages leaves alone.
TEST(SafetensorsTest, MisalignedTensorIsReadThroughAnAlignedCopy) {
  const std::string dir = testing::TempDir("st_misaligned");
  std::string header =
      R"({"c":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[1,5]}})";
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::string file = RawFile(header, 0);
  file += std::string("\x05\x80\x3f\x00\x40", 5);  // 5; 1.0, 2.0
  WriteFile(dir + "/m.safetensors", file);
  SafetensorsFile f(dir + "/m.safetensors");
  const TensorView& t = f.tensors().at("b");
  EXPECT_FALSE(t.mapped);
  EXPECT_TRUE(f.tensors().at("c").mapped);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(t.data) % 2, 0u);
  uint16_t v[2];
  std::memcpy(v, t.data, 4);
  EXPECT_EQ(v[0], 0x3f80);
  EXPECT_EQ(v[1], 0x4000);
  ReleasePages(t);
  std::memcpy(v, t.data, 4);
  EXPECT_EQ(v[1], 0x4000);
}

TEST(NpyTest, RoundTrip) {
  const std::string path = testing::TempDir("npy") + "/x.npy";
  const float v[6] = {1, -2, 3.5f, 4, 5, 6};
  WriteNpyF32(path, {2, 3}, v);
  const NpyArray a = ReadNpyF32(path);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data, std::vector<float>(v, v + 6));
}

}  // namespace
}  // namespace bioquant
