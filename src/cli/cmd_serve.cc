// bioquant serve: an OpenAI-compatible server with continuous batching over
// the engine (src/serve/server.h). SIGTERM or Ctrl-C drains: requests in
// flight are answered, new ones get 503, and the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cli/cli_util.h"
#include "cli/command.h"
#include "serve/server.h"
#include "util/error.h"

namespace bioquant::cli {
namespace {

int RunServe(int argc, char** argv) {
  CLI::App app("Serve a model over the OpenAI HTTP API", "serve");
  ModelFlags mf;
  mf.Add(app);
  mf.AddCache(app);
  serve::ServeOptions so;
  std::string api_key_env;
  uint64_t prefix_cache_mib = 1024;
  app.add_option("--host", so.host,
                 "address to listen on (127.0.0.1: this machine only)")
      ->default_val("127.0.0.1");
  app.add_option("--port", so.port, "TCP port (0: any free port)")
      ->default_val(8080);
  app.add_option("--api-key-env", api_key_env,
                 "name of an environment variable holding the API key that "
                 "clients must send (Authorization: Bearer)");
  app.add_option("--served-model-name", so.model_name,
                 "model name in /v1/models and requests (default: the "
                 "model directory's name)");
  app.add_option("--max-batch", so.max_batch,
                 "sequences decoding together (continuous batching)")
      ->default_val(8);
  app.add_option("--max-queue", so.max_queue,
                 "sequences waiting to join; more are refused with 429")
      ->default_val(256);
  app.add_option("--ctx", so.context,
                 "positions per sequence: prompt + max_tokens (0: the "
                 "model's max_position_embeddings)")
      ->default_val(0);
  app.add_option("--max-body-bytes", so.max_body_bytes,
                 "largest request body accepted (413 beyond)")
      ->default_val(4u << 20);
  app.add_option("--prefix-cache-mib", prefix_cache_mib,
                 "KV cache kept for prompts that start alike (0: off)")
      ->default_val(1024);
  app.add_option("--date", so.date,
                 "YYYY-MM-DD for strftime_now in chat templates (default: "
                 "today)");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (!api_key_env.empty()) {
    const char* key = std::getenv(api_key_env.c_str());
    if (!key || !*key) {
      Fail("--api-key-env {}: the environment variable is not set or empty",
           api_key_env);
    }
    so.api_key = key;
  }
  if (so.port < 0 || so.port > 65535) Fail("--port {}: not a port", so.port);
  if (so.model_name.empty()) {
    so.model_name =
        std::filesystem::path(mf.model).lexically_normal().filename().string();
    if (so.model_name.empty()) so.model_name = "model";
  }

  // Signals go to the watcher thread below, not to whichever thread the
  // kernel picks: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  EngineOptions eo = mf.ToOptions();
  eo.prefix_cache_bytes = prefix_cache_mib << 20;
  auto engine = Engine::Load(eo);
  serve::Server server(*engine, so);
  const int port = server.Bind();
  std::fprintf(stderr,
               "bioquant serve: listening on http://%s:%d (model '%s', "
               "precision %s, context %lld, max batch %d)\n",
               so.host.c_str(), port, so.model_name.c_str(),
               engine->weights().precision.c_str(),
               static_cast<long long>(server.context()), so.max_batch);
  std::atomic<bool> stopping{false};
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    stopping = true;
    std::fprintf(stderr,
                 "bioquant serve: %s: finishing requests in flight, then "
                 "stopping (again to stop now)\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    std::thread([&] {
      int again = 0;
      sigwait(&signals, &again);
      std::_Exit(130);
    }).detach();
    server.Shutdown();
  });
  server.Run();
  // The listener ended on its own (an error): wake the watcher.
  if (!stopping) pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::fprintf(stderr, "bioquant serve: stopped\n");
  return 0;
}

BIOQUANT_COMMAND("serve",
                 "OpenAI-compatible HTTP server with continuous batching",
                 RunServe);

}  // namespace
}  // namespace bioquant::cli
