// Per-module precision map: which storage format each decoder Linear gets
// when one precision for all of them is not what the user wants (the
// sensitivity-guided mixed precision of `bioquant plan --analysis`).
//
// Text form (a user contract; `--precision-map` of generate, eval, quantize,
// logits and fidelity): comma- or newline-separated rules PATTERN=PRECISION,
// first match wins, '#' starts a comment line. PATTERN matches the module's
// HF name without ".weight" (model.layers.7.mlp.down_proj):
//   *        any run of characters (dots included)
//   A-B      a layer index (decimal number) from A to B inclusive
//   else     the character itself
// e.g. "model.layers.7.*=bf16,model.layers.0-5.*=int8,*=nf4". PRECISION is
// f32, bf16, f16, int8, nf4 or fp4 (llm-int8 changes the activations of a
// whole model: not per module). Modules no rule matches get --precision.
// The argument may also name a file holding the same text.
#pragma once

#include <string>
#include <vector>

namespace bioquant {

struct PrecisionRule {
  std::string pattern;
  std::string precision;
};

struct PrecisionMap {
  std::vector<PrecisionRule> rules;  // in order; the first match wins

  bool empty() const { return rules.empty(); }
  // The precision of the first rule matching `module`, or "" when none does.
  std::string Lookup(const std::string& module) const;
  // The text form (round-trips through ParsePrecisionMap).
  std::string ToString() const;
};

// Whether `name` matches `pattern` (syntax above).
bool MatchModulePattern(const std::string& pattern, const std::string& name);

// Parses the text form; errors name `what` (the flag or file) and the rule.
PrecisionMap ParsePrecisionMap(const std::string& text,
                               const std::string& what);

// `arg` is the text form, or the path of a file holding it (an existing
// file, or "@path"). Errors name --precision-map or the file.
PrecisionMap LoadPrecisionMap(const std::string& arg);

}  // namespace bioquant
