#include "engine/engine.h"

#include <algorithm>

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
          {"scratch_bytes", scratch_bytes},
          {"peak_rss_bytes", peak_rss_bytes}};
}

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::Load(const EngineOptions& opts) {
  Stopwatch sw;
  auto e = std::unique_ptr<Engine>(new Engine());
  e->cfg_ = LoadModelConfig(opts.model_dir);
  e->weights_ = LoadWeights(opts.model_dir, e->cfg_, opts.precision);
  if (FileExists(opts.model_dir + "/tokenizer.json") ||
      FileExists(opts.model_dir + "/tokenizer.model")) {
    e->tokenizer_ = Tokenizer::Load(opts.model_dir);
  }
  e->pool_ = std::make_unique<ThreadPool>(opts.threads);
  e->decoder_ = std::make_unique<Decoder>(e->cfg_, e->weights_, e->pool_.get());
  e->cache_ = e->decoder_->NewCache();
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

GenerateResult Engine::Generate(const GenerateRequest& req) {
  if (req.prompt_ids.empty()) Fail("generate: the prompt has no tokens");
  if (req.max_new_tokens < 0) Fail("--max-new-tokens must be >= 0");
  GenerateResult res;
  res.timings.load_ms = load_ms_;
  const int64_t V = cfg_.vocab_size;
  Sampler sampler(req.sampling);
  std::vector<float> logits(V);
  cache_.Clear();
  Stopwatch sw;
  decoder_->Forward(req.prompt_ids.data(), req.prompt_ids.size(), cache_,
                    logits.data(), false);
  res.timings.prefill_ms = sw.ElapsedMs();
  res.timings.prefill_tokens = static_cast<int64_t>(req.prompt_ids.size());
  std::unique_ptr<Tokenizer::StreamDecoder> stream;
  if (tokenizer_)
    stream = std::make_unique<Tokenizer::StreamDecoder>(*tokenizer_, true);
  res.finish_reason = "length";
  sw.Reset();
  for (int i = 0; i < req.max_new_tokens; ++i) {
    const int32_t next = sampler.Sample(logits.data(), V);
    res.output_ids.push_back(next);
    const bool is_eos =
        std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end();
    if (is_eos && !req.ignore_eos) {
      res.finish_reason = "eos";
      break;
    }
    if (stream) {
      const std::string piece = stream->Push(next);
      res.text += piece;
      bool stopped = false;
      for (const auto& s : req.stop) {
        const size_t pos = s.empty() ? std::string::npos : res.text.find(s);
        if (pos != std::string::npos) {
          res.text.resize(pos);
          stopped = true;
        }
      }
      if (stopped) {
        res.finish_reason = "stop";
        break;
      }
      if (req.on_text && !piece.empty() && !req.on_text(piece)) {
        res.finish_reason = "callback";
        break;
      }
    }
    if (i + 1 == req.max_new_tokens) break;  // no forward for an unused token
    decoder_->Forward(&next, 1, cache_, logits.data(), false);
    res.timings.decode_tokens++;
  }
  if (stream && res.finish_reason == "length") res.text += stream->Flush();
  res.timings.decode_ms = sw.ElapsedMs();
  return res;
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
  m.kv_cache_bytes = cache_.Bytes();
  m.scratch_bytes = decoder_->ScratchBytes();
  m.peak_rss_bytes = PeakRssBytes();
  return m;
}

}  // namespace bioquant
