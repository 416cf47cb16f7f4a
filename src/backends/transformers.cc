#include "backends/transformers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "backends/local.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"
#include "util/sys.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;

constexpr int kProtocol = 1;

// Precisions the worker knows (see python/bioquant_worker.py).
bool IsWorkerPrecision(const std::string& p) {
  for (const char* k : {"f32", "bf16", "f16", "int8", "llm-int8", "nf4", "fp4"})
    if (p == k) return true;
  return false;
}

bool NeedsBitsandbytes(const std::string& p) {
  return p == "int8" || p == "llm-int8" || p == "nf4" || p == "fp4";
}

std::string ExecutableDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// The last non-empty line of a file (the worker's stderr), at most 300
// characters; "" when none.
std::string LastLine(const std::string& path) {
  std::string text;
  try {
    text = ReadFile(path);
  } catch (const Error&) {
    return "";
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  const size_t nl = text.rfind('\n');
  std::string line = nl == std::string::npos ? text : text.substr(nl + 1);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

// One worker process: its stdin and stdout are one end of a socket pair
// (writes use MSG_NOSIGNAL, so a dead worker is an error, never SIGPIPE);
// its stderr goes to a temporary file whose last line names a crash.
class Worker {
 public:
  Worker(const std::string& python, const std::string& script,
         const std::atomic<bool>* stop)
      : stop_(stop) {
    char tmpl[] = "/tmp/bioquant-worker-XXXXXX";
    const int err_fd = mkstemp(tmpl);
    if (err_fd < 0) Fail("transformers worker: cannot create a temporary file");
    stderr_path_ = tmpl;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      ::close(err_fd);
      Fail("transformers worker: socketpair: {}", std::strerror(errno));
    }
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) {
      ::close(err_fd);
      ::close(sv[0]);
      ::close(sv[1]);
      Fail("transformers worker: fork: {}", std::strerror(errno));
    }
    if (pid_ == 0) {
      // Its own process group: Ctrl-C reaches bioquant, which stops the
      // worker itself; and it dies with bioquant.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(sv[1], 0);
      dup2(sv[1], 1);
      dup2(err_fd, 2);
      signal(SIGINT, SIG_IGN);
      signal(SIGPIPE, SIG_DFL);
      const char* argv[] = {python.c_str(), "-u", script.c_str(), nullptr};
      execvp(argv[0], const_cast<char* const*>(argv));
      std::fprintf(stderr, "cannot run %s: %s\n", python.c_str(),
                   std::strerror(errno));
      _exit(127);
    }
    ::close(err_fd);
    ::close(sv[1]);
    fd_ = sv[0];
  }

  ~Worker() { Kill(); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Sends one request line. False when the worker is gone.
  bool Send(const nlohmann::json& j) {
    const std::string line =
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    size_t off = 0;
    while (off < line.size()) {
      const ssize_t n =
          ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  enum class Read { kLine, kMalformed, kDied, kStopped };

  // The next answer line. kMalformed: a line that is not a JSON object
  // (*raw holds it); kDied: end of the stream (the worker exited);
  // kStopped: the stop flag was raised while waiting.
  Read Next(nlohmann::json* out, std::string* raw) {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        *raw = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (raw->empty()) continue;
        *out = ParseJson(*raw, /*allow_exceptions=*/false);
        if (out->is_discarded() || !out->is_object()) return Read::kMalformed;
        return Read::kLine;
      }
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, 200);
      if (stop_ && *stop_) return Read::kStopped;
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char tmp[65536];
      const ssize_t n = ::read(fd_, tmp, sizeof(tmp));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Read::kDied;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  // How the process ended (after kDied): "exited with status 1" / "killed by
  // signal 9", plus the last line it wrote to stderr.
  std::string DeathCause() {
    Reap(true);
    std::string how = "ended";
    if (WIFEXITED(status_)) {
      how = fmt::format("exited with status {}", WEXITSTATUS(status_));
    } else if (WIFSIGNALED(status_)) {
      how = fmt::format("was killed by signal {}", WTERMSIG(status_));
    }
    const std::string last = LastLine(stderr_path_);
    return last.empty() ? how : how + " (last stderr line: " + last + ")";
  }
  std::string StderrLastLine() const { return LastLine(stderr_path_); }

  // Asks it to quit, then kills its process group if it lingers.
  void Kill() {
    if (pid_ > 0 && !reaped_) {
      Send({{"op", "quit"}});
      ::shutdown(fd_, SHUT_WR);
      Stopwatch sw;
      while (!Reap(false) && sw.ElapsedMs() < 2000) ::usleep(20000);
      if (!reaped_) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        Reap(true);
      }
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!stderr_path_.empty()) ::unlink(stderr_path_.c_str());
    stderr_path_.clear();
  }
  // Kills at once (Ctrl-C, a stuck worker).
  void KillNow() {
    if (pid_ > 0 && !reaped_) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      Reap(true);
    }
    Kill();
  }

 private:
  bool Reap(bool block) {
    if (reaped_ || pid_ <= 0) return true;
    const pid_t r = ::waitpid(pid_, &status_, block ? 0 : WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) reaped_ = true;
    return reaped_;
  }

  const std::atomic<bool>* stop_;
  pid_t pid_ = -1;
  int fd_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  std::string buf_;
  std::string stderr_path_;
};

// "ImportError: No module named 'torch'" from an error line.
std::string ErrorText(const nlohmann::json& j) {
  const nlohmann::json e = j.value("error", nlohmann::json::object());
  if (!e.is_object()) return e.dump();
  return fmt::format("{}: {}", e.value("type", "Error"),
                     e.value("message", std::string("(no message)")));
}

// What the backends share: the options and the versions the first worker
// reported.
struct Shared {
  TransformersBackendOptions o;
  nlohmann::json hello;  // the first worker's hello answer

  void Log(const std::string& line) const {
    if (o.log) {
      o.log(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }
};

// A started worker that answered hello with a usable stack.
std::unique_ptr<Worker> StartWorker(const Shared& s, nlohmann::json* hello) {
  auto w = std::make_unique<Worker>(s.o.python, s.o.worker, s.o.stop);
  const std::string who =
      fmt::format("transformers worker ({} {})", s.o.python, s.o.worker);
  if (!w->Send({{"op", "hello"}})) Fail("{}: {}", who, w->DeathCause());
  nlohmann::json j;
  std::string raw;
  switch (w->Next(&j, &raw)) {
    case Worker::Read::kLine:
      break;
    case Worker::Read::kMalformed:
      Fail("{}: answered hello with a line that is not a JSON object: {}", who,
           raw.substr(0, 200));
    case Worker::Read::kDied:
      Fail("{} {}", who, w->DeathCause());
    case Worker::Read::kStopped:
      w->KillNow();
      Fail("interrupted");
  }
  if (!j.value("ok", false)) Fail("{}: {}", who, ErrorText(j));
  if (j.value("protocol", 0) != kProtocol) {
    Fail(
        "{}: speaks protocol {}, this bioquant speaks {} (use the worker "
        "installed with this binary)",
        who, j.value("protocol", 0), kProtocol);
  }
  const nlohmann::json v = j.value("versions", nlohmann::json::object());
  for (const char* lib : {"torch", "transformers"}) {
    if (!v.contains(lib) || !v[lib].is_string()) {
      Fail(
          "{}: {} is not installed for {} (bash scripts/pystack.sh makes a "
          "venv with it, or give --python)",
          who, lib, s.o.python);
    }
  }
  for (const auto& p : s.o.precisions) {
    if (NeedsBitsandbytes(p) &&
        (!v.contains("bitsandbytes") || !v["bitsandbytes"].is_string())) {
      Fail("{}: precision {} needs bitsandbytes, which is not installed for {}",
           who, p, s.o.python);
    }
  }
  *hello = j;
  return w;
}

class TransformersBackend : public Backend {
 public:
  TransformersBackend(const Shared& s, std::string label,
                      std::unique_ptr<Worker> w)
      : s_(s), label_(std::move(label)), w_(std::move(w)) {
    Load();
  }
  ~TransformersBackend() override {
    if (w_) w_->Kill();
  }

  bool RenderChat(const nlohmann::json& messages, const std::string& date,
                  std::string* out) const override {
    // transformers' strftime_now reads the clock: `date` cannot be fixed.
    if (!has_template_) return false;
    const nlohmann::json j =
        Call({{"op", "render"}, {"messages", messages}}, "render");
    if (!j.value("ok", false)) {
      Fail("transformers worker ({}): {}", label_, ErrorText(j));
    }
    if (!j.contains("text") || !j["text"].is_string()) return false;
    *out = j["text"].get<std::string>();
    return true;
  }

  std::vector<BackendResult> Generate(
      const std::vector<BackendRequest>& requests,
      const OnResult& on_result) override {
    std::vector<BackendResult> out(requests.size());
    std::vector<bool> done(requests.size(), false);
    for (int restarts = 0;; ++restarts) {
      // The requests still to do, in order; the worker numbers them 0..n-1.
      std::vector<size_t> todo;
      nlohmann::json reqs = nlohmann::json::array();
      for (size_t i = 0; i < requests.size(); ++i) {
        if (done[i]) continue;
        const BackendRequest& r = requests[i];
        todo.push_back(i);
        reqs.push_back({{"text", r.text},
                        {"add_special_tokens", r.add_special_tokens},
                        {"max_new_tokens", r.max_new_tokens},
                        {"temperature", r.temperature},
                        {"top_p", r.top_p},
                        {"seed", r.seed},
                        {"stop", r.stop}});
      }
      if (todo.empty()) break;
      std::string died;
      if (!w_->Send({{"op", "generate"}, {"requests", reqs}})) {
        died = w_->DeathCause();
      }
      while (died.empty()) {
        nlohmann::json j;
        std::string raw;
        const Worker::Read r = w_->Next(&j, &raw);
        if (r == Worker::Read::kStopped) {
          w_->KillNow();
          Fail("interrupted");
        }
        if (r == Worker::Read::kDied) {
          died = w_->DeathCause();
          break;
        }
        if (r == Worker::Read::kMalformed) {
          Fail(
              "transformers worker ({}): a line that is not a JSON object: "
              "{}",
              label_, raw.substr(0, 200));
        }
        if (!j.value("ok", false)) {
          Fail("transformers worker ({}): {}", label_, ErrorText(j));
        }
        const std::string op = j.value("op", "");
        if (op == "done") {
          ReadMemory(j);
          break;
        }
        if (op != "result") {
          Fail("transformers worker ({}): unexpected answer '{}' to generate",
               label_, op);
        }
        const int64_t k = j.value("index", int64_t{-1});
        if (k < 0 || static_cast<size_t>(k) >= todo.size() || done[todo[k]]) {
          Fail("transformers worker ({}): result for request {} of {}", label_,
               k, todo.size());
        }
        const size_t i = todo[k];
        BackendResult& b = out[i];
        try {
          b.text = j.at("text").get<std::string>();
          b.finish_reason = j.at("finish_reason").get<std::string>();
          b.tokens_in = j.value("tokens_in", int64_t{0});
          b.tokens_out = j.value("tokens_out", int64_t{0});
          b.prefill_ms = j.value("prefill_ms", 0.0);
          b.decode_ms = j.value("decode_ms", 0.0);
          b.latency_ms = j.value("latency_ms", 0.0);
        } catch (const nlohmann::json::exception&) {
          Fail(
              "transformers worker ({}): a result without text or "
              "finish_reason: {}",
              label_, raw.substr(0, 200));
        }
        done[i] = true;
        if (on_result) on_result(i, b);
      }
      if (died.empty()) continue;  // a fresh round finds nothing left
      if (restarts >= s_.o.max_restarts) {
        Fail("transformers worker ({}) {}; gave up after {} restarts", label_,
             died, restarts);
      }
      s_.Log(fmt::format(
          "transformers: the {} worker {}; restarting it ({} of {})", label_,
          died, restarts + 1, s_.o.max_restarts));
      // The peak so far stays (the new process starts low).
      nlohmann::json hello;
      w_ = StartWorker(s_, &hello);
      Load();
    }
    return out;
  }

  std::string Compute() const override { return compute_; }
  std::optional<BackendMemory> Memory() const override { return memory_; }
  int threads() const override { return s_.o.threads; }

 private:
  // One request, one answer line (not generate).
  nlohmann::json Call(const nlohmann::json& req, const char* what) const {
    std::string died;
    if (!w_->Send(req)) died = w_->DeathCause();
    nlohmann::json j;
    std::string raw;
    if (died.empty()) {
      switch (w_->Next(&j, &raw)) {
        case Worker::Read::kLine:
          return j;
        case Worker::Read::kMalformed:
          Fail(
              "transformers worker ({}): answered {} with a line that is "
              "not a JSON object: {}",
              label_, what, raw.substr(0, 200));
        case Worker::Read::kStopped:
          w_->KillNow();
          Fail("interrupted");
        case Worker::Read::kDied:
          died = w_->DeathCause();
      }
    }
    Fail("transformers worker ({}) {} during {}", label_, died, what);
  }

  void Load() {
    const nlohmann::json j = Call({{"op", "load"},
                                   {"model", s_.o.model_dir},
                                   {"precision", label_},
                                   {"compute_dtype", s_.o.compute_dtype},
                                   {"device", s_.o.device},
                                   {"threads", s_.o.threads}},
                                  "load");
    if (!j.value("ok", false)) {
      Fail("transformers worker: loading {} at {}: {}", s_.o.model_dir, label_,
           ErrorText(j));
    }
    compute_ = j.value("compute", label_);
    has_template_ = j.value("has_chat_template", false);
    ReadMemory(j);
  }

  // Keeps the largest figures seen (a restarted worker starts low again).
  void ReadMemory(const nlohmann::json& j) {
    if (!j.contains("memory") || !j["memory"].is_object()) return;
    const nlohmann::json& m = j["memory"];
    BackendMemory b = memory_.value_or(BackendMemory{});
    const bool gpu = m.contains("gpu_allocated_peak_bytes");
    uint64_t peak = 0;
    if (gpu) {
      const bool reserved = s_.o.gpu_memory == "reserved";
      peak = m.value(
          reserved ? "gpu_reserved_peak_bytes" : "gpu_allocated_peak_bytes",
          uint64_t{0});
      b.source = reserved ? "gpu-reserved" : "gpu-allocated";
    } else {
      peak = m.value("cpu_peak_rss_bytes", uint64_t{0});
      b.source = "cpu-rss";
    }
    b.peak_rss_bytes = std::max(b.peak_rss_bytes, peak);
    b.weights_bytes = m.value("footprint_bytes", b.weights_bytes);
    memory_ = b;
  }

  const Shared& s_;
  const std::string label_;
  // Mutable: RenderChat (const) talks to the worker too.
  mutable std::unique_ptr<Worker> w_;
  std::string compute_;
  bool has_template_ = false;
  std::optional<BackendMemory> memory_;
};

class TransformersBackendSet : public BackendSet {
 public:
  explicit TransformersBackendSet(TransformersBackendOptions o) {
    s_.o = std::move(o);
  }

  std::string Fingerprint() override {
    // The stack is checked before the store is touched; the worker that
    // answered is kept for the first precision.
    spare_ = StartWorker(s_, &s_.hello);
    const nlohmann::json& v = s_.hello["versions"];
    auto ver = [&](const char* k) {
      return v.contains(k) && v[k].is_string() ? v[k].get<std::string>()
                                               : std::string("not installed");
    };
    s_.Log(fmt::format(
        "transformers: python {} ({}), torch {}, transformers {}, "
        "bitsandbytes {}; device {}{}",
        ver("python"), s_.o.python, ver("torch"), ver("transformers"),
        ver("bitsandbytes"), s_.hello.value("device", "?"),
        s_.hello.value("device_name", "").empty()
            ? ""
            : " (" + s_.hello.value("device_name", "") + ")"));
    return ModelFingerprint(s_.o.model_dir);
  }
  nlohmann::json Config() const override {
    // The compute dtype changes 8/4-bit completions; the device may too.
    return {{"backend", "transformers"},
            {"compute_dtype", s_.o.compute_dtype},
            {"device", s_.o.device}};
  }
  nlohmann::json Manifest() const override {
    return {{"model", s_.o.model_dir},
            {"run",
             {{"backend", "transformers"},
              {"python", s_.o.python},
              {"worker", s_.o.worker},
              {"versions", s_.hello.value("versions", nlohmann::json())},
              {"device", s_.hello.value("device", "")},
              {"device_name", s_.hello.value("device_name", "")},
              {"gpu_memory", s_.o.gpu_memory},
              {"threads", s_.o.threads}}}};
  }
  std::unique_ptr<Backend> Open(const std::string& label) override {
    std::unique_ptr<Worker> w = std::move(spare_);
    if (!w) {
      nlohmann::json hello;
      w = StartWorker(s_, &hello);
    }
    return std::make_unique<TransformersBackend>(s_, label, std::move(w));
  }

 private:
  Shared s_;
  std::unique_ptr<Worker> spare_;
};

}  // namespace

std::string DefaultWorkerPython() {
  // Same rule as scripts/pyenv_path.sh.
  std::string venv;
  if (const char* v = std::getenv("BIOQUANT_VENV"); v && *v) {
    venv = v;
  } else {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    const std::string cache = xdg && *xdg ? std::string(xdg)
                              : home      ? std::string(home) + "/.cache"
                                          : std::string();
    if (!cache.empty()) venv = cache + "/bioquant/venv";
  }
  if (!venv.empty() && ::access((venv + "/bin/python").c_str(), X_OK) == 0 &&
      FileExists(venv + "/.bioquant-pystack")) {
    return venv + "/bin/python";
  }
  return "python3";
}

std::string FindWorkerScript() {
  constexpr const char* kName = "bioquant_worker.py";
  if (const char* w = std::getenv("BIOQUANT_WORKER"); w && *w) {
    if (!FileExists(w)) Fail("--worker: BIOQUANT_WORKER={}: file not found", w);
    return w;
  }
  std::vector<std::string> candidates;
  const std::string dir = ExecutableDir();
  if (!dir.empty()) {
    candidates.push_back(dir + "/" + kName);
    candidates.push_back(dir + "/../share/bioquant/" + kName);
  }
#ifdef BIOQUANT_SOURCE_DIR
  candidates.push_back(std::string(BIOQUANT_SOURCE_DIR) + "/python/" + kName);
#endif
  for (const auto& c : candidates) {
    if (FileExists(c)) return fs::path(c).lexically_normal().string();
  }
  Fail(
      "--worker: {} not found beside the executable ({}) nor in its "
      "share/bioquant; give --worker PATH",
      kName, dir);
}

std::unique_ptr<BackendSet> MakeTransformersBackendSet(
    const TransformersBackendOptions& in) {
  TransformersBackendOptions o = in;
  if (o.model_dir.empty()) Fail("--model is required");
  if (!IsDirectory(o.model_dir))
    Fail("--model: {}: model directory not found", o.model_dir);
  if (!FileExists(o.model_dir + "/config.json"))
    Fail("--model: {}: no config.json", o.model_dir);
  if (o.precisions.empty()) Fail("--precisions: no precision given");
  for (const auto& p : o.precisions) {
    if (!IsWorkerPrecision(p)) {
      Fail(
          "--precisions: {} is not a transformers precision (f32, bf16, f16, "
          "int8, llm-int8, nf4, fp4)",
          p);
    }
  }
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
    Fail("--device {}: expected auto, cpu or cuda", o.device);
  if (o.compute_dtype != "bf16" && o.compute_dtype != "f16" &&
      o.compute_dtype != "f32") {
    Fail("--compute-dtype {}: expected bf16, f16 or f32", o.compute_dtype);
  }
  if (o.gpu_memory != "allocated" && o.gpu_memory != "reserved")
    Fail("--gpu-memory {}: expected allocated or reserved", o.gpu_memory);
  if (o.threads < 0) Fail("--threads must be >= 0");
  if (o.max_restarts < 0) Fail("--worker-restarts must be >= 0");
  if (o.python.empty()) o.python = DefaultWorkerPython();
  if (o.worker.empty()) {
    o.worker = FindWorkerScript();
  } else if (!FileExists(o.worker)) {
    Fail("--worker: {}: file not found", o.worker);
  }
  return std::make_unique<TransformersBackendSet>(std::move(o));
}

}  // namespace bioquant
