#include "util/version.h"

namespace bioquant {

const char* Version() { return BIOQUANT_VERSION; }
const char* GitRevision() { return BIOQUANT_GIT_REV; }

}  // namespace bioquant
