#include "serve/metrics.h"

#include <fmt/format.h>

#include "util/sys.h"

namespace bioquant::serve {

void Histogram::Observe(double seconds) {
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      counts_[i]++;
      break;
    }
  }
  count_++;
  sum_ += seconds;
}

std::string Histogram::Render(const std::string& name) const {
  std::string out;
  uint64_t cum = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
  return out;
}

void Metrics::Request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_[{route, status}]++;
}

void Metrics::Latency(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  latency_.Observe(seconds);
}

void Metrics::TimeToFirstToken(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.Observe(seconds);
}

std::string Metrics::Render(const SchedulerStats& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out +=
      "# HELP bioquant_requests_total HTTP requests by route and status.\n"
      "# TYPE bioquant_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    out += fmt::format(
        "bioquant_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first,
        key.second, n);
  }
  auto counter = [&](const char* name, const char* help, int64_t v) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name,
                       help, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name,
                       help, v);
  };
  counter("bioquant_prompt_tokens_total", "Prompt tokens admitted.",
          s.prompt_tokens);
  counter("bioquant_generation_tokens_total", "Tokens generated.",
          s.generated_tokens);
  counter("bioquant_decode_steps_total", "Decode steps of the batch.", s.steps);
  auto seconds = [&](const char* name, const char* help, int64_t us) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2:.6f}\n",
                       name, help, us * 1e-6);
  };
  seconds("bioquant_prefill_seconds_total",
          "Time spent prefilling prompts of sequences joining the batch.",
          s.prefill_us);
  seconds("bioquant_decode_seconds_total",
          "Time spent in decode steps of the batch.", s.decode_us);
  counter("bioquant_cancelled_total",
          "Sequences ended because their client went away.", s.cancelled);
  gauge("bioquant_queue_length", "Sequences waiting to join the batch.",
        static_cast<double>(s.queued));
  gauge("bioquant_batch_size", "Sequences in the running batch.",
        static_cast<double>(s.running));
  const int64_t steps = s.steps;
  gauge("bioquant_batch_size_mean", "Mean sequences per decode step so far.",
        steps ? static_cast<double>(s.step_rows) / steps : 0.0);
  gauge("bioquant_resident_memory_bytes", "Resident set size of the process.",
        static_cast<double>(CurrentRssBytes()));
  out +=
      "# HELP bioquant_request_duration_seconds Time from request to last "
      "byte.\n# TYPE bioquant_request_duration_seconds histogram\n";
  out += latency_.Render("bioquant_request_duration_seconds");
  out +=
      "# HELP bioquant_time_to_first_token_seconds Streaming: time to the "
      "first piece of text.\n"
      "# TYPE bioquant_time_to_first_token_seconds histogram\n";
  out += ttft_.Render("bioquant_time_to_first_token_seconds");
  return out;
}

}  // namespace bioquant::serve
