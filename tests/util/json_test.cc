#include "util/json.h"

#include <gtest/gtest.h>

#include <string>

#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

std::string Nested(int depth, const std::string& inner = "1") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(Json, NestingUpToTheBoundParses) {
  const nlohmann::json j = ParseJson(Nested(kMaxJsonDepth));
  const nlohmann::json* p = &j;
  int depth = 0;
  while (p->is_array()) {
    p = &(*p)[0];
    ++depth;
  }
  EXPECT_EQ(depth, kMaxJsonDepth);
  EXPECT_EQ(*p, 1);
}

TEST(Json, DeeperNestingIsAParseErrorNamingTheByte) {
  try {
    ParseJson(std::string("{\"a\": ") + Nested(kMaxJsonDepth) + "}");
    FAIL() << "no error";
  } catch (const nlohmann::json::parse_error& e) {
    EXPECT_EQ(e.byte, 6u + kMaxJsonDepth);  // the 513th opening bracket
    EXPECT_EQ(JsonErrorReason(e), "JSON nested deeper than 512 levels");
  }
  EXPECT_TRUE(ParseJson(Nested(100000), false).is_discarded());
}

TEST(Json, BracketsInsideStringsDoNotCount) {
  const std::string s = "\"" + std::string(2000, '[') + "\\\"{{{\"";
  const nlohmann::json j = ParseJson("[" + s + "]");
  EXPECT_EQ(j[0].get<std::string>().size(), 2004u);
  EXPECT_EQ(JsonDepthExceededAt("[\"\\\\\", [[1]]]", 2), 8u);
  EXPECT_EQ(JsonDepthExceededAt("[\"\\\\\", [[1]]]", 3), std::string::npos);
}

TEST(Json, AFileNestedTooDeepIsAOneLineErrorNamingIt) {
  const std::string path = ::testing::TempDir() + "/deep.json";
  WriteFile(path, Nested(1000000));
  try {
    ReadJsonFile(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path +
                  ": malformed JSON at byte 513 (JSON nested deeper than 512 "
                  "levels)");
  }
}

// nlohmann throws out_of_range, not parse_error, for a number too large for a
// double (found by fuzzing safetensors headers: it escaped the reader).
TEST(Json, ANumberTooLargeIsAOneLineErrorNamingTheFile) {
  const std::string path = ::testing::TempDir() + "/huge.json";
  WriteFile(path, "{\"shape\": [5e5555]}");
  try {
    ReadJsonFile(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": malformed JSON (number "
                                                 "overflow",
                                          0),
              0u)
        << e.what();
  }
}

}  // namespace
}  // namespace bioquant
