#include "model/decoder.h"

#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/matmul_int8.h"
#include "kernels/ops.h"
#include "quant/bnb.h"
#include "util/error.h"

namespace bioquant {

void KVCache::Init(int64_t layers, int64_t dim) {
  num_layers = layers;
  kv_dim = dim;
  length = capacity = 0;
  k.assign(layers, {});
  v.assign(layers, {});
}

void KVCache::Reserve(int64_t positions) {
  if (positions <= capacity) return;
  int64_t cap = std::max<int64_t>(positions, capacity * 2);
  cap = std::max<int64_t>(cap, 64);
  for (int64_t l = 0; l < num_layers; ++l) {
    k[l].resize(cap * kv_dim);
    v[l].resize(cap * kv_dim);
  }
  capacity = cap;
}

void KVCache::AssignPrefix(const KVCache& src, int64_t n) {
  if (src.num_layers != num_layers || src.kv_dim != kv_dim) {
    Fail(
        "KV cache: prefix of a cache with {} layers x {} into one with {} x {}",
        src.num_layers, src.kv_dim, num_layers, kv_dim);
  }
  if (n < 0 || n > src.length) {
    Fail("KV cache: prefix of {} positions from a cache holding {}", n,
         src.length);
  }
  Reserve(n);
  for (int64_t l = 0; l < num_layers; ++l) {
    std::copy_n(src.k[l].data(), n * kv_dim, k[l].data());
    std::copy_n(src.v[l].data(), n * kv_dim, v[l].data());
  }
  length = n;
}

Decoder::Decoder(const ModelConfig& cfg, const ModelWeights& w,
                 ThreadPool* pool, ComputeType compute)
    : cfg_(cfg), w_(w), pool_(pool), compute_(compute) {
  // HF: inv_freq[i] = 1 / theta^(2i / head_dim); computed in double here
  // (the goldens' reference is f64).
  const int64_t half = cfg.head_dim / 2;
  inv_freq_.resize(half);
  for (int64_t i = 0; i < half; ++i) {
    inv_freq_[i] = 1.0 / std::pow(cfg.rope_theta, double(2 * i) / cfg.head_dim);
  }
  if (cfg.rope_scaling.type == RopeScaling::Type::kLlama3) {
    // transformers' _compute_llama3_parameters: long wavelengths are divided
    // by `factor`, short ones kept, the band between interpolated.
    const auto& rs = cfg.rope_scaling;
    const double old_ctx = rs.original_max_position_embeddings;
    const double low_wavelen = old_ctx / rs.low_freq_factor;
    const double high_wavelen = old_ctx / rs.high_freq_factor;
    for (auto& f : inv_freq_) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
        continue;
      }
      const double smooth = (old_ctx / wavelen - rs.low_freq_factor) /
                            (rs.high_freq_factor - rs.low_freq_factor);
      f = (1 - smooth) * f / rs.factor + smooth * f;
    }
  }
}

KVCache Decoder::NewCache() const {
  KVCache c;
  c.Init(cfg_.num_layers, cfg_.kv_dim());
  return c;
}

uint64_t Decoder::ScratchBytes() const {
  uint64_t b = 0;
  for (const auto* v :
       {&x_, &xn_, &q_, &k_, &v_, &att_, &gate_, &up_, &hidden_}) {
    b += v->capacity() * 4;
  }
  return b;
}

void Decoder::EnsureScratch(int64_t n) {
  if (n <= scratch_n_) return;
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size;
  x_.resize(n * H);
  xn_.resize(n * H);
  q_.resize(n * cfg_.q_dim());
  k_.resize(n * cfg_.kv_dim());
  v_.resize(n * cfg_.kv_dim());
  att_.resize(n * cfg_.q_dim());
  gate_.resize(n * I);
  up_.resize(n * I);
  hidden_.resize(n * std::max(H, I));
  scratch_n_ = n;
}

void Decoder::Linear(const bioquant::Linear& l, const float* x,
                     std::span<const SeqSlice> seqs, int64_t n, float* y) {
  if (linear_hook_) linear_hook_(l, x, n);
  if (w_.llm_int8 && l.w.format == WeightFormat::kInt8Row) {
    // bnb picks outlier columns over all rows it is given, so each sequence
    // is quantized on its own: its rows get the bits they get alone.
    // Weight rows are split across the pool; same bits as the scalar
    // LlmInt8MatMulRef.
    const float* bias = l.bias.empty() ? nullptr : l.bias.data();
    int64_t row0 = 0;
    for (const SeqSlice& s : seqs) {
      const Int8Activations a = QuantizeActivationsInt8(
          x + row0 * l.w.cols, s.n, l.w.cols, w_.llm_int8_threshold);
      float* ys = y + row0 * l.w.rows;
      auto rows = [&](size_t b, size_t e, int) {
        kernels::MatMulRowsLlmInt8(a, l.w, bias, ys, static_cast<int64_t>(b),
                                   static_cast<int64_t>(e));
      };
      if (pool_) {
        pool_->ParallelFor(l.w.rows, rows);
      } else {
        rows(0, l.w.rows, 0);
      }
      row0 += s.n;
    }
    return;
  }
  MatMul(l.w, x, n, y, pool_, compute_);
  if (!l.bias.empty()) {
    for (int64_t t = 0; t < n; ++t) {
      float* row = y + t * l.w.rows;
      for (int64_t r = 0; r < l.w.rows; ++r) row[r] += l.bias[r];
    }
  }
}

void Decoder::Rope(float* x, int64_t n, int64_t heads, int64_t pos0) const {
  // Rotate-half layout (HF): pairs (i, i + head_dim/2).
  const int64_t D = cfg_.head_dim, half = D / 2;
  for (int64_t t = 0; t < n; ++t) {
    const double pos = double(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * inv_freq_[i];
      const float c = static_cast<float>(std::cos(a));
      const float s = static_cast<float>(std::sin(a));
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * D;
        const float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

void Decoder::Attention(int64_t layer, int64_t n) {
  const int64_t D = cfg_.head_dim, nh = cfg_.num_heads;
  const int64_t kvh = cfg_.num_kv_heads, group = nh / kvh;
  const int64_t kvd = cfg_.kv_dim();
  const float scale = static_cast<float>(1.0 / std::sqrt(double(D)));
  // Jobs: (run of consecutive rows of one sequence, token block, KV head).
  // Row t attends over its own sequence's cache, positions first..p (its
  // own key already written at p); the kernel's arithmetic per (row, head)
  // does not depend on how rows are grouped into jobs.
  constexpr int64_t kTokBlock = 16;
  std::vector<AttnJob>& jobs = attn_jobs_;
  jobs.clear();
  for (int64_t r = 0; r < n;) {
    int64_t e = r + 1;
    while (e < n && rows_[e].cache == rows_[r].cache &&
           rows_[e].pos == rows_[e - 1].pos + 1) {
      ++e;
    }
    for (int64_t t0 = 0; t0 < e - r; t0 += kTokBlock) {
      for (int64_t g = 0; g < kvh; ++g) {
        jobs.push_back({r, t0, std::min(e - r, t0 + kTokBlock), g});
      }
    }
    r = e;
  }
  auto body = [&](size_t begin, size_t end, int) {
    for (size_t j = begin; j < end; ++j) {
      const AttnJob& job = jobs[j];
      const RowInfo& row = rows_[job.row0];
      CausalArgs c;
      c.q = q_.data() + (job.row0 * nh + job.g * group) * D;
      c.q_token_stride = nh * D;
      c.q_stride = D;
      c.num_q = group;
      c.k = row.cache->k[layer].data() + job.g * D;
      c.v = row.cache->v[layer].data() + job.g * D;
      c.kv_stride = kvd;
      c.pos0 = row.pos;
      c.window = cfg_.layer_window[layer];
      c.head_dim = D;
      c.scale = scale;
      c.out = att_.data() + (job.row0 * nh + job.g * group) * D;
      c.out_token_stride = nh * D;
      c.out_stride = D;
      AttendCausal(c, job.t0, job.t1);
    }
  };
  if (pool_) {
    pool_->ParallelFor(jobs.size(), body);
  } else {
    body(0, jobs.size(), 0);
  }
}

void Decoder::Forward(const int32_t* tokens, int64_t n, KVCache& cache,
                      float* logits, bool all_logits) {
  if (n <= 0) return;
  const SeqSlice one{&cache, n};
  Forward(tokens, std::span<const SeqSlice>(&one, 1), logits,
          all_logits ? LogitsMode::kAll : LogitsMode::kLast);
}

void Decoder::Forward(const int32_t* tokens, std::span<const SeqSlice> seqs,
                      float* logits, LogitsMode mode) {
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const int64_t V = cfg_.vocab_size, kvd = cfg_.kv_dim();
  const int64_t qd = cfg_.q_dim();
  int64_t n = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (!seqs[s].cache || seqs[s].n <= 0) {
      Fail("decoder: sequence {} of the call has no cache or no tokens ({})", s,
           seqs[s].n);
    }
    for (size_t o = 0; o < s; ++o) {
      if (seqs[o].cache == seqs[s].cache) {
        Fail("decoder: sequences {} and {} of the call share one KV cache", o,
             s);
      }
    }
    n += seqs[s].n;
  }
  if (n == 0) return;
  EnsureScratch(n);
  rows_.clear();
  for (const SeqSlice& s : seqs) {
    s.cache->Reserve(s.cache->length + s.n);
    for (int64_t t = 0; t < s.n; ++t)
      rows_.push_back({s.cache, s.cache->length + t});
  }
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= V) {
      Fail("token id {} out of range (vocab_size {})", tokens[t], V);
    }
    RowToF32(w_.embed, tokens[t], x_.data() + t * H);
  }
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    const LayerWeights& L = w_.layers[l];
    for (int64_t t = 0; t < n; ++t) {
      RmsNorm(x_.data() + t * H, L.attn_norm.data(), H, cfg_.rms_norm_eps,
              xn_.data() + t * H);
    }
    Linear(L.q, xn_.data(), seqs, n, q_.data());
    Linear(L.k, xn_.data(), seqs, n, k_.data());
    Linear(L.v, xn_.data(), seqs, n, v_.data());
    int64_t row0 = 0;
    for (const SeqSlice& s : seqs) {
      KVCache& c = *s.cache;
      Rope(q_.data() + row0 * qd, s.n, cfg_.num_heads, c.length);
      Rope(k_.data() + row0 * kvd, s.n, cfg_.num_kv_heads, c.length);
      std::memcpy(c.k[l].data() + c.length * kvd, k_.data() + row0 * kvd,
                  s.n * kvd * 4);
      std::memcpy(c.v[l].data() + c.length * kvd, v_.data() + row0 * kvd,
                  s.n * kvd * 4);
      row0 += s.n;
    }
    Attention(l, n);
    Linear(L.o, att_.data(), seqs, n, hidden_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += hidden_[i];
    for (int64_t t = 0; t < n; ++t) {
      RmsNorm(x_.data() + t * H, L.mlp_norm.data(), H, cfg_.rms_norm_eps,
              xn_.data() + t * H);
    }
    Linear(L.gate, xn_.data(), seqs, n, gate_.data());
    Linear(L.up, xn_.data(), seqs, n, up_.data());
    SiluMul(gate_.data(), up_.data(), gate_.data(), n * I);
    Linear(L.down, gate_.data(), seqs, n, hidden_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += hidden_[i];
  }
  for (const SeqSlice& s : seqs) s.cache->length += s.n;
  if (!logits) return;
  // The rows that get logits, normed into xn_[0..rows).
  int64_t rows = 0, row0 = 0;
  for (const SeqSlice& s : seqs) {
    const int64_t first = mode == LogitsMode::kAll ? row0 : row0 + s.n - 1;
    for (int64_t t = first; t < row0 + s.n; ++t, ++rows) {
      RmsNorm(x_.data() + t * H, w_.final_norm.data(), H, cfg_.rms_norm_eps,
              xn_.data() + rows * H);
    }
    row0 += s.n;
  }
  MatMul(w_.lm_head.w, xn_.data(), rows, logits, pool_);
}

}  // namespace bioquant
