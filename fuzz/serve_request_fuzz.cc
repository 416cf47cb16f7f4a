// Request bodies of `bioquant serve`'s routes (/v1/chat/completions and
// /v1/completions): first byte picks the route.
#include "fuzz_target.h"
#include "serve/openai_api.h"

using namespace bioquant;
using namespace bioquant::serve;

BIOQUANT_FUZZ_TARGET(serve_request) {
  if (size < 1) return 0;
  const bool chat = data[0] & 1;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    (void)ParseCompletionRequest(body, chat);
  } catch (const ApiError&) {
    // a 400 with a message: the expected refusal
  }
  return 0;
}
