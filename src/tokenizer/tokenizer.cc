#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include "tokenizer/added_tokens.h"
#include "tokenizer/backend.h"
#include "tokenizer/text.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {

using nlohmann::json;

struct Tokenizer::Impl {
  tok::Backend backend;
  tok::AddedTokenMatcher matcher;
  std::vector<uint8_t> special;  // id -> 1 if special
  int32_t bos_id = -1, eos_id = -1;
  std::string bos_token, eos_token;
  std::vector<int32_t> prefix, suffix;  // added by Encode(add_special)
  std::string chat_template;
  std::string source;
  bool clean_up_spaces = false;

  int32_t Lookup(const std::string& token) const {
    if (token.empty()) return -1;
    for (const auto& a : matcher.tokens()) {
      if (a.content == token) return a.id;
    }
    const auto& p = backend.pieces;
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i] == token) return static_cast<int32_t>(i);
    }
    return -1;
  }
};

namespace {

// A token in tokenizer_config.json / special_tokens_map.json: a string or
// {"content": ...}; "" when absent or null.
std::string TokenString(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") &&
      (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

const json* FindBool(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? &*it : nullptr;
}

std::string ChatTemplateOf(const json& config) {
  const auto it = config.find("chat_template");
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& t : *it) {
      if (t.is_object() && t.value("name", "") == "default" &&
          t.contains("template") && t["template"].is_string()) {
        return t["template"].get<std::string>();
      }
    }
  }
  return "";
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::Load(const std::string& dir) {
  if (!IsDirectory(dir)) Fail("{}: tokenizer directory not found", dir);
  auto impl = std::make_unique<Impl>();
  json config = json::object(), special_map = json::object();
  const std::string config_path = dir + "/tokenizer_config.json";
  const std::string map_path = dir + "/special_tokens_map.json";
  if (FileExists(config_path)) config = ReadJsonFile(config_path);
  if (FileExists(map_path)) special_map = ReadJsonFile(map_path);
  if (!config.is_object()) Fail("{}: not a JSON object", config_path);
  if (!special_map.is_object()) Fail("{}: not a JSON object", map_path);

  const std::string json_path = dir + "/tokenizer.json";
  const std::string model_path = dir + "/tokenizer.model";
  if (FileExists(json_path)) {
    impl->backend = tok::LoadTokenizerJson(json_path);
    impl->source = "tokenizer.json";
  } else if (FileExists(model_path)) {
    impl->backend = tok::LoadSentencePiece(model_path);
    impl->source = "tokenizer.model";
  } else if (FileExists(dir + "/vocab.json") &&
             FileExists(dir + "/merges.txt")) {
    impl->backend =
        tok::LoadVocabMerges(dir, config.value("tokenizer_class", ""));
    impl->source = "vocab.json+merges.txt";
  } else {
    Fail(
        "{}: no tokenizer.json or tokenizer.model (nor vocab.json + "
        "merges.txt)",
        dir);
  }
  tok::Backend& b = impl->backend;

  for (const auto& a : b.added) impl->matcher.Add(a);
  // transformers also registers the config's added_tokens_decoder.
  if (config.contains("added_tokens_decoder") &&
      config["added_tokens_decoder"].is_object()) {
    for (const auto& [key, t] : config["added_tokens_decoder"].items()) {
      tok::AddedToken a;
      try {
        a.id = std::stoi(key);
      } catch (const std::exception&) {
        Fail("{}: added_tokens_decoder key {:?} is not an id", config_path,
             key);
      }
      if (!t.is_object() || !t.contains("content") ||
          !t["content"].is_string()) {
        Fail("{}: added_tokens_decoder[{:?}] has no content", config_path, key);
      }
      if (a.id < 0)
        Fail("{}: added_tokens_decoder id {} < 0", config_path, a.id);
      if (a.id < static_cast<int32_t>(b.pieces.size()) &&
          b.pieces[a.id] == t["content"].get<std::string>() &&
          std::any_of(b.added.begin(), b.added.end(),
                      [&](const auto& x) { return x.id == a.id; })) {
        continue;  // already known from the tokenizer file
      }
      a.content = t["content"].get<std::string>();
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      if (a.id >= static_cast<int32_t>(b.pieces.size()))
        b.pieces.resize(a.id + 1);
      b.pieces[a.id] = a.content;
      impl->matcher.Add(a);
    }
  }
  impl->special.assign(b.pieces.size(), 0);
  for (const auto& a : impl->matcher.tokens()) {
    if (a.special) impl->special[a.id] = 1;
  }

  // BOS/EOS: the config names them, else special_tokens_map.json, else the
  // model (sentencepiece) or the post_processor template.
  impl->bos_token = TokenString(config, "bos_token");
  if (impl->bos_token.empty() && !config.contains("bos_token")) {
    impl->bos_token = TokenString(special_map, "bos_token");
  }
  impl->eos_token = TokenString(config, "eos_token");
  if (impl->eos_token.empty() && !config.contains("eos_token")) {
    impl->eos_token = TokenString(special_map, "eos_token");
  }
  auto piece_of = [&](int32_t id) {
    return id >= 0 && id < static_cast<int32_t>(b.pieces.size())
               ? b.pieces[id]
               : std::string();
  };
  if (impl->bos_token.empty() && !config.contains("bos_token")) {
    if (b.model_bos >= 0) {
      impl->bos_token = piece_of(b.model_bos);
    } else if (b.template_prefix.size() == 1) {
      impl->bos_token = piece_of(b.template_prefix[0]);
    }
  }
  if (impl->eos_token.empty() && !config.contains("eos_token") &&
      b.model_eos >= 0) {
    impl->eos_token = piece_of(b.model_eos);
  }
  impl->bos_id = impl->Lookup(impl->bos_token);
  impl->eos_id = impl->Lookup(impl->eos_token);
  if (!impl->bos_token.empty() && impl->bos_id < 0) {
    Fail("{}: bos_token {:?} is not in the vocabulary", config_path,
         impl->bos_token);
  }
  if (!impl->eos_token.empty() && impl->eos_id < 0) {
    Fail("{}: eos_token {:?} is not in the vocabulary", config_path,
         impl->eos_token);
  }

  // What Encode(add_special) adds: add_bos_token / add_eos_token when the
  // config says, else the post_processor template; a bare tokenizer.model
  // gets LlamaTokenizer's defaults (BOS, no EOS).
  const bool spm = impl->source == "tokenizer.model";
  if (const json* add_bos = FindBool(config, "add_bos_token")) {
    if (add_bos->get<bool>() && impl->bos_id >= 0)
      impl->prefix = {impl->bos_id};
  } else if (spm) {
    if (impl->bos_id >= 0) impl->prefix = {impl->bos_id};
  } else {
    impl->prefix = b.template_prefix;
  }
  if (const json* add_eos = FindBool(config, "add_eos_token")) {
    if (add_eos->get<bool>() && impl->eos_id >= 0)
      impl->suffix = {impl->eos_id};
  } else if (!spm) {
    impl->suffix = b.template_suffix;
  }
  for (int32_t id : impl->prefix) {
    if (id < 0 || id >= static_cast<int32_t>(b.pieces.size())) {
      Fail("{}: post_processor adds id {}, outside the vocabulary", b.file, id);
    }
  }
  for (int32_t id : impl->suffix) {
    if (id < 0 || id >= static_cast<int32_t>(b.pieces.size())) {
      Fail("{}: post_processor adds id {}, outside the vocabulary", b.file, id);
    }
  }
  impl->chat_template = ChatTemplateOf(config);
  if (const json* clean = FindBool(config, "clean_up_tokenization_spaces")) {
    impl->clean_up_spaces = clean->get<bool>();
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Encode(std::string_view text,
                                       bool add_special) const {
  const std::string clean = tok::SanitizeUtf8(text);
  std::vector<int32_t> ids;
  ids.reserve(clean.size() / 3 + 4);
  if (add_special) ids = impl_->prefix;
  for (const auto& seg : impl_->matcher.Split(clean)) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
    } else {
      impl_->backend.encoder->Encode(
          std::string_view(clean).substr(seg.begin, seg.end - seg.begin),
          seg.begin == 0, &ids);
    }
  }
  if (add_special)
    ids.insert(ids.end(), impl_->suffix.begin(), impl_->suffix.end());
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids,
                              bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      Fail("decode: token id {} is outside the vocabulary [0, {})", id,
           vocab_size());
    }
    if (skip_special && impl_->special[id]) continue;
    tokens.push_back(impl_->backend.pieces[id]);
  }
  return impl_->backend.decoder.Apply(std::move(tokens));
}

std::string Tokenizer::Piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    Fail("token id {} is outside the vocabulary [0, {})", id, vocab_size());
  }
  return impl_->backend.pieces[id];
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->backend.pieces.size());
}
int32_t Tokenizer::bos_id() const { return impl_->bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->eos_id; }
std::string Tokenizer::bos_token() const { return impl_->bos_token; }
std::string Tokenizer::eos_token() const { return impl_->eos_token; }
std::string Tokenizer::chat_template() const { return impl_->chat_template; }
bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[id];
}
const std::vector<int32_t>& Tokenizer::prefix_ids() const {
  return impl_->prefix;
}
const std::vector<int32_t>& Tokenizer::suffix_ids() const {
  return impl_->suffix;
}
std::string Tokenizer::source() const { return impl_->source; }
bool Tokenizer::clean_up_tokenization_spaces() const {
  return impl_->clean_up_spaces;
}

std::string Tokenizer::CleanUpTokenizationSpaces(std::string text) {
  // Same replacements, same order as transformers.
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},     {" !", "!"},   {" ,", ","},
      {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"},
      {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = text.find(from, pos)) != std::string::npos;
         pos = hit + from.size()) {
      out.append(text, pos, hit - pos);
      out += to;
    }
    if (pos == 0) continue;
    out.append(text, pos);
    text = std::move(out);
  }
  return text;
}

// ------------------------------------------------------------ StreamDecoder
//
// The window ids_ holds the last emitted chunk as context (so decoders that
// strip a leading space or treat the first token specially see the same
// neighbours as a full Decode) plus the ids not yet emitted. Text is emitted
// once it grew and does not end in U+FFFD, i.e. no UTF-8 sequence is cut.

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer& t, bool skip_special)
    : tok_(t), skip_special_(skip_special) {}

std::string Tokenizer::StreamDecoder::Push(int32_t id) {
  ids_.push_back(id);
  std::string text;
  try {
    text = tok_.Decode(ids_, skip_special_);
  } catch (...) {
    ids_.pop_back();  // keep the window valid for the caller's next Push
    throw;
  }
  static constexpr std::string_view kFffd = "\uFFFD";
  const bool incomplete =
      text.size() >= kFffd.size() &&
      text.compare(text.size() - kFffd.size(), kFffd.size(), kFffd) == 0;
  if (text.size() <= prefix_.size() || incomplete) return "";
  std::string out = text.substr(prefix_.size());
  const size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(),
             ids_.begin() + static_cast<ptrdiff_t>(prefix_index_));
  prefix_ = tok_.Decode(ids_, skip_special_);
  prefix_index_ = new_prefix_index;
  return out;
}

std::string Tokenizer::StreamDecoder::Flush() {
  std::string out;
  if (!ids_.empty()) {
    const std::string text = tok_.Decode(ids_, skip_special_);
    if (text.size() > prefix_.size()) out = text.substr(prefix_.size());
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return out;
}

}  // namespace bioquant
