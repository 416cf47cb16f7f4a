// A chat template (Jinja) parsed and rendered with messages: input is
// "<template>\0<messages JSON>" (fixed messages when the JSON is absent or
// malformed).
#include <nlohmann/json.hpp>

#include "fuzz_target.h"
#include "tokenizer/chat_template.h"
#include "util/json.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(chat_template) {
  const auto parts = fuzz::SplitAtNul(data, size);
  const std::string tmpl(parts.first), msgs(parts.second);
  auto messages = ParseJson<nlohmann::ordered_json>(msgs, false);
  if (messages.is_discarded() || !messages.is_array()) {
    messages = nlohmann::ordered_json::array(
        {{{"role", "system"}, {"content", "Be brief."}},
         {{"role", "user"}, {"content", "Is aspirin an NSAID?"}},
         {{"role", "assistant"}, {"content", "Yes."}},
         {{"role", "user"}, {"content", "And ibuprofen?"}}});
  }
  ChatTemplateOptions o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  o.date = "2025-01-01";
  for (bool gen : {false, true}) {
    o.add_generation_prompt = gen;
    fuzz::Rejects([&] { (void)RenderChatTemplate(tmpl, messages, o); });
  }
  return 0;
}
