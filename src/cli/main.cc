// bioquant: the single entry point. Library code throws; only here do errors
// become one line on stderr and an exit code (1 = error, 2 = bad usage).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>

#include "cli/command.h"
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
      return c.run(argc - 1, argv + 1);
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
