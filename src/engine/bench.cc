#include "engine/bench.h"

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

std::vector<BenchResult> RunBench(Engine& engine, const std::string& precision,
                                  int p, int n, int reps,
                                  double machine_read_gb_s, int batch) {
  if (p < 0 || n < 0 || reps < 1) Fail("bench: -p/-n must be >= 0 and -r >= 1");
  if (batch < 1) Fail("bench: -b {}: the batch must be >= 1", batch);
  const int64_t V = engine.config().vocab_size;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  std::vector<BenchResult> out;
  std::vector<float> logits(V);
  if (p > 0) {
    std::vector<int32_t> ids(p);
    for (auto& t : ids) t = tok(rng);
    BenchResult r;
    r.precision = precision;
    r.test = "pp" + std::to_string(p);
    for (int rep = -1; rep < reps; ++rep) {  // rep -1 is the warm-up
      engine.ResetCache();
      Stopwatch sw;
      engine.Forward(ids.data(), p, logits.data());
      const double tps = p * 1000.0 / sw.ElapsedMs();
      if (rep >= 0) r.runs.push_back(tps);
    }
    MeanSd(r.runs, &r.tokens_per_s, &r.sd);
    r.weight_bytes_per_token = engine.WeightBytesPerToken();
    out.push_back(r);
  }
  if (n > 0) {
    BenchResult r;
    r.precision = precision;
    r.test = "tg" + std::to_string(n);
    r.batch = batch;
    // Each sequence starts from one random token and decodes n more greedily
    // (n forward steps: the last sampled token is not fed), eos ignored.
    std::vector<GenerateRequest> reqs(batch);
    for (int rep = -1; rep < reps; ++rep) {  // rep -1 is the warm-up
      for (auto& q : reqs) {
        q.prompt_ids = {tok(rng)};
        q.max_new_tokens = n + 1;
        q.ignore_eos = true;
      }
      const std::vector<GenerateResult> res = engine.GenerateBatch(reqs);
      double ms = 0;
      int64_t tokens = 0;
      for (const auto& g : res) {
        ms = std::max(ms, g.timings.decode_ms);
        tokens += g.timings.decode_tokens;
      }
      if (rep >= 0) r.runs.push_back(tokens * 1000.0 / ms);
    }
    MeanSd(r.runs, &r.tokens_per_s, &r.sd);
    r.weight_bytes_per_token = engine.WeightBytesPerToken();
    // A step decodes `batch` tokens and reads the weights once per group of
    // at most Decoder::kMaxBatchRows sequences.
    const int64_t reads =
        (batch + Decoder::kMaxBatchRows - 1) / Decoder::kMaxBatchRows;
    r.bandwidth_gb_s = static_cast<double>(r.weight_bytes_per_token) * reads *
                       r.tokens_per_s / batch / 1e9;
    if (machine_read_gb_s > 0)
      r.roofline_fraction = r.bandwidth_gb_s / machine_read_gb_s;
    out.push_back(r);
  }
  return out;
}

}  // namespace bioquant
