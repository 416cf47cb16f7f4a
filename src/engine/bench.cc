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
                                  double machine_read_gb_s) {
  if (p < 0 || n < 0 || reps < 1) Fail("bench: -p/-n must be >= 0 and -r >= 1");
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
    for (int rep = -1; rep < reps; ++rep) {
      engine.ResetCache();
      int32_t t = tok(rng);
      Stopwatch sw;
      for (int i = 0; i < n; ++i) {
        engine.Forward(&t, 1, logits.data());
        t = static_cast<int32_t>(
            std::max_element(logits.begin(), logits.end()) - logits.begin());
      }
      const double tps = n * 1000.0 / sw.ElapsedMs();
      if (rep >= 0) r.runs.push_back(tps);
    }
    MeanSd(r.runs, &r.tokens_per_s, &r.sd);
    r.weight_bytes_per_token = engine.WeightBytesPerToken();
    r.bandwidth_gb_s = r.weight_bytes_per_token * r.tokens_per_s / 1e9;
    if (machine_read_gb_s > 0)
      r.roofline_fraction = r.bandwidth_gb_s / machine_read_gb_s;
    out.push_back(r);
  }
  return out;
}

}  // namespace bioquant
