// tokenizer.json (HF tokenizers' serialization): normalizer -> pre_tokenizer
// -> BPE model, post_processor for BOS/EOS, decoder.
#include <nlohmann/json.hpp>

#include "tokenizer/backend.h"
#include "tokenizer/bpe.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant::tok {
namespace {

using nlohmann::json;

class JsonEncoder : public SegmentEncoder {
 public:
  JsonEncoder(const json& root, const std::string& file)
      : normalizer_(root.value("normalizer", json()), file),
        pre_tokenizer_(root.value("pre_tokenizer", json()), file),
        model_(root.at("model"), file) {}

  void Encode(std::string_view text, bool at_start,
              std::vector<int32_t>* out) const override {
    const std::string norm = normalizer_.Apply(std::string(text));
    for (const auto& word : pre_tokenizer_.Apply(norm, at_start)) {
      model_.Tokenize(word, out);
    }
  }
  const BpeModel& model() const { return model_; }

 private:
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
};

// Reads the special-token ids that a post_processor puts around a single
// sequence.
void ReadPostProcessor(const json& j, const std::string& file, Backend* b) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) ReadPostProcessor(p, file, b);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets.
  } else if (type == "TemplateProcessing") {
    b->has_template = true;
    b->template_prefix.clear();
    b->template_suffix.clear();
    const json& specials = j.at("special_tokens");
    bool seen_sequence = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const std::string name =
          item.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name)) {
        Fail(
            "{}: post_processor TemplateProcessing uses {:?}, which is not in "
            "its special_tokens",
            file, name);
      }
      for (const auto& id : specials.at(name).at("ids")) {
        (seen_sequence ? b->template_suffix : b->template_prefix)
            .push_back(id.get<int32_t>());
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    b->has_template = true;
    b->template_prefix = {j.at("cls").at(1).get<int32_t>()};
    b->template_suffix = {j.at("sep").at(1).get<int32_t>()};
  } else {
    Fail("{}: post_processor type {:?} is not supported", file, type);
  }
}

Backend FromJson(const json& root, const std::string& path) {
  if (!root.is_object()) Fail("{}: not a JSON object", path);
  if (!root.contains("model") || !root["model"].is_object()) {
    Fail("{}: no \"model\" object", path);
  }
  const json& model = root["model"];
  const std::string type =
      model.value("type", model.contains("merges") ? "BPE" : "");
  if (type != "BPE") {
    Fail("{}: model type {:?} is not supported (only BPE)", path, type);
  }

  Backend b;
  b.file = path;
  auto enc = std::make_unique<JsonEncoder>(root, path);
  int32_t max_id = enc->model().max_id();
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    for (const auto& t : root.at("added_tokens")) {
      AddedToken a;
      a.id = t.at("id").get<int32_t>();
      a.content = t.at("content").get<std::string>();
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      if (a.id < 0)
        Fail("{}: added token {:?} has a negative id", path, a.content);
      max_id = std::max(max_id, a.id);
      b.added.push_back(std::move(a));
    }
  }
  b.pieces.assign(static_cast<size_t>(max_id + 1), "");
  for (const auto& [piece, id] : enc->model().vocab()) b.pieces[id] = piece;
  for (const auto& a : b.added) b.pieces[a.id] = a.content;
  b.decoder = Decoder(root.value("decoder", json()), path);
  ReadPostProcessor(root.value("post_processor", json()), path, &b);
  b.encoder = std::move(enc);
  return b;
}

}  // namespace

Backend LoadTokenizerJson(const std::string& path) {
  const json root = ReadJsonFile(path);
  try {
    return FromJson(root, path);
  } catch (const json::exception& e) {
    // Missing fields and wrong types in an otherwise valid JSON file.
    Fail("{}: malformed tokenizer.json: {}", path, e.what());
  }
}

Backend LoadVocabMerges(const std::string& dir,
                        const std::string& tokenizer_class) {
  // The slow GPT2Tokenizer / Qwen2Tokenizer, written as the tokenizer.json
  // that transformers converts them to.
  json root = json::object();
  if (tokenizer_class == "Qwen2Tokenizer") {
    root["normalizer"] = {{"type", "NFC"}};
    root["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern",
                {{"Regex",
                  R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
               {"behavior", "Isolated"}},
              {{"type", "ByteLevel"},
               {"add_prefix_space", false},
               {"use_regex", false}}})}};
  } else if (tokenizer_class == "GPT2Tokenizer") {
    root["pre_tokenizer"] = {{"type", "ByteLevel"},
                             {"add_prefix_space", false}};
  } else {
    Fail(
        "{}/tokenizer_config.json: tokenizer_class {:?} with vocab.json + "
        "merges.txt is not supported (Qwen2Tokenizer, GPT2Tokenizer)",
        dir, tokenizer_class);
  }
  root["decoder"] = {{"type", "ByteLevel"}};
  const std::string vocab_path = dir + "/vocab.json";
  const std::string merges_path = dir + "/merges.txt";
  json model = {{"type", "BPE"}, {"vocab", ReadJsonFile(vocab_path)}};
  json merges = json::array();
  const std::string text = ReadFile(merges_path);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(std::move(line));
  }
  model["merges"] = std::move(merges);
  root["model"] = std::move(model);
  try {
    Backend b = FromJson(root, vocab_path);
    b.file = vocab_path;
    return b;
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (with " + merges_path + ")");
  } catch (const json::exception& e) {
    Fail("{}: malformed vocab.json: {}", vocab_path, e.what());
  }
}

}  // namespace bioquant::tok
