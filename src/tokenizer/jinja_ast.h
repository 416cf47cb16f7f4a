// Syntax tree of the Jinja subset, produced by ParseJinja (jinja_parser.cc)
// and walked by the renderer (jinja_render.cc). Node shapes follow Jinja2's
// own parser (jinja2/parser.py) so precedence and scoping match it.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace bioquant::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kGetAttr,   // args[0].name
    kGetItem,   // args[0][args[1]]
    kSlice,     // args[0][args[1]:args[2]:args[3]] (each bound may be null)
    kCall,      // args[0](args[1..], kwargs)
    kFilter,    // args[0] | name(args[1..], kwargs)
    kTest,      // args[0] is name(args[1..], kwargs)
    kNot,       // not args[0]
    kNeg,       // -args[0]
    kPos,       // +args[0]
    kBinary,    // args[0] <name> args[1]: + - * / // % ** ~ in notin
    kAnd,       // args[0] and args[1]
    kOr,        // args[0] or args[1]
    kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...
    kCond,      // args[0] if args[1] else args[2] (args[2] may be null)
    kList,      // [args...]
    kTuple,     // (args...)
    kDict,      // {args[0]: args[1], args[2]: args[3], ...}
    kCaptured,  // the text captured by a {% filter %} / {% set x | f %} block
  };

  Kind kind = Kind::kLiteral;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches (cond, body)..., else_body
    kFor,       // for targets in expr [if cond]: body, else_body
    kSet,       // set targets = expr | set ns_name.attr = expr
    kSetBlock,  // set targets [| filter] : body ; expr = filter chain or null
    kMacro,     // macro name(params): body
    kBreak,
    kContinue,
    kFilterBlock,  // filter expr : body
    kWith,         // with params: body (a new scope; also {% generation %})
  };

  Kind kind = Kind::kText;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<std::string> targets;
  std::string attr;  // kSet: `set targets[0].attr = ...` when non-empty
  bool recursive = false;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro/with
};

// Lexes and parses a template the way transformers configures Jinja2
// (trim_blocks, lstrip_blocks, loopcontrols). Throws TemplateError with the
// line of the problem.
Body ParseJinja(const std::string& source);

}  // namespace bioquant::jinja
