#include "engine/engine.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "engine/prefix_cache.h"
#include "engine/weight_cache.h"
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
  // A quantized precision may come from the weights cache (same bytes,
  // mapped); the config, tokenizer and everything else from model_dir.
  const WeightCacheResult wc =
      ResolveWeightCache(opts.weight_cache_dir, opts.model_dir, e->cfg_,
                         opts.precision, e->pool_.get());
  if (wc.dir != opts.model_dir) {
    e->weights_ = LoadWeights(wc.dir, LoadModelConfig(wc.dir), opts.precision,
                              e->pool_.get());
    e->weight_cache_ = wc.hit ? "hit" : "built";
  } else {
    e->weights_ =
        LoadWeights(opts.model_dir, e->cfg_, opts.precision, e->pool_.get());
  }
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
  e->allow_context_overflow_ = opts.allow_context_overflow;
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
  return RenderChatFor(tokenizer_.get(), template_text, messages,
                       add_generation_prompt, date, out);
}

namespace {

// Picks the next token of a sequence from `logits` and applies the request's
// stopping rules. Returns true when the sequence goes on (feed *next).
bool Advance(const GenerateRequest& req, Sampler& sampler,
             Tokenizer::StreamDecoder* stream, const float* logits,
             const std::vector<int32_t>& eos_ids, int64_t vocab,
             GenerateResult& res, int32_t* next_out) {
  const int i = static_cast<int>(res.output_ids.size());
  if (i >= req.max_new_tokens) return false;
  const int32_t next = sampler.Sample(logits, vocab);
  res.output_ids.push_back(next);
  const bool is_eos =
      std::find(eos_ids.begin(), eos_ids.end(), next) != eos_ids.end();
  if (is_eos && !req.ignore_eos) {
    res.finish_reason = "eos";
    return false;
  }
  if (stream) {
    const std::string piece = stream->Push(next);
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
  *next_out = next;
  return true;
}

}  // namespace

bool Engine::PromptFits(int64_t n) const {
  const int64_t ctx = context_length();
  return allow_context_overflow_ || ctx <= 0 || n <= ctx;
}

void Engine::CheckRequest(const GenerateRequest& req,
                          const std::string& which) const {
  if (req.prompt_ids.empty())
    Fail("generate: the prompt has no tokens{}", which);
  if (req.max_new_tokens < 0) Fail("--max-new-tokens must be >= 0{}", which);
  const int64_t n = static_cast<int64_t>(req.prompt_ids.size());
  if (!PromptFits(n)) {
    Fail(
        "generate: the prompt has {} tokens, more than the model's context "
        "of {} positions (max_position_embeddings){}; "
        "--allow-context-overflow runs past it",
        n, context_length(), which);
  }
}

KVCache* Engine::AcquireCache() {
  if (free_caches_.empty()) {
    seq_caches_.push_back(std::make_unique<KVCache>(decoder_->NewCache()));
    return seq_caches_.back().get();
  }
  KVCache* c = free_caches_.back();
  free_caches_.pop_back();
  return c;
}

void Engine::ReleaseCache(KVCache* cache) { free_caches_.push_back(cache); }

GenerateResult Engine::Generate(const GenerateRequest& req) {
  return std::move(GenerateBatch({req})[0]);
}

std::vector<GenerateResult> Engine::GenerateBatch(
    const std::vector<GenerateRequest>& reqs) {
  for (size_t i = 0; i < reqs.size(); ++i) {
    CheckRequest(reqs[i],
                 reqs.size() > 1 ? fmt::format(" (request {})", i) : "");
  }
  DecodeBatch batch(*this);
  for (const GenerateRequest& r : reqs) batch.Add(r);  // ids 0..n-1
  while (batch.live() > 0) batch.Step();
  std::vector<GenerateResult> out(reqs.size());
  for (auto& [id, res] : batch.TakeFinished()) out[id] = std::move(res);
  return out;
}

// One sequence of a DecodeBatch.
struct DecodeBatch::Seq {
  int id;
  GenerateRequest req;
  Sampler sampler;
  std::unique_ptr<Tokenizer::StreamDecoder> stream;  // null without tokenizer
  KVCache* cache;
  std::vector<float> logits;  // [vocab]: the distribution of the next token
  bool stepped = false;       // a Step has sampled from it (logits moved on)
  Stopwatch decode_clock;     // started by its first Step
  GenerateResult res;
};

DecodeBatch::DecodeBatch(Engine& engine) : e_(engine) {}

DecodeBatch::~DecodeBatch() {
  for (auto& s : seqs_) e_.ReleaseCache(s->cache);
}

int DecodeBatch::Add(GenerateRequest req) {
  e_.CheckRequest(req);
  // prompt + output within the context: the last output token is never fed
  // back, but HF's max_length counts it, and so do we.
  bool context_limited = false;
  const int64_t ctx = e_.context_length();
  if (!e_.allow_context_overflow_ && ctx > 0) {
    const int64_t room = ctx - static_cast<int64_t>(req.prompt_ids.size());
    if (req.max_new_tokens > room) {
      req.max_new_tokens = static_cast<int>(room);
      context_limited = true;
    }
  }
  const int64_t V = e_.cfg_.vocab_size;
  auto s = std::make_unique<Seq>(Seq{next_id_,
                                     std::move(req),
                                     Sampler({}),
                                     nullptr,
                                     nullptr,
                                     std::vector<float>(V),
                                     false,
                                     {},
                                     {}});
  s->sampler = Sampler(s->req.sampling);
  if (e_.tokenizer_) {
    s->stream =
        std::make_unique<Tokenizer::StreamDecoder>(*e_.tokenizer_, true);
  }
  s->res.timings.load_ms = e_.load_ms_;
  s->res.finish_reason = "length";
  s->res.context_limited = context_limited;
  const std::vector<int32_t>& prompt = s->req.prompt_ids;
  const int64_t n = static_cast<int64_t>(prompt.size());
  Stopwatch sw;
  s->cache = e_.AcquireCache();
  s->cache->Clear();
  int64_t reused = 0;
  // An identical prompt not yet stepped holds exactly this prompt's keys,
  // values and logits (self-consistency samples).
  const Seq* twin = nullptr;
  for (const auto& o : seqs_) {
    if (!o->stepped && o->req.prompt_ids == prompt) twin = o.get();
  }
  if (twin) {
    s->cache->AssignPrefix(*twin->cache, n);
    s->logits = twin->logits;
    reused = n;
  } else {
    PrefixCache* pc = e_.prefix_cache_.get();
    if (pc) reused = pc->Lookup(prompt, s->cache);
    e_.decoder_->Forward(prompt.data() + reused, n - reused, *s->cache,
                         s->logits.data(), false);
    if (pc) pc->Insert(prompt, *s->cache);
  }
  s->res.timings.prefill_ms = sw.ElapsedMs();
  s->res.timings.prefill_tokens = n - reused;
  s->res.timings.reused_tokens = reused;
  seqs_.push_back(std::move(s));
  return next_id_++;
}

void DecodeBatch::Finish(Seq& s, double decode_ms) {
  // Only a sequence that ran into the cut limit was limited by the context.
  if (s.res.finish_reason != "length") s.res.context_limited = false;
  if (s.stream && s.res.finish_reason == "length")
    s.res.text += s.stream->Flush();
  s.res.timings.decode_ms = decode_ms;
  e_.ReleaseCache(s.cache);
  finished_.emplace_back(s.id, std::move(s.res));
}

void DecodeBatch::Step() {
  const int64_t V = e_.cfg_.vocab_size;
  // Sample from each sequence's logits; keep those that go on.
  std::vector<std::unique_ptr<Seq>> going;
  std::vector<int32_t> ids;
  for (auto& s : seqs_) {
    if (!s->stepped) s->decode_clock.Reset();
    int32_t next = -1;
    const bool more = Advance(s->req, s->sampler, s->stream.get(),
                              s->logits.data(), e_.eos_ids_, V, s->res, &next);
    const double decode_ms = s->stepped ? s->decode_clock.ElapsedMs() : 0.0;
    s->stepped = true;
    if (!more) {
      Finish(*s, decode_ms);
      continue;
    }
    ids.push_back(next);
    going.push_back(std::move(s));
  }
  seqs_.swap(going);
  // One forward step for every sequence that goes on.
  const int64_t group = Decoder::kMaxBatchRows;
  group_logits_.resize(std::min<int64_t>(seqs_.size(), group) * V);
  std::vector<SeqSlice> slices;
  for (size_t g = 0; g < seqs_.size(); g += group) {
    const size_t end = std::min(seqs_.size(), g + group);
    slices.clear();
    for (size_t k = g; k < end; ++k) slices.push_back({seqs_[k]->cache, 1});
    e_.decoder_->Forward(ids.data() + g, slices, group_logits_.data(),
                         LogitsMode::kLast);
    for (size_t k = g; k < end; ++k) {
      Seq& s = *seqs_[k];
      std::memcpy(s.logits.data(), group_logits_.data() + (k - g) * V,
                  V * sizeof(float));
      s.res.timings.decode_tokens++;
    }
  }
}

void DecodeBatch::Cancel(int id) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    if (seqs_[i]->id != id) continue;
    Seq& s = *seqs_[i];
    s.res.finish_reason = "cancelled";
    Finish(s, s.stepped ? s.decode_clock.ElapsedMs() : 0.0);
    seqs_.erase(seqs_.begin() + i);
    return;
  }
}

std::vector<std::pair<int, GenerateResult>> DecodeBatch::TakeFinished() {
  return std::exchange(finished_, {});
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
  for (const auto& c : seq_caches_) m.kv_cache_bytes += c->Bytes();
  m.scratch_bytes = decoder_->ScratchBytes();
  m.peak_rss_bytes = PeakRssBytes();
  return m;
}

}  // namespace bioquant
