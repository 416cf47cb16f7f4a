// Test helpers: where the shared oracles are, and running the bioquant binary.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace bioquant::testing {

// ../shared next to the source tree, or $BIOQUANT_SHARED.
inline std::string SharedDir() {
  if (const char* env = std::getenv("BIOQUANT_SHARED")) return env;
  return std::string(BIOQUANT_SOURCE_DIR) + "/../shared";
}

// Built with AddressSanitizer (scripts/test.sh's second build): memory
// figures then include its shadow memory and quarantine.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kUnderAsan = true;
#else
inline constexpr bool kUnderAsan = false;
#endif
#else
inline constexpr bool kUnderAsan = false;
#endif

inline std::string OracleDir() { return SharedDir() + "/oracles"; }
inline std::string BionlpDir() { return SharedDir() + "/data/bionlp"; }
inline std::string SourceDir() { return BIOQUANT_SOURCE_DIR; }

// A fresh temporary directory per call, removed by the OS test tmp cleanup.
inline std::string TempDir(const std::string& tag) {
  namespace fs = std::filesystem;
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(base ? base : "/tmp") + "/bq_" + tag + "_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) return "";
  return std::string(buf.data());
}

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string ShellQuote(const std::string& s) {
  std::string r = "'";
  for (char c : s) {
    if (c == '\'')
      r += "'\\''";
    else
      r += c;
  }
  return r + "'";
}

// Runs the built bioquant binary with args; captures stdout and stderr.
// Every bioquant a test starts (RunBioquant, Process) inherits a private
// XDG_CACHE_HOME: the quantized-weights cache of generate/eval/serve stays
// in the test's temporary tree, and no entry from the user's cache can
// change a test's result. Set once, before main.
// The user's own cache folder stays known to tests that read from it (the
// real model scripts/models.sh put there) as BIOQUANT_USER_CACHE_HOME.
inline const bool kPrivateWeightCache = [] {
  std::string user;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    user = x;
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    user = std::string(h) + "/.cache";
  }
  setenv("BIOQUANT_USER_CACHE_HOME", user.c_str(), 0);
  setenv("XDG_CACHE_HOME", TempDir("xdgcache").c_str(), 1);
  return true;
}();

// `shell_prefix` runs first in the same shell, e.g. "ulimit -f 64; " to
// make the disk look full to bioquant (RLIMIT_FSIZE; with SIGXFSZ ignored a
// write past it fails with EFBIG, as on a full disk it fails with ENOSPC).
inline RunResult RunBioquant(const std::vector<std::string>& args,
                             const std::string& shell_prefix = "") {
  const std::string err_file = TempDir("stderr") + "/err.txt";
  std::string cmd = shell_prefix + ShellQuote(BIOQUANT_BINARY);
  for (const auto& a : args) cmd += " " + ShellQuote(a);
  cmd += " 2>" + ShellQuote(err_file);
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream e(err_file);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  return r;
}

// The tiny synthetic model `bioquant synth --preset tiny --seed SEED
// [extra flags]` writes, made once per test binary and set of flags under
// TempDir(tag). A synth that fails stops the binary with its error: every
// test after it would otherwise fail for an unrelated-looking reason.
inline const std::string& SynthModel(
    const std::string& tag, int seed,
    const std::vector<std::string>& extra = {}) {
  static std::map<std::string, std::string> made;
  std::string key = tag + " " + std::to_string(seed);
  for (const auto& e : extra) key += " " + e;
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  const std::string dir = TempDir(tag) + "/m";
  std::vector<std::string> args = {
      "synth",  "--preset",          "tiny", "--out", dir,
      "--seed", std::to_string(seed)};
  args.insert(args.end(), extra.begin(), extra.end());
  const RunResult r = RunBioquant(args);
  if (r.exit_code != 0) {
    std::fprintf(stderr, "SynthModel(%s): bioquant synth failed: %s\n",
                 key.c_str(), r.err.c_str());
    std::abort();
  }
  return made.emplace(key, dir).first->second;
}

}  // namespace bioquant::testing

// Skips the current test when the shared oracles are not present.
#define BIOQUANT_REQUIRE_SHARED()                                            \
  do {                                                                       \
    if (!std::filesystem::exists(::bioquant::testing::SharedDir())) {        \
      GTEST_SKIP() << "../shared not found (set BIOQUANT_SHARED); skipping"; \
    }                                                                        \
  } while (0)
