#include "serve/scheduler.h"

#include <map>

#include "util/sys.h"

namespace bioquant::serve {

std::vector<Ticket::Event> Ticket::Wait(std::chrono::milliseconds timeout,
                                        bool* done) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout,
               [&] { return !events_.empty() || finished_ == choices_; });
  std::vector<Event> out(std::make_move_iterator(events_.begin()),
                         std::make_move_iterator(events_.end()));
  events_.clear();
  *done = finished_ == choices_;
  return out;
}

void Ticket::Push(Event e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (e.result) ++finished_;
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& o)
    : engine_(engine), opts_(o), thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Ticket> Scheduler::Submit(std::vector<GenerateRequest> reqs,
                                          bool stream) {
  auto ticket = std::make_shared<Ticket>(static_cast<int>(reqs.size()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int64_t>(queue_.size() + reqs.size()) > opts_.max_queue) {
      return nullptr;
    }
    for (size_t i = 0; i < reqs.size(); ++i) {
      GenerateRequest& r = reqs[i];
      r.on_text = nullptr;
      if (stream) {
        // Runs on the scheduler thread, inside DecodeBatch::Step.
        Ticket* t = ticket.get();
        const int choice = static_cast<int>(i);
        r.on_text = [t, choice](const std::string& piece) {
          if (t->cancelled()) return false;
          t->Push({choice, piece, std::nullopt});
          return true;
        };
      }
      queue_.push_back({std::move(r), ticket, static_cast<int>(i)});
    }
    stats_.queued = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return ticket;
}

void Scheduler::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

void Scheduler::Loop() {
  DecodeBatch batch(engine_);
  std::map<int, Running> running;  // batch id -> who waits for it
  auto deliver = [&] {
    for (auto& [id, res] : batch.TakeFinished()) {
      auto it = running.find(id);
      if (it == running.end()) continue;
      stats_.generated_tokens += static_cast<int64_t>(res.output_ids.size());
      if (res.finish_reason == "cancelled" || res.finish_reason == "callback")
        stats_.cancelled++;
      it->second.ticket->Push({it->second.choice, "", std::move(res)});
      running.erase(it);
    }
  };
  while (true) {
    std::vector<Pending> admit;
    {
      std::unique_lock<std::mutex> lock(mu_);
      running_ = batch.live();
      if (running_ == 0 && queue_.empty()) idle_cv_.notify_all();
      cv_.wait(lock, [&] {
        return shutdown_ || !queue_.empty() || batch.live() > 0;
      });
      if (shutdown_) return;
      // Join the batch up to its size; the rest wait for the next step.
      while (!queue_.empty() &&
             batch.live() + static_cast<int>(admit.size()) < opts_.max_batch) {
        admit.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = static_cast<int64_t>(queue_.size());
      running_ = batch.live() + static_cast<int>(admit.size());
    }
    for (Pending& p : admit) {
      if (p.ticket->cancelled()) {
        GenerateResult r;
        r.finish_reason = "cancelled";
        stats_.cancelled++;
        p.ticket->Push({p.choice, "", std::move(r)});
        continue;
      }
      stats_.prompt_tokens += static_cast<int64_t>(p.req.prompt_ids.size());
      try {
        const Stopwatch sw;
        const int id = batch.Add(std::move(p.req));
        stats_.prefill_us += static_cast<int64_t>(sw.ElapsedMs() * 1e3);
        running[id] = {p.ticket, p.choice};
      } catch (const std::exception& e) {
        // Requests are checked before they queue; this is a last guard.
        GenerateResult r;
        r.finish_reason = "error";
        r.text = e.what();
        p.ticket->Push({p.choice, "", std::move(r)});
      }
    }
    // Clients that went away leave before the step.
    for (const auto& [id, r] : running) {
      if (r.ticket->cancelled()) batch.Cancel(id);
    }
    deliver();
    stats_.running = batch.live();
    if (batch.live() > 0) {
      stats_.steps++;
      stats_.step_rows += batch.live();
      const Stopwatch sw;
      batch.Step();
      stats_.decode_us += static_cast<int64_t>(sw.ElapsedMs() * 1e3);
    }
    deliver();
    stats_.running = batch.live();
  }
}

}  // namespace bioquant::serve
