// GGUF reader: round trip through the writer (every metadata type, arrays,
// alignment), and each kind of corrupt file giving one error that names the
// file and the problem.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cstring>

#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

std::string ErrorOf(const std::string& path) {
  try {
    GgufFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A small valid file: metadata of several kinds and two tensors.
GgufWriter SmallWriter() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 2);
  w.SetF32("llama.rope.freq_base", 10000.0f);
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  w.SetStringArray("tokenizer.ggml.tokens", {"<s>", "a", "b c"});
  w.SetF32Array("tokenizer.ggml.scores", {0.0f, -1.5f, -2.0f});
  w.SetI32Array("tokenizer.ggml.token_type", {3, 1, 1});
  GgufValue i64;
  i64.type = GgufType::kI64;
  i64.i = -5;
  i64.u = static_cast<uint64_t>(-5);
  w.Set("test.i64", i64);
  return w;
}

std::string WriteBytes(const std::string& bytes) {
  const std::string path = testing::TempDir("gguf") + "/m.gguf";
  WriteFile(path, bytes);
  return path;
}

TEST(GgufTest, RoundTrip) {
  GgufWriter w = SmallWriter();
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t b[64] = {0x3c00};
  w.AddTensor("a", GgmlType::kF32, {3, 2}, a, sizeof(a));
  w.AddTensor("b", GgmlType::kF16, {64}, b, sizeof(b));
  const std::string path = WriteBytes(w.Serialize());
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetInt("llama.block_count"), 2);
  EXPECT_EQ(f.GetFloat("llama.rope.freq_base"), 10000.0);
  EXPECT_TRUE(f.GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.tokens"),
            (std::vector<std::string>{"<s>", "a", "b c"}));
  EXPECT_EQ(f.GetFloatArray("tokenizer.ggml.scores"),
            (std::vector<double>{0.0, -1.5, -2.0}));
  EXPECT_EQ(f.GetIntArray("tokenizer.ggml.token_type"),
            (std::vector<int64_t>{3, 1, 1}));
  EXPECT_EQ(f.GetInt("test.i64"), -5);
  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensor& ta = f.GetTensor("a");
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));  // ne reversed
  EXPECT_EQ(ta.ne, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(ta.nbytes, sizeof(a));
  EXPECT_EQ(std::memcmp(ta.data, a, sizeof(a)), 0);
  const GgufTensor& tb = f.GetTensor("b");
  EXPECT_EQ(tb.offset, 32u);  // 24 bytes of "a" padded to 32
  EXPECT_EQ(tb.nbytes, 128u);
  EXPECT_EQ(std::memcmp(tb.data, b, sizeof(b)), 0);
  // Wrong-kind and missing lookups name the file and key.
  EXPECT_THROW(f.GetString("llama.block_count"), Error);
  EXPECT_THROW(f.GetInt("no.such.key"), Error);
  EXPECT_THROW(f.GetTensor("c"), Error);
}

TEST(GgufTest, CustomAlignmentAndQuantizedSize) {
  GgufWriter w;
  GgufValue al;
  al.type = GgufType::kU32;
  al.u = 64;
  w.Set("general.alignment", al);
  std::string q(2 * 20, '\0');  // two Q4_1 blocks = 64 elements
  w.AddTensor("q", GgmlType::kQ4_1, {64}, q.data(), q.size());
  w.AddTensor("r", GgmlType::kQ4_1, {32, 1}, q.data(), 20);
  GgufFile f(WriteBytes(w.Serialize()));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.GetTensor("q").nbytes, 40u);
  EXPECT_EQ(f.GetTensor("r").offset, 64u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.GetTensor("r").data) % 64, 0u);
}

TEST(GgufTest, BadMagicAndVersion) {
  std::string s = SmallWriter().Serialize();
  std::string bad = s;
  bad[0] = 'X';
  std::string e = ErrorOf(WriteBytes(bad));
  EXPECT_NE(e.find("m.gguf: bad magic"), std::string::npos) << e;
  bad = s;
  bad[4] = 1;  // version 1 used u32 lengths: not supported
  e = ErrorOf(WriteBytes(bad));
  EXPECT_NE(e.find("unsupported GGUF version 1"), std::string::npos) << e;
  e = ErrorOf(WriteBytes("GG"));
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(GgufTest, TruncatedAnywhereInTheHeaderFails) {
  GgufWriter w = SmallWriter();
  const float a[6] = {1, 2, 3, 4, 5, 6};
  w.AddTensor("a", GgmlType::kF32, {3, 2}, a, sizeof(a));
  const std::string s = w.Serialize();
  // Every cut through the file before the tensor's last byte (the file ends
  // with 8 bytes of padding after it) ends in a one-line error naming it.
  const size_t end_of_data = s.size() - 8;
  GgufFile whole(WriteBytes(s.substr(0, end_of_data)));
  EXPECT_EQ(whole.tensors().size(), 1u);
  for (size_t n = 0; n < end_of_data; n += 7) {
    const std::string e = ErrorOf(WriteBytes(s.substr(0, n)));
    EXPECT_NE(e.find("m.gguf"), std::string::npos) << n << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_NE(ErrorOf(WriteBytes(s.substr(0, end_of_data - 1))).find("truncated"),
            std::string::npos);
}

// Patches the u64/u32 at the position where `marker` ends in the file.
size_t After(const std::string& s, const std::string& marker) {
  const size_t p = s.find(marker);
  EXPECT_NE(p, std::string::npos);
  return p + marker.size();
}

TEST(GgufTest, BadTensorEntries) {
  GgufWriter w;
  const float a[4] = {1, 2, 3, 4};
  w.AddTensor("tensor_a", GgmlType::kF32, {4}, a, sizeof(a));
  const std::string s = w.Serialize();
  // Entry after the name: u32 n_dims, u64 ne[0], u32 type, u64 offset.
  const size_t p = After(s, "tensor_a");
  auto patched = [&](size_t at, const void* v, size_t n) {
    std::string t = s;
    std::memcpy(&t[at], v, n);
    return ErrorOf(WriteBytes(t));
  };
  const uint32_t type99 = 99;
  std::string e = patched(p + 4 + 8, &type99, 4);
  EXPECT_NE(e.find("tensor tensor_a: unknown tensor type 99"),
            std::string::npos)
      << e;
  const uint64_t off = 4096;
  e = patched(p + 4 + 8 + 4, &off, 8);
  EXPECT_NE(e.find("truncated file or bad offset"), std::string::npos) << e;
  const uint64_t off_unaligned = 4;
  e = patched(p + 4 + 8 + 4, &off_unaligned, 8);
  EXPECT_NE(e.find("not a multiple of the alignment"), std::string::npos) << e;
  const uint64_t big = 1000;
  e = patched(p + 4, &big, 8);  // 1000 f32 do not fit
  EXPECT_NE(e.find("needs bytes [0, 4000)"), std::string::npos) << e;
  const uint32_t dims5 = 5;
  e = patched(p, &dims5, 4);
  EXPECT_NE(e.find("5 dimensions"), std::string::npos) << e;
  const uint64_t zero = 0;
  e = patched(p + 4, &zero, 8);
  EXPECT_NE(e.find("dimension 0 is zero"), std::string::npos) << e;
  const uint32_t q4 = static_cast<uint32_t>(GgmlType::kQ4_0);
  e = patched(p + 4 + 8, &q4, 4);  // 4 elements are not a Q4_0 block
  EXPECT_NE(e.find("not a whole number of Q4_0 blocks"), std::string::npos)
      << e;
}

TEST(GgufTest, OverflowingDimensions) {
  GgufWriter w;
  float a[16] = {};
  w.AddTensor("t", GgmlType::kF32, {4, 4}, a, sizeof(a));
  std::string s = w.Serialize();
  const size_t p = After(s, "t\x02");  // name "t", then n_dims = 2
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(&s[p + 3], &huge, 8);
  std::memcpy(&s[p + 3 + 8], &huge, 8);
  const std::string e = ErrorOf(WriteBytes(s));
  EXPECT_NE(e.find("tensor t: shape overflows"), std::string::npos) << e;
}

TEST(GgufTest, BadMetadata) {
  GgufWriter w;
  w.SetString("key_x", "v");
  std::string s = w.Serialize();
  const size_t p = After(s, "key_x");  // then u32 value type
  std::string t = s;
  t[p] = 42;
  std::string e = ErrorOf(WriteBytes(t));
  EXPECT_NE(e.find("metadata key_x: unknown value type 42"), std::string::npos)
      << e;
  t = s;
  t[p + 4 + 7] = 0x7f;  // string length ~2^63
  e = ErrorOf(WriteBytes(t));
  EXPECT_NE(e.find("runs past the end of the file"), std::string::npos) << e;
  // Array whose count cannot fit.
  GgufWriter wa;
  wa.SetStringArray("arr_x", {"a"});
  s = wa.Serialize();
  const size_t q = After(s, "arr_x") + 4 + 4;  // type=array, elem=string
  s[q + 6] = 0x10;
  e = ErrorOf(WriteBytes(s));
  EXPECT_NE(e.find("metadata arr_x: array of"), std::string::npos) << e;
  // Alignment that is not a power of two.
  GgufWriter wb;
  GgufValue al;
  al.type = GgufType::kU32;
  al.u = 48;
  wb.Set("general.alignment", al);
  e = ErrorOf(WriteBytes(wb.Serialize()));
  EXPECT_NE(e.find("general.alignment must be a u32 power of two"),
            std::string::npos)
      << e;
  // Duplicate keys (the writer dedups, so patch a second key's name).
  GgufWriter wd;
  wd.SetU32("dup_a", 1);
  wd.SetU32("dup_b", 2);
  s = wd.Serialize();
  s[After(s, "dup_b") - 1] = 'a';
  e = ErrorOf(WriteBytes(s));
  EXPECT_NE(e.find("duplicate metadata key dup_a"), std::string::npos) << e;
}

TEST(GgufTest, OverlappingAndDuplicateTensors) {
  GgufWriter w;
  float a[8] = {};
  w.AddTensor("t_1", GgmlType::kF32, {8}, a, sizeof(a));
  w.AddTensor("t_2", GgmlType::kF32, {8}, a, sizeof(a));
  std::string s = w.Serialize();
  std::string t = s;
  const uint64_t zero = 0;
  std::memcpy(&t[After(t, "t_2") + 4 + 8 + 4], &zero, 8);
  std::string e = ErrorOf(WriteBytes(t));
  EXPECT_NE(e.find("tensors overlap"), std::string::npos) << e;
  t = s;
  t[After(t, "t_2") - 1] = '1';
  e = ErrorOf(WriteBytes(t));
  EXPECT_NE(e.find("duplicate tensor t_1"), std::string::npos) << e;
}

}  // namespace
}  // namespace bioquant
