#include "tasks/pyliteral.h"

#include <cctype>
#include <string>

#include "util/error.h"

namespace bioquant {
namespace {

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class PyParser {
 public:
  explicit PyParser(std::string_view s) : s_(s) {}

  nlohmann::json ParseAll() {
    nlohmann::json v = ParseValue();
    SkipSpace();
    if (pos_ != s_.size()) Error("unexpected text after the value");
    return v;
  }

 private:
  [[noreturn]] void Error(const char* what) {
    Fail("python literal, offset {}: {}", pos_, what);
  }

  void SkipSpace() {
    while (pos_ < s_.size() &&
           std::isspace(static_cast<unsigned char>(s_[pos_])))
      ++pos_;
  }

  bool Consume(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  nlohmann::json ParseValue() {
    SkipSpace();
    if (pos_ >= s_.size()) Error("unexpected end of input");
    const char c = s_[pos_];
    if (c == '[') return ParseSequence('[', ']');
    if (c == '(') return ParseSequence('(', ')');
    if (c == '{') return ParseDict();
    if (c == '\'' || c == '"') {
      // Adjacent literals concatenate, as in Python source.
      std::string out = ParseString();
      SkipSpace();
      while (pos_ < s_.size() && (s_[pos_] == '\'' || s_[pos_] == '"')) {
        out += ParseString();
        SkipSpace();
      }
      return out;
    }
    if (c == '-' || c == '+' || std::isdigit(static_cast<unsigned char>(c)))
      return ParseNumber();
    if (s_.substr(pos_, 4) == "None") {
      pos_ += 4;
      return nullptr;
    }
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    Error("expected a list, dict, string, number, None, True or False");
  }

  nlohmann::json ParseSequence(char open, char close) {
    ++pos_;  // open
    nlohmann::json arr = nlohmann::json::array();
    if (Consume(close)) return arr;
    while (true) {
      arr.push_back(ParseValue());
      if (Consume(close)) return arr;
      if (!Consume(','))
        Error(open == '[' ? "expected ',' or ']' in a list"
                          : "expected ',' or ')' in a tuple");
      if (Consume(close)) return arr;  // trailing comma
    }
  }

  nlohmann::json ParseDict() {
    ++pos_;  // {
    nlohmann::json obj = nlohmann::json::object();
    if (Consume('}')) return obj;
    while (true) {
      nlohmann::json key = ParseValue();
      if (!key.is_string()) Error("dict keys must be strings");
      if (!Consume(':')) Error("expected ':' after a dict key");
      obj[key.get<std::string>()] = ParseValue();
      if (Consume('}')) return obj;
      if (!Consume(',')) Error("expected ',' or '}' in a dict");
      if (Consume('}')) return obj;
    }
  }

  uint32_t Hex(int digits) {
    if (pos_ + digits > s_.size()) Error("truncated escape sequence");
    uint32_t v = 0;
    for (int d = 0; d < digits; ++d) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= h - '0';
      else if (h >= 'a' && h <= 'f')
        v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        v |= h - 'A' + 10;
      else
        Error("bad hex digit in an escape sequence");
    }
    return v;
  }

  std::string ParseString() {
    const char quote = s_[pos_++];
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) Error("string is never closed");
      const char c = s_[pos_++];
      if (c == quote) return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) Error("string is never closed");
      const char e = s_[pos_++];
      switch (e) {
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
          AppendUtf8(Hex(2), out);
          break;
        case 'u':
          AppendUtf8(Hex(4), out);
          break;
        case 'U':
          AppendUtf8(Hex(8), out);
          break;
        default:  // Python keeps unknown escapes verbatim.
          out += '\\';
          out += e;
      }
    }
  }

  nlohmann::json ParseNumber() {
    const size_t start = pos_;
    if (s_[pos_] == '-' || s_[pos_] == '+') ++pos_;
    bool is_float = false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' ||
                 ((c == '-' || c == '+') &&
                  (s_[pos_ - 1] == 'e' || s_[pos_ - 1] == 'E'))) {
        is_float = true;
        ++pos_;
      } else {
        break;
      }
    }
    const std::string num(s_.substr(start, pos_ - start));
    try {
      if (is_float) return std::stod(num);
      return std::stoll(num);
    } catch (const std::exception&) {
      pos_ = start;
      Error("malformed number");
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

nlohmann::json ParsePyLiteral(std::string_view text) {
  return PyParser(text).ParseAll();
}

}  // namespace bioquant
