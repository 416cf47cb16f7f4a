// Helpers shared by the sub-commands: CLI11 parsing with our exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

namespace bioquant::cli {

// Parses argv into app. Returns -1 when the command should continue, or an
// exit code (0 after --help, 2 on a usage error, printed as one line).
inline int ParseArgs(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "bioquant %s: error: %s\n", app.get_name().c_str(),
                 e.what());
    return 2;
  }
  return -1;
}

}  // namespace bioquant::cli
