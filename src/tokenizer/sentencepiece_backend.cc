// tokenizer.model through libsentencepiece (used only when the checkpoint
// has no tokenizer.json).
#include <sentencepiece_processor.h>

#include "tokenizer/backend.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant::tok {
namespace {

class SpEncoder : public SegmentEncoder {
 public:
  explicit SpEncoder(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : sp_(std::move(sp)) {}
  void Encode(std::string_view text, bool,
              std::vector<int32_t>* out) const override {
    std::vector<int> ids;
    const auto status = sp_->Encode(std::string(text), &ids);
    if (!status.ok())
      Fail("sentencepiece encode failed: {}", status.ToString());
    out->insert(out->end(), ids.begin(), ids.end());
  }
  const sentencepiece::SentencePieceProcessor& sp() const { return *sp_; }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace

Backend LoadSentencePiece(const std::string& path) {
  const std::string data = ReadFile(path);
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->LoadFromSerializedProto(data);
  if (!status.ok()) {
    // Llama-3's original tokenizer.model is a tiktoken rank file, not a
    // sentencepiece model.
    const bool tiktoken = data.find(' ') != std::string::npos &&
                          data.find('\n') != std::string::npos &&
                          data.find('\0') == std::string::npos;
    if (tiktoken) {
      Fail(
          "{}: not a sentencepiece model but a tiktoken rank file (like "
          "Llama-3's original/tokenizer.model); use the checkpoint's "
          "tokenizer.json",
          path);
    }
    Fail("{}: not a sentencepiece model ({})", path, status.ToString());
  }
  Backend b;
  b.file = path;
  const int n = sp->GetPieceSize();
  b.pieces.resize(n);
  for (int i = 0; i < n; ++i) {
    b.pieces[i] = sp->IdToPiece(i);
    // Control symbols (<s>, </s>) and <unk> are matched in text and are
    // special, as in HF's LlamaTokenizer.
    if (sp->IsControl(i) || sp->IsUnknown(i)) {
      b.added.push_back({b.pieces[i], i, true, false, false, false});
    }
  }
  b.model_bos = sp->bos_id();
  b.model_eos = sp->eos_id();
  // A model with add_dummy_prefix puts U+2581 before the text; decoding
  // strips one leading space then.
  std::vector<std::string> probe;
  const bool dummy_prefix = sp->Encode("a", &probe).ok() && !probe.empty() &&
                            probe[0].rfind("\u2581", 0) == 0;
  b.decoder = Decoder::SentencePiece(dummy_prefix);
  b.encoder = std::make_unique<SpEncoder>(std::move(sp));
  return b;
}

}  // namespace bioquant::tok
