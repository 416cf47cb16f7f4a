// bioquant tokenize: the ids (and pieces) a checkpoint's tokenizer gives a
// text. Needs only the tokenizer files, not config.json or weights.
// --jsonl tokenizes many texts in one run (the cross-check suite compares
// thousands of strings with Hugging Face tokenizers).
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant::cli {
namespace {

int RunTokenize(int argc, char** argv) {
  CLI::App app{"Token ids (and pieces) of a text", "tokenize"};
  std::string model, text, text_file, jsonl;
  bool no_special = false, as_json = false;
  app.add_option("--model", model,
                 "directory with tokenizer.json or tokenizer.model")
      ->required();
  auto* text_opt = app.add_option("--text", text, "text to tokenize");
  auto* file_opt =
      app.add_option("--text-file", text_file, "read the text from this file");
  auto* jsonl_opt = app.add_option(
      "--jsonl", jsonl,
      "file with one JSON string per line; prints one JSON object per line");
  text_opt->excludes(file_opt);
  jsonl_opt->excludes(text_opt)->excludes(file_opt);
  app.add_flag("--no-special", no_special,
               "do not add BOS/EOS (special tokens in the text still match)");
  app.add_flag("--json", as_json,
               "print {\"ids\", \"pieces\", \"decoded\"} as one JSON object");
  if (const int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (!*text_opt && !*file_opt && !*jsonl_opt) {
    std::fprintf(stderr,
                 "bioquant tokenize: error: one of --text, --text-file or "
                 "--jsonl is required\n");
    return 2;
  }
  if (*file_opt) text = ReadFile(text_file);

  const auto tok = Tokenizer::Load(model);
  const auto as_object = [&](const std::vector<int32_t>& ids) {
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) pieces.push_back(tok->Piece(id));
    return nlohmann::json{
        {"ids", ids}, {"pieces", pieces}, {"decoded", tok->Decode(ids)}};
  };
  const auto print = [](const nlohmann::json& j) {
    std::printf("%s\n",
                j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                    .c_str());
  };
  if (*jsonl_opt) {
    std::ifstream in(jsonl);
    if (!in) Fail("--jsonl: cannot open {}", jsonl);
    std::string line;
    for (int line_no = 1; std::getline(in, line); ++line_no) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = ParseJson(line);
      } catch (const nlohmann::json::exception& e) {
        Fail("--jsonl: {} line {}: {}", jsonl, line_no, e.what());
      }
      if (!j.is_string())
        Fail("--jsonl: {} line {}: expected a JSON string", jsonl, line_no);
      print(as_object(tok->Encode(j.get<std::string>(), !no_special)));
    }
    return 0;
  }
  const std::vector<int32_t> ids = tok->Encode(text, !no_special);
  if (as_json) {
    print(as_object(ids));
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
