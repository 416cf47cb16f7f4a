// bioquant's version and the git revision it was built from (written into
// run manifests and `bioquant --version`).
#pragma once

namespace bioquant {

const char* Version();      // "0.1.0"
const char* GitRevision();  // short hash, or "unknown" outside a checkout

}  // namespace bioquant
