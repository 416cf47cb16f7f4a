#include "tokenizer/jinja_value.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace bioquant::jinja {

const Value* ValueDict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k.IsString() && k.AsString() == key) return &v;
  }
  return nullptr;
}

const Value* ValueDict::Find(const Value& key) const {
  for (const auto& [k, v] : items) {
    if (k.Equals(key)) return &v;
  }
  return nullptr;
}

void ValueDict::Set(const std::string& key, Value value) {
  Set(Value::Str(key), std::move(value));
}

void ValueDict::Set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (k.Equals(key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::Get(size_t index, std::string_view name) const {
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return index < positional.size() ? &positional[index] : nullptr;
}

Value Value::Undefined(std::string hint) {
  Value v;
  v.str_ = std::move(hint);
  return v;
}
Value Value::None() {
  Value v;
  v.type_ = Type::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.type_ = Type::kInt;
  v.i_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.type_ = Type::kFloat;
  v.f_ = f;
  return v;
}
Value Value::Str(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.str_ = std::move(s);
  return v;
}
Value Value::List(ValueList items, bool is_tuple) {
  return Sequence(std::move(items), is_tuple ? Seq::kTuple : Seq::kList);
}
Value Value::Sequence(ValueList items, Seq kind) {
  Value v;
  v.type_ = Type::kList;
  v.seq_ = kind;
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
Value Value::Markup(std::string s) {
  Value v = Str(std::move(s));
  v.markup_ = true;
  return v;
}
Value Value::Dict(ValueDict dict) {
  Value v;
  v.type_ = Type::kDict;
  v.dict_ = std::make_shared<ValueDict>(std::move(dict));
  return v;
}
Value Value::Namespace(ValueDict dict) {
  Value v = Dict(std::move(dict));
  v.type_ = Type::kNamespace;
  return v;
}
Value Value::Func(std::string name, Function fn) {
  Value v;
  v.type_ = Type::kFunction;
  v.str_ = std::move(name);
  v.fn_ = std::make_shared<const Function>(std::move(fn));
  return v;
}

double Value::AsDouble() const {
  switch (type_) {
    case Type::kBool:
      return b_ ? 1 : 0;
    case Type::kInt:
      return static_cast<double>(i_);
    default:
      return f_;
  }
}

bool Value::Truthy() const {
  switch (type_) {
    case Type::kUndefined:
    case Type::kNone:
      return false;
    case Type::kBool:
      return b_;
    case Type::kInt:
      return i_ != 0;
    case Type::kFloat:
      return f_ != 0;
    case Type::kString:
      return !str_.empty();
    case Type::kList:
      return IsIterator() || !list_->empty();
    case Type::kDict:
      return !dict_->items.empty();
    default:
      return true;
  }
}

std::string PyFloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, then Python's layout rule for repr():
  // scientific when the decimal exponent is < -4 or >= 16.
  char buf[64];
  auto res =
      std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e_pos + 1));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int n = static_cast<int>(digits.size());
  if (exp < -4 || exp >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    return out + fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  const int decpt = exp + 1;  // digits before the decimal point
  if (decpt <= 0) return sign + "0." + std::string(-decpt, '0') + digits;
  if (decpt >= n) return sign + digits + std::string(decpt - n, '0') + ".0";
  return sign + digits.substr(0, decpt) + "." + digits.substr(decpt);
}

namespace {

bool IsPrintable(char32_t c) {
  if (c < 0x20 || c == 0x7f) return false;
  if (c >= 0x80 && c <= 0xa0) return false;
  if (c == 0xad || c == 0x2028 || c == 0x2029 || (c >= 0x200b && c <= 0x200f) ||
      c == 0xfeff)
    return false;
  return true;
}

std::string PyStrRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : DecodeUtf8(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!IsPrintable(c)) {
      out += c <= 0xff ? fmt::format("\\x{:02x}", static_cast<uint32_t>(c))
                       : fmt::format("\\u{:04x}", static_cast<uint32_t>(c));
    } else {
      AppendUtf8(c, out);
    }
  }
  out += quote;
  return out;
}

std::string DictRepr(const ValueDict& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : d.items) {
    if (!first) out += ", ";
    first = false;
    out += k.Repr() + ": " + v.Repr();
  }
  return out + "}";
}

}  // namespace

std::string Value::Str() const {
  switch (type_) {
    case Type::kUndefined:
      return "";
    case Type::kString:
      return str_;
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (type_) {
    case Type::kUndefined:
      return "Undefined";
    case Type::kNone:
      return "None";
    case Type::kBool:
      return b_ ? "True" : "False";
    case Type::kInt:
      return std::to_string(i_);
    case Type::kFloat:
      return PyFloatRepr(f_);
    case Type::kString:
      return markup_ ? "Markup(" + PyStrRepr(str_) + ")" : PyStrRepr(str_);
    case Type::kList: {
      if (IsIterator()) return "<" + TypeName() + " object>";
      const bool tuple = seq_ == Seq::kTuple;
      std::string out = tuple ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i) out += ", ";
        out += (*list_)[i].Repr();
      }
      if (tuple && list_->size() == 1) out += ",";
      out += tuple ? ")" : "]";
      return IsListOrTuple() ? out : TypeName() + "(" + out + ")";
    }
    case Type::kDict:
      return DictRepr(*dict_);
    case Type::kNamespace:
      return "<Namespace " + DictRepr(*dict_) + ">";
    case Type::kFunction:
      return "<function " + str_ + ">";
  }
  return "";
}

std::string Value::TypeName() const {
  switch (type_) {
    case Type::kUndefined:
      return "Undefined";
    case Type::kNone:
      return "NoneType";
    case Type::kBool:
      return "bool";
    case Type::kInt:
      return "int";
    case Type::kFloat:
      return "float";
    case Type::kString:
      return "str";
    case Type::kList:
      switch (seq_) {
        case Seq::kList:
          return "list";
        case Seq::kTuple:
          return "tuple";
        case Seq::kGenerator:
          return "generator";
        case Seq::kReverseIterator:
          return "list_reverseiterator";
        case Seq::kDictItems:
          return "dict_items";
        case Seq::kDictKeys:
          return "dict_keys";
        case Seq::kDictValues:
          return "dict_values";
      }
      return "list";
    case Type::kDict:
      return "dict";
    case Type::kNamespace:
      return "Namespace";
    case Type::kFunction:
      return "function";
  }
  return "object";
}

bool Value::Equals(const Value& o) const {
  if (IsNumber() && o.IsNumber()) {
    if (type_ == Type::kFloat || o.type_ == Type::kFloat) {
      return AsDouble() == o.AsDouble();
    }
    return AsInt() == o.AsInt();
  }
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::kUndefined:
    case Type::kNone:
      return true;
    case Type::kString:
      return str_ == o.str_;
    case Type::kList: {
      if (IsIterator()) return list_ == o.list_;
      if (seq_ != o.seq_ || list_->size() != o.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i) {
        if (!(*list_)[i].Equals((*o.list_)[i])) return false;
      }
      return true;
    }
    case Type::kDict: {
      if (dict_->items.size() != o.dict_->items.size()) return false;
      for (const auto& [k, v] : dict_->items) {
        const Value* ov = o.dict_->Find(k);
        if (!ov || !v.Equals(*ov)) return false;
      }
      return true;
    }
    case Type::kNamespace:
      return dict_ == o.dict_;
    case Type::kFunction:
      return fn_ == o.fn_;
    default:
      return false;
  }
}

int Value::Compare(const Value& o) const {
  if (IsUndefined() || o.IsUndefined()) {
    throw TemplateError{IsUndefined() ? str_ : o.str_};
  }
  if (IsNumber() && o.IsNumber()) {
    if (type_ == Type::kFloat || o.type_ == Type::kFloat) {
      const double a = AsDouble(), b = o.AsDouble();
      return a < b ? -1 : (a > b ? 1 : 0);
    }
    const int64_t a = AsInt(), b = o.AsInt();
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  if (IsString() && o.IsString()) {
    // UTF-8 byte order is code point order, as Python compares str.
    const int c = str_.compare(o.str_);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (IsListOrTuple() && o.IsListOrTuple() && seq_ == o.seq_) {
    const size_t n = std::min(list_->size(), o.list_->size());
    for (size_t i = 0; i < n; ++i) {
      if ((*list_)[i].Equals((*o.list_)[i])) continue;
      return (*list_)[i].Compare((*o.list_)[i]);
    }
    return list_->size() < o.list_->size()
               ? -1
               : (list_->size() > o.list_->size() ? 1 : 0);
  }
  throw TemplateError{
      fmt::format("'<' not supported between instances of '{}' and '{}'",
                  TypeName(), o.TypeName())};
}

namespace {

void JsonString(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  for (char32_t c : DecodeUtf8(s)) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c > 0x7e)) {
          if (c >= 0x10000) {  // surrogate pair, as Python writes it
            const uint32_t v = c - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (v >> 10),
                               0xdc00 + (v & 0x3ff));
          } else {
            out += fmt::format("\\u{:04x}", static_cast<uint32_t>(c));
          }
        } else {
          AppendUtf8(c, out);
        }
    }
  }
  out += '"';
}

void DumpJsonRec(const Value& v, const JsonDumpOptions& opts, int level,
                 std::string& out) {
  const std::string newline_indent =
      opts.indent >= 0
          ? "\n" + std::string(static_cast<size_t>(opts.indent) * level, ' ')
          : "";
  const std::string inner_indent =
      opts.indent >= 0
          ? "\n" +
                std::string(static_cast<size_t>(opts.indent) * (level + 1), ' ')
          : "";
  switch (v.type()) {
    case Value::Type::kNone:
      out += "null";
      return;
    case Value::Type::kBool:
      out += v.AsBool() ? "true" : "false";
      return;
    case Value::Type::kInt:
      out += std::to_string(v.AsInt());
      return;
    case Value::Type::kFloat: {
      const double f = v.AsDouble();
      if (std::isnan(f)) {
        out += "NaN";
      } else if (std::isinf(f)) {
        out += f < 0 ? "-Infinity" : "Infinity";
      } else {
        out += PyFloatRepr(f);
      }
      return;
    }
    case Value::Type::kString:
      JsonString(v.AsString(), opts.ensure_ascii, out);
      return;
    case Value::Type::kList: {
      if (!v.IsListOrTuple()) {
        throw TemplateError{fmt::format(
            "Object of type {} is not JSON serializable", v.TypeName())};
      }
      const auto& items = v.AsList();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += "[" + inner_indent;
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += opts.item_separator + inner_indent;
        DumpJsonRec(items[i], opts, level + 1, out);
      }
      out += newline_indent + "]";
      return;
    }
    case Value::Type::kDict: {
      // json.dumps turns int/float/bool/None keys into strings.
      std::vector<std::pair<std::string, const Value*>> items;
      for (const auto& [k, val] : v.AsDict().items) {
        std::string key;
        if (k.IsString()) {
          key = k.AsString();
        } else if (k.IsBool()) {
          key = k.AsBool() ? "true" : "false";
        } else if (k.IsNone()) {
          key = "null";
        } else if (k.IsInt() || k.IsFloat()) {
          key = k.Str();
        } else {
          throw TemplateError{
              fmt::format("keys must be str, int, float, bool or None, not {}",
                          k.TypeName())};
        }
        items.emplace_back(std::move(key), &val);
      }
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (opts.sort_keys) {
        std::stable_sort(
            items.begin(), items.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out += "{" + inner_indent;
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += opts.item_separator + inner_indent;
        JsonString(items[i].first, opts.ensure_ascii, out);
        out += opts.key_separator;
        DumpJsonRec(*items[i].second, opts, level + 1, out);
      }
      out += newline_indent + "}";
      return;
    }
    default:
      throw TemplateError{fmt::format(
          "Object of type {} is not JSON serializable", v.TypeName())};
  }
}

}  // namespace

std::string DumpJson(const Value& value, const JsonDumpOptions& opts) {
  std::string out;
  DumpJsonRec(value, opts, 0, out);
  return out;
}

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = 1;
    char32_t cp = c;
    if (c >= 0xf0 && c < 0xf8) {
      len = 4;
      cp = c & 0x07;
    } else if (c >= 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xc0) {
      len = 2;
      cp = c & 0x1f;
    }
    if (len > 1 && i + len <= s.size()) {
      for (int k = 1; k < len; ++k) {
        cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
      }
    } else {
      len = 1;
      cp = c;  // invalid byte: keep it as a (Latin-1) code point
    }
    out += cp;
    i += len;
  }
  return out;
}

void AppendUtf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, out);
  return out;
}

}  // namespace bioquant::jinja
