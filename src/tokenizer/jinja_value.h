// Values of the Jinja-subset interpreter used for chat templates. They model
// the Python objects a Jinja2 template sees when transformers renders it
// (None, bool, int, float, str, list/tuple, dict, namespace, callables, and
// Jinja2's default Undefined), so that printing, comparison and tojson give
// Python's bytes exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bioquant::jinja {

// Thrown by the interpreter for template-level errors (Jinja2's TypeError,
// UndefinedError, ...). `line` is filled in by the innermost node that knows
// its source line; 0 = not yet known.
struct TemplateError {
  std::string message;
  int line = 0;
};

class Value;
using ValueList = std::vector<Value>;

// Insertion-ordered dict (Python dicts iterate in insertion order). Keys are
// almost always strings, but literals like {0: 0, 512: 128} occur.
struct ValueDict {
  std::vector<std::pair<Value, Value>> items;

  const Value* Find(std::string_view key) const;
  const Value* Find(const Value& key) const;  // Python key equality (1 == 1.0)
  void Set(const std::string& key, Value value);
  void Set(Value key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // Keyword `name`, else positional `index`, else nullptr.
  const Value* Get(size_t index, std::string_view name) const;
};

using Function = std::function<Value(CallArgs& args)>;

class Value {
 public:
  enum class Type {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,  // jinja2 namespace(): a dict whose attributes `set` may assign
    kFunction,
  };

  // What a kList value is in Python. Besides list and tuple, Jinja2 filters
  // return generators and dict methods return views: iterable, but with no
  // len() (generators), no indexing, no tojson, and generators are always
  // truthy; templates depend on these quirks.
  enum class Seq : uint8_t {
    kList,
    kTuple,
    kGenerator,
    kReverseIterator,
    kDictItems,
    kDictKeys,
    kDictValues,
  };

  Value() = default;  // Undefined with no hint.
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value Str(std::string s);
  static Value List(ValueList items, bool is_tuple = false);
  static Value Sequence(ValueList items, Seq kind);
  // markupsafe.Markup (what |safe and |escape return): `+` with a plain
  // string HTML-escapes the plain side.
  static Value Markup(std::string s);
  static Value Dict(ValueDict dict);
  static Value Namespace(ValueDict dict);
  static Value Func(std::string name, Function fn);

  template <typename Json>
  static Value FromJson(const Json& j);

  Type type() const { return type_; }
  bool IsUndefined() const { return type_ == Type::kUndefined; }
  bool IsNone() const { return type_ == Type::kNone; }
  bool IsBool() const { return type_ == Type::kBool; }
  bool IsInt() const { return type_ == Type::kInt; }
  bool IsFloat() const { return type_ == Type::kFloat; }
  // Python's numbers.Number: bool is an int subclass.
  bool IsNumber() const {
    return type_ == Type::kInt || type_ == Type::kFloat || type_ == Type::kBool;
  }
  bool IsString() const { return type_ == Type::kString; }
  bool IsList() const { return type_ == Type::kList; }
  bool IsTuple() const { return type_ == Type::kList && seq_ == Seq::kTuple; }
  // A real list or tuple (indexable, sized, JSON-serialisable).
  bool IsListOrTuple() const {
    return type_ == Type::kList && (seq_ == Seq::kList || seq_ == Seq::kTuple);
  }
  // A generator or reverse iterator: always truthy, no len().
  bool IsIterator() const {
    return type_ == Type::kList &&
           (seq_ == Seq::kGenerator || seq_ == Seq::kReverseIterator);
  }
  Seq seq() const { return seq_; }
  bool IsMarkup() const { return type_ == Type::kString && markup_; }
  bool IsDict() const { return type_ == Type::kDict; }
  bool IsNamespace() const { return type_ == Type::kNamespace; }
  bool IsFunction() const { return type_ == Type::kFunction; }

  bool AsBool() const { return b_; }
  int64_t AsInt() const { return type_ == Type::kBool ? (b_ ? 1 : 0) : i_; }
  double AsDouble() const;  // any number
  const std::string& AsString() const { return str_; }
  // The undefined hint, e.g. "'x' is undefined".
  const std::string& UndefinedHint() const { return str_; }
  const ValueList& AsList() const { return *list_; }
  const ValueDict& AsDict() const { return *dict_; }
  ValueDict& MutableNamespace() const { return *dict_; }
  const Function& AsFunction() const { return *fn_; }
  const std::string& FunctionName() const { return str_; }

  bool Truthy() const;
  // Python str(): what {{ value }} prints.
  std::string Str() const;
  // Python repr(), used for containers' elements.
  std::string Repr() const;
  // The Python type name as Jinja2 shows it ("dict", "str", "NoneType", ...).
  std::string TypeName() const;

  // Python ==.
  bool Equals(const Value& other) const;
  // Python ordering (<0, 0, >0); throws TemplateError for unorderable types.
  int Compare(const Value& other) const;

 private:
  Type type_ = Type::kUndefined;
  Seq seq_ = Seq::kList;
  bool markup_ = false;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string str_;  // string value, undefined hint or function name
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;  // dict (never mutated) or namespace
  std::shared_ptr<const Function> fn_;
};

// Python float repr ("1.0", "1e-05", "inf").
std::string PyFloatRepr(double f);

struct JsonDumpOptions {
  int indent = -1;  // < 0: single line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
// Python json.dumps(value, ...) byte for byte; throws TemplateError for values
// JSON cannot represent (undefined, functions).
std::string DumpJson(const Value& value, const JsonDumpOptions& opts);

// UTF-8 <-> code points, for Python's code-point-based len/index/slice.
std::u32string DecodeUtf8(std::string_view s);
std::string EncodeUtf8(std::u32string_view s);
void AppendUtf8(char32_t c, std::string& out);

template <typename Json>
Value Value::FromJson(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return None();
    case Json::value_t::boolean:
      return Bool(j.template get<bool>());
    case Json::value_t::number_integer:
      return Int(j.template get<int64_t>());
    case Json::value_t::number_unsigned:
      return Int(static_cast<int64_t>(j.template get<uint64_t>()));
    case Json::value_t::number_float:
      return Float(j.template get<double>());
    case Json::value_t::string:
      return Str(j.template get<std::string>());
    case Json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return List(std::move(items));
    }
    case Json::value_t::object: {
      ValueDict d;
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.items.emplace_back(Str(it.key()), FromJson(it.value()));
      }
      return Dict(std::move(d));
    }
    default:
      return Value();
  }
}

}  // namespace bioquant::jinja
