#include "tasks/csv.h"

#include <gtest/gtest.h>

#include "tasks/pyliteral.h"
#include "util/error.h"

namespace bioquant {
namespace {

using Fields = std::vector<std::string>;

TEST(CsvTest, PlainRowsAndLineNumbers) {
  const auto rows = ParseDelimited("a\tb\tc\n1\t2\t3\n\n4\t\t6\n", '\t', "t");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields, (Fields{"a", "b", "c"}));
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].fields, (Fields{"4", "", "6"}));
  EXPECT_EQ(rows[2].line, 4);  // the blank line 3 is skipped but counted
}

TEST(CsvTest, QuotedFieldsSpanLinesAndDoubleQuotes) {
  const auto rows = ParseDelimited(
      "id\ttext\n1\t\"line one\nline \"\"two\"\"\tx\"\n2\tafter\n", '\t', "t");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].fields, (Fields{"1", "line one\nline \"two\"\tx"}));
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].line, 4);
  EXPECT_EQ(rows[2].fields, (Fields{"2", "after"}));
}

TEST(CsvTest, QuoteInsideUnquotedFieldIsLiteral) {
  const auto rows = ParseDelimited("a\tsays \"hi\" there\n", '\t', "t");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].fields[1], "says \"hi\" there");
}

TEST(CsvTest, CrLfAndMissingFinalNewline) {
  const auto rows = ParseDelimited("a,b\r\n\"c\",d", ',', "t");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].fields, (Fields{"a", "b"}));
  EXPECT_EQ(rows[1].fields, (Fields{"c", "d"}));
}

TEST(CsvTest, ByteOrderMarkIsSkipped) {
  const auto rows = ParseDelimited("\xEF\xBB\xBFpmid\ttext\n", '\t', "t");
  EXPECT_EQ(rows[0].fields[0], "pmid");
}

TEST(CsvTest, UnclosedQuoteNamesStartLine) {
  try {
    ParseDelimited("a\tb\nx\t\"never\nclosed\n", '\t', "f.tsv");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "f.tsv:2: quoted field is never closed");
  }
}

TEST(CsvTest, TextAfterClosingQuoteIsAnError) {
  EXPECT_THROW(ParseDelimited("\"a\"b\tc\n", '\t', "f"), Error);
}

TEST(PyLiteralTest, ListOfStringsWithEscapes) {
  const auto v = ParsePyLiteral(
      R"(['it\'s', "say \"x\"", 'a\xa0b', 'thin\u2009space', "tab\t"])");
  ASSERT_TRUE(v.is_array());
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v[0], "it's");
  EXPECT_EQ(v[1], "say \"x\"");
  EXPECT_EQ(v[2],
            "a\xC2\xA0"
            "b");
  EXPECT_EQ(v[3], "thin\xE2\x80\x89space");
  EXPECT_EQ(v[4], "tab\t");
}

TEST(PyLiteralTest, ListOfDictsAndScalars) {
  const auto v = ParsePyLiteral(
      "[{'key': 'A', 'value': 'x'}, {'key': 'B', 'value': 'y',}, None, True, "
      "-3, 2.5e-1, ('t', 1)]");
  ASSERT_EQ(v.size(), 7u);
  EXPECT_EQ(v[0]["key"], "A");
  EXPECT_EQ(v[1]["value"], "y");
  EXPECT_TRUE(v[2].is_null());
  EXPECT_EQ(v[3], true);
  EXPECT_EQ(v[4], -3);
  EXPECT_DOUBLE_EQ(v[5].get<double>(), 0.25);
  EXPECT_EQ(v[6][0], "t");
}

TEST(PyLiteralTest, Utf8PassesThroughUnchanged) {
  EXPECT_EQ(ParsePyLiteral("['38°C']")[0], "38°C");
}

TEST(PyLiteralTest, MalformedInputThrows) {
  EXPECT_THROW(ParsePyLiteral("['a', 'b'"), Error);
  EXPECT_THROW(ParsePyLiteral("['a' 'b' x]"), Error);
  EXPECT_THROW(ParsePyLiteral("['unterminated]"), Error);
  EXPECT_THROW(ParsePyLiteral("{1: 'a'}"), Error);
  EXPECT_THROW(ParsePyLiteral("['a'] trailing"), Error);
  EXPECT_THROW(ParsePyLiteral(""), Error);
  EXPECT_THROW(ParsePyLiteral("'\\x4'"), Error);
}

}  // namespace
}  // namespace bioquant
