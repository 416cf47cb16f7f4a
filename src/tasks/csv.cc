#include "tasks/csv.h"

#include "util/error.h"
#include "util/file.h"

namespace bioquant {

std::vector<CsvRow> ParseDelimited(std::string_view text, char delimiter,
                                   const std::string& source) {
  std::vector<CsvRow> rows;
  size_t i = 0;
  const size_t n = text.size();
  int line = 1;
  // Skip a UTF-8 byte-order mark so the first header name compares cleanly.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  while (i < n) {
    CsvRow row;
    row.line = line;
    // A blank line (only "\r\n" or "\n") is not a row.
    if (text[i] == '\n' ||
        (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    bool row_done = false;
    while (!row_done) {
      std::string field;
      if (i < n && text[i] == '"') {
        const int quote_line = line;
        ++i;
        bool closed = false;
        while (i < n) {
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            closed = true;
            break;
          }
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        if (!closed) {
          Fail("{}:{}: quoted field is never closed", source, quote_line);
        }
        if (i < n && text[i] != delimiter && text[i] != '\n' &&
            !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
          Fail("{}:{}: unexpected character '{}' after a closing quote", source,
               line, text[i]);
        }
      } else {
        while (i < n && text[i] != delimiter && text[i] != '\n') {
          field += text[i];
          ++i;
        }
        if (!field.empty() && field.back() == '\r' &&
            (i >= n || text[i] == '\n')) {
          field.pop_back();
        }
      }
      row.fields.push_back(std::move(field));
      if (i < n && text[i] == delimiter) {
        ++i;  // another field follows (possibly empty, even at end of line)
        continue;
      }
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') {
        ++i;
        ++line;
      }
      row_done = true;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<CsvRow> ReadDelimitedFile(const std::string& path, char delimiter) {
  const std::string text = ReadFile(path);
  return ParseDelimited(text, delimiter, path);
}

}  // namespace bioquant
