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
