// tokenizer.json (load), then encode + decode of a text: input is
// "<tokenizer.json>\0<text>".
#include <sys/stat.h>

#include "fuzz_target.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

using namespace bioquant;

BIOQUANT_FUZZ_TARGET(tokenizer) {
  const auto parts = fuzz::SplitAtNul(data, size);
  const std::string json(parts.first), text(parts.second);
  const std::string dir = fuzz::ScratchDir() + "/tok";
  mkdir(dir.c_str(), 0700);
  WriteFile(dir + "/tokenizer.json", json);
  fuzz::Rejects([&] {
    auto tok = Tokenizer::Load(dir);
    const std::vector<int32_t> ids = tok->Encode(text, true);
    (void)tok->Decode(ids, false);
    (void)tok->Decode(ids, true);
  });
  return 0;
}
