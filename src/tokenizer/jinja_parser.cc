// Lexer and recursive-descent parser for the Jinja subset. The lexer mirrors
// jinja2/lexer.py as transformers configures it: trim_blocks (one newline
// after a block or comment tag is dropped), lstrip_blocks (spaces and tabs
// before a block or comment tag on its own line are dropped), "-" / "+"
// whitespace control, newlines normalised to "\n" and one trailing newline
// of the source dropped (keep_trailing_newline=False).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string_view>

#include "tokenizer/jinja_ast.h"

namespace bioquant::jinja {
namespace {

enum class Tok {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tok type = Tok::kEof;
  std::string text;  // text, name, operator or (unescaped) string
  int64_t ival = 0;
  double fval = 0;
  int line = 1;
};

[[noreturn]] void SyntaxError(int line, std::string msg) {
  throw TemplateError{std::move(msg), line};
}

// Python's str.isspace() over ASCII (what \s and str.rstrip() strip).
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

// Python's unicode-escape decoding of a string literal's body.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    auto hex = [&](int digits) {
      uint32_t v = 0;
      for (int k = 1; k <= digits; ++k) {
        if (i + k >= s.size()) return false;
        const char h = s[i + k];
        int d = -1;
        if (h >= '0' && h <= '9') d = h - '0';
        if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
        if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
        if (d < 0) return false;
        v = v * 16 + d;
      }
      AppendUtf8(v, out);
      i += digits;
      return true;
    };
    switch (c) {
      case '\n':
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
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
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
        if (!hex(2)) out += "\\x";
        break;
      case 'u':
        if (!hex(4)) out += "\\u";
        break;
      case 'U':
        if (!hex(8)) out += "\\U";
        break;
      default:
        if (c >= '0' && c <= '7') {
          uint32_t v = 0;
          int k = 0;
          while (k < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7') {
            v = v * 8 + (s[i] - '0');
            ++i;
            ++k;
          }
          --i;
          AppendUtf8(v, out);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) {
    // Normalise newlines and drop one trailing newline, as Jinja2 does
    // before lexing.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> Run() {
    const size_t n = src_.size();
    size_t pos = 0;
    bool line_starting = true;
    while (pos < n) {
      size_t start = pos;
      while (start + 1 < n &&
             !(src_[start] == '{' &&
               (src_[start + 1] == '{' || src_[start + 1] == '%' ||
                src_[start + 1] == '#'))) {
        ++start;
      }
      if (start + 1 >= n) {
        EmitText(src_.substr(pos), pos);
        break;
      }
      const char kind = src_[start + 1];
      size_t p = start + 2;
      char sign = 0;
      if (p < n && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      std::string text = src_.substr(pos, start - pos);
      StripBefore(text, sign, kind != '{', line_starting);
      EmitText(std::move(text), pos);

      if (kind == '%' && IsRawBegin(p)) {
        pos = LexRaw(p, start, line_starting);
      } else if (kind == '#') {
        pos = SkipComment(p, start);
      } else {
        pos = LexTag(kind, p, start);
      }
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    tokens_.push_back(Token{Tok::kEof, "", 0, 0, LineAt(n)});
    return std::move(tokens_);
  }

 private:
  int LineAt(size_t pos) {
    // Positions are visited in increasing order; count incrementally.
    while (line_pos_ < pos && line_pos_ < src_.size()) {
      if (src_[line_pos_++] == '\n') ++line_;
    }
    return line_;
  }

  void StripBefore(std::string& text, char sign, bool lstrip_kind,
                   bool line_starting) {
    if (sign == '-') {
      size_t e = text.size();
      while (e > 0 && IsSpace(text[e - 1])) --e;
      text.resize(e);
    } else if (sign != '+' && lstrip_kind) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
          std::all_of(text.begin() + l_pos, text.end(), IsSpace)) {
        text.resize(l_pos);
      }
    }
  }

  void EmitText(std::string text, size_t pos) {
    if (text.empty()) return;
    tokens_.push_back(Token{Tok::kText, std::move(text), 0, 0, LineAt(pos)});
  }

  bool StartsWith(size_t p, std::string_view s) const {
    return src_.compare(p, s.size(), s) == 0;
  }

  // Consumes a block-tag end at p ("+%}", "-%}" + whitespace, "%}" + one
  // newline); returns the position after it or npos if there is none.
  size_t BlockEnd(size_t p) const {
    if (StartsWith(p, "+%}")) return p + 3;
    if (StartsWith(p, "-%}")) {
      p += 3;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      return p;
    }
    if (StartsWith(p, "%}")) {
      p += 2;
      if (p < src_.size() && src_[p] == '\n') ++p;
      return p;
    }
    return std::string::npos;
  }

  bool IsRawBegin(size_t p) const {
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    if (!StartsWith(p, "raw")) return false;
    p += 3;
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    // Jinja2's raw-begin rule accepts "-%}" and "%}" only (and "%}" keeps
    // the newline after it: no trim_blocks there).
    return StartsWith(p, "-%}") || StartsWith(p, "%}");
  }

  size_t LexRaw(size_t p, size_t start, bool /*line_starting*/) {
    while (IsSpace(src_[p])) ++p;
    p += 3;
    while (IsSpace(src_[p])) ++p;
    if (StartsWith(p, "-%}")) {
      p += 3;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
    } else {
      p += 2;
    }
    const bool body_line_starting = src_[p - 1] == '\n';
    // Find {%[-+]? endraw [-+]?%}.
    for (size_t q = p; q + 1 < src_.size(); ++q) {
      if (!StartsWith(q, "{%")) continue;
      size_t r = q + 2;
      char sign = 0;
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+'))
        sign = src_[r++];
      while (r < src_.size() && IsSpace(src_[r])) ++r;
      if (!StartsWith(r, "endraw")) continue;
      r += 6;
      while (r < src_.size() && IsSpace(src_[r])) ++r;
      const size_t end = BlockEnd(r);
      if (end == std::string::npos) continue;
      std::string text = src_.substr(p, q - p);
      StripBefore(text, sign, true, body_line_starting);
      EmitText(std::move(text), p);
      return end;
    }
    SyntaxError(LineAt(start), "Missing end of raw directive");
  }

  size_t SkipComment(size_t p, size_t start) {
    for (size_t q = p; q < src_.size(); ++q) {
      if (StartsWith(q, "+#}")) return q + 3;
      if (StartsWith(q, "-#}")) {
        q += 3;
        while (q < src_.size() && IsSpace(src_[q])) ++q;
        return q;
      }
      if (StartsWith(q, "#}")) {
        q += 2;
        if (q < src_.size() && src_[q] == '\n') ++q;
        return q;
      }
    }
    SyntaxError(LineAt(start), "Missing end of comment tag");
  }

  size_t LexTag(char kind, size_t p, size_t start) {
    const bool is_var = kind == '{';
    tokens_.push_back(Token{is_var ? Tok::kVarBegin : Tok::kBlockBegin, "", 0,
                            0, LineAt(start)});
    std::vector<char> brackets;
    const size_t n = src_.size();
    while (true) {
      if (p >= n) {
        SyntaxError(LineAt(n),
                    fmt::format("unexpected end of template, expected '{}'",
                                is_var ? "end of print statement"
                                       : "end of statement block"));
      }
      if (brackets.empty()) {
        size_t end = std::string::npos;
        if (is_var) {
          if (StartsWith(p, "-}}")) {
            end = p + 3;
            while (end < n && IsSpace(src_[end])) ++end;
          } else if (StartsWith(p, "}}")) {
            end = p + 2;
          }
        } else {
          end = BlockEnd(p);
        }
        if (end != std::string::npos) {
          tokens_.push_back(Token{is_var ? Tok::kVarEnd : Tok::kBlockEnd, "", 0,
                                  0, LineAt(p)});
          return end;
        }
      }
      const char c = src_[p];
      if (IsSpace(c)) {
        ++p;
        continue;
      }
      const int line = LineAt(p);
      if (IsDigit(c)) {
        p = LexNumber(p, line);
      } else if (IsNameStart(c)) {
        size_t q = p;
        while (q < n && IsNameChar(src_[q])) ++q;
        tokens_.push_back(Token{Tok::kName, src_.substr(p, q - p), 0, 0, line});
        p = q;
      } else if (c == '\'' || c == '"') {
        size_t q = p + 1;
        while (q < n && src_[q] != c) q += src_[q] == '\\' ? 2 : 1;
        if (q >= n) SyntaxError(line, "unexpected end of string literal");
        tokens_.push_back(
            Token{Tok::kString,
                  Unescape(std::string_view(src_).substr(p + 1, q - p - 1)), 0,
                  0, line});
        p = q + 1;
      } else {
        static constexpr std::string_view kOps2[] = {
            "//", "**", "==", "!=", ">=", "<="};
        std::string op;
        for (auto o : kOps2) {
          if (StartsWith(p, o)) op = o;
        }
        if (op.empty() && std::string_view("+-/*%~[](){}<>=.:|,;").find(c) !=
                              std::string_view::npos) {
          op = std::string(1, c);
        }
        if (op.empty())
          SyntaxError(line, fmt::format("unexpected char '{}'", c));
        if (op == "(" || op == "[" || op == "{") {
          brackets.push_back(op[0]);
        } else if (op == ")" || op == "]" || op == "}") {
          const char want = op == ")" ? '(' : (op == "]" ? '[' : '{');
          if (brackets.empty())
            SyntaxError(line, fmt::format("unexpected '{}'", op));
          if (brackets.back() != want) {
            const char close = brackets.back() == '('
                                   ? ')'
                                   : (brackets.back() == '[' ? ']' : '}');
            SyntaxError(
                line, fmt::format("unexpected '{}', expected '{}'", op, close));
          }
          brackets.pop_back();
        }
        tokens_.push_back(Token{Tok::kOp, op, 0, 0, line});
        p += op.size();
      }
    }
  }

  size_t LexNumber(size_t p, int line) {
    const size_t n = src_.size();
    auto digits = [&](size_t q) {
      while (q < n && (IsDigit(src_[q]) ||
                       (src_[q] == '_' && q + 1 < n && IsDigit(src_[q + 1])))) {
        ++q;
      }
      return q;
    };
    // Jinja2's integer rule: [1-9](_?\d)* | 0(_?0)* | 0x.. | 0o.. | 0b..
    if (src_[p] == '0' && p + 1 < n &&
        std::string_view("xXoObB").find(src_[p + 1]) !=
            std::string_view::npos) {
      const int base = (src_[p + 1] == 'x' || src_[p + 1] == 'X')   ? 16
                       : (src_[p + 1] == 'o' || src_[p + 1] == 'O') ? 8
                                                                    : 2;
      size_t q = p + 2;
      while (q < n && (std::isxdigit(static_cast<unsigned char>(src_[q])) ||
                       src_[q] == '_'))
        ++q;
      std::string text = src_.substr(p + 2, q - p - 2);
      text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
      Token t{Tok::kInt, src_.substr(p, q - p), 0, 0, line};
      t.ival = std::strtoll(text.c_str(), nullptr, base);
      tokens_.push_back(std::move(t));
      return q;
    }
    size_t q = digits(p);
    if (src_[p] == '0') {
      // "012" lexes as 0 then 12, so Jinja2 rejects it; so do we.
      q = p + 1;
      while (q + 1 < n && src_[q] == '_' && src_[q + 1] == '0') q += 2;
      while (q < n && src_[q] == '0') ++q;
      if (q < n && IsDigit(src_[q])) q = p + 1;
    }
    bool is_float = false;
    // A float cannot directly follow a '.', so "x.0.1" indexes twice.
    const bool after_dot = p > 0 && src_[p - 1] == '.';
    if (!after_dot) {
      if (q + 1 < n && src_[q] == '.' && IsDigit(src_[q + 1])) {
        q = digits(q + 1);
        is_float = true;
      }
      if (q < n && src_[q] == 'e') {
        size_t r = q + 1;
        if (r < n && (src_[r] == '+' || src_[r] == '-')) ++r;
        if (r < n && IsDigit(src_[r])) {
          q = digits(r);
          is_float = true;
        }
      }
    }
    std::string text = src_.substr(p, q - p);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    Token t{is_float ? Tok::kFloat : Tok::kInt, text, 0, 0, line};
    if (is_float) {
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      t.ival = std::strtoll(text.c_str(), nullptr, 10);
    }
    tokens_.push_back(std::move(t));
    return q;
  }

  std::string src_;
  std::vector<Token> tokens_;
  size_t line_pos_ = 0;
  int line_ = 1;
};

std::string Describe(const Token& t) {
  switch (t.type) {
    case Tok::kVarEnd:
      return "end of print statement";
    case Tok::kBlockEnd:
      return "end of statement block";
    case Tok::kEof:
      return "end of template";
    case Tok::kText:
      return "template data";
    case Tok::kVarBegin:
      return "begin of print statement";
    case Tok::kBlockBegin:
      return "begin of statement block";
    case Tok::kString:
      return "string";
    default:
      return t.text;
  }
}

// Bounds that keep an untrusted template from exhausting the stack: the
// parser and the renderer recurse once per level of nesting (and a chain
// such as `a ~ b ~ c ...` is a tree as deep as it is long). Real chat
// templates stay far below both.
constexpr int kMaxNesting = 200;     // statements/expressions inside others
constexpr int kMaxTagTokens = 4096;  // tokens inside one {{ }} or {% %}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {
    int in_tag = 0, line = 0;
    for (const Token& t : toks_) {
      if (t.type == Tok::kVarBegin || t.type == Tok::kBlockBegin) {
        in_tag = 0;
        line = t.line;
      } else if (t.type != Tok::kText && ++in_tag > kMaxTagTokens) {
        SyntaxError(line,
                    fmt::format("a tag of more than {} tokens", kMaxTagTokens));
      }
    }
  }

  Body ParseTemplate() {
    std::string end;
    return ParseBody({}, "", &end);
  }

 private:
  const Token& Cur() const { return toks_[i_]; }
  const Token& Peek(size_t k) const {
    return toks_[std::min(i_ + k, toks_.size() - 1)];
  }
  const Token& Next() { return toks_[i_ < toks_.size() - 1 ? i_++ : i_]; }
  bool IsOp(std::string_view op) const {
    return Cur().type == Tok::kOp && Cur().text == op;
  }
  bool IsName(std::string_view name) const {
    return Cur().type == Tok::kName && Cur().text == name;
  }
  [[noreturn]] void Unexpected(std::string_view expected) const {
    SyntaxError(Cur().line, fmt::format("expected token '{}', got '{}'",
                                        expected, Describe(Cur())));
  }
  void ExpectOp(std::string_view op) {
    if (!IsOp(op)) Unexpected(op);
    Next();
  }
  std::string ExpectName() {
    if (Cur().type != Tok::kName) Unexpected("name");
    return Next().text;
  }
  void ExpectBlockEnd() {
    if (Cur().type != Tok::kBlockEnd) Unexpected("end of statement block");
    Next();
  }

  static ExprPtr Make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }
  static ExprPtr Make(Expr::Kind kind, int line, ExprPtr a,
                      ExprPtr b = nullptr) {
    auto e = Make(kind, line);
    e->args.push_back(std::move(a));
    if (b) e->args.push_back(std::move(b));
    return e;
  }

  // Parses statements until a block tag named in `ends`; consumes that tag's
  // name (not its end) and stores it in *end.
  Body ParseBody(std::vector<std::string_view> ends, std::string_view block,
                 std::string* end) {
    Body body;
    while (true) {
      const Token& t = Cur();
      if (t.type == Tok::kEof) {
        if (ends.empty()) return body;
        std::string want;
        for (size_t k = 0; k < ends.size(); ++k) {
          want += fmt::format("{}'{}'", k ? " or " : "", ends[k]);
        }
        SyntaxError(
            t.line,
            fmt::format("unexpected end of template; looking for {} to close "
                        "'{}'",
                        want, block));
      }
      if (t.type == Tok::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        Next();
      } else if (t.type == Tok::kVarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = t.line;
        Next();
        s->expr = ParseTuple(true, false);
        if (Cur().type != Tok::kVarEnd) Unexpected("end of print statement");
        Next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::kBlockBegin) {
        Next();
        if (Cur().type != Tok::kName) {
          SyntaxError(Cur().line, fmt::format("tag name expected, got '{}'",
                                              Describe(Cur())));
        }
        const std::string& name = Cur().text;
        if (std::find(ends.begin(), ends.end(), name) != ends.end()) {
          *end = name;
          Next();
          return body;
        }
        body.push_back(ParseStatement());
      } else {
        SyntaxError(t.line, fmt::format("unexpected '{}'", Describe(t)));
      }
    }
  }

  StmtPtr ParseStatement() {
    const int line = Cur().line;
    Nest nest(this, line);
    const std::string kw = Next().text;
    auto s = std::make_unique<Stmt>();
    s->line = line;
    std::string end;
    if (kw == "if") {
      s->kind = Stmt::Kind::kIf;
      while (true) {
        ExprPtr cond = ParseTuple(false, false);
        ExpectBlockEnd();
        Body body = ParseBody({"elif", "else", "endif"}, "if", &end);
        s->branches.emplace_back(std::move(cond), std::move(body));
        if (end != "elif") break;
      }
      if (end == "else") {
        ExpectBlockEnd();
        s->else_body = ParseBody({"endif"}, "if", &end);
      }
      ExpectBlockEnd();
    } else if (kw == "for") {
      s->kind = Stmt::Kind::kFor;
      s->targets = ParseTargets();
      if (!IsName("in")) Unexpected("in");
      Next();
      s->expr = ParseTuple(false, false, "recursive");
      if (IsName("if")) {
        Next();
        s->cond = ParseExpression(true);
      }
      if (IsName("recursive")) {
        Next();
        s->recursive = true;
      }
      ExpectBlockEnd();
      ++loop_depth_;
      s->body = ParseBody({"endfor", "else"}, "for", &end);
      --loop_depth_;
      if (end == "else") {
        ExpectBlockEnd();
        s->else_body = ParseBody({"endfor"}, "for", &end);
      }
      ExpectBlockEnd();
    } else if (kw == "set") {
      s->targets = ParseTargets();
      if (s->targets.size() == 1 && IsOp(".")) {
        Next();
        s->attr = ExpectName();
      }
      if (IsOp("=")) {
        Next();
        s->kind = Stmt::Kind::kSet;
        s->expr = ParseTuple(true, false);
        ExpectBlockEnd();
      } else {
        s->kind = Stmt::Kind::kSetBlock;
        if (IsOp("|")) s->expr = ParseFilterChain(line);
        ExpectBlockEnd();
        s->body = ParseBody({"endset"}, "set", &end);
        ExpectBlockEnd();
      }
    } else if (kw == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->name = ExpectName();
      ExpectOp("(");
      while (!IsOp(")")) {
        if (!s->params.empty()) ExpectOp(",");
        if (IsOp(")")) break;
        std::string param = ExpectName();
        ExprPtr def;
        if (IsOp("=")) {
          Next();
          def = ParseExpression(true);
        }
        s->params.emplace_back(std::move(param), std::move(def));
      }
      Next();
      ExpectBlockEnd();
      const int saved_depth = loop_depth_;
      loop_depth_ = 0;
      s->body = ParseBody({"endmacro"}, "macro", &end);
      loop_depth_ = saved_depth;
      ExpectBlockEnd();
    } else if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0)
        SyntaxError(line, fmt::format("'{}' outside of a loop", kw));
      s->kind = kw == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      ExpectBlockEnd();
    } else if (kw == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      s->expr = ParseFilterChain(line);
      ExpectBlockEnd();
      s->body = ParseBody({"endfilter"}, "filter", &end);
      ExpectBlockEnd();
    } else if (kw == "with") {
      s->kind = Stmt::Kind::kWith;
      while (Cur().type != Tok::kBlockEnd) {
        if (!s->params.empty()) ExpectOp(",");
        std::string target = ExpectName();
        ExpectOp("=");
        s->params.emplace_back(std::move(target), ParseExpression(true));
      }
      ExpectBlockEnd();
      s->body = ParseBody({"endwith"}, "with", &end);
      ExpectBlockEnd();
    } else if (kw == "generation") {
      // transformers' AssistantTracker extension: renders its body as is.
      s->kind = Stmt::Kind::kWith;
      ExpectBlockEnd();
      s->body = ParseBody({"endgeneration"}, "generation", &end);
      ExpectBlockEnd();
    } else {
      SyntaxError(line, fmt::format("Encountered unknown tag '{}'", kw));
    }
    return s;
  }

  // Assignment targets: `a`, `a, b`, `(a, b)`.
  std::vector<std::string> ParseTargets() {
    std::vector<std::string> names;
    const bool paren = IsOp("(");
    if (paren) Next();
    while (true) {
      names.push_back(ExpectName());
      if (!IsOp(",")) break;
      Next();
      if (Cur().type != Tok::kName) break;
    }
    if (paren) ExpectOp(")");
    return names;
  }

  // `| f(args) | g` with the operand left as a kCaptured placeholder.
  ExprPtr ParseFilterChain(int line) {
    ExprPtr node = Make(Expr::Kind::kCaptured, line);
    bool first = true;
    while (first || IsOp("|")) {
      if (IsOp("|")) Next();
      first = false;
      node = ParseOneFilter(std::move(node));
    }
    return node;
  }

  bool IsTupleEnd(std::string_view extra_end) const {
    const Token& t = Cur();
    if (t.type == Tok::kVarEnd || t.type == Tok::kBlockEnd ||
        t.type == Tok::kEof)
      return true;
    if (t.type == Tok::kOp && t.text == ")") return true;
    return !extra_end.empty() && t.type == Tok::kName && t.text == extra_end;
  }

  ExprPtr ParseTuple(bool with_condexpr, bool explicit_parens,
                     std::string_view extra_end = "") {
    const int line = Cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_end)) break;
      args.push_back(ParseExpression(with_condexpr));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) {
        SyntaxError(line, fmt::format("Expected an expression, got '{}'",
                                      Describe(Cur())));
      }
    }
    auto e = Make(Expr::Kind::kTuple, line);
    e->args = std::move(args);
    return e;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    Nest nest(this, Cur().line);
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  ExprPtr ParseCondExpr() {
    const int line = Cur().line;
    ExprPtr e1 = ParseOr();
    while (IsName("if")) {
      Next();
      ExprPtr e2 = ParseOr();
      ExprPtr e3;
      if (IsName("else")) {
        Next();
        e3 = ParseCondExpr();
      }
      auto c = Make(Expr::Kind::kCond, line, std::move(e1), std::move(e2));
      c->args.push_back(std::move(e3));
      e1 = std::move(c);
    }
    return e1;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const int line = Next().line;
      left = Make(Expr::Kind::kOr, line, std::move(left), ParseAnd());
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const int line = Next().line;
      left = Make(Expr::Kind::kAnd, line, std::move(left), ParseNot());
    }
    return left;
  }

  ExprPtr ParseNot() {
    Nest nest(this, Cur().line);
    if (IsName("not")) {
      const int line = Next().line;
      return Make(Expr::Kind::kNot, line, ParseNot());
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const int line = Cur().line;
    ExprPtr first = ParseMath1();
    std::vector<ExprPtr> operands;
    std::vector<std::string> ops;
    while (true) {
      if (Cur().type == Tok::kOp && (IsOp("==") || IsOp("!=") || IsOp("<") ||
                                     IsOp("<=") || IsOp(">") || IsOp(">="))) {
        ops.push_back(Next().text);
      } else if (IsName("in")) {
        Next();
        ops.push_back("in");
      } else if (IsName("not") && Peek(1).type == Tok::kName &&
                 Peek(1).text == "in") {
        Next();
        Next();
        ops.push_back("notin");
      } else {
        break;
      }
      operands.push_back(ParseMath1());
    }
    if (ops.empty()) return first;
    auto e = Make(Expr::Kind::kCompare, line);
    e->args.push_back(std::move(first));
    for (auto& o : operands) e->args.push_back(std::move(o));
    e->ops = std::move(ops);
    return e;
  }

  ExprPtr Binary(const std::string& op, int line, ExprPtr a, ExprPtr b) {
    auto e = Make(Expr::Kind::kBinary, line, std::move(a), std::move(b));
    e->name = op;
    return e;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& t = Next();
      left = Binary(t.text, t.line, std::move(left), ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (IsOp("~")) {
      const int line = Next().line;
      left = Binary("~", line, std::move(left), ParseMath2());
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& t = Next();
      left = Binary(t.text, t.line, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const int line = Next().line;
      left = Binary("**", line, std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    const int line = Cur().line;
    Nest nest(this, line);
    ExprPtr node;
    if (IsOp("-")) {
      Next();
      node = Make(Expr::Kind::kNeg, line, ParseUnary(false));
    } else if (IsOp("+")) {
      Next();
      node = Make(Expr::Kind::kPos, line, ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr Literal(Value v, int line) {
    auto e = Make(Expr::Kind::kLiteral, line);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Cur();
    const int line = t.line;
    switch (t.type) {
      case Tok::kName: {
        const std::string name = Next().text;
        if (name == "true" || name == "True")
          return Literal(Value::Bool(true), line);
        if (name == "false" || name == "False")
          return Literal(Value::Bool(false), line);
        if (name == "none" || name == "None")
          return Literal(Value::None(), line);
        auto e = Make(Expr::Kind::kName, line);
        e->name = name;
        return e;
      }
      case Tok::kString: {
        std::string s;
        while (Cur().type == Tok::kString) s += Next().text;
        return Literal(Value::Str(std::move(s)), line);
      }
      case Tok::kInt:
        return Literal(Value::Int(Next().ival), line);
      case Tok::kFloat:
        return Literal(Value::Float(Next().fval), line);
      case Tok::kOp:
        if (t.text == "(") {
          Next();
          ExprPtr e = ParseTuple(true, true);
          ExpectOp(")");
          return e;
        }
        if (t.text == "[") {
          Next();
          auto e = Make(Expr::Kind::kList, line);
          while (!IsOp("]")) {
            if (!e->args.empty()) ExpectOp(",");
            if (IsOp("]")) break;
            e->args.push_back(ParseExpression(true));
          }
          Next();
          return e;
        }
        if (t.text == "{") {
          Next();
          auto e = Make(Expr::Kind::kDict, line);
          while (!IsOp("}")) {
            if (!e->args.empty()) ExpectOp(",");
            if (IsOp("}")) break;
            e->args.push_back(ParseExpression(true));
            ExpectOp(":");
            e->args.push_back(ParseExpression(true));
          }
          Next();
          return e;
        }
        break;
      default:
        break;
    }
    SyntaxError(line, fmt::format("unexpected '{}'", Describe(t)));
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".")) {
        const int line = Next().line;
        if (Cur().type == Tok::kName) {
          auto e = Make(Expr::Kind::kGetAttr, line, std::move(node));
          e->name = Next().text;
          node = std::move(e);
        } else if (Cur().type == Tok::kInt) {
          node = Make(Expr::Kind::kGetItem, line, std::move(node),
                      Literal(Value::Int(Next().ival), line));
        } else {
          Unexpected("name");
        }
      } else if (IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        break;
      }
    }
    return node;
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const int line = Next().line;  // '['
    std::vector<ExprPtr> items;
    ExprPtr slice;
    while (!IsOp("]")) {
      if (!items.empty() || slice) ExpectOp(",");
      // [start]:[stop][:[step]]
      ExprPtr start;
      if (!IsOp(":")) start = ParseExpression(true);
      if (!IsOp(":")) {
        items.push_back(std::move(start));
        continue;
      }
      Next();
      auto s = Make(Expr::Kind::kSlice, line, std::move(node));
      node = nullptr;
      s->args.push_back(std::move(start));
      s->args.push_back(IsOp("]") || IsOp(",") || IsOp(":")
                            ? nullptr
                            : ParseExpression(true));
      ExprPtr step;
      if (IsOp(":")) {
        Next();
        if (!IsOp("]") && !IsOp(",")) step = ParseExpression(true);
      }
      s->args.push_back(std::move(step));
      slice = std::move(s);
    }
    Next();
    if (slice) {
      if (!items.empty())
        SyntaxError(line, "multi-dimensional subscripts are not supported");
      return slice;
    }
    if (items.empty()) SyntaxError(line, "expected a subscript");
    if (items.size() == 1)
      return Make(Expr::Kind::kGetItem, line, std::move(node),
                  std::move(items[0]));
    auto tuple = Make(Expr::Kind::kTuple, line);
    tuple->args = std::move(items);
    return Make(Expr::Kind::kGetItem, line, std::move(node), std::move(tuple));
  }

  // Parses "(a, b, k=v)" into e's args (after e->args[0]) and kwargs.
  void ParseCallArgs(Expr& e) {
    ExpectOp("(");
    bool any = false;
    while (!IsOp(")")) {
      if (any) ExpectOp(",");
      if (IsOp(")")) break;
      any = true;
      if (IsOp("*") || IsOp("**")) {
        SyntaxError(Cur().line,
                    "*args and **kwargs in calls are not supported");
      }
      if (Cur().type == Tok::kName && Peek(1).type == Tok::kOp &&
          Peek(1).text == "=") {
        std::string key = Next().text;
        Next();
        e.kwargs.emplace_back(std::move(key), ParseExpression(true));
      } else {
        if (!e.kwargs.empty()) {
          SyntaxError(Cur().line,
                      "positional argument follows keyword argument");
        }
        e.args.push_back(ParseExpression(true));
      }
    }
    Next();
  }

  ExprPtr ParseCall(ExprPtr node) {
    auto e = Make(Expr::Kind::kCall, Cur().line, std::move(node));
    ParseCallArgs(*e);
    return e;
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        Next();
        node = ParseOneFilter(std::move(node));
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        break;
      }
    }
    return node;
  }

  std::string ParseDottedName() {
    std::string name = ExpectName();
    while (IsOp(".")) {
      Next();
      name += "." + ExpectName();
    }
    return name;
  }

  ExprPtr ParseOneFilter(ExprPtr node) {
    const int line = Cur().line;
    auto e = Make(Expr::Kind::kFilter, line, std::move(node));
    e->name = ParseDottedName();
    if (IsOp("(")) ParseCallArgs(*e);
    return e;
  }

  ExprPtr ParseTest(ExprPtr node) {
    const int line = Next().line;  // 'is'
    bool negated = false;
    if (IsName("not")) {
      Next();
      negated = true;
    }
    auto e = Make(Expr::Kind::kTest, line, std::move(node));
    e->name = ParseDottedName();
    const Token& t = Cur();
    if (IsOp("(")) {
      ParseCallArgs(*e);
    } else if ((t.type == Tok::kName || t.type == Tok::kString ||
                t.type == Tok::kInt || t.type == Tok::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is"))
        SyntaxError(t.line, "You cannot chain multiple tests with is");
      e->args.push_back(ParsePostfix(ParsePrimary()));
    }
    if (negated) return Make(Expr::Kind::kNot, line, std::move(e));
    return e;
  }

  // Counts one level of nesting while alive.
  class Nest {
   public:
    Nest(Parser* p, int line) : p_(p) {
      if (++p_->nesting_ > kMaxNesting) {
        SyntaxError(
            line, fmt::format("nested more than {} levels deep", kMaxNesting));
      }
    }
    ~Nest() { --p_->nesting_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser* p_;
  };

  std::vector<Token> toks_;
  size_t i_ = 0;
  int loop_depth_ = 0;
  int nesting_ = 0;
};

}  // namespace

Body ParseJinja(const std::string& source) {
  return Parser(Lexer(source).Run()).ParseTemplate();
}

}  // namespace bioquant::jinja
