#include "model/decoder.h"

#include <cmath>
#include <cstring>

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

Decoder::Decoder(const ModelConfig& cfg, const ModelWeights& w,
                 ThreadPool* pool)
    : cfg_(cfg), w_(w), pool_(pool) {
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
  for (const auto& s : scores_) b += s.capacity() * 4;
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

void Decoder::Linear(const bioquant::Linear& l, const float* x, int64_t n,
                     float* y) {
  if (w_.llm_int8 && l.w.format == WeightFormat::kInt8Row) {
    // Activations quantized once; weight rows split across the pool. Same
    // bits as the scalar LlmInt8MatMulRef.
    const Int8Activations a =
        QuantizeActivationsInt8(x, n, l.w.cols, w_.llm_int8_threshold);
    const float* bias = l.bias.empty() ? nullptr : l.bias.data();
    auto rows = [&](size_t b, size_t e, int) {
      kernels::MatMulRowsLlmInt8(a, l.w, bias, y, static_cast<int64_t>(b),
                                 static_cast<int64_t>(e));
    };
    if (pool_) {
      pool_->ParallelFor(l.w.rows, rows);
    } else {
      rows(0, l.w.rows, 0);
    }
    return;
  }
  MatMul(l.w, x, n, y, pool_);
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

void Decoder::Attention(int64_t layer, int64_t n, KVCache& cache) {
  const int64_t D = cfg_.head_dim, nh = cfg_.num_heads;
  const int64_t group = nh / cfg_.num_kv_heads, kvd = cfg_.kv_dim();
  const int64_t pos0 = cache.length;
  const int64_t window = cfg_.layer_window[layer];
  const float scale = static_cast<float>(1.0 / std::sqrt(double(D)));
  const float* K = cache.k[layer].data();
  const float* Vc = cache.v[layer].data();
  const int threads = pool_ ? pool_->size() : 1;
  if (static_cast<int>(scores_.size()) < threads) scores_.resize(threads);
  auto body = [&](size_t begin, size_t end, int tid) {
    std::vector<float>& scores = scores_[tid];
    if (static_cast<int64_t>(scores.size()) < pos0 + n) scores.resize(pos0 + n);
    for (size_t job = begin; job < end; ++job) {
      const int64_t t = job / nh, h = job % nh;
      const int64_t p = pos0 + t;
      const int64_t first =
          window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
      const float* q = q_.data() + (t * nh + h) * D;
      const int64_t g = h / group;
      for (int64_t j = first; j <= p; ++j) {
        scores[j - first] = Dot(q, K + j * kvd + g * D, D) * scale;
      }
      const int64_t len = p - first + 1;
      Softmax(scores.data(), len);
      float* out = att_.data() + (t * nh + h) * D;
      std::memset(out, 0, D * sizeof(float));
      for (int64_t j = 0; j < len; ++j) {
        Axpy(scores[j], Vc + (first + j) * kvd + g * D, out, D);
      }
    }
  };
  if (pool_) {
    pool_->ParallelFor(n * nh, body);
  } else {
    body(0, n * nh, 0);
  }
}

void Decoder::Forward(const int32_t* tokens, int64_t n, KVCache& cache,
                      float* logits, bool all_logits) {
  if (n <= 0) return;
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const int64_t V = cfg_.vocab_size, kvd = cfg_.kv_dim();
  EnsureScratch(n);
  cache.Reserve(cache.length + n);
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
    Linear(L.q, xn_.data(), n, q_.data());
    Linear(L.k, xn_.data(), n, k_.data());
    Linear(L.v, xn_.data(), n, v_.data());
    Rope(q_.data(), n, cfg_.num_heads, cache.length);
    Rope(k_.data(), n, cfg_.num_kv_heads, cache.length);
    std::memcpy(cache.k[l].data() + cache.length * kvd, k_.data(), n * kvd * 4);
    std::memcpy(cache.v[l].data() + cache.length * kvd, v_.data(), n * kvd * 4);
    Attention(l, n, cache);
    Linear(L.o, att_.data(), n, hidden_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += hidden_[i];
    for (int64_t t = 0; t < n; ++t) {
      RmsNorm(x_.data() + t * H, L.mlp_norm.data(), H, cfg_.rms_norm_eps,
              xn_.data() + t * H);
    }
    Linear(L.gate, xn_.data(), n, gate_.data());
    Linear(L.up, xn_.data(), n, up_.data());
    SiluMul(gate_.data(), up_.data(), gate_.data(), n * I);
    Linear(L.down, gate_.data(), n, hidden_.data());
    for (int64_t i = 0; i < n * H; ++i) x_[i] += hidden_[i];
  }
  cache.length += n;
  if (!logits) return;
  const int64_t first = all_logits ? 0 : n - 1;
  const int64_t rows = n - first;
  for (int64_t t = first; t < n; ++t) {
    RmsNorm(x_.data() + t * H, w_.final_norm.data(), H, cfg_.rms_norm_eps,
            xn_.data() + (t - first) * H);
  }
  MatMul(w_.lm_head.w, xn_.data(), rows, logits, pool_);
  (void)V;
}

}  // namespace bioquant
