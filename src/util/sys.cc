#include "util/sys.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace bioquant {
namespace {

uint64_t StatusFieldKb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string k(key);
  while (std::getline(in, line)) {
    if (line.compare(0, k.size(), k) == 0) {
      std::istringstream ss(line.substr(k.size()));
      uint64_t kb = 0;
      ss >> kb;
      return kb;
    }
  }
  return 0;
}

}  // namespace

uint64_t PeakRssBytes() { return StatusFieldKb("VmHWM:") * 1024; }
uint64_t CurrentRssBytes() { return StatusFieldKb("VmRSS:") * 1024; }

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      if (pos != std::string::npos) {
        auto s = line.substr(pos + 1);
        s.erase(0, s.find_first_not_of(' '));
        return s;
      }
    }
  }
  return "unknown";
}

int LogicalCores() {
  return static_cast<int>(std::thread::hardware_concurrency());
}

uint64_t TotalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * page : 0;
}

}  // namespace bioquant

#include <cstdio>
#include <ctime>

namespace bioquant {

bool ResetPeakRss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

uint64_t Fnv1a(const std::string& data, uint64_t h) {
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string Fnv1aHex(const std::string& data) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(Fnv1a(data)));
  return buf;
}

std::string UtcNowIso() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace bioquant
