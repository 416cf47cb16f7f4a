// bioquant import-gguf: a llama.cpp GGUF file -> a Hugging Face checkpoint.
#include "cli/cli_util.h"
#include "cli/command.h"
#include "engine/gguf_import.h"

namespace bioquant::cli {
namespace {

int RunImportGguf(int argc, char** argv) {
  CLI::App app(
      "Import a GGUF checkpoint (llama, qwen2) as a Hugging Face checkpoint "
      "directory: dequantized weights, config.json, tokenizer files",
      "import-gguf");
  GgufImportOptions o;
  bool verbose = false;
  app.add_option("file", o.gguf_path, "the .gguf file")->required();
  app.add_option("--out", o.out_dir, "output directory (new or empty)")
      ->required();
  app.add_option("--dtype", o.dtype,
                 "f32 (the dequantized values exactly) | bf16")
      ->default_val("f32");
  app.add_flag("--verbose", verbose, "list every tensor");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  o.quiet = !verbose;
  ImportGguf(o);
  std::fprintf(stderr, "bioquant import-gguf: wrote %s (%s)\n",
               o.out_dir.c_str(), o.dtype.c_str());
  return 0;
}

BIOQUANT_COMMAND("import-gguf",
                 "import a GGUF file (llama.cpp) as a Hugging Face checkpoint",
                 RunImportGguf);

}  // namespace
}  // namespace bioquant::cli
