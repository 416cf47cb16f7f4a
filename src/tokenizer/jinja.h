// A Jinja2-subset template engine, enough to run real HF chat templates
// byte-exactly as transformers renders them (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols). Internal to the tokenizer layer;
// callers use RenderChatTemplate (chat_template.h).
#pragma once

#include <memory>
#include <string>

#include "tokenizer/jinja_value.h"

namespace bioquant::jinja {

struct Stmt;

// What raise_exception(msg) throws through the renderer: the message is the
// template's own.
struct RaisedException {
  std::string message;
};

class Template {
 public:
  // Parses `source`; throws bioquant::Error("<name>: line L: ...").
  Template(const std::string& source, std::string name);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with `globals` as the template's variables (on top of Jinja2's
  // range/namespace/dict). Throws bioquant::Error naming the source and line;
  // a RaisedException becomes Error("<name>: <message>").
  std::string Render(const ValueDict& globals) const;

 private:
  std::string name_;
  std::unique_ptr<std::vector<std::unique_ptr<Stmt>>> body_;
};

}  // namespace bioquant::jinja
