#include "backends/local.h"

#include <map>
#include <utility>

#include "engine/engine.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/sys.h"

namespace bioquant {
namespace {

// The resolved storage/compute pair stored with every row.
std::string ComputeName(const ModelWeights& w) {
  switch (w.linear_format) {
    case WeightFormat::kInt8Row:
      return w.llm_int8 ? "llm-int8" : "w8a32";
    case WeightFormat::kNF4:
    case WeightFormat::kFP4:
      return "w4a32";
    default:
      return "f32";
  }
}

class LocalBackend : public Backend {
 public:
  explicit LocalBackend(std::unique_ptr<Engine> engine)
      : engine_(std::move(engine)) {}

  bool RenderChat(const nlohmann::json& messages, const std::string& date,
                  std::string* out) const override {
    return engine_->RenderChat(messages, true, date, "", out);
  }

  std::vector<BackendResult> Generate(
      const std::vector<BackendRequest>& requests,
      const OnResult& on_result) override {
    const Tokenizer& tok = engine_->RequireTokenizer();
    std::vector<GenerateRequest> reqs;
    reqs.reserve(requests.size());
    // The samples of one example share their prompt: tokenize it once.
    std::map<std::pair<std::string, bool>, std::vector<int32_t>> ids;
    // A prompt longer than the model's context is answered without
    // generating (finish_reason "prompt_too_long"), as a server answers 400.
    std::vector<size_t> run;  // indices of the requests generated
    std::vector<int64_t> too_long(requests.size(), -1);
    for (size_t i = 0; i < requests.size(); ++i) {
      const BackendRequest& r = requests[i];
      auto key = std::make_pair(r.text, r.add_special_tokens);
      auto it = ids.find(key);
      if (it == ids.end()) {
        it = ids.emplace(key, tok.Encode(r.text, r.add_special_tokens)).first;
      }
      if (!engine_->PromptFits(static_cast<int64_t>(it->second.size()))) {
        too_long[i] = static_cast<int64_t>(it->second.size());
        continue;
      }
      run.push_back(i);
      GenerateRequest g;
      g.prompt_ids = it->second;
      g.max_new_tokens = r.max_new_tokens;
      g.sampling.temperature = r.temperature;
      g.sampling.top_p = r.top_p;
      g.sampling.seed = r.seed;
      g.stop = r.stop;
      reqs.push_back(std::move(g));
    }
    Stopwatch sw;
    const std::vector<GenerateResult> results =
        reqs.empty() ? std::vector<GenerateResult>()
                     : engine_->GenerateBatch(reqs);
    // The call's rows share its wall time (prefill_ms and decode_ms are each
    // request's own, see engine/engine.h Timings).
    const double latency_ms =
        sw.ElapsedMs() / std::max<size_t>(1, results.size());
    std::vector<BackendResult> out(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      if (too_long[i] >= 0) {
        out[i].finish_reason = "prompt_too_long";
        out[i].tokens_in = too_long[i];
      }
    }
    for (size_t k = 0; k < results.size(); ++k) {
      const GenerateResult& g = results[k];
      BackendResult& b = out[run[k]];
      b.text = g.text;
      b.finish_reason = g.finish_reason;
      b.tokens_in = static_cast<int64_t>(reqs[k].prompt_ids.size());
      b.tokens_out = static_cast<int64_t>(g.output_ids.size());
      b.latency_ms = latency_ms;
      b.prefill_ms = g.timings.prefill_ms;
      b.decode_ms = g.timings.decode_ms;
    }
    if (on_result) {
      for (size_t i = 0; i < out.size(); ++i) on_result(i, out[i]);
    }
    return out;
  }

  std::string Compute() const override {
    return ComputeName(engine_->weights());
  }
  std::optional<BackendMemory> Memory() const override {
    const MemoryLedger m = engine_->Memory();
    return BackendMemory{m.weights_bytes, m.kv_cache_bytes, m.scratch_bytes,
                         m.peak_rss_bytes};
  }
  int threads() const override { return engine_->threads(); }

 private:
  std::unique_ptr<Engine> engine_;
};

class LocalBackendSet : public BackendSet {
 public:
  explicit LocalBackendSet(LocalBackendOptions o) : o_(std::move(o)) {}

  std::string Fingerprint() override {
    // An unknown architecture or a malformed config.json fails here, before
    // the store is touched.
    (void)LoadModelConfig(o_.model_dir);
    return ModelFingerprint(o_.model_dir);
  }
  nlohmann::json Config() const override {
    nlohmann::json c = {{"blocksize", o_.quant.blocksize},
                        {"double_quant", o_.quant.double_quant},
                        {"skip_modules", o_.skip_modules}};
    // Only when given, so stores made before the map existed still match.
    if (!o_.precision_map.empty())
      c["precision_map"] = o_.precision_map.ToString();
    return c;
  }
  nlohmann::json Manifest() const override {
    return {{"model", o_.model_dir},
            {"run",
             {{"threads", o_.threads},
              {"prefix_cache_bytes", o_.prefix_cache_bytes}}}};
  }
  std::unique_ptr<Backend> Open(const std::string& label) override {
    EngineOptions eo;
    eo.model_dir = o_.model_dir;
    eo.precision.name = label;
    if (label == "mixed") {
      eo.precision.name = "";
      eo.precision.module_map = o_.precision_map;
    }
    eo.precision.quant = o_.quant;
    eo.precision.skip_modules = o_.skip_modules;
    eo.threads = o_.threads;
    eo.prefix_cache_bytes = o_.prefix_cache_bytes;
    eo.weight_cache_dir = o_.weight_cache_dir;
    // The peak this precision reaches, not the one before it.
    ResetPeakRss();
    return std::make_unique<LocalBackend>(Engine::Load(eo));
  }

 private:
  LocalBackendOptions o_;
};

}  // namespace

std::string ModelFingerprint(const std::string& model_dir) {
  uint64_t h = Fnv1a(ReadFile(model_dir + "/config.json"));
  auto store = TensorStore::Open(model_dir);
  for (const auto& f : store->files()) h = Fnv1a(f->header_json(), h);
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(h));
  return buf;
}

std::unique_ptr<BackendSet> MakeLocalBackendSet(const LocalBackendOptions& o) {
  if (o.model_dir.empty()) Fail("--model is required");
  if (!IsDirectory(o.model_dir))
    Fail("--model: {}: model directory not found", o.model_dir);
  for (const auto& p : o.precisions) {
    if (p == "mixed" && !o.precision_map.empty()) continue;
    if (p == "mixed") {
      Fail("--precisions: 'mixed' needs --precision-map");
    }
    ResolveLinearFormat(p, "bfloat16");
  }
  return std::make_unique<LocalBackendSet>(o);
}

}  // namespace bioquant
