// Delimited-text reader (CSV/TSV) with the quoting rules pandas and Python's
// csv module write: a field that starts with '"' is quoted, may hold the
// delimiter and newlines, and doubles an inner quote as "". A '"' that is not
// at the start of a field is an ordinary character (DDI sentences have them).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bioquant {

struct CsvRow {
  std::vector<std::string> fields;
  int line = 0;  // 1-based line on which the row starts (rows may span lines).
};

// Parses text; `source` names the input in errors ("source:line: ...").
// A trailing "\r" before a newline is dropped; blank lines yield no row.
std::vector<CsvRow> ParseDelimited(std::string_view text, char delimiter,
                                   const std::string& source);

// Reads and parses a file. Throws Error("path: ...") when it cannot be read.
std::vector<CsvRow> ReadDelimitedFile(const std::string& path, char delimiter);

}  // namespace bioquant
