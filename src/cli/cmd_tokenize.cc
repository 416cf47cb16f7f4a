// bioquant tokenize: the ids (and pieces) a checkpoint's tokenizer gives a
// text. Needs only the tokenizer files, not config.json or weights.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

namespace bioquant::cli {
namespace {

int RunTokenize(int argc, char** argv) {
  CLI::App app{"Token ids (and pieces) of a text", "tokenize"};
  std::string model, text, text_file;
  bool no_special = false, as_json = false;
  app.add_option("--model", model,
                 "directory with tokenizer.json or tokenizer.model")
      ->required();
  auto* text_opt = app.add_option("--text", text, "text to tokenize");
  auto* file_opt =
      app.add_option("--text-file", text_file, "read the text from this file");
  text_opt->excludes(file_opt);
  app.add_flag("--no-special", no_special,
               "do not add BOS/EOS (special tokens in the text still match)");
  app.add_flag("--json", as_json,
               "print {\"ids\", \"pieces\", \"decoded\"} as one JSON object");
  if (const int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (!*text_opt && !*file_opt) {
    std::fprintf(stderr,
                 "bioquant tokenize: error: one of --text or --text-file is "
                 "required\n");
    return 2;
  }
  if (*file_opt) text = ReadFile(text_file);

  const auto tok = Tokenizer::Load(model);
  const std::vector<int32_t> ids = tok->Encode(text, !no_special);
  if (as_json) {
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) pieces.push_back(tok->Piece(id));
    const nlohmann::json out = {
        {"ids", ids}, {"pieces", pieces}, {"decoded", tok->Decode(ids)}};
    std::printf("%s\n", out.dump(-1, ' ', false,
                                 nlohmann::json::error_handler_t::replace)
                            .c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) line += ' ';
      line += std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

BIOQUANT_COMMAND("tokenize", "token ids (and pieces) of a text", RunTokenize);

}  // namespace bioquant::cli
