// Test helper: a program running in the background (a `bioquant serve`, an
// `eval` to interrupt, a Python server), its stderr in a file, stopped and
// reaped when the object goes away so no test leaves a process behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace bioquant::testing {

class Process {
 public:
  // Starts argv[0] with argv (PATH not searched unless argv[0] has no '/').
  // stdout and stderr go to files under `dir`. `env` entries are added
  // ("NAME=value").
  Process(const std::vector<std::string>& argv, const std::string& dir,
          const std::vector<std::string>& env = {})
      : out_(dir + "/stdout.txt"), err_(dir + "/stderr.txt") {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) envs.push_back(*e);
    for (const auto& e : env) envs.push_back(e);
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = argv[0].find('/') == std::string::npos
                       ? posix_spawnp(&pid_, argv[0].c_str(), &fa, nullptr,
                                      args.data(), envp.data())
                       : posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr,
                                     args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
  }
  ~Process() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string Stderr() const { return Read(err_); }
  std::string Stdout() const { return Read(out_); }

  // Waits until stderr matches `re` (returns the first group, or the whole
  // match) or the process ends or `timeout` passes (nullopt).
  std::optional<std::string> WaitForStderr(const std::string& re,
                                           std::chrono::milliseconds timeout) {
    const std::regex rx(re);
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      std::smatch m;
      const std::string text = Stderr();
      if (std::regex_search(text, m, rx)) {
        return m.size() > 1 ? m[1].str() : m[0].str();
      }
      if (Poll()) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

  void Signal(int sig) {
    if (pid_ > 0 && !exited_) kill(pid_, sig);
  }
  // Waits for the exit; the exit code (128 + signal when killed), or
  // nullopt after `timeout` (the process is left running).
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!Poll()) {
      if (std::chrono::steady_clock::now() >= end) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return code_;
  }

 private:
  // True once the process has exited (and was reaped).
  bool Poll() {
    if (exited_) return true;
    if (pid_ <= 0) return exited_ = true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return exited_;
  }
  static std::string Read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  std::string out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
};

}  // namespace bioquant::testing
