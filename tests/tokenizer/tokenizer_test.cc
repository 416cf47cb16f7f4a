// Tokenizer tests: llama.cpp's tokenizer oracles (ids from HF), the
// stories260K goldens, tokenizer.json vs tokenizer.model agreement, round
// trips, streaming, BOS/EOS config, and bad files.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

using nlohmann::json;
using testing::OracleDir;

std::string TokDir(const std::string& sub) {
  return OracleDir() + "/tokenizers/" + sub;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> LlamaCppCases(const std::string& name) {
  const json j = ReadJsonFile(
      TokDir("llama.cpp-tests/ggml-vocab-" + name + ".gguf.tests.json"));
  std::vector<Case> cases;
  for (const auto& t : j.at("tests")) {
    cases.push_back({t.at("text").get<std::string>(),
                     t.at("ids").get<std::vector<int32_t>>()});
  }
  return cases;
}

// Tokenizers are slow-ish to load (Llama-3: 280k merges); load each once.
const Tokenizer& Cached(const std::string& dir) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[dir];
  if (!t) t = Tokenizer::Load(dir);
  return *t;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

std::vector<std::string> AllOracleStrings();

// ------------------------------------------------ llama.cpp / HF id oracles

struct OracleParam {
  const char* dir;     // under oracles/tokenizers/
  const char* vocab;   // llama.cpp test name
  const char* source;  // file we expect Load to pick
};

void PrintTo(const OracleParam& p, std::ostream* os) {
  *os << p.dir << " vs " << p.vocab;
}

class LlamaCppOracle : public ::testing::TestWithParam<OracleParam> {};

TEST_P(LlamaCppOracle, AllStringsGiveHfIds) {
  BIOQUANT_REQUIRE_SHARED();
  const auto& p = GetParam();
  const Tokenizer& tok = Cached(TokDir(p.dir));
  EXPECT_EQ(tok.source(), p.source);
  const auto cases = LlamaCppCases(p.vocab);
  ASSERT_EQ(cases.size(), 46u);
  int failures = 0;
  for (const auto& c : cases) {
    const auto ids = tok.Encode(c.text, /*add_special=*/false);
    if (ids != c.ids) ++failures;
    EXPECT_EQ(ids, c.ids) << "text " << json(c.text).dump() << "\n got  "
                          << Show(ids) << "\n want " << Show(c.ids);
  }
  EXPECT_EQ(failures, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, LlamaCppOracle,
    ::testing::Values(
        OracleParam{"derived/llama3", "llama-bpe", "tokenizer.json"},
        OracleParam{"derived/qwen2", "qwen2", "tokenizer.json"},
        OracleParam{"derived/qwen2", "deepseek-r1-qwen", "tokenizer.json"},
        OracleParam{"derived/qwen2.5", "qwen2", "tokenizer.json"},
        OracleParam{"llama-2", "llama-spm", "tokenizer.model"},
        OracleParam{"llama-2", "phi-3", "tokenizer.model"}),
    [](const auto& info) {
      std::string n = std::string(info.param.dir) + "_" + info.param.vocab;
      for (char& c : n) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return n;
    });

TEST(TokenizerLlama3, ExtraTestsIncludingIgnoreMerges) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir("derived/llama3"));
  const json j = ReadJsonFile(TokDir("derived/llama3/extra_tests.json"));
  ASSERT_GE(j.size(), 4u);
  for (const auto& t : j) {
    const auto text = t.at("text").get<std::string>();
    EXPECT_EQ(tok.Encode(text, t.at("add_special_tokens").get<bool>()),
              t.at("ids").get<std::vector<int32_t>>())
        << json(text).dump();
  }
}

TEST(TokenizerLlama3, SpecialTokensAndConfig) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir("derived/llama3"));
  EXPECT_EQ(tok.bos_id(), 128000);
  EXPECT_EQ(tok.bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(tok.eos_token(), "<|eot_id|>");
  EXPECT_EQ(tok.eos_id(), 128009);
  EXPECT_EQ(tok.vocab_size(), 128256);
  EXPECT_TRUE(tok.IsSpecial(128009));
  EXPECT_FALSE(tok.IsSpecial(9906));
  EXPECT_EQ(tok.Piece(9906), "Hello");
  EXPECT_EQ(tok.Piece(1917), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tok.prefix_ids(), std::vector<int32_t>{128000});
  EXPECT_TRUE(tok.suffix_ids().empty());
  EXPECT_NE(tok.chat_template().find("<|start_header_id|>"), std::string::npos);
  // Decoding keeps special tokens unless asked to skip them.
  const auto ids = tok.Encode("Hello world");
  EXPECT_EQ(tok.Decode(ids), "<|begin_of_text|>Hello world");
  EXPECT_EQ(tok.Decode(ids, /*skip_special=*/true), "Hello world");
  EXPECT_TRUE(tok.clean_up_tokenization_spaces());  // as its config says
  EXPECT_EQ(Tokenizer::CleanUpTokenizationSpaces("Hi , it 's ok . I do n't ?"),
            "Hi, it's ok. I don't?");
  EXPECT_THROW(tok.Decode({128256}), Error);
  EXPECT_THROW(tok.Decode({-1}), Error);
}

TEST(TokenizerQwen2, ConfigSaysNoBos) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir("derived/qwen2"));
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_EQ(tok.eos_token(), "<|im_end|>");
  EXPECT_EQ(tok.eos_id(), 151645);
  EXPECT_TRUE(tok.prefix_ids().empty());
  EXPECT_EQ(tok.Encode("<|im_start|>user\nHi<|im_end|>", true),
            tok.Encode("<|im_start|>user\nHi<|im_end|>", false));
  EXPECT_EQ(tok.Encode("<|im_start|>user", false)[0], 151644);
  EXPECT_NE(tok.chat_template(), "");
  EXPECT_FALSE(tok.clean_up_tokenization_spaces());
}

// A checkpoint with vocab.json + merges.txt and no tokenizer.json (the
// Qwen2 derivative) tokenizes like the Qwen2 tokenizer.json, chat tokens
// included.
TEST(TokenizerQwen2, VocabMergesMatchesTokenizerJson) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& from_json = Cached(TokDir("derived/qwen2"));
  const Tokenizer& slow = Cached(TokDir("qwen2-1.5b-instruct-derivative"));
  EXPECT_EQ(slow.vocab_size(), from_json.vocab_size());
  EXPECT_EQ(slow.eos_id(), 151645);
  for (const auto& s : AllOracleStrings()) {
    EXPECT_EQ(slow.Encode(s), from_json.Encode(s)) << json(s).dump();
    EXPECT_EQ(slow.Decode(slow.Encode(s)), s);
  }
}

// NFC: a decomposed "é" (e + U+0301) encodes like the composed one.
TEST(TokenizerQwen2, NormalizesToNfc) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir("derived/qwen2"));
  EXPECT_EQ(tok.Encode("caf\x65\xCC\x81", false),
            tok.Encode("caf\xC3\xA9", false));
}

// ---------------------------------------------------------- Mistral v0.3

// HF's Metaspace (prepend_scheme "first") checks for a leading U+2581 after
// replacing spaces, so " x" gets one, where sentencepiece's dummy prefix
// gives two: tokenizer.json(" x") == tokenizer.model("x"). Every other
// string must agree exactly.
TEST(TokenizerMistral, JsonAgreesWithSentencePieceModel) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string dir = TokDir("mistral-7b-instruct-v0.3");
  const Tokenizer& json_tok = Cached(dir);
  ASSERT_EQ(json_tok.source(), "tokenizer.json");
  // The same model file alone, through libsentencepiece.
  const std::string spm_dir = testing::TempDir("mistral_spm");
  std::filesystem::copy_file(dir + "/tokenizer.model",
                             spm_dir + "/tokenizer.model");
  const auto spm_tok = Tokenizer::Load(spm_dir);
  ASSERT_EQ(spm_tok->source(), "tokenizer.model");
  EXPECT_EQ(json_tok.vocab_size(), spm_tok->vocab_size());

  auto cases = LlamaCppCases("llama-spm");
  for (const char* extra :
       {"Tom's dog ran 123 km! 日本", "café naïve über 😀", "a\n\nb\tc  d"}) {
    cases.push_back({extra, {}});
  }
  int compared = 0;
  for (const auto& c : cases) {
    const auto from_json = json_tok.Encode(c.text, false);
    if (c.text == " ") {
      EXPECT_EQ(from_json, std::vector<int32_t>{29473});  // "▁"
      EXPECT_EQ(json_tok.Piece(29473), "\u2581");
    } else if (!c.text.empty() && c.text[0] == ' ') {
      EXPECT_EQ(from_json, spm_tok->Encode(c.text.substr(1), false))
          << json(c.text).dump();
    } else {
      EXPECT_EQ(from_json, spm_tok->Encode(c.text, false))
          << json(c.text).dump();
    }
    ++compared;
  }
  EXPECT_EQ(compared, 49);
  // prepend_scheme "first": text after a special token gets no U+2581 of its
  // own (HF legacy=False), so " What" after [INST] is "▁What".
  std::vector<int32_t> want = {3};
  for (int32_t id : spm_tok->Encode("What is BRCA1? ", false))
    want.push_back(id);
  want.push_back(4);
  EXPECT_EQ(json_tok.Encode("[INST] What is BRCA1? [/INST]", false), want);
  EXPECT_EQ(json_tok.Encode("[INST] Hi [/INST]", false)[0], 3);
  EXPECT_EQ(json_tok.bos_id(), 1);
  EXPECT_EQ(json_tok.eos_id(), 2);
  EXPECT_EQ(json_tok.Encode("Hi")[0], 1);
  EXPECT_EQ(spm_tok->Encode("Hi")[0], 1);
  EXPECT_NE(json_tok.chat_template(), "");
}

// ------------------------------------------------------------ stories260K

class Stories260k : public ::testing::TestWithParam<const char*> {};

// Both tokenizer files reproduce the prompt ids run.c used (BOS first).
TEST_P(Stories260k, GoldenPromptIds) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string hf = OracleDir() + "/stories260k/hf";
  std::unique_ptr<Tokenizer> tok;
  if (std::string(GetParam()) == "tokenizer.json") {
    tok = Tokenizer::Load(hf);
  } else {
    const std::string d = testing::TempDir("stories_spm");
    for (const char* f : {"tokenizer.model", "tokenizer_config.json"}) {
      std::filesystem::copy_file(hf + "/" + f, d + "/" + f);
    }
    tok = Tokenizer::Load(d);
  }
  ASSERT_EQ(tok->source(), GetParam());
  const json golden =
      ReadJsonFile(OracleDir() + "/stories260k/golden/golden_runc.json");
  ASSERT_EQ(golden.size(), 5u);
  for (const auto& g : golden) {
    const auto prompt = g.at("prompt").get<std::string>();
    EXPECT_EQ(tok->Encode(prompt, true),
              g.at("prompt_ids_runc").get<std::vector<int32_t>>())
        << json(prompt).dump();
  }
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
}

// tokenizer_crosscheck.json: HF tokenizer.json semantics and sentencepiece
// ids, which differ only on whitespace runs.
TEST_P(Stories260k, CrosscheckIds) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string hf = OracleDir() + "/stories260k/hf";
  const bool is_json = std::string(GetParam()) == "tokenizer.json";
  std::unique_ptr<Tokenizer> tok;
  if (is_json) {
    tok = Tokenizer::Load(hf);
  } else {
    const std::string d = testing::TempDir("stories_spm");
    std::filesystem::copy_file(hf + "/tokenizer.model", d + "/tokenizer.model");
    tok = Tokenizer::Load(d);
  }
  const json cc = ReadJsonFile(OracleDir() +
                               "/stories260k/golden/tokenizer_crosscheck.json");
  ASSERT_GE(cc.size(), 10u);
  int unequal = 0;
  for (const auto& c : cc) {
    const auto text = c.at("text").get<std::string>();
    const auto want =
        c.at(is_json ? "hf_tokenizer_json_semantics" : "sentencepiece")
            .get<std::vector<int32_t>>();
    EXPECT_EQ(tok->Encode(text, false), want) << json(text).dump();
    if (!c.at("equal").get<bool>()) ++unequal;
    // Decoding gives the text back when the ids are HF's (tokenizer.json
    // keeps every space).
    if (is_json) {
      EXPECT_EQ(tok->Decode(want), text);
    }
  }
  EXPECT_GT(unequal, 0);  // the file does exercise the whitespace difference
}

INSTANTIATE_TEST_SUITE_P(Files, Stories260k,
                         ::testing::Values("tokenizer.json", "tokenizer.model"),
                         [](const auto& info) {
                           return std::string(info.param) == "tokenizer.json"
                                      ? "json"
                                      : "model";
                         });

// ----------------------------------------------- round trips and streaming

std::vector<std::string> AllOracleStrings() {
  std::vector<std::string> out;
  for (const char* name : {"llama-bpe", "qwen2", "llama-spm"}) {
    for (const auto& c : LlamaCppCases(name)) out.push_back(c.text);
  }
  out.push_back(
      "<|im_start|>user\nHi<|im_end|><|begin_of_text|> x</s><s>[INST]");
  return out;
}

class LosslessRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(LosslessRoundTrip, DecodeEncodeIsIdentity) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir(GetParam()));
  for (const auto& s : AllOracleStrings()) {
    EXPECT_EQ(tok.Decode(tok.Encode(s, false)), s) << json(s).dump();
  }
}

INSTANTIATE_TEST_SUITE_P(ByteLevel, LosslessRoundTrip,
                         ::testing::Values("derived/llama3", "derived/qwen2"),
                         [](const auto& info) {
                           return std::string(info.param).substr(8);
                         });

class Streaming : public ::testing::TestWithParam<const char*> {};

// Pushing ids one at a time yields valid UTF-8 chunks whose concatenation is
// the full decode, with and without special tokens.
TEST_P(Streaming, ChunksConcatenateToDecode) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(GetParam()[0] == '/' ? std::string(GetParam())
                                                     : TokDir(GetParam()));
  int chunks_held_back = 0;
  for (bool skip : {false, true}) {
    for (const auto& s : AllOracleStrings()) {
      const auto ids = tok.Encode(s, true);
      Tokenizer::StreamDecoder sd(tok, skip);
      std::string all;
      for (int32_t id : ids) {
        const std::string chunk = sd.Push(id);
        if (chunk.empty()) ++chunks_held_back;
        EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos)
            << "chunk with U+FFFD for " << json(s).dump();
        all += chunk;
      }
      all += sd.Flush();
      EXPECT_EQ(all, tok.Decode(ids, skip)) << json(s).dump();
    }
  }
  EXPECT_GT(chunks_held_back, 0);  // emoji bytes were split across tokens
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Streaming,
                         ::testing::Values("derived/llama3", "derived/qwen2",
                                           "mistral-7b-instruct-v0.3",
                                           "llama-2"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           }
                           return n;
                         });

// Flush hands back an incomplete trailing sequence as U+FFFD rather than
// dropping it.
TEST(TokenizerStreaming, FlushReleasesIncompleteBytes) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir("llama-2"));
  // "🦙" is 4 byte-fallback tokens <0xF0><0x9F><0xA6><0x99>.
  const auto ids = tok.Encode("🦙", false);
  ASSERT_EQ(ids.size(), 5u);  // "▁" + 4 bytes
  Tokenizer::StreamDecoder sd(tok);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) out += sd.Push(ids[i]);
  EXPECT_EQ(out, "");
  EXPECT_EQ(sd.Flush(), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Encode is const and shared by the engine's threads: the word cache must
// not mix results up.
TEST(TokenizerThreads, ConcurrentEncodeMatchesSerial) {
  BIOQUANT_REQUIRE_SHARED();
  const auto tok = Tokenizer::Load(TokDir("derived/qwen2"));  // fresh cache
  const auto strings = AllOracleStrings();
  std::vector<std::vector<int32_t>> want;
  {
    const auto ref = Tokenizer::Load(TokDir("derived/qwen2"));
    for (const auto& s : strings) want.push_back(ref->Encode(s));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep) {
        for (size_t i = 0; i < strings.size(); ++i) {
          const size_t k = (i + t * 7) % strings.size();
          if (tok->Encode(strings[k]) != want[k]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// -------------------------------------------------- synthetic tokenizers

// A tiny byte-level BPE tokenizer.json written by the test.
json TinyByteLevel() {
  json vocab = json::object();
  int id = 0;
  const char* chars[] = {"a",
                         "b",
                         "c",
                         "\xC4\xA0",
                         "ab",
                         "abc",
                         "\xC4\xA0"
                         "a"};
  for (const char* c : chars) vocab[c] = id++;
  json j = {{"version", "1.0"},
            {"added_tokens", json::array({{{"id", 7},
                                           {"content", "<eos>"},
                                           {"special", true},
                                           {"lstrip", false},
                                           {"rstrip", false},
                                           {"single_word", false},
                                           {"normalized", false}}})},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"use_regex", true}}},
            {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model",
             {{"type", "BPE"},
              {"vocab", vocab},
              {"merges", json::array({"a b", "ab c", "\xC4\xA0 a"})}}}};
  return j;
}

std::string WriteTokenizer(const json& j, const std::string& tag) {
  const std::string dir = testing::TempDir(tag);
  WriteFile(dir + "/tokenizer.json", j.dump());
  return dir;
}

TEST(TokenizerSynthetic, MergeStringsAndPairsAgree) {
  json j = TinyByteLevel();
  const auto a = Tokenizer::Load(WriteTokenizer(j, "tiny_str"));
  j["model"]["merges"] =
      json::array({json::array({"a", "b"}), json::array({"ab", "c"}),
                   json::array({"\xC4\xA0", "a"})});
  const auto b = Tokenizer::Load(WriteTokenizer(j, "tiny_pair"));
  for (const char* s : {"abc", "ab ab", "cab a", "abcabc<eos>a"}) {
    EXPECT_EQ(a->Encode(s), b->Encode(s)) << s;
  }
  // " ab" is one word "Ġab": "a b" outranks "Ġ a".
  EXPECT_EQ(a->Encode("abc ab"), (std::vector<int32_t>{5, 3, 4}));
  EXPECT_EQ(a->Encode(" abc"), (std::vector<int32_t>{3, 5}));
  EXPECT_EQ(a->Encode(" ac"), (std::vector<int32_t>{6, 2}));
  EXPECT_EQ(a->Encode("ab<eos>"), (std::vector<int32_t>{4, 7}));
  EXPECT_EQ(a->Decode({5, 6, 2, 7}), "abc ac<eos>");
  EXPECT_EQ(a->Decode({5, 6, 2, 7}, true), "abc ac");
  EXPECT_EQ(a->bos_id(), -1);
  EXPECT_EQ(a->eos_id(), -1);
  EXPECT_EQ(a->chat_template(), "");
}

// Merge order is by rank, not by position: with "b c" ranked before "a b",
// "abc" must become a + bc.
TEST(TokenizerSynthetic, MergesApplyByRank) {
  json j = TinyByteLevel();
  j["model"]["vocab"]["bc"] = 8;
  j["model"]["merges"] = json::array({"b c", "a b", "ab c"});
  const auto tok = Tokenizer::Load(WriteTokenizer(j, "tiny_rank"));
  EXPECT_EQ(tok->Encode("abc"), (std::vector<int32_t>{0, 8}));
  j["model"]["merges"] = json::array({"a b", "b c", "ab c"});
  const auto tok2 = Tokenizer::Load(WriteTokenizer(j, "tiny_rank2"));
  EXPECT_EQ(tok2->Encode("abc"), (std::vector<int32_t>{5}));
}

// Characters outside a vocab with no unk and no byte fallback are dropped,
// as HF does (and the neighbours then merge).
TEST(TokenizerSynthetic, UnknownCharactersWithoutUnkAreDropped) {
  const auto tok =
      Tokenizer::Load(WriteTokenizer(TinyByteLevel(), "tiny_drop"));
  EXPECT_EQ(tok->Encode("axb"), (std::vector<int32_t>{4}));
  EXPECT_EQ(tok->Encode("xx"), (std::vector<int32_t>{}));
}

TEST(TokenizerSynthetic, ChatTemplateListTakesDefault) {
  const std::string dir = WriteTokenizer(TinyByteLevel(), "tiny_tmpl");
  WriteFile(dir + "/tokenizer_config.json",
            json({{"chat_template",
                   json::array({{{"name", "tool_use"}, {"template", "T"}},
                                {{"name", "default"}, {"template", "D"}}})},
                  {"eos_token", "<eos>"},
                  {"add_eos_token", true}})
                .dump());
  const auto tok = Tokenizer::Load(dir);
  EXPECT_EQ(tok->chat_template(), "D");
  EXPECT_EQ(tok->eos_id(), 7);
  EXPECT_EQ(tok->Encode("ab"), (std::vector<int32_t>{4, 7}));
  EXPECT_EQ(tok->Encode("ab", false), (std::vector<int32_t>{4}));
}

TEST(TokenizerSynthetic, InvalidUtf8BecomesReplacementCharacter) {
  BIOQUANT_REQUIRE_SHARED();
  const Tokenizer& tok = Cached(TokDir("derived/llama3"));
  EXPECT_EQ(tok.Encode("a\xFF"
                       "b",
                       false),
            tok.Encode("a\xEF\xBF\xBD"
                       "b",
                       false));
}

// A word-level view of pre-tokenizers: with ignore_merges, a pre-token that
// is in the vocab becomes one id, so the ids show where the splits fell.
json WordVocabTokenizer(const json& pre_tokenizer,
                        const std::vector<std::string>& words) {
  json vocab = json::object();
  for (size_t i = 0; i < words.size(); ++i)
    vocab[words[i]] = static_cast<int>(i);
  return {{"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre_tokenizer},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges", json::array()},
            {"ignore_merges", true}}}};
}

TEST(TokenizerSynthetic, SplitBehaviors) {
  const std::vector<std::string> words = {"a",  "b",  "c",  "-", "a-",
                                          "b-", "-b", "-c", "--"};
  auto ids_of = [&](std::vector<std::string> pieces) {
    std::vector<int32_t> ids;
    for (const auto& p : pieces) {
      ids.push_back(static_cast<int32_t>(
          std::find(words.begin(), words.end(), p) - words.begin()));
    }
    return ids;
  };
  struct Want {
    const char* behavior;
    bool invert;
    std::vector<std::string> pieces;
  };
  const Want wants[] = {
      {"Isolated", false, {"a", "-", "b", "-", "-", "c"}},
      {"Removed", false, {"a", "b", "c"}},
      {"MergedWithPrevious", false, {"a-", "b-", "-", "c"}},
      {"MergedWithNext", false, {"a", "-b", "-", "-c"}},
      {"Contiguous", false, {"a", "-", "b", "--", "c"}},
      {"Removed", true, {"-", "-", "-"}},
  };
  for (const auto& w : wants) {
    const json pre = {{"type", "Split"},
                      {"pattern", {{"String", "-"}}},
                      {"behavior", w.behavior},
                      {"invert", w.invert}};
    const auto tok = Tokenizer::Load(
        WriteTokenizer(WordVocabTokenizer(pre, words), "split"));
    EXPECT_EQ(tok->Encode("a-b--c"), ids_of(w.pieces))
        << w.behavior << " " << w.invert;
  }
}

// HF's own example: "Hey   friend!" -> ▁Hey ▁ ▁ ▁friend!
TEST(TokenizerSynthetic, MetaspaceSplit) {
  const std::vector<std::string> words = {
      "\u2581Hey", "\u2581", "\u2581friend!", "H", "e", "y"};
  const json pre = {{"type", "Metaspace"},
                    {"replacement", "\u2581"},
                    {"add_prefix_space", true}};
  const auto tok =
      Tokenizer::Load(WriteTokenizer(WordVocabTokenizer(pre, words), "meta"));
  EXPECT_EQ(tok->Encode("Hey   friend!"), (std::vector<int32_t>{0, 1, 1, 2}));
  // prepend_scheme "never": no U+2581 before "Hey", so it falls apart.
  const json never = {{"type", "Metaspace"},
                      {"replacement", "\u2581"},
                      {"prepend_scheme", "never"}};
  const auto tok2 = Tokenizer::Load(
      WriteTokenizer(WordVocabTokenizer(never, words), "meta2"));
  EXPECT_EQ(tok2->Encode("Hey friend!"), (std::vector<int32_t>{3, 4, 5, 2}));
}

// Byte fallback decodes complete UTF-8 sequences and turns each byte of an
// incomplete one into U+FFFD (HF's ByteFallback); byte-level BPE replaces an
// incomplete sequence with one U+FFFD (from_utf8_lossy).
TEST(TokenizerSynthetic, IncompleteBytesDecodeToReplacementCharacters) {
  BIOQUANT_REQUIRE_SHARED();
  const auto stories = Tokenizer::Load(OracleDir() + "/stories260k/hf");
  EXPECT_EQ(stories->Piece(233), "<0xE6>");
  EXPECT_EQ(stories->Decode({233, 154, 168}), "\xE6\x97\xA5");  // 日
  EXPECT_EQ(stories->Decode({233, 154}), "\uFFFD\uFFFD");
  const Tokenizer& llama3 = Cached(TokDir("derived/llama3"));
  const auto ids = llama3.Encode("\U0001F999", false);  // 🦙
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(llama3.Decode({ids[0]}), "\uFFFD");
  EXPECT_EQ(llama3.Decode(ids), "\U0001F999");
}

// ----------------------------------------------------------------- errors

std::string LoadError(const std::string& dir) {
  try {
    Tokenizer::Load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void ExpectOneLineError(const std::string& msg,
                        const std::string& must_contain) {
  EXPECT_NE(msg, "") << "no error";
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find(must_contain), std::string::npos) << msg;
}

TEST(TokenizerErrors, MalformedJsonNamesTheFile) {
  const std::string dir = testing::TempDir("bad_json");
  WriteFile(dir + "/tokenizer.json",
            "{\"model\": {\"type\": \"BPE\", \"vocab\": {\n");
  const std::string msg = LoadError(dir);
  ExpectOneLineError(msg, dir + "/tokenizer.json");
}

TEST(TokenizerErrors, WrongTypesNameTheFile) {
  json j = TinyByteLevel();
  j["added_tokens"][0]["id"] = "seven";
  ExpectOneLineError(LoadError(WriteTokenizer(j, "bad_type")),
                     "tokenizer.json");
  j = TinyByteLevel();
  j["model"]["merges"] = json::array({"a q"});
  ExpectOneLineError(LoadError(WriteTokenizer(j, "bad_merge")), "merges[0]");
  j = TinyByteLevel();
  j.erase("model");
  ExpectOneLineError(LoadError(WriteTokenizer(j, "no_model")),
                     "tokenizer.json");
}

TEST(TokenizerErrors, UnsupportedComponentsAreNamed) {
  json j = TinyByteLevel();
  j["model"]["type"] = "WordPiece";
  std::string msg = LoadError(WriteTokenizer(j, "wp"));
  ExpectOneLineError(msg, "WordPiece");
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos);
  j = TinyByteLevel();
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  ExpectOneLineError(LoadError(WriteTokenizer(j, "bert")), "BertPreTokenizer");
  j = TinyByteLevel();
  j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "xx"}};
  ExpectOneLineError(LoadError(WriteTokenizer(j, "prec")), "Precompiled");
  j = TinyByteLevel();
  j["decoder"] = {{"type", "WordPiece"}};
  ExpectOneLineError(LoadError(WriteTokenizer(j, "wpdec")),
                     "decoder type \"WordPiece\"");
  j = TinyByteLevel();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}}};
  ExpectOneLineError(LoadError(WriteTokenizer(j, "regex")), "does not compile");
}

TEST(TokenizerErrors, MissingFiles) {
  ExpectOneLineError(LoadError("/nonexistent/bq_tok_dir"),
                     "/nonexistent/bq_tok_dir");
  const std::string empty = testing::TempDir("empty_tok");
  ExpectOneLineError(LoadError(empty), "no tokenizer.json or tokenizer.model");
}

TEST(TokenizerErrors, BrokenConfigNamesIt) {
  const std::string dir = WriteTokenizer(TinyByteLevel(), "bad_cfg");
  WriteFile(dir + "/tokenizer_config.json", "{\"bos_token\": ");
  ExpectOneLineError(LoadError(dir), dir + "/tokenizer_config.json");
  WriteFile(dir + "/tokenizer_config.json", "{\"bos_token\": \"<nope>\"}");
  ExpectOneLineError(LoadError(dir), "<nope>");
}

TEST(TokenizerErrors, TiktokenModelIsRejectedWithAHint) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string msg = LoadError(TokDir("llama-3"));
  ExpectOneLineError(msg, "tokenizer.model");
  EXPECT_NE(msg.find("tiktoken"), std::string::npos) << msg;
}

}  // namespace
}  // namespace bioquant
