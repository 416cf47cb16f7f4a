// Throughput benchmarks in the manner of llama-bench: prefill (pp) and decode
// (tg) tokens/s as mean ± sd over repetitions after a warm-up, with the bytes
// of weights each decoded token reads and the share of this machine's memory
// bandwidth that represents (the decode roofline).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bioquant {

class Engine;

struct MachineLimits {
  double read_gb_s = 0;       // streaming read bandwidth, all threads
  double fma_f32_gflops = 0;  // f32 FMA peak, all threads
  int threads = 0;
};

// Measures read bandwidth (sum over a 1 GiB buffer) and FMA peak (register-
// resident FMA chains) with `threads` threads.
MachineLimits MeasureMachine(int threads);

struct BenchResult {
  std::string precision, compute = "f32", test;  // test: "pp512", "tg128"
  int batch = 1;
  double tokens_per_s = 0, sd = 0;
  std::vector<double> runs;
  uint64_t weight_bytes_per_token = 0;
  double bandwidth_gb_s = 0;     // tg: weight bytes read per second
  double roofline_fraction = 0;  // tg: bandwidth / machine read bandwidth
  nlohmann::json ToJson() const;
};

// Runs pp (prompt of `p` tokens, one sequence) and tg (`n` tokens decoded by
// each of `batch` sequences together, through Engine::GenerateBatch)
// `reps` times each after one warm-up. tg's tokens/s is the aggregate,
// batch x n / wall time, and its bandwidth counts the weights read once per
// forward step of up to 8 sequences. `machine_read_gb_s` (0 = unknown) gives
// the roofline fraction.
std::vector<BenchResult> RunBench(Engine& engine, const std::string& precision,
                                  int p, int n, int reps,
                                  double machine_read_gb_s, int batch = 1);

}  // namespace bioquant
