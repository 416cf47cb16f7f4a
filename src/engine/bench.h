// Throughput benchmarks in the manner of llama-bench: prefill (pp) and decode
// (tg) tokens/s as mean ± sd over repetitions after a warm-up, with the bytes
// of weights each decoded token reads and the share of this machine's memory
// bandwidth that represents (the decode roofline).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
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
  double best = 0;  // the fastest repetition
  std::vector<double> runs;
  uint64_t weight_bytes_per_token = 0;
  double bandwidth_gb_s = 0;     // tg: weight bytes read per second
  double roofline_fraction = 0;  // tg: bandwidth / machine read bandwidth
  nlohmann::json ToJson() const;
};

struct BenchSpec {
  int p = 512;  // prompt tokens of the pp test (0 = skip)
  int n = 128;  // tokens each sequence decodes in the tg test (0 = skip)
  int batch = 1;
  double machine_read_gb_s = 0;  // 0 = unknown (no roofline fraction)
};

// The pp and tg tests of one loaded engine, run one repetition at a time so
// that several engines can take turns (`bench --interleave`: a burst of load
// on a shared machine then slows every precision alike, not one).
// pp: a prompt of `p` random tokens, one sequence. tg: `batch` sequences
// decode `n` tokens each together (Engine::GenerateBatch); tokens/s is the
// aggregate, batch x n / wall time, and its bandwidth counts the weights read
// once per forward step of up to 8 sequences.
class BenchSession {
 public:
  // Throws Error for p or n < 0 or batch < 1.
  BenchSession(Engine& engine, std::string precision, const BenchSpec& spec);
  // One repetition of each test; a warm-up is run but not recorded.
  void RunRep(bool warmup);
  // Mean ± sd, best and roofline over the recorded repetitions.
  std::vector<BenchResult> Results() const;

 private:
  Engine& engine_;
  std::string precision_;
  BenchSpec spec_;
  std::mt19937 rng_{1};
  std::uniform_int_distribution<int32_t> tok_;
  std::vector<int32_t> prompt_;
  std::vector<float> logits_;  // the pp test's output, [vocab]
  std::vector<double> pp_runs_, tg_runs_;
};

}  // namespace bioquant
