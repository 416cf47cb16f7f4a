// Continuous batching for `bioquant serve`: one thread owns the Engine and a
// DecodeBatch; requests from any HTTP thread queue up and join the running
// batch between decode steps (their prefill runs there, sharing the engine's
// prefix cache), and leave it when they finish or their client goes away.
// Each sequence's text is what the request gives alone (DecodeBatch).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"

namespace bioquant::serve {

// What an HTTP handler waits on: the pieces of text and the results of one
// request's choices, pushed by the scheduler thread.
class Ticket {
 public:
  struct Event {
    int choice = 0;
    std::string text;  // a piece of text (streaming), or empty
    std::optional<GenerateResult> result;  // set when the choice finished
  };

  explicit Ticket(int choices) : choices_(choices) {}
  int choices() const { return choices_; }

  // Waits up to `timeout` for events and returns all that are there; *done
  // tells whether every choice has finished and all its events were taken.
  std::vector<Event> Wait(std::chrono::milliseconds timeout, bool* done);
  // The client went away: the scheduler drops the choices at its next step.
  void Cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Scheduler side.
  void Push(Event e);

 private:
  const int choices_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  int finished_ = 0;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int max_batch = 8;    // sequences decoding together
  int max_queue = 256;  // sequences waiting to join; more are refused
};

// Counters and gauges /metrics reads (any thread).
struct SchedulerStats {
  std::atomic<int64_t> queued{0};     // sequences waiting to join
  std::atomic<int64_t> running{0};    // sequences in the batch
  std::atomic<int64_t> steps{0};      // decode steps taken
  std::atomic<int64_t> step_rows{0};  // sequences summed over steps
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> generated_tokens{0};
  std::atomic<int64_t> cancelled{0};
  // Wall time of the scheduler thread in prefill (sequences joining) and in
  // decode steps: decode throughput = generated tokens / decode time.
  std::atomic<int64_t> prefill_us{0};
  std::atomic<int64_t> decode_us{0};
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const SchedulerOptions& o);
  ~Scheduler();  // finishes nothing: call Drain first for a clean stop

  // Queues one sequence per request (the choices of one HTTP request) and
  // returns their ticket; null when the queue cannot take them all.
  // Requests must have passed Engine::CheckRequest; streaming callbacks are
  // the scheduler's (on_text is replaced).
  std::shared_ptr<Ticket> Submit(std::vector<GenerateRequest> requests,
                                 bool stream);
  // Waits until nothing is queued or running.
  void Drain();
  const SchedulerStats& stats() const { return stats_; }

 private:
  struct Pending {
    GenerateRequest req;
    std::shared_ptr<Ticket> ticket;
    int choice;
  };
  struct Running {
    std::shared_ptr<Ticket> ticket;
    int choice;
  };
  void Loop();

  Engine& engine_;
  const SchedulerOptions opts_;
  SchedulerStats stats_;
  std::mutex mu_;
  std::condition_variable cv_;       // work arrived / shutdown
  std::condition_variable idle_cv_;  // nothing queued or running
  std::deque<Pending> queue_;
  int running_ = 0;  // under mu_, mirrors the batch's live count
  bool shutdown_ = false;
  std::thread thread_;
};

}  // namespace bioquant::serve
