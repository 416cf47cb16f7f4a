#include "engine/engine.h"

#include <algorithm>
#include <cstring>

#include "engine/prefix_cache.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"

namespace bioquant {

double Timings::prefill_tokens_per_s() const {
  return prefill_ms > 0 ? prefill_tokens * 1000.0 / prefill_ms : 0.0;
}
double Timings::decode_tokens_per_s() const {
  return decode_ms > 0 ? decode_tokens * 1000.0 / decode_ms : 0.0;
}

nlohmann::json MemoryLedger::ToJson() const {
  return {{"weights_bytes", weights_bytes},
          {"weights_resident_bytes", weights_resident_bytes},
          {"weights_mapped_bytes", weights_mapped_bytes},
          {"kv_cache_bytes", kv_cache_bytes},
          {"prefix_cache_bytes", prefix_cache_bytes},
          {"scratch_bytes", scratch_bytes},
          {"peak_rss_bytes", peak_rss_bytes}};
}

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::Load(const EngineOptions& opts) {
  Stopwatch sw;
  auto e = std::unique_ptr<Engine>(new Engine());
  e->cfg_ = LoadModelConfig(opts.model_dir);
  e->pool_ = std::make_unique<ThreadPool>(opts.threads);
  e->weights_ =
      LoadWeights(opts.model_dir, e->cfg_, opts.precision, e->pool_.get());
  if (FileExists(opts.model_dir + "/tokenizer.json") ||
      FileExists(opts.model_dir + "/tokenizer.model")) {
    e->tokenizer_ = Tokenizer::Load(opts.model_dir);
  }
  e->decoder_ = std::make_unique<Decoder>(e->cfg_, e->weights_, e->pool_.get(),
                                          opts.compute);
  e->cache_ = e->decoder_->NewCache();
  // LLM.int8 picks outlier columns over all rows of a call (as bnb does),
  // so a prompt's logits depend on which of its tokens are computed
  // together: reusing a prefix would change them. (Identical prompts are
  // still shared: nothing is split.)
  if (opts.prefix_cache_bytes > 0 && !e->weights_.llm_int8) {
    e->prefix_cache_ = std::make_unique<PrefixCache>(opts.prefix_cache_bytes);
  }
  e->eos_ids_ = e->cfg_.eos_token_ids;
  if (e->tokenizer_ && e->tokenizer_->eos_id() >= 0 &&
      std::find(e->eos_ids_.begin(), e->eos_ids_.end(),
                e->tokenizer_->eos_id()) == e->eos_ids_.end()) {
    e->eos_ids_.push_back(e->tokenizer_->eos_id());
  }
  e->load_ms_ = sw.ElapsedMs();
  return e;
}

const Tokenizer& Engine::RequireTokenizer() const {
  if (!tokenizer_) {
    Fail("{}: no tokenizer.json or tokenizer.model (use --prompt-ids)",
         cfg_.raw.value("_name_or_path", std::string("model directory")));
  }
  return *tokenizer_;
}

bool Engine::RenderChat(const nlohmann::json& messages,
                        bool add_generation_prompt, const std::string& date,
                        const std::string& template_text,
                        std::string* out) const {
  std::string tmpl = template_text;
  if (tmpl.empty() && tokenizer_) tmpl = tokenizer_->chat_template();
  if (tmpl.empty()) return false;
  ChatTemplateOptions o;
  o.add_generation_prompt = add_generation_prompt;
  o.date = date;
  if (tokenizer_) {
    o.bos_token = tokenizer_->bos_token();
    o.eos_token = tokenizer_->eos_token();
  }
  *out = RenderChatTemplate(tmpl, messages, o, "chat_template");
  return true;
}

namespace {

// One request of a GenerateBatch call.
struct Sequence {
  const GenerateRequest* req;
  Sampler sampler;
  std::unique_ptr<Tokenizer::StreamDecoder> stream;  // null without tokenizer
  KVCache* cache;
  float* logits;      // [vocab]: the distribution of the next token
  int32_t next = -1;  // the token to feed next
  GenerateResult res;
};

// Picks the next token of `s` from its logits and applies the request's
// stopping rules. Returns true when the sequence goes on (feed s.next).
bool Advance(Sequence& s, const std::vector<int32_t>& eos_ids, int64_t vocab) {
  const GenerateRequest& req = *s.req;
  GenerateResult& res = s.res;
  const int i = static_cast<int>(res.output_ids.size());
  if (i >= req.max_new_tokens) return false;
  const int32_t next = s.sampler.Sample(s.logits, vocab);
  res.output_ids.push_back(next);
  const bool is_eos =
      std::find(eos_ids.begin(), eos_ids.end(), next) != eos_ids.end();
  if (is_eos && !req.ignore_eos) {
    res.finish_reason = "eos";
    return false;
  }
  if (s.stream) {
    const std::string piece = s.stream->Push(next);
    res.text += piece;
    bool stopped = false;
    for (const auto& stop : req.stop) {
      const size_t pos = stop.empty() ? std::string::npos : res.text.find(stop);
      if (pos != std::string::npos) {
        res.text.resize(pos);
        stopped = true;
      }
    }
    if (stopped) {
      res.finish_reason = "stop";
      return false;
    }
    if (req.on_text && !piece.empty() && !req.on_text(piece)) {
      res.finish_reason = "callback";
      return false;
    }
  }
  if (i + 1 == req.max_new_tokens) return false;  // no forward for it
  s.next = next;
  return true;
}

void Finish(Sequence& s, double decode_ms) {
  if (s.stream && s.res.finish_reason == "length")
    s.res.text += s.stream->Flush();
  s.res.timings.decode_ms = decode_ms;
}

}  // namespace

GenerateResult Engine::Generate(const GenerateRequest& req) {
  return std::move(GenerateBatch({req})[0]);
}

std::vector<GenerateResult> Engine::GenerateBatch(
    const std::vector<GenerateRequest>& reqs) {
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::string which =
        reqs.size() > 1 ? fmt::format(" (request {})", i) : "";
    if (reqs[i].prompt_ids.empty())
      Fail("generate: the prompt has no tokens{}", which);
    if (reqs[i].max_new_tokens < 0)
      Fail("--max-new-tokens must be >= 0{}", which);
  }
  const int64_t V = cfg_.vocab_size;
  const size_t B = reqs.size();
  while (seq_caches_.size() < B) seq_caches_.push_back(decoder_->NewCache());
  std::vector<float> logits(B * V);
  std::vector<Sequence> seqs;
  seqs.reserve(B);
  for (size_t i = 0; i < B; ++i) {
    Sequence s{&reqs[i],
               Sampler(reqs[i].sampling),
               nullptr,
               &seq_caches_[i],
               logits.data() + i * V,
               -1,
               {}};
    if (tokenizer_)
      s.stream = std::make_unique<Tokenizer::StreamDecoder>(*tokenizer_, true);
    s.res.timings.load_ms = load_ms_;
    s.res.finish_reason = "length";
    seqs.push_back(std::move(s));
  }
  // Prefill, one prompt at a time: each is computed exactly as it would be
  // alone, minus the prefix whose keys and values are already known.
  for (size_t i = 0; i < B; ++i) {
    Sequence& s = seqs[i];
    const std::vector<int32_t>& prompt = s.req->prompt_ids;
    const int64_t n = static_cast<int64_t>(prompt.size());
    Stopwatch sw;
    s.cache->Clear();
    int64_t reused = 0;
    size_t twin = i;  // an earlier request of the batch with this prompt
    for (size_t j = 0; j < i && twin == i; ++j) {
      if (reqs[j].prompt_ids == prompt) twin = j;
    }
    if (twin != i) {
      // Self-consistency samples: same prompt, so same cache and logits.
      s.cache->AssignPrefix(*seqs[twin].cache, n);
      std::memcpy(s.logits, seqs[twin].logits, V * sizeof(float));
      reused = n;
    } else {
      if (prefix_cache_) reused = prefix_cache_->Lookup(prompt, s.cache);
      decoder_->Forward(prompt.data() + reused, n - reused, *s.cache, s.logits,
                        false);
      if (prefix_cache_) prefix_cache_->Insert(prompt, *s.cache);
    }
    s.res.timings.prefill_ms = sw.ElapsedMs();
    s.res.timings.prefill_tokens = n - reused;
    s.res.timings.reused_tokens = reused;
  }
  // Decode: every live sequence advances one token per round.
  Stopwatch dw;
  std::vector<size_t> live, still;
  for (size_t i = 0; i < B; ++i) {
    if (Advance(seqs[i], eos_ids_, V)) {
      live.push_back(i);
    } else {
      Finish(seqs[i], dw.ElapsedMs());
    }
  }
  const int64_t group = Decoder::kMaxBatchRows;
  std::vector<float> group_logits(std::min<int64_t>(B, group) * V);
  std::vector<int32_t> ids;
  std::vector<SeqSlice> slices;
  while (!live.empty()) {
    for (size_t g = 0; g < live.size(); g += group) {
      const size_t end = std::min(live.size(), g + group);
      ids.clear();
      slices.clear();
      for (size_t k = g; k < end; ++k) {
        ids.push_back(seqs[live[k]].next);
        slices.push_back({seqs[live[k]].cache, 1});
      }
      decoder_->Forward(ids.data(), slices, group_logits.data(),
                        LogitsMode::kLast);
      for (size_t k = g; k < end; ++k) {
        Sequence& s = seqs[live[k]];
        std::memcpy(s.logits, group_logits.data() + (k - g) * V,
                    V * sizeof(float));
        s.res.timings.decode_tokens++;
      }
    }
    still.clear();
    for (size_t i : live) {
      if (Advance(seqs[i], eos_ids_, V)) {
        still.push_back(i);
      } else {
        Finish(seqs[i], dw.ElapsedMs());
      }
    }
    live.swap(still);
  }
  std::vector<GenerateResult> out;
  out.reserve(B);
  for (auto& s : seqs) out.push_back(std::move(s.res));
  return out;
}

std::vector<float> Engine::Logits(const std::vector<int32_t>& ids,
                                  int64_t chunk) {
  const int64_t V = cfg_.vocab_size, n = static_cast<int64_t>(ids.size());
  if (n == 0) Fail("logits: no input ids");
  if (chunk <= 0) chunk = n;
  std::vector<float> out(n * V);
  cache_.Clear();
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t len = std::min(chunk, n - s);
    decoder_->Forward(ids.data() + s, len, cache_, out.data() + s * V, true);
  }
  return out;
}

void Engine::Forward(const int32_t* ids, int64_t n, float* last_logits) {
  decoder_->Forward(ids, n, cache_, last_logits, false);
}

uint64_t Engine::WeightBytesPerToken() const {
  uint64_t b = 0;
  for (const auto& L : weights_.layers) {
    for (const auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      b += l->bytes;
  }
  return b + PackedBytes(weights_.lm_head.w.format, weights_.lm_head.w.rows,
                         weights_.lm_head.w.cols);
}

MemoryLedger Engine::Memory() const {
  MemoryLedger m;
  m.weights_bytes = weights_.weights_bytes;
  m.weights_resident_bytes = weights_.resident_bytes;
  m.weights_mapped_bytes =
      weights_.weights_bytes -
      std::min(weights_.weights_bytes, weights_.resident_bytes);
  m.prefix_cache_bytes = prefix_cache_ ? prefix_cache_->bytes() : 0;
  m.kv_cache_bytes = cache_.Bytes() + m.prefix_cache_bytes;
  for (const KVCache& c : seq_caches_) m.kv_cache_bytes += c.Bytes();
  m.scratch_bytes = decoder_->ScratchBytes();
  m.peak_rss_bytes = PeakRssBytes();
  return m;
}

}  // namespace bioquant
