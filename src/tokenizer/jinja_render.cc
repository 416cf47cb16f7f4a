// Tree-walking renderer for the Jinja subset. Scoping follows Jinja2: `for`
// bodies and macro calls get a fresh scope per iteration / call that reads
// through to the enclosing one, `set` writes the innermost scope (so a
// loop-local `set` never leaks; templates use namespace() for that), `if`
// does not open a scope.
#include <fmt/format.h>

#include <cstdint>
#include <unordered_map>

#include "tokenizer/jinja.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"
#include "util/error.h"

namespace bioquant::jinja {
namespace {

struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;

  const Value* Find(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using FramePtr = std::shared_ptr<Frame>;

FramePtr Child(const FramePtr& parent) {
  auto f = std::make_shared<Frame>();
  f->parent = parent;
  return f;
}

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(const ValueDict& globals) : globals_(globals) {}

  Flow Exec(const Body& body, const FramePtr& frame, std::string& out) {
    for (const auto& s : body) {
      const Flow flow = ExecOne(*s, frame, out);
      if (out.size() > kMaxOutputBytes) {
        throw TemplateError{fmt::format("the template's output exceeds {} MiB",
                                        kMaxOutputBytes >> 20)};
      }
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

 private:
  // Bounds on an untrusted template's work: macro calls nested this deep
  // (a macro that calls itself; Python's own limit is about 1000 frames),
  // loop iterations over the whole render, and text produced.
  static constexpr int kMaxMacroDepth = 100;
  static constexpr int64_t kMaxLoopIterations = 1'000'000;
  static constexpr size_t kMaxOutputBytes = size_t{64} << 20;

  Flow ExecOne(const Stmt& s, const FramePtr& frame, std::string& out) {
    try {
      return ExecStmt(s, frame, out);
    } catch (TemplateError& e) {
      if (e.line == 0) e.line = s.line;
      throw;
    }
  }

  void Assign(const std::vector<std::string>& targets, const Value& v,
              Frame& frame) {
    if (targets.size() == 1) {
      frame.vars[targets[0]] = v;
      return;
    }
    const ValueList items = Iterate(v);
    if (items.size() != targets.size()) {
      throw TemplateError{
          items.size() > targets.size()
              ? fmt::format("too many values to unpack (expected {})",
                            targets.size())
              : fmt::format("not enough values to unpack (expected {}, got {})",
                            targets.size(), items.size())};
    }
    for (size_t i = 0; i < targets.size(); ++i)
      frame.vars[targets[i]] = items[i];
  }

  std::string Capture(const Body& body, const FramePtr& frame) {
    std::string text;
    Exec(body, Child(frame), text);
    return text;
  }

  Value ApplyCaptured(const Expr& chain, std::string text, Frame& frame) {
    Value saved = captured_;
    captured_ = Value::Str(std::move(text));
    Value v = Eval(chain, frame);
    captured_ = saved;
    return v;
  }

  Flow ExecStmt(const Stmt& s, const FramePtr& frame, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out += s.text;
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        out += Eval(*s.expr, *frame).Str();
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (const auto& [cond, body] : s.branches) {
          if (Eval(*cond, *frame).Truthy()) return Exec(body, frame, out);
        }
        return Exec(s.else_body, frame, out);
      case Stmt::Kind::kFor:
        ExecFor(s, frame, out);
        return Flow::kNormal;
      case Stmt::Kind::kSet: {
        Value v = Eval(*s.expr, *frame);
        if (!s.attr.empty()) {
          const Value* ns = frame->Find(s.targets[0]);
          if (!ns || !ns->IsNamespace()) {
            throw TemplateError{
                "cannot assign attribute on non-namespace object"};
          }
          ns->MutableNamespace().Set(s.attr, std::move(v));
        } else {
          Assign(s.targets, v, *frame);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        std::string text = Capture(s.body, frame);
        Value v = s.expr ? ApplyCaptured(*s.expr, std::move(text), *frame)
                         : Value::Str(std::move(text));
        if (!s.attr.empty()) {
          const Value* ns = frame->Find(s.targets[0]);
          if (!ns || !ns->IsNamespace()) {
            throw TemplateError{
                "cannot assign attribute on non-namespace object"};
          }
          ns->MutableNamespace().Set(s.attr, std::move(v));
        } else {
          Assign(s.targets, v, *frame);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        frame->vars[s.name] = MakeMacro(s, frame);
        return Flow::kNormal;
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kFilterBlock:
        out += ApplyCaptured(*s.expr, Capture(s.body, frame), *frame).Str();
        return Flow::kNormal;
      case Stmt::Kind::kWith: {
        FramePtr inner = Child(frame);
        for (const auto& [name, expr] : s.params)
          inner->vars[name] = Eval(*expr, *inner);
        return Exec(s.body, inner, out);
      }
    }
    return Flow::kNormal;
  }

  void ExecFor(const Stmt& s, const FramePtr& frame, std::string& out) {
    if (s.recursive) throw TemplateError{"recursive loops are not supported"};
    const Value iterable = Eval(*s.expr, *frame);
    if (iterable.IsNone())
      throw TemplateError{"'NoneType' object is not iterable"};
    ValueList items = Iterate(iterable);
    if (s.cond) {
      // The loop filter sees the loop variables but not `loop`.
      ValueList kept;
      for (auto& item : items) {
        FramePtr f = Child(frame);
        Assign(s.targets, item, *f);
        if (Eval(*s.cond, *f).Truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      FramePtr f = Child(frame);
      Assign(s.targets, items[i], *f);
      ValueDict loop;
      loop.Set("index", Value::Int(i + 1));
      loop.Set("index0", Value::Int(i));
      loop.Set("revindex", Value::Int(n - i));
      loop.Set("revindex0", Value::Int(n - i - 1));
      loop.Set("first", Value::Bool(i == 0));
      loop.Set("last", Value::Bool(i == n - 1));
      loop.Set("length", Value::Int(n));
      loop.Set("depth", Value::Int(1));
      loop.Set("depth0", Value::Int(0));
      loop.Set("previtem", i > 0
                               ? items[i - 1]
                               : Value::Undefined("there is no previous item"));
      loop.Set("nextitem", i + 1 < n
                               ? items[i + 1]
                               : Value::Undefined("there is no next item"));
      loop.Set(
          "cycle", Value::Func("cycle", [i](CallArgs& a) {
            if (a.positional.empty())
              throw TemplateError{"no items for cycling given"};
            return a.positional[static_cast<size_t>(i) % a.positional.size()];
          }));
      f->vars["loop"] = Value::Dict(std::move(loop));
      if (++iterations_ > kMaxLoopIterations) {
        throw TemplateError{
            fmt::format("more than {} loop iterations", kMaxLoopIterations)};
      }
      if (Exec(s.body, f, out) == Flow::kBreak) break;
    }
    if (n == 0) Exec(s.else_body, Child(frame), out);
  }

  Value MakeMacro(const Stmt& s, const FramePtr& frame) {
    std::weak_ptr<Frame> weak = frame;
    return Value::Func(s.name, [this, &s, weak](CallArgs& a) {
      FramePtr def = weak.lock();
      if (!def)
        throw TemplateError{
            fmt::format("macro '{}' called out of scope", s.name)};
      FramePtr f = Child(def);
      if (a.positional.size() > s.params.size()) {
        throw TemplateError{
            fmt::format("macro '{}' takes not more than {} argument(s)", s.name,
                        s.params.size())};
      }
      for (const auto& [k, v] : a.keyword) {
        bool known = false;
        for (const auto& p : s.params) known = known || p.first == k;
        if (!known) {
          throw TemplateError{fmt::format(
              "macro '{}' takes no keyword argument '{}'", s.name, k)};
        }
      }
      for (size_t i = 0; i < s.params.size(); ++i) {
        const auto& [pname, pdef] = s.params[i];
        const Value* given = a.Get(i, pname);
        if (given) {
          f->vars[pname] = *given;
        } else if (pdef) {
          f->vars[pname] = Eval(*pdef, *f);
        } else {
          f->vars[pname] = Value::Undefined(
              fmt::format("parameter '{}' was not provided", pname));
        }
      }
      if (macro_depth_ >= kMaxMacroDepth) {
        throw TemplateError{
            fmt::format("macro '{}': calls nested more than {} deep "
                        "(unbounded recursion?)",
                        s.name, kMaxMacroDepth)};
      }
      ++macro_depth_;
      std::string text;
      try {
        Exec(s.body, f, text);
      } catch (...) {
        --macro_depth_;
        throw;
      }
      --macro_depth_;
      return Value::Str(std::move(text));
    });
  }

  Value Lookup(const std::string& name, const Frame& frame) {
    if (const Value* v = frame.Find(name)) return *v;
    if (const Value* v = globals_.Find(name)) return *v;
    return BuiltinGlobal(name);
  }

  CallArgs EvalArgs(const Expr& e, Frame& frame) {
    CallArgs a;
    for (size_t i = 1; i < e.args.size(); ++i)
      a.positional.push_back(Eval(*e.args[i], frame));
    for (const auto& [k, v] : e.kwargs)
      a.keyword.emplace_back(k, Eval(*v, frame));
    return a;
  }

  Value Eval(const Expr& e, Frame& frame) {
    try {
      return EvalExpr(e, frame);
    } catch (TemplateError& err) {
      if (err.line == 0) err.line = e.line;
      throw;
    }
  }

  Value EvalExpr(const Expr& e, Frame& frame) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName:
        return Lookup(e.name, frame);
      case Expr::Kind::kGetAttr:
        return GetAttr(Eval(*e.args[0], frame), e.name);
      case Expr::Kind::kGetItem:
        return GetItem(Eval(*e.args[0], frame), Eval(*e.args[1], frame));
      case Expr::Kind::kSlice: {
        auto bound = [&](size_t i) {
          return e.args[i] ? Eval(*e.args[i], frame) : Value::None();
        };
        return SliceOf(Eval(*e.args[0], frame), bound(1), bound(2), bound(3));
      }
      case Expr::Kind::kCall: {
        const Value callee = Eval(*e.args[0], frame);
        CallArgs a = EvalArgs(e, frame);
        return CallValue(callee, a);
      }
      case Expr::Kind::kFilter: {
        const Value v = e.args[0]->kind == Expr::Kind::kCaptured
                            ? captured_
                            : Eval(*e.args[0], frame);
        CallArgs a = EvalArgs(e, frame);
        return ApplyFilter(e.name, v, a);
      }
      case Expr::Kind::kTest: {
        const Value v = Eval(*e.args[0], frame);
        CallArgs a = EvalArgs(e, frame);
        return Value::Bool(ApplyTest(e.name, v, a));
      }
      case Expr::Kind::kNot:
        return Value::Bool(!Eval(*e.args[0], frame).Truthy());
      case Expr::Kind::kNeg:
      case Expr::Kind::kPos: {
        const Value v = Eval(*e.args[0], frame);
        if (v.IsUndefined()) FailUndefined(v);
        const bool neg = e.kind == Expr::Kind::kNeg;
        if (v.IsInt() || v.IsBool()) {
          if (neg && v.AsInt() == INT64_MIN) FailIntOverflow("unary '-'");
          return Value::Int(neg ? -v.AsInt() : v.AsInt());
        }
        if (v.IsFloat())
          return Value::Float(neg ? -v.AsDouble() : v.AsDouble());
        throw TemplateError{fmt::format("bad operand type for unary {}: '{}'",
                                        neg ? '-' : '+', v.TypeName())};
      }
      case Expr::Kind::kBinary:
        return BinaryOp(e.name, Eval(*e.args[0], frame),
                        Eval(*e.args[1], frame));
      case Expr::Kind::kAnd: {
        Value a = Eval(*e.args[0], frame);
        return a.Truthy() ? Eval(*e.args[1], frame) : a;
      }
      case Expr::Kind::kOr: {
        Value a = Eval(*e.args[0], frame);
        return a.Truthy() ? a : Eval(*e.args[1], frame);
      }
      case Expr::Kind::kCompare: {
        Value left = Eval(*e.args[0], frame);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = Eval(*e.args[i + 1], frame);
          if (!CompareOp(e.ops[i], left, right)) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kCond:
        if (Eval(*e.args[1], frame).Truthy()) return Eval(*e.args[0], frame);
        if (e.args[2]) return Eval(*e.args[2], frame);
        return Value::Undefined(
            fmt::format("the inline if-expression on line {} evaluated to "
                        "false and no else section was "
                        "defined.",
                        e.line));
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        ValueList items;
        for (const auto& a : e.args) items.push_back(Eval(*a, frame));
        return Value::List(std::move(items), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        ValueDict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = Eval(*e.args[i], frame);
          if (k.IsList() || k.IsDict() || k.IsNamespace() || k.IsUndefined()) {
            if (k.IsUndefined()) FailUndefined(k);
            throw TemplateError{
                fmt::format("unhashable type: '{}'", k.TypeName())};
          }
          d.Set(std::move(k), Eval(*e.args[i + 1], frame));
        }
        return Value::Dict(std::move(d));
      }
      case Expr::Kind::kCaptured:
        return captured_;
    }
    return Value();
  }

  const ValueDict& globals_;
  Value captured_;
  int macro_depth_ = 0;
  int64_t iterations_ = 0;
};

}  // namespace

Template::Template(const std::string& source, std::string name)
    : name_(std::move(name)) {
  try {
    body_ = std::make_unique<Body>(ParseJinja(source));
  } catch (const TemplateError& e) {
    Fail("{}: line {}: {}", name_, e.line, e.message);
  }
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::Render(const ValueDict& globals) const {
  Renderer renderer(globals);
  auto root = std::make_shared<Frame>();
  std::string out;
  try {
    renderer.Exec(*body_, root, out);
  } catch (const TemplateError& e) {
    Fail("{}: line {}: {}", name_, e.line, e.message);
  } catch (const RaisedException& e) {
    Fail("{}: {}", name_, e.message);
  }
  return out;
}

}  // namespace bioquant::jinja
