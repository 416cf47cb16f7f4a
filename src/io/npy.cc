#include "io/npy.h"

#include <cstring>
#include <limits>

#include "util/error.h"
#include "util/file.h"

namespace bioquant {

void WriteNpyF32(const std::string& path, const std::vector<int64_t>& shape,
                 const float* data) {
  std::string dims;
  int64_t n = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ", ";
    n *= d;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + header length (2) + header, padded to 64 bytes
  // and terminated by '\n'.
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(reinterpret_cast<const char*>(data), n * sizeof(float));
  WriteFile(path, out);
}

NpyArray ReadNpyF32(const std::string& path) {
  const std::string s = ReadFile(path);
  if (s.size() < 10 || s.compare(0, 6, "\x93NUMPY") != 0) {
    Fail("{}: not a .npy file", path);
  }
  const int major = static_cast<uint8_t>(s[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<uint8_t>(s[8]) | (static_cast<uint8_t>(s[9]) << 8);
    hstart = 10;
  } else {
    if (s.size() < 12) Fail("{}: truncated .npy header", path);
    hlen = 0;
    for (int i = 3; i >= 0; --i)
      hlen = (hlen << 8) | static_cast<uint8_t>(s[8 + i]);
    hstart = 12;
  }
  if (hstart + hlen > s.size()) Fail("{}: truncated .npy header", path);
  const std::string header = s.substr(hstart, hlen);
  const bool f8 = header.find("'<f8'") != std::string::npos;
  if (!f8 && header.find("'<f4'") == std::string::npos) {
    Fail("{}: only little-endian float32/float64 arrays are supported", path);
  }
  if (header.find("'fortran_order': True") != std::string::npos) {
    Fail("{}: Fortran-order arrays are not supported", path);
  }
  NpyArray a;
  const size_t lp = header.find('('), rp = header.find(')');
  if (lp == std::string::npos || rp == std::string::npos) {
    Fail("{}: no shape in .npy header", path);
  }
  std::string dims = header.substr(lp + 1, rp - lp - 1);
  int64_t n = 1;
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t comma = dims.find(',', pos);
    std::string tok = dims.substr(
        pos, comma == std::string::npos ? std::string::npos : comma - pos);
    tok.erase(0, tok.find_first_not_of(' '));
    if (!tok.empty()) {
      int64_t d = -1;
      size_t used = 0;
      try {
        d = std::stoll(tok, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      tok.erase(tok.find_last_not_of(' ') + 1);
      if (used == 0 || used != tok.size() || d < 0 ||
          (d > 0 && n > std::numeric_limits<int64_t>::max() / d)) {
        Fail("{}: bad dimension '{}' in the .npy shape", path, tok);
      }
      a.shape.push_back(d);
      n *= d;
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  const size_t esize = f8 ? 8 : 4;
  const size_t body = hstart + hlen;
  if (s.size() - body < n * esize) Fail("{}: truncated .npy data", path);
  a.data.resize(n);
  if (f8) {
    for (int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, s.data() + body + i * 8, 8);
      a.data[i] = static_cast<float>(d);
    }
  } else if (n > 0) {  // an empty array has no buffer to copy into
    std::memcpy(a.data.data(), s.data() + body, n * 4);
  }
  return a;
}

}  // namespace bioquant
