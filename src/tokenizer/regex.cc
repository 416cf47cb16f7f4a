#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/error.h"

namespace bioquant::tok {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string what;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

Regex::Regex(const std::string& pattern, const std::string& what)
    : impl_(std::make_unique<Impl>()) {
  impl_->what = what;
  int err = 0;
  PCRE2_SIZE err_off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                              pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                              &err_off, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    Fail("{}: regex {:?} does not compile at offset {}: {}", what, pattern,
         err_off, reinterpret_cast<const char*>(msg));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

void Regex::FindAll(std::string_view s,
                    std::vector<std::pair<size_t, size_t>>* out) const {
  // One match-data block per thread and pattern size is enough: it only
  // holds the ovector.
  pcre2_match_data* md =
      pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (!md) Fail("{}: out of memory for regex match data", impl_->what);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    const int rc = impl_->jit
                       ? pcre2_jit_match(impl_->code, subject, s.size(), pos,
                                         PCRE2_NO_UTF_CHECK, md, nullptr)
                       : pcre2_match(impl_->code, subject, s.size(), pos,
                                     PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      Fail("{}: regex match failed: {}", impl_->what,
           reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out->emplace_back(b, e);
      pos = e;
    } else {
      // Empty match: step over one whole character.
      if (b >= s.size()) break;
      pos = b + 1;
      while (pos < s.size() &&
             (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) {
        ++pos;
      }
    }
  }
  pcre2_match_data_free(md);
}

}  // namespace bioquant::tok
