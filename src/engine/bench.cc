#include "engine/bench.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/engine.h"
#include "kernels/ops.h"
#include "util/error.h"
#include "util/sys.h"
#include "util/thread_pool.h"

namespace bioquant {
namespace {

void MeanSd(const std::vector<double>& v, double* mean, double* sd) {
  *mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  double ss = 0;
  for (double x : v) ss += (x - *mean) * (x - *mean);
  *sd = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : 0.0;
}

}  // namespace

nlohmann::json BenchResult::ToJson() const {
  return {{"precision", precision},
          {"compute", compute},
          {"test", test},
          {"batch", batch},
          {"tokens_per_s", tokens_per_s},
          {"sd", sd},
          {"best", best},
          {"runs", runs},
          {"weight_bytes_per_token", weight_bytes_per_token},
          {"bandwidth_gb_s", bandwidth_gb_s},
          {"roofline_fraction", roofline_fraction}};
}

MachineLimits MeasureMachine(int threads) {
  ThreadPool pool(threads);
  MachineLimits m;
  m.threads = pool.size();
  // Read bandwidth: every thread sums its slice of a buffer far larger than
  // the caches; Dot(p, p) reads each line once.
  const size_t n = (1ull << 30) / sizeof(float);
  std::vector<float> buf(n);
  pool.ParallelFor(n, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) buf[i] = 1.0f;
  });
  double best = 0;
  std::vector<float> sink(m.threads);
  for (int rep = 0; rep < 5; ++rep) {
    Stopwatch sw;
    pool.ParallelFor(n, [&](size_t b, size_t e, int t) {
      sink[t] += Dot(buf.data() + b, buf.data() + b, e - b);
    });
    best = std::max(best, n * sizeof(float) / (sw.ElapsedMs() * 1e6));
  }
  m.read_gb_s = best;
  // FMA peak: FmaPeak runs independent register chains.
  double best_flops = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> flops(m.threads);
    Stopwatch sw;
    pool.RunOnAll([&](int t) { flops[t] = FmaPeakFlops(20000000); });
    const double total = std::accumulate(flops.begin(), flops.end(), 0.0);
    best_flops = std::max(best_flops, total / (sw.ElapsedMs() * 1e6));
  }
  m.fma_f32_gflops = best_flops;
  return m;
}

BenchSession::BenchSession(Engine& engine, std::string precision,
                           const BenchSpec& spec)
    : engine_(engine),
      precision_(std::move(precision)),
      spec_(spec),
      tok_(0, static_cast<int32_t>(engine.config().vocab_size - 1)) {
  if (spec.p < 0 || spec.n < 0) Fail("bench: -p/-n must be >= 0");
  if (spec.batch < 1) {
    Fail("bench: -b {}: the batch must be >= 1", spec.batch);
  }
  prompt_.resize(spec.p);
  for (auto& t : prompt_) t = tok_(rng_);
  if (spec.p > 0) logits_.resize(engine.config().vocab_size);
}

void BenchSession::RunRep(bool warmup) {
  if (spec_.p > 0) {
    engine_.ResetCache();
    Stopwatch sw;
    engine_.Forward(prompt_.data(), spec_.p, logits_.data());
    const double tps = spec_.p * 1000.0 / sw.ElapsedMs();
    if (!warmup) pp_runs_.push_back(tps);
  }
  if (spec_.n > 0) {
    // Each sequence starts from one random token and decodes n more greedily
    // (n forward steps: the last sampled token is not fed), eos ignored.
    std::vector<GenerateRequest> reqs(spec_.batch);
    for (auto& q : reqs) {
      q.prompt_ids = {tok_(rng_)};
      q.max_new_tokens = spec_.n + 1;
      q.ignore_eos = true;
    }
    const std::vector<GenerateResult> res = engine_.GenerateBatch(reqs);
    double ms = 0;
    int64_t tokens = 0;
    for (const auto& g : res) {
      ms = std::max(ms, g.timings.decode_ms);
      tokens += g.timings.decode_tokens;
    }
    if (!warmup) tg_runs_.push_back(tokens * 1000.0 / ms);
  }
}

std::vector<BenchResult> BenchSession::Results() const {
  std::vector<BenchResult> out;
  const auto fill = [&](BenchResult& r, const std::vector<double>& runs) {
    r.precision = precision_;
    r.runs = runs;
    if (!runs.empty()) {
      MeanSd(runs, &r.tokens_per_s, &r.sd);
      r.best = *std::max_element(runs.begin(), runs.end());
    }
    r.weight_bytes_per_token = engine_.WeightBytesPerToken();
  };
  if (spec_.p > 0) {
    BenchResult r;
    r.test = "pp" + std::to_string(spec_.p);
    fill(r, pp_runs_);
    out.push_back(r);
  }
  if (spec_.n > 0) {
    BenchResult r;
    r.test = "tg" + std::to_string(spec_.n);
    r.batch = spec_.batch;
    fill(r, tg_runs_);
    // A step decodes `batch` tokens and reads the weights once per group of
    // at most Decoder::kMaxBatchRows sequences.
    const int64_t reads =
        (spec_.batch + Decoder::kMaxBatchRows - 1) / Decoder::kMaxBatchRows;
    r.bandwidth_gb_s = static_cast<double>(r.weight_bytes_per_token) * reads *
                       r.tokens_per_s / spec_.batch / 1e9;
    if (spec_.machine_read_gb_s > 0)
      r.roofline_fraction = r.bandwidth_gb_s / spec_.machine_read_gb_s;
    out.push_back(r);
  }
  return out;
}

}  // namespace bioquant
