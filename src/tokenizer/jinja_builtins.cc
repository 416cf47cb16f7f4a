#include "tokenizer/jinja_builtins.h"

#include <fmt/format.h>
#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>

namespace bioquant::jinja {

[[noreturn]] void FailUndefined(const Value& v) {
  throw TemplateError{v.UndefinedHint().empty() ? "value is undefined"
                                                : v.UndefinedHint()};
}

[[noreturn]] void FailIntOverflow(const std::string& where) {
  throw TemplateError{fmt::format(
      "integer overflow in {} (template integers are 64-bit)", where)};
}

namespace {

[[noreturn]] void Fail(std::string msg) { throw TemplateError{std::move(msg)}; }

[[noreturn]] void IntOverflow(const std::string& op) {
  FailIntOverflow(fmt::format("'{}'", op));
}

// Jinja2's object_type_repr: "dict object", or "None".
std::string ObjectTypeRepr(const Value& v) {
  if (v.IsNone()) return "None";
  return fmt::format("{} object", v.TypeName());
}

Value NoAttribute(const Value& obj, const std::string& name) {
  return Value::Undefined(
      fmt::format("'{}' has no attribute '{}'", ObjectTypeRepr(obj), name));
}

Value NoElement(const Value& obj, const Value& key) {
  return Value::Undefined(
      fmt::format("{} has no element {}", ObjectTypeRepr(obj), key.Repr()));
}

// ---- strings ---------------------------------------------------------------

// Python str.isspace() code points.
bool IsPyWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

std::string Strip(const std::string& s, const Value* chars, bool left,
                  bool right) {
  const std::u32string u = DecodeUtf8(s);
  std::u32string set;
  const bool custom = chars && !chars->IsNone() && !chars->IsUndefined();
  if (custom) set = DecodeUtf8(chars->Str());
  auto strip_it = [&](char32_t c) {
    return custom ? set.find(c) != std::u32string::npos : IsPyWhitespace(c);
  };
  size_t b = 0, e = u.size();
  if (left) {
    while (b < e && strip_it(u[b])) ++b;
  }
  if (right) {
    while (e > b && strip_it(u[e - 1])) --e;
  }
  return EncodeUtf8(std::u32string_view(u).substr(b, e - b));
}

std::string Upper(const std::string& s) {
  std::string out;
  icu::UnicodeString::fromUTF8(s)
      .toUpper(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}

std::string Lower(const std::string& s) {
  std::string out;
  icu::UnicodeString::fromUTF8(s)
      .toLower(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}

bool IsCased(char32_t c) {
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_CASED);
}

// Python str.title(): a cased character after an uncased one starts a word.
std::string Title(const std::string& s) {
  std::u32string u = DecodeUtf8(s);
  bool prev_cased = false;
  for (auto& c : u) {
    const bool cased = IsCased(c);
    c = prev_cased ? u_tolower(c) : u_totitle(c);
    prev_cased = cased;
  }
  return EncodeUtf8(u);
}

std::string Capitalize(const std::string& s) {
  std::u32string u = DecodeUtf8(s);
  if (u.empty()) return s;
  const std::string first = EncodeUtf8(std::u32string(1, u_totitle(u[0])));
  return first + Lower(EncodeUtf8(std::u32string_view(u).substr(1)));
}

std::string Replace(const std::string& s, const std::string& from,
                    const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` around every code point.
    const std::u32string u = DecodeUtf8(s);
    int64_t n = 0;
    for (char32_t c : u) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      AppendUtf8(c, out);
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

ValueList Split(const std::string& s, const Value* sep, int64_t maxsplit,
                bool from_right) {
  ValueList out;
  if (!sep || sep->IsNone()) {
    // Runs of whitespace, ignoring leading/trailing whitespace.
    const std::u32string u = DecodeUtf8(s);
    std::vector<std::u32string> parts;
    if (!from_right) {
      size_t i = 0;
      while (i < u.size()) {
        while (i < u.size() && IsPyWhitespace(u[i])) ++i;
        if (i == u.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
          size_t e = u.size();
          while (e > i && IsPyWhitespace(u[e - 1])) --e;
          parts.push_back(u.substr(i, e - i));
          break;
        }
        size_t j = i;
        while (j < u.size() && !IsPyWhitespace(u[j])) ++j;
        parts.push_back(u.substr(i, j - i));
        i = j;
      }
    } else {
      size_t i = u.size();
      while (i > 0) {
        while (i > 0 && IsPyWhitespace(u[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
          size_t b = 0;
          while (b < i && IsPyWhitespace(u[b])) ++b;
          parts.push_back(u.substr(b, i - b));
          break;
        }
        size_t j = i;
        while (j > 0 && !IsPyWhitespace(u[j - 1])) --j;
        parts.push_back(u.substr(j, i - j));
        i = j;
      }
      std::reverse(parts.begin(), parts.end());
    }
    for (auto& p : parts) out.push_back(Value::Str(EncodeUtf8(p)));
    return out;
  }
  const std::string& d = sep->AsString();
  if (!sep->IsString()) Fail("must be str or None, not " + sep->TypeName());
  if (d.empty()) Fail("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t hit = s.find(d, pos);
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(pos, hit - pos));
      pos = hit + d.size();
    }
    parts.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < d.size()) break;
      const size_t hit = s.rfind(d, end - d.size());
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(hit + d.size(), end - hit - d.size()));
      end = hit;
    }
    parts.push_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
  }
  for (auto& p : parts) out.push_back(Value::Str(std::move(p)));
  return out;
}

bool IsLineBreak(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c ||
         c == 0x1d || c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
}

std::vector<std::string> SplitLines(const std::string& s) {
  const std::u32string u = DecodeUtf8(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    if (!IsLineBreak(u[i])) continue;
    lines.push_back(
        EncodeUtf8(std::u32string_view(u).substr(start, i - start)));
    if (u[i] == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < u.size())
    lines.push_back(EncodeUtf8(std::u32string_view(u).substr(start)));
  return lines;
}

int64_t ToInt(const Value& v, const std::string& what) {
  if (v.IsInt() || v.IsBool()) return v.AsInt();
  Fail(fmt::format("{} must be an integer, not {}", what, v.TypeName()));
}

// One printf conversion, any length.
template <typename T>
std::string CFormat(const std::string& spec, T arg) {
  const int n = std::snprintf(nullptr, 0, spec.c_str(), arg);
  if (n < 0) Fail("bad format " + spec);
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), spec.c_str(), arg);
  out.resize(static_cast<size_t>(n));
  return out;
}

bool IsAsciiDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
}

// Python's "%" string formatting (the `format` filter and str % args).
std::string PercentFormat(const std::string& fmt_str, const Value& args) {
  ValueList positional;
  const ValueDict* named = nullptr;
  if (args.IsList()) {
    positional = args.AsList();
  } else if (args.IsDict()) {
    named = &args.AsDict();
  } else {
    positional.push_back(args);
  }
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt_str.size(); ++i) {
    if (fmt_str[i] != '%') {
      out += fmt_str[i];
      continue;
    }
    if (++i >= fmt_str.size()) Fail("incomplete format");
    if (fmt_str[i] == '%') {
      out += '%';
      continue;
    }
    const Value* arg = nullptr;
    if (fmt_str[i] == '(') {
      const size_t close = fmt_str.find(')', i);
      if (close == std::string::npos || !named)
        Fail("format requires a mapping");
      arg = named->Find(fmt_str.substr(i + 1, close - i - 1));
      if (!arg) Fail("format key not found");
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt_str.size() &&
           std::string_view("-+ #0123456789.").find(fmt_str[i]) !=
               std::string_view::npos) {
      spec += fmt_str[i++];
    }
    if (i >= fmt_str.size()) Fail("incomplete format");
    const char type = fmt_str[i];
    if (!arg) {
      if (next >= positional.size())
        Fail("not enough arguments for format string");
      arg = &positional[next++];
    }
    switch (type) {
      case 's':
      case 'r': {
        const std::string s = type == 's' ? arg->Str() : arg->Repr();
        out += spec == "%" ? s : CFormat(spec + "s", s.c_str());
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg->IsNumber())
          Fail(fmt::format("%{} format: a number is required", type));
        const long long n = arg->IsFloat()
                                ? static_cast<long long>(arg->AsDouble())
                                : arg->AsInt();
        out += CFormat(spec + "ll" + (type == 'i' ? 'd' : type), n);
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        if (!arg->IsNumber())
          Fail("must be real number, not " + arg->TypeName());
        out += CFormat(spec + type, arg->AsDouble());
        break;
      default:
        Fail(fmt::format("unsupported format character '{}'", type));
    }
  }
  if (!named && next < positional.size() && args.IsList()) {
    Fail("not all arguments converted during string formatting");
  }
  return out;
}

// Python str.format with {} / {0} / {name} fields (format specs ignored
// except that they are accepted).
std::string BraceFormat(const std::string& f, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    if (c == '{' && i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < f.size() && f[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      const size_t close = f.find('}', i);
      if (close == std::string::npos)
        Fail("Single '{' encountered in format string");
      std::string field = f.substr(i + 1, close - i - 1);
      const size_t colon = field.find_first_of(":!");
      if (colon != std::string::npos) field.resize(colon);
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_index < args.positional.size())
          v = &args.positional[auto_index++];
      } else if (IsAsciiDigits(field)) {
        const size_t k = std::stoul(field);
        if (k < args.positional.size()) v = &args.positional[k];
      } else {
        for (const auto& [name, val] : args.keyword) {
          if (name == field) v = &val;
        }
      }
      if (!v) Fail(fmt::format("format field '{}' has no argument", field));
      out += v->Str();
      i = close;
    } else if (c == '}') {
      Fail("Single '}' encountered in format string");
    } else {
      out += c;
    }
  }
  return out;
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---- methods ---------------------------------------------------------------

bool IsStrMethod(const std::string& n) {
  static const char* const kNames[] = {
      "strip",      "lstrip",   "rstrip",  "split",   "rsplit",  "splitlines",
      "startswith", "endswith", "replace", "upper",   "lower",   "title",
      "capitalize", "find",     "rfind",   "count",   "join",    "format",
      "isdigit",    "isalpha",  "isalnum", "isspace", "islower", "isupper",
      "index",      "swapcase"};
  return std::find(std::begin(kNames), std::end(kNames), n) != std::end(kNames);
}

bool IsDictMethod(const std::string& n) {
  return n == "items" || n == "keys" || n == "values" || n == "get" ||
         n == "copy";
}

bool IsListMethod(const std::string& n) {
  return n == "index" || n == "count" || n == "copy";
}

bool IsUnsafeListMethod(const std::string& n) {
  return n == "append" || n == "extend" || n == "insert" || n == "pop" ||
         n == "remove" || n == "sort" || n == "reverse" || n == "clear";
}

ValueList DictItems(const ValueDict& d) {
  ValueList out;
  for (const auto& [k, v] : d.items) out.push_back(Value::List({k, v}, true));
  return out;
}

bool PrefixMatch(const std::string& s, const Value& prefix, bool at_end) {
  auto one = [&](const Value& p) {
    if (!p.IsString())
      Fail("startswith/endswith first arg must be str or a tuple of str");
    const std::string& x = p.AsString();
    if (x.size() > s.size()) return false;
    return at_end ? s.compare(s.size() - x.size(), x.size(), x) == 0
                  : s.compare(0, x.size(), x) == 0;
  };
  if (prefix.IsList()) {
    for (const auto& p : prefix.AsList()) {
      if (one(p)) return true;
    }
    return false;
  }
  return one(prefix);
}

int64_t CodePointIndex(const std::string& s, size_t byte_pos) {
  return static_cast<int64_t>(
      DecodeUtf8(std::string_view(s).substr(0, byte_pos)).size());
}

template <typename Pred>
Value AllChars(const std::string& s, Pred pred) {
  const std::u32string u = DecodeUtf8(s);
  return Value::Bool(!u.empty() && std::all_of(u.begin(), u.end(), pred));
}

Value CallStrMethod(const std::string& s, const std::string& name,
                    CallArgs& a) {
  const Value* a0 = a.Get(0, "");
  const Value* a1 = a.Get(1, "");
  if (name == "strip")
    return Value::Str(Strip(s, a.Get(0, "chars"), true, true));
  if (name == "lstrip")
    return Value::Str(Strip(s, a.Get(0, "chars"), true, false));
  if (name == "rstrip")
    return Value::Str(Strip(s, a.Get(0, "chars"), false, true));
  if (name == "split" || name == "rsplit") {
    const Value* ms = a.Get(1, "maxsplit");
    return Value::List(Split(s, a.Get(0, "sep"),
                             ms ? ToInt(*ms, "maxsplit") : -1,
                             name == "rsplit"));
  }
  if (name == "splitlines") {
    ValueList out;
    for (auto& l : SplitLines(s)) out.push_back(Value::Str(std::move(l)));
    return Value::List(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    if (!a0) Fail(name + "() takes at least 1 argument (0 given)");
    return Value::Bool(PrefixMatch(s, *a0, name == "endswith"));
  }
  if (name == "replace") {
    if (!a0 || !a1 || !a0->IsString() || !a1->IsString()) {
      Fail("replace() arguments must be str");
    }
    const Value* count = a.Get(2, "count");
    return Value::Str(Replace(s, a0->AsString(), a1->AsString(),
                              count ? ToInt(*count, "count") : -1));
  }
  if (name == "upper") return Value::Str(Upper(s));
  if (name == "lower") return Value::Str(Lower(s));
  if (name == "title") return Value::Str(Title(s));
  if (name == "capitalize") return Value::Str(Capitalize(s));
  if (name == "swapcase") {
    std::u32string u = DecodeUtf8(s);
    for (auto& c : u) c = u_isupper(c) ? u_tolower(c) : u_toupper(c);
    return Value::Str(EncodeUtf8(u));
  }
  if (name == "find" || name == "rfind" || name == "index") {
    if (!a0 || !a0->IsString()) Fail(name + "() argument must be str");
    const size_t hit =
        name == "rfind" ? s.rfind(a0->AsString()) : s.find(a0->AsString());
    if (hit == std::string::npos) {
      if (name == "index") Fail("substring not found");
      return Value::Int(-1);
    }
    return Value::Int(CodePointIndex(s, hit));
  }
  if (name == "count") {
    if (!a0 || !a0->IsString()) Fail("count() argument must be str");
    const std::string& sub = a0->AsString();
    if (sub.empty())
      return Value::Int(static_cast<int64_t>(DecodeUtf8(s).size()) + 1);
    int64_t n = 0;
    for (size_t pos = s.find(sub); pos != std::string::npos;
         pos = s.find(sub, pos + sub.size())) {
      ++n;
    }
    return Value::Int(n);
  }
  if (name == "join") {
    if (!a0) Fail("join() takes exactly one argument (0 given)");
    std::string out;
    bool first = true;
    for (const auto& item : Iterate(*a0)) {
      if (!item.IsString())
        Fail("sequence item: expected str instance, " + item.TypeName() +
             " found");
      if (!first) out += s;
      first = false;
      out += item.AsString();
    }
    return Value::Str(std::move(out));
  }
  if (name == "format") return Value::Str(BraceFormat(s, a));
  if (name == "isdigit")
    return AllChars(s, [](char32_t c) { return u_isdigit(c) != 0; });
  if (name == "isalpha")
    return AllChars(s, [](char32_t c) { return u_isalpha(c) != 0; });
  if (name == "isalnum")
    return AllChars(s, [](char32_t c) { return u_isalnum(c) != 0; });
  if (name == "isspace") return AllChars(s, IsPyWhitespace);
  if (name == "islower" || name == "isupper") {
    const std::u32string u = DecodeUtf8(s);
    bool any_cased = false;
    for (char32_t c : u) {
      if (name == "islower" ? u_isupper(c) || u_istitle(c)
                            : u_islower(c) || u_istitle(c)) {
        return Value::Bool(false);
      }
      any_cased = any_cased || IsCased(c);
    }
    return Value::Bool(any_cased);
  }
  Fail(fmt::format("'str object' has no attribute '{}'", name));
}

Value CallMethod(const Value& self, const std::string& name, CallArgs& a) {
  if (self.IsString()) return CallStrMethod(self.AsString(), name, a);
  if (self.IsDict()) {
    const ValueDict& d = self.AsDict();
    if (name == "items")
      return Value::Sequence(DictItems(d), Value::Seq::kDictItems);
    if (name == "keys" || name == "values") {
      ValueList out;
      for (const auto& [k, v] : d.items) out.push_back(name == "keys" ? k : v);
      return Value::Sequence(std::move(out), name == "keys"
                                                 ? Value::Seq::kDictKeys
                                                 : Value::Seq::kDictValues);
    }
    if (name == "copy") return self;
    if (name == "get") {
      const Value* key = a.Get(0, "key");
      if (!key) Fail("get expected at least 1 argument, got 0");
      const Value* hit = d.Find(*key);
      if (hit) return *hit;
      const Value* def = a.Get(1, "default");
      return def ? *def : Value::None();
    }
  }
  if (self.IsList()) {
    const ValueList& l = self.AsList();
    const Value* x = a.Get(0, "");
    if (name == "copy") return self;
    if (name == "count") {
      int64_t n = 0;
      for (const auto& v : l) n += x && v.Equals(*x);
      return Value::Int(n);
    }
    if (name == "index") {
      for (size_t i = 0; i < l.size(); ++i) {
        if (x && l[i].Equals(*x)) return Value::Int(static_cast<int64_t>(i));
      }
      Fail("value is not in list");
    }
    if (IsUnsafeListMethod(name)) {
      Fail(fmt::format("access to attribute '{}' of 'list' object is unsafe.",
                       name));
    }
  }
  Fail(fmt::format("{} has no attribute '{}'", ObjectTypeRepr(self), name));
}

Value BoundMethod(const Value& self, const std::string& name) {
  return Value::Func(
      name, [self, name](CallArgs& a) { return CallMethod(self, name, a); });
}

// ---- attribute paths, sorting ----------------------------------------------

// Jinja2's make_attrgetter: "a.b.0" looks up item by item.
Value GetAttrPath(const Value& v, const Value& attribute) {
  if (!attribute.IsString()) return GetItem(v, attribute);
  Value cur = v;
  const std::string& path = attribute.AsString();
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    std::string part = path.substr(
        start, dot == std::string::npos ? std::string::npos : dot - start);
    if (IsAsciiDigits(part)) {
      cur = GetItem(cur, Value::Int(std::stoll(part)));
    } else {
      cur = GetItem(cur, Value::Str(part));
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.IsString()) return Value::Str(Lower(v.AsString()));
  return v;
}

bool ArgBool(const CallArgs& a, size_t index, const char* name, bool def) {
  const Value* v = a.Get(index, name);
  return v ? v->Truthy() : def;
}

// select/reject/selectattr/rejectattr share this: the test name and its
// arguments follow `first_test_arg` positional arguments.
ValueList SelectOrReject(const Value& seq, CallArgs& a, bool select,
                         bool by_attr) {
  ValueList out;
  if (!seq.Truthy()) return out;  // Jinja2: `if value:` before iterating
  const size_t test_at = by_attr ? 1 : 0;
  const Value* attr = by_attr ? a.Get(0, "") : nullptr;
  if (by_attr && !attr) Fail("Missing parameter for attribute name");
  std::string test;
  CallArgs test_args;
  if (a.positional.size() > test_at) {
    test = a.positional[test_at].Str();
    test_args.positional.assign(a.positional.begin() + test_at + 1,
                                a.positional.end());
    test_args.keyword = a.keyword;
  }
  for (const auto& item : Iterate(seq)) {
    const Value v = attr ? GetAttrPath(item, *attr) : item;
    const bool ok = test.empty() ? v.Truthy() : ApplyTest(test, v, test_args);
    if (ok == select) out.push_back(item);
  }
  return out;
}

double RoundHalfEven(double x) { return std::nearbyint(x); }

}  // namespace

// ---- access ----------------------------------------------------------------

Value GetAttr(const Value& obj, const std::string& name) {
  switch (obj.type()) {
    case Value::Type::kUndefined:
      FailUndefined(obj);
    case Value::Type::kDict: {
      if (IsDictMethod(name)) return BoundMethod(obj, name);
      const Value* v = obj.AsDict().Find(name);
      return v ? *v : NoAttribute(obj, name);
    }
    case Value::Type::kNamespace: {
      const Value* v = obj.AsDict().Find(name);
      return v ? *v : NoAttribute(obj, name);
    }
    case Value::Type::kString:
      return IsStrMethod(name) ? BoundMethod(obj, name)
                               : NoAttribute(obj, name);
    case Value::Type::kList:
      if (IsListMethod(name) || IsUnsafeListMethod(name))
        return BoundMethod(obj, name);
      return NoAttribute(obj, name);
    default:
      return NoAttribute(obj, name);
  }
}

Value GetItem(const Value& obj, const Value& key) {
  if (obj.IsUndefined()) FailUndefined(obj);
  if (obj.IsDict() || obj.IsNamespace()) {
    if (const Value* v = obj.AsDict().Find(key)) return *v;
    if (key.IsString()) return GetAttr(obj, key.AsString());
    return NoElement(obj, key);
  }
  if (obj.IsListOrTuple() || obj.IsString()) {
    if (key.IsString()) return GetAttr(obj, key.AsString());
    if (key.IsInt() || key.IsBool()) {
      int64_t i = key.AsInt();
      if (obj.IsList()) {
        const auto n = static_cast<int64_t>(obj.AsList().size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return obj.AsList()[i];
      } else {
        const std::u32string u = DecodeUtf8(obj.AsString());
        const auto n = static_cast<int64_t>(u.size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return Value::Str(EncodeUtf8(u.substr(i, 1)));
      }
    }
    return NoElement(obj, key);
  }
  if (key.IsString()) return GetAttr(obj, key.AsString());
  return NoElement(obj, key);
}

Value SliceOf(const Value& obj, const Value& start_v, const Value& stop_v,
              const Value& step_v) {
  if (obj.IsUndefined()) FailUndefined(obj);
  auto bound = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.IsNone() || v.IsUndefined()) return std::nullopt;
    return ToInt(v, std::string("slice ") + what);
  };
  const int64_t step = bound(step_v, "step").value_or(1);
  if (step == 0) Fail("slice step cannot be zero");
  std::u32string chars;
  int64_t n;
  if (obj.IsString()) {
    chars = DecodeUtf8(obj.AsString());
    n = static_cast<int64_t>(chars.size());
  } else if (obj.IsListOrTuple()) {
    n = static_cast<int64_t>(obj.AsList().size());
  } else {
    Fail(fmt::format("'{}' object is not subscriptable", obj.TypeName()));
  }
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  const int64_t start = adjust(bound(start_v, "start"), step < 0 ? n - 1 : 0);
  const int64_t stop = adjust(bound(stop_v, "stop"), step < 0 ? -1 : n);
  if (obj.IsString()) {
    std::u32string out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      out += chars[i];
    return Value::Str(EncodeUtf8(out));
  }
  ValueList out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    out.push_back(obj.AsList()[i]);
  }
  return Value::List(std::move(out), obj.IsTuple());
}

ValueList Iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return {};
    case Value::Type::kList:
      return v.AsList();
    case Value::Type::kDict: {
      ValueList keys;
      for (const auto& kv : v.AsDict().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Type::kString: {
      ValueList chars;
      for (char32_t c : DecodeUtf8(v.AsString()))
        chars.push_back(Value::Str(EncodeUtf8(std::u32string(1, c))));
      return chars;
    }
    default:
      Fail(fmt::format("'{}' object is not iterable", v.TypeName()));
  }
}

bool Contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.IsString()) {
        Fail(
            fmt::format("'in <string>' requires string as left operand, not {}",
                        item.TypeName()));
      }
      return container.AsString().find(item.AsString()) != std::string::npos;
    case Value::Type::kList:
      for (const auto& v : container.AsList()) {
        if (v.Equals(item)) return true;
      }
      return false;
    case Value::Type::kDict:
    case Value::Type::kNamespace:
      return container.AsDict().Find(item) != nullptr;
    default:
      Fail(fmt::format("argument of type '{}' is not iterable",
                       container.TypeName()));
  }
}

// ---- operators -------------------------------------------------------------

Value BinaryOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::Str(a.Str() + b.Str());
  if (a.IsUndefined()) FailUndefined(a);
  if (b.IsUndefined()) FailUndefined(b);
  const bool ints = (a.IsInt() || a.IsBool()) && (b.IsInt() || b.IsBool());
  const bool nums = a.IsNumber() && b.IsNumber();
  auto unsupported = [&]() -> Value {
    Fail(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op,
                     a.TypeName(), b.TypeName()));
  };
  if (op == "+") {
    if (ints) {
      int64_t r;
      if (__builtin_add_overflow(a.AsInt(), b.AsInt(), &r)) IntOverflow(op);
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.AsDouble() + b.AsDouble());
    if (a.IsString() && b.IsString()) {
      // Markup + str escapes the str (markupsafe's __add__ / __radd__).
      if (a.IsMarkup() || b.IsMarkup()) {
        return Value::Markup(
            (a.IsMarkup() ? a.AsString() : HtmlEscape(a.AsString())) +
            (b.IsMarkup() ? b.AsString() : HtmlEscape(b.AsString())));
      }
      return Value::Str(a.AsString() + b.AsString());
    }
    if (a.IsString()) {
      Fail(fmt::format("can only concatenate str (not \"{}\") to str",
                       b.TypeName()));
    }
    if (a.IsListOrTuple() && b.IsListOrTuple() && a.IsTuple() == b.IsTuple()) {
      ValueList out = a.AsList();
      out.insert(out.end(), b.AsList().begin(), b.AsList().end());
      return Value::List(std::move(out), a.IsTuple());
    }
    if (a.IsList()) {
      Fail(fmt::format("can only concatenate {} (not \"{}\") to {}",
                       a.TypeName(), b.TypeName(), a.TypeName()));
    }
    return unsupported();
  }
  if (op == "-") {
    if (ints) {
      int64_t r;
      if (__builtin_sub_overflow(a.AsInt(), b.AsInt(), &r)) IntOverflow(op);
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.AsDouble() - b.AsDouble());
    return unsupported();
  }
  if (op == "*") {
    if (ints) {
      int64_t r;
      if (__builtin_mul_overflow(a.AsInt(), b.AsInt(), &r)) IntOverflow(op);
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.AsDouble() * b.AsDouble());
    const Value* seq = a.IsString() || a.IsListOrTuple()
                           ? &a
                           : (b.IsString() || b.IsListOrTuple() ? &b : nullptr);
    const Value* times = seq == &a ? &b : &a;
    if (seq && (times->IsInt() || times->IsBool())) {
      const int64_t n = std::max<int64_t>(0, times->AsInt());
      // An untrusted template must not ask for unbounded memory.
      constexpr uint64_t kMaxRepeatBytes = uint64_t{64} << 20;
      const uint64_t unit = seq->IsString()
                                ? seq->AsString().size()
                                : seq->AsList().size() * sizeof(Value);
      if (n > 0 && unit > 0 &&
          static_cast<uint64_t>(n) > kMaxRepeatBytes / unit)
        Fail("sequence repetition of more than 64 MiB");
      if (seq->IsString()) {
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq->AsString();
        return Value::Str(std::move(out));
      }
      ValueList out;
      for (int64_t i = 0; i < n; ++i)
        out.insert(out.end(), seq->AsList().begin(), seq->AsList().end());
      return Value::List(std::move(out), seq->IsTuple());
    }
    Fail(fmt::format("can't multiply sequence by non-int of type '{}'",
                     times->TypeName()));
  }
  if (op == "/") {
    if (!nums) return unsupported();
    if (b.AsDouble() == 0) Fail("division by zero");
    return Value::Float(a.AsDouble() / b.AsDouble());
  }
  if (op == "//") {
    if (!nums) return unsupported();
    if (b.AsDouble() == 0) Fail("integer division or modulo by zero");
    if (ints) {
      const int64_t x = a.AsInt(), y = b.AsInt();
      if (x == INT64_MIN && y == -1) IntOverflow(op);
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return Value::Int(q);
    }
    return Value::Float(std::floor(a.AsDouble() / b.AsDouble()));
  }
  if (op == "%") {
    if (a.IsString()) return Value::Str(PercentFormat(a.AsString(), b));
    if (!nums) return unsupported();
    if (b.AsDouble() == 0) Fail("integer division or modulo by zero");
    if (ints) {
      const int64_t x = a.AsInt(), y = b.AsInt();
      if (y == -1) return Value::Int(0);  // INT64_MIN % -1 traps in C++
      int64_t r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value::Int(r);
    }
    double r = std::fmod(a.AsDouble(), b.AsDouble());
    if (r != 0 && ((r < 0) != (b.AsDouble() < 0))) r += b.AsDouble();
    return Value::Float(r);
  }
  if (op == "**") {
    if (ints && b.AsInt() >= 0) {
      // By squaring: at most 63 rounds whatever the exponent, each checked.
      int64_t r = 1, base = a.AsInt(), e = b.AsInt();
      while (e > 0) {
        if ((e & 1) && __builtin_mul_overflow(r, base, &r)) IntOverflow(op);
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) IntOverflow(op);
      }
      return Value::Int(r);
    }
    if (nums) return Value::Float(std::pow(a.AsDouble(), b.AsDouble()));
    return unsupported();
  }
  Fail("unknown operator " + op);
}

bool CompareOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return a.Equals(b);
  if (op == "!=") return !a.Equals(b);
  if (op == "in") return Contains(b, a);
  if (op == "notin") return !Contains(b, a);
  const int c = a.Compare(b);
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  if (op == ">=") return c >= 0;
  Fail("unknown comparison " + op);
}

Value CallValue(const Value& callee, CallArgs& args) {
  if (callee.IsUndefined()) FailUndefined(callee);
  if (!callee.IsFunction())
    Fail(fmt::format("'{}' object is not callable", callee.TypeName()));
  return callee.AsFunction()(args);
}

// ---- filters ---------------------------------------------------------------

Value ApplyFilter(const std::string& name, const Value& value, CallArgs& a) {
  const Value* a0 = a.Get(0, "");
  if (name == "default" || name == "d") {
    const Value* def = a.Get(0, "default_value");
    const bool boolean = ArgBool(a, 1, "boolean", false);
    if (value.IsUndefined() || (boolean && !value.Truthy()))
      return def ? *def : Value::Str("");
    return value;
  }
  if (name == "length" || name == "count") {
    if (value.IsString())
      return Value::Int(
          static_cast<int64_t>(DecodeUtf8(value.AsString()).size()));
    if (value.IsList() && !value.IsIterator()) {
      return Value::Int(static_cast<int64_t>(value.AsList().size()));
    }
    if (value.IsDict() || value.IsNamespace()) {
      return Value::Int(static_cast<int64_t>(value.AsDict().items.size()));
    }
    if (value.IsUndefined()) return Value::Int(0);
    Fail(fmt::format("object of type '{}' has no len()", value.TypeName()));
  }
  if (name == "tojson") {
    // transformers' tojson(x, ensure_ascii=False, indent=None,
    // separators=None, sort_keys=False), i.e. Python's json.dumps.
    JsonDumpOptions o;
    o.ensure_ascii = ArgBool(a, 0, "ensure_ascii", false);
    const Value* indent = a.Get(1, "indent");
    if (indent && !indent->IsNone()) {
      o.indent = static_cast<int>(ToInt(*indent, "indent"));
      o.item_separator = ",";
    }
    const Value* seps = a.Get(2, "separators");
    if (seps && !seps->IsNone()) {
      if (!seps->IsList() || seps->AsList().size() != 2)
        Fail("separators must be a pair");
      o.item_separator = seps->AsList()[0].Str();
      o.key_separator = seps->AsList()[1].Str();
    }
    o.sort_keys = ArgBool(a, 3, "sort_keys", false);
    if (value.IsUndefined()) FailUndefined(value);
    return Value::Str(DumpJson(value, o));
  }
  if (name == "trim")
    return Value::Str(Strip(value.Str(), a.Get(0, "chars"), true, true));
  if (name == "upper") return Value::Str(Upper(value.Str()));
  if (name == "lower") return Value::Str(Lower(value.Str()));
  if (name == "title") return Value::Str(Title(value.Str()));
  if (name == "capitalize") return Value::Str(Capitalize(value.Str()));
  if (name == "string")
    return value.IsString() ? value : Value::Str(value.Str());
  if (name == "safe")
    return value.IsMarkup() ? value : Value::Markup(value.Str());
  if (name == "escape" || name == "e") {
    return value.IsMarkup() ? value : Value::Markup(HtmlEscape(value.Str()));
  }
  if (name == "replace") {
    const Value* from = a.Get(0, "old");
    const Value* to = a.Get(1, "new");
    const Value* count = a.Get(2, "count");
    if (!from || !to) Fail("replace filter needs old and new");
    return Value::Str(
        Replace(value.Str(), from->Str(), to->Str(),
                count && !count->IsNone() ? ToInt(*count, "count") : -1));
  }
  if (name == "join") {
    const Value* sep = a.Get(0, "d");
    const Value* attr = a.Get(1, "attribute");
    std::string out;
    bool first = true;
    for (const auto& item : Iterate(value)) {
      if (!first && sep) out += sep->Str();
      first = false;
      out += (attr && !attr->IsNone() ? GetAttrPath(item, *attr) : item).Str();
    }
    return Value::Str(std::move(out));
  }
  if (name == "list") return Value::List(Iterate(value));
  if (name == "items") {
    if (value.IsUndefined()) return Value::Sequence({}, Value::Seq::kGenerator);
    if (!value.IsDict()) Fail("Can only get item pairs from a mapping.");
    return Value::Sequence(DictItems(value.AsDict()), Value::Seq::kGenerator);
  }
  if (name == "first" || name == "last") {
    const ValueList items = Iterate(value);
    if (name == "last" && value.IsIterator()) {
      Fail(fmt::format("'{}' object is not reversible", value.TypeName()));
    }
    if (items.empty()) {
      return Value::Undefined(
          fmt::format("No {} item, sequence was empty.", name));
    }
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (value.IsString()) {
      std::u32string u = DecodeUtf8(value.AsString());
      std::reverse(u.begin(), u.end());
      return Value::Str(EncodeUtf8(u));
    }
    // reversed() where Python allows it, else a reversed list.
    ValueList items = Iterate(value);
    std::reverse(items.begin(), items.end());
    return value.IsIterator() ? Value::List(std::move(items))
                              : Value::Sequence(std::move(items),
                                                Value::Seq::kReverseIterator);
  }
  if (name == "int") {
    const Value* def = a.Get(0, "default");
    const Value fallback = def ? *def : Value::Int(0);
    if (value.IsInt() || value.IsBool()) return Value::Int(value.AsInt());
    if (value.IsFloat())
      return Value::Int(static_cast<int64_t>(std::trunc(value.AsDouble())));
    if (value.IsString()) {
      const std::string s = Strip(value.AsString(), nullptr, true, true);
      char* end = nullptr;
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::Int(i);
      const bool hex =
          s.find_first_of("xX") != std::string::npos;  // strtod reads 0x..
      const double f = std::strtod(s.c_str(), &end);
      if (!s.empty() && !hex && end == s.c_str() + s.size() &&
          std::isfinite(f)) {
        return Value::Int(static_cast<int64_t>(std::trunc(f)));
      }
    }
    return fallback;
  }
  if (name == "float") {
    const Value* def = a.Get(0, "default");
    const Value fallback = def ? *def : Value::Float(0);
    if (value.IsNumber()) return Value::Float(value.AsDouble());
    if (value.IsString()) {
      const std::string s = Strip(value.AsString(), nullptr, true, true);
      char* end = nullptr;
      const double f = std::strtod(s.c_str(), &end);
      if (!s.empty() && s.find_first_of("xX") == std::string::npos &&
          end == s.c_str() + s.size()) {
        return Value::Float(f);
      }
    }
    return fallback;
  }
  if (name == "abs") {
    if (value.IsInt() || value.IsBool())
      return Value::Int(std::llabs(value.AsInt()));
    if (value.IsFloat()) return Value::Float(std::fabs(value.AsDouble()));
    Fail(fmt::format("bad operand type for abs(): '{}'", value.TypeName()));
  }
  if (name == "round") {
    const int64_t precision =
        a.Get(0, "precision") ? ToInt(*a.Get(0, "precision"), "precision") : 0;
    const std::string method =
        a.Get(1, "method") ? a.Get(1, "method")->Str() : "common";
    if (!value.IsNumber()) Fail("round filter needs a number");
    // Python's round(int, 0) stays an int.
    if (method == "common" && !value.IsFloat() && precision >= 0)
      return Value::Int(value.AsInt());
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = value.AsDouble() * scale;
    double r;
    if (method == "common") {
      r = RoundHalfEven(x);
    } else if (method == "floor") {
      r = std::floor(x);
    } else if (method == "ceil") {
      r = std::ceil(x);
    } else {
      Fail("method must be common, ceil or floor");
    }
    return Value::Float(r / scale);
  }
  if (name == "attr") {
    if (!a0) Fail("attr filter needs a name");
    return GetAttr(value, a0->Str());
  }
  if (name == "map") {
    ValueList out;
    if (!value.Truthy()) return Value::Sequence({}, Value::Seq::kGenerator);
    const Value* attr = a.Get(static_cast<size_t>(-1), "attribute");
    if (attr) {
      const Value* def = a.Get(static_cast<size_t>(-1), "default");
      for (const auto& item : Iterate(value)) {
        Value v = GetAttrPath(item, *attr);
        if (v.IsUndefined() && def) v = *def;
        out.push_back(std::move(v));
      }
      return Value::Sequence(std::move(out), Value::Seq::kGenerator);
    }
    if (!a0) Fail("map requires a filter argument");
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.keyword = a.keyword;
    for (const auto& item : Iterate(value))
      out.push_back(ApplyFilter(a0->Str(), item, rest));
    return Value::Sequence(std::move(out), Value::Seq::kGenerator);
  }
  if (name == "select" || name == "reject") {
    return Value::Sequence(SelectOrReject(value, a, name == "select", false),
                           Value::Seq::kGenerator);
  }
  if (name == "selectattr" || name == "rejectattr") {
    return Value::Sequence(SelectOrReject(value, a, name == "selectattr", true),
                           Value::Seq::kGenerator);
  }
  if (name == "dictsort") {
    if (!value.IsDict()) Fail("dictsort filter needs a mapping");
    const bool case_sensitive = ArgBool(a, 0, "case_sensitive", false);
    const Value* by = a.Get(1, "by");
    const bool by_value = by && by->Str() == "value";
    const bool reverse = ArgBool(a, 2, "reverse", false);
    ValueList items = DictItems(value.AsDict());
    std::stable_sort(
        items.begin(), items.end(), [&](const Value& x, const Value& y) {
          const int k = by_value ? 1 : 0;
          const int c = SortKey(x.AsList()[k], case_sensitive)
                            .Compare(SortKey(y.AsList()[k], case_sensitive));
          return reverse ? c > 0 : c < 0;
        });
    return Value::List(std::move(items));
  }
  if (name == "sort") {
    const bool reverse = ArgBool(a, 0, "reverse", false);
    const bool case_sensitive = ArgBool(a, 1, "case_sensitive", false);
    const Value* attr = a.Get(2, "attribute");
    ValueList items = Iterate(value);
    auto key = [&](const Value& v) {
      return SortKey(attr && !attr->IsNone() ? GetAttrPath(v, *attr) : v,
                     case_sensitive);
    };
    std::stable_sort(items.begin(), items.end(),
                     [&](const Value& x, const Value& y) {
                       const int c = key(x).Compare(key(y));
                       return reverse ? c > 0 : c < 0;
                     });
    return Value::List(std::move(items));
  }
  if (name == "unique") {
    const bool case_sensitive = ArgBool(a, 0, "case_sensitive", false);
    const Value* attr = a.Get(1, "attribute");
    ValueList out, seen;
    for (const auto& item : Iterate(value)) {
      const Value k =
          SortKey(attr && !attr->IsNone() ? GetAttrPath(item, *attr) : item,
                  case_sensitive);
      if (std::none_of(seen.begin(), seen.end(),
                       [&](const Value& s) { return s.Equals(k); })) {
        seen.push_back(k);
        out.push_back(item);
      }
    }
    return Value::Sequence(std::move(out), Value::Seq::kGenerator);
  }
  if (name == "min" || name == "max") {
    const bool case_sensitive = ArgBool(a, 0, "case_sensitive", false);
    const Value* attr = a.Get(1, "attribute");
    const ValueList items = Iterate(value);
    if (items.empty())
      return Value::Undefined("No aggregated item, sequence was empty.");
    auto key = [&](const Value& v) {
      return SortKey(attr && !attr->IsNone() ? GetAttrPath(v, *attr) : v,
                     case_sensitive);
    };
    const Value* best = &items[0];
    for (const auto& item : items) {
      const int c = key(item).Compare(key(*best));
      if (name == "min" ? c < 0 : c > 0) best = &item;
    }
    return *best;
  }
  if (name == "sum") {
    const Value* attr = a.Get(0, "attribute");
    const Value* start = a.Get(1, "start");
    Value total = start ? *start : Value::Int(0);
    for (const auto& item : Iterate(value)) {
      total =
          BinaryOp("+", total,
                   attr && !attr->IsNone() ? GetAttrPath(item, *attr) : item);
    }
    return total;
  }
  if (name == "format") {
    if (!a.keyword.empty()) {
      ValueDict d;
      for (const auto& [k, v] : a.keyword) d.Set(k, v);
      return Value::Str(PercentFormat(value.Str(), Value::Dict(std::move(d))));
    }
    return Value::Str(
        PercentFormat(value.Str(), Value::List(a.positional, true)));
  }
  if (name == "indent") {
    const Value* width = a.Get(0, "width");
    const std::string indention =
        width && width->IsString()
            ? width->AsString()
            : std::string(width ? ToInt(*width, "width") : 4, ' ');
    const bool first = ArgBool(a, 1, "first", false);
    const bool blank = ArgBool(a, 2, "blank", false);
    std::vector<std::string> lines = SplitLines(value.Str() + "\n");
    std::string rv;
    if (blank) {
      for (size_t i = 0; i < lines.size(); ++i)
        rv += (i ? "\n" + indention : "") + lines[i];
    } else {
      rv = lines.empty() ? "" : lines[0];
      for (size_t i = 1; i < lines.size(); ++i) {
        rv += "\n" + (lines[i].empty() ? "" : indention + lines[i]);
      }
    }
    return Value::Str(first ? indention + rv : rv);
  }
  if (name == "wordcount")
    return Value::Int(
        static_cast<int64_t>(Split(value.Str(), nullptr, -1, false).size()));
  Fail(fmt::format("No filter named '{}'.", name));
}

// ---- tests -----------------------------------------------------------------

bool ApplyTest(const std::string& name, const Value& v, CallArgs& a) {
  const Value* a0 = a.Get(0, "");
  auto need = [&]() -> const Value& {
    if (!a0) Fail(fmt::format("test '{}' needs an argument", name));
    return *a0;
  };
  if (name == "defined") return !v.IsUndefined();
  if (name == "undefined") return v.IsUndefined();
  if (name == "none") return v.IsNone();
  if (name == "boolean") return v.IsBool();
  if (name == "true") return v.IsBool() && v.AsBool();
  if (name == "false") return v.IsBool() && !v.AsBool();
  if (name == "string") return v.IsString();
  if (name == "number") return v.IsNumber();
  if (name == "integer") return v.IsInt();
  if (name == "float") return v.IsFloat();
  if (name == "mapping") return v.IsDict();
  if (name == "iterable")
    return v.IsString() || v.IsList() || v.IsDict() || v.IsUndefined();
  if (name == "sequence")
    return v.IsString() || v.IsList() || v.IsDict() || v.IsUndefined();
  if (name == "callable") return v.IsFunction();
  if (name == "escaped") return false;
  if (name == "equalto" || name == "eq" || name == "==")
    return v.Equals(need());
  if (name == "ne" || name == "!=") return !v.Equals(need());
  if (name == "lt" || name == "lessthan" || name == "<")
    return v.Compare(need()) < 0;
  if (name == "le" || name == "<=") return v.Compare(need()) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">")
    return v.Compare(need()) > 0;
  if (name == "ge" || name == ">=") return v.Compare(need()) >= 0;
  if (name == "in") return Contains(need(), v);
  if (name == "sameas") return v.type() == need().type() && v.Equals(need());
  if (name == "odd" || name == "even") {
    if (!v.IsInt() && !v.IsBool())
      Fail(fmt::format("test '{}' needs an integer", name));
    const bool odd = (v.AsInt() % 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "divisibleby") {
    const int64_t d = ToInt(need(), "divisibleby");
    if (d == 0) Fail("integer division or modulo by zero");
    return ToInt(v, "value") % d == 0;
  }
  if (name == "lower")
    return v.IsString() && Lower(v.AsString()) == v.AsString();
  if (name == "upper")
    return v.IsString() && Upper(v.AsString()) == v.AsString();
  Fail(fmt::format("No test named '{}'.", name));
}

// ---- globals ---------------------------------------------------------------

Value BuiltinGlobal(const std::string& name) {
  if (name == "range") {
    return Value::Func("range", [](CallArgs& a) {
      if (a.positional.empty() || a.positional.size() > 3)
        Fail("range expected 1 to 3 arguments");
      int64_t start = 0, stop, step = 1;
      if (a.positional.size() == 1) {
        stop = ToInt(a.positional[0], "range stop");
      } else {
        start = ToInt(a.positional[0], "range start");
        stop = ToInt(a.positional[1], "range stop");
        if (a.positional.size() == 3)
          step = ToInt(a.positional[2], "range step");
      }
      if (step == 0) Fail("range() arg 3 must not be zero");
      ValueList out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (out.size() >= 100000)
          Fail(
              "Range too big. The sandbox blocks ranges larger than MAX_RANGE "
              "(100000).");
        out.push_back(Value::Int(i));
      }
      return Value::List(std::move(out));
    });
  }
  if (name == "namespace" || name == "dict") {
    const bool ns = name == "namespace";
    return Value::Func(name, [ns](CallArgs& a) {
      ValueDict d;
      for (const auto& p : a.positional) {
        if (!p.IsDict())
          Fail("namespace()/dict() positional argument must be a mapping");
        for (const auto& [k, v] : p.AsDict().items) d.Set(k, v);
      }
      for (const auto& [k, v] : a.keyword) d.Set(k, v);
      return ns ? Value::Namespace(std::move(d)) : Value::Dict(std::move(d));
    });
  }
  return Value::Undefined(fmt::format("'{}' is undefined", name));
}

}  // namespace bioquant::jinja
