// config.json parsing: architectures as data, and loud errors.
#include "model/config.h"

#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "model/weights.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

nlohmann::json Base() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 64},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"intermediate_size", 128},
          {"vocab_size", 100},
          {"eos_token_id", {2, 7}}};
}

std::string ErrorOf(const nlohmann::json& j) {
  try {
    ParseModelConfig(j, "x/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, DerivesHeadDimAndDefaults) {
  const ModelConfig c = ParseModelConfig(Base(), "config.json");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0}));
}

TEST(ConfigTest, ArchitectureDifferencesAreData) {
  auto q = Base();
  q["architectures"] = {"Qwen2ForCausalLM"};
  q["use_sliding_window"] = true;
  q["sliding_window"] = 8;
  q["max_window_layers"] = 1;
  const ModelConfig qc = ParseModelConfig(q, "config.json");
  EXPECT_TRUE(qc.qkv_bias);
  EXPECT_FALSE(qc.o_bias);
  EXPECT_EQ(qc.layer_window, (std::vector<int64_t>{0, 8}));
  auto m = Base();
  m["architectures"] = {"MistralForCausalLM"};
  m["sliding_window"] = 16;
  EXPECT_EQ(ParseModelConfig(m, "c").layer_window,
            (std::vector<int64_t>{16, 16}));
  auto l = Base();
  l["attention_bias"] = true;
  l["head_dim"] = 32;
  const ModelConfig lc = ParseModelConfig(l, "c");
  EXPECT_TRUE(lc.qkv_bias && lc.o_bias);
  EXPECT_EQ(lc.q_dim(), 128);
}

TEST(ConfigTest, RejectsLoudly) {
  auto a = Base();
  a["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_NE(
      ErrorOf(a).find("x/config.json: unknown architecture 'GPT2LMHeadModel'"),
      std::string::npos);
  auto r = Base();
  r["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(ErrorOf(r).find("rope_scaling type 'yarn' is not supported"),
            std::string::npos);
  auto h = Base();
  h.erase("hidden_size");
  EXPECT_NE(ErrorOf(h).find("missing \"hidden_size\""), std::string::npos);
  auto g = Base();
  g["num_key_value_heads"] = 3;
  EXPECT_NE(ErrorOf(g).find("not a multiple"), std::string::npos);
  auto act = Base();
  act["hidden_act"] = "gelu";
  EXPECT_NE(ErrorOf(act).find("hidden_act 'gelu'"), std::string::npos);
}

TEST(ConfigTest, ShapeMismatchNamesTensorAndFile) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string src = testing::OracleDir() + "/arch/llama-gqa";
  const std::string dir = testing::TempDir("shape");
  auto cfg = ReadJsonFile(src + "/config.json");
  cfg["intermediate_size"] = cfg["intermediate_size"].get<int>() + 1;
  WriteFile(dir + "/config.json", cfg.dump());
  WriteFile(dir + "/model.safetensors", ReadFile(src + "/model.safetensors"));
  const ModelConfig c = LoadModelConfig(dir);
  try {
    LoadWeights(dir, c, PrecisionSpec{});
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.safetensors: tensor "
                       "model.layers.0.mlp.gate_proj.weight has shape"),
              std::string::npos)
        << msg;
  }
}

TEST(ConfigTest, MissingConfigAndDirectory) {
  const std::string dir = testing::TempDir("nocfg");
  EXPECT_THROW(LoadModelConfig(dir), Error);
  EXPECT_THROW(LoadModelConfig(dir + "/does-not-exist"), Error);
  WriteFile(dir + "/config.json", "{ bad json");
  try {
    LoadModelConfig(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: malformed JSON"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace bioquant
