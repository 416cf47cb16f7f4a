// Sub-command registry: each src/cli/cmd_<name>.cc registers itself with
// BIOQUANT_COMMAND, so adding a command touches no shared file.
#pragma once

#include <string>
#include <vector>

namespace bioquant::cli {

// Runs a sub-command; argv[0] is the sub-command name. Returns the exit code.
// May throw bioquant::Error (main prints it as one line, exit 1).
using CommandFn = int (*)(int argc, char** argv);

struct Command {
  std::string name;
  std::string help;
  CommandFn run;
};

std::vector<Command>& Commands();

struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* help, CommandFn fn) {
    Commands().push_back({name, help, fn});
  }
};

}  // namespace bioquant::cli

#define BQ_CONCAT_INNER(a, b) a##b
#define BQ_CONCAT(a, b) BQ_CONCAT_INNER(a, b)
#define BIOQUANT_COMMAND(name, help, fn)                                       \
  static ::bioquant::cli::CommandRegistrar BQ_CONCAT(bq_registrar_, __LINE__)( \
      name, help, fn)
