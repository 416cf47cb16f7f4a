// bioquant: the single entry point. Library code throws; only here do errors
// become one line on stderr and an exit code (1 = error, 2 = bad usage).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cli/command.h"
#include "engine/gguf_import.h"
#include "kernels/isa.h"
#include "util/error.h"
#include "util/version.h"

namespace bioquant::cli {

std::vector<Command>& Commands() {
  static std::vector<Command> commands;
  return commands;
}

}  // namespace bioquant::cli

namespace {

void PrintUsage() {
  auto cmds = bioquant::cli::Commands();
  std::sort(cmds.begin(), cmds.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::printf(
      "bioquant %s — quantized LLMs for biomedical NLP\n\n"
      "usage: bioquant <command> [flags]   (bioquant <command> --help)\n\n",
      bioquant::Version());
  for (const auto& c : cmds) {
    std::printf("  %-10s %s\n", c.name.c_str(), c.help.c_str());
  }
}

// Every command's --model (and --tokenizer) may name a .gguf file: it is
// imported once into the cache and the command sees the checkpoint
// directory, so no command needs to know about GGUF.
void ResolveGgufModels(std::vector<std::string>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    for (const char* flag : {"--model", "--tokenizer"}) {
      const std::string f = flag, eq = f + "=";
      std::string* value = nullptr;
      std::string prefix;
      if (args[i] == f && i + 1 < args.size()) {
        value = &args[i + 1];
      } else if (args[i].rfind(eq, 0) == 0) {
        prefix = eq;
        args[i] = args[i].substr(eq.size());
        value = &args[i];
      }
      if (!value) continue;
      *value = prefix + bioquant::ResolveModelPath(*value);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("bioquant %s (%s)\n", bioquant::Version(),
                bioquant::GitRevision());
    return 0;
  }
  for (const auto& c : bioquant::cli::Commands()) {
    if (c.name != argv[1]) continue;
    try {
      bioquant::ApplyIsaFromEnvironment();  // before any kernel dispatches
      std::vector<std::string> args(argv + 1, argv + argc);
      ResolveGgufModels(args);
      std::vector<char*> ptrs;
      for (auto& a : args) ptrs.push_back(a.data());
      ptrs.push_back(nullptr);
      return c.run(static_cast<int>(args.size()), ptrs.data());
    } catch (const CLI::ParseError& e) {
      std::fprintf(stderr, "bioquant %s: error: %s\n", argv[1], e.what());
      return 2;
    } catch (const bioquant::Error& e) {
      std::fprintf(stderr, "bioquant %s: error: %s\n", argv[1], e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bioquant %s: internal error: %s\n", argv[1],
                   e.what());
      return 3;
    }
  }
  std::fprintf(stderr,
               "bioquant: error: unknown command '%s' (see bioquant --help)\n",
               argv[1]);
  return 2;
}
