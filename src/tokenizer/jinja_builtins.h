// Python/Jinja2 semantics of operators, attribute and item access, filters,
// tests and the str/dict/list methods chat templates call. All throw
// TemplateError with Jinja2's (or Python's) message on misuse.
#pragma once

#include <string>

#include "tokenizer/jinja_value.h"

namespace bioquant::jinja {

[[noreturn]] void FailUndefined(const Value& v);
// Template integers are 64-bit (Python's are unbounded): a result that does
// not fit is this error ("integer overflow in <where> ..."), never undefined
// behaviour or a wrapped value.
[[noreturn]] void FailIntOverflow(const std::string& where);

// obj.name (Jinja2: Python attribute first, then item).
Value GetAttr(const Value& obj, const std::string& name);
// obj[key] (Jinja2: item first, then attribute for string keys).
Value GetItem(const Value& obj, const Value& key);
// obj[start:stop:step]; None bounds are omitted ones.
Value SliceOf(const Value& obj, const Value& start, const Value& stop,
              const Value& step);

// + - * / // % ** ~
Value BinaryOp(const std::string& op, const Value& a, const Value& b);
// == != < <= > >= in notin
bool CompareOp(const std::string& op, const Value& a, const Value& b);
bool Contains(const Value& container, const Value& item);
// What `for x in v` iterates (dict keys, string characters, ...).
ValueList Iterate(const Value& v);

Value CallValue(const Value& callee, CallArgs& args);
Value ApplyFilter(const std::string& name, const Value& value, CallArgs& args);
bool ApplyTest(const std::string& name, const Value& value, CallArgs& args);

// Jinja2's global functions (range, namespace, dict) by name; Undefined if
// there is none.
Value BuiltinGlobal(const std::string& name);

}  // namespace bioquant::jinja
