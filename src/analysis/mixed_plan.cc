#include "analysis/mixed_plan.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>

#include "study/report.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace bioquant {
namespace {

std::string GiB(uint64_t b) { return report::Bytes(static_cast<int64_t>(b)); }

// "model.layers.12.*" -> 12; -1 for any other pattern.
int64_t LayerOf(const std::string& pattern) {
  const std::string pre = "model.layers.";
  if (pattern.rfind(pre, 0) != 0 || !pattern.ends_with(".*")) return -1;
  const std::string num =
      pattern.substr(pre.size(), pattern.size() - pre.size() - 2);
  if (num.empty() || num.size() > 9 ||
      num.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoll(num);
}

// The assignment as rules: the most common precision becomes "*", the
// others are listed first (consecutive blocks merged into ranges).
PrecisionMap MakeMap(const std::vector<MixedPlan::Choice>& choices,
                     const std::map<std::string, uint64_t>& order_bytes) {
  std::map<std::string, int> count;
  for (const auto& c : choices) count[c.precision]++;
  std::string def;
  for (const auto& [p, n] : count) {
    if (def.empty() || n > count[def] ||
        (n == count[def] && order_bytes.at(p) < order_bytes.at(def))) {
      def = p;
    }
  }
  PrecisionMap m;
  for (size_t i = 0; i < choices.size();) {
    const auto& c = choices[i];
    if (c.precision == def) {
      ++i;
      continue;
    }
    const int64_t first = LayerOf(c.pattern);
    size_t j = i + 1;
    if (first >= 0) {
      while (j < choices.size() && choices[j].precision == c.precision &&
             LayerOf(choices[j].pattern) == first + int64_t(j - i)) {
        ++j;
      }
    }
    if (j - i > 1) {
      m.rules.push_back({fmt::format("model.layers.{}-{}.*", first,
                                     first + int64_t(j - i) - 1),
                         c.precision});
    } else {
      m.rules.push_back({c.pattern, c.precision});
    }
    i = j;
  }
  m.rules.push_back({"*", def});
  return m;
}

// A non-negative integer (parsed JSON holds these as unsigned; literals in
// code as signed).
bool IsByteCount(const nlohmann::json& j) {
  return j.is_number_unsigned() ||
         (j.is_number_integer() && j.get<int64_t>() >= 0);
}

}  // namespace

void CheckAnalysis(const nlohmann::json& a, const std::string& what) {
  auto bad = [&](const std::string& why) {
    Fail("{}: not a usable `bioquant analyze` result: {}", what, why);
  };
  if (!a.is_object()) bad("not a JSON object");
  if (!a.contains("reference") || !a["reference"].is_string())
    bad("\"reference\" is missing or not a string");
  if (!a.contains("precisions") || !a["precisions"].is_array() ||
      a["precisions"].empty())
    bad("\"precisions\" is missing or empty");
  for (const auto& p : a["precisions"])
    if (!p.is_string()) bad("\"precisions\" holds a non-string");
  if (!a.contains("fixed_bytes") || !IsByteCount(a["fixed_bytes"]))
    bad("\"fixed_bytes\" is missing or not a byte count");
  if (!a.contains("sensitivity") || !a["sensitivity"].is_object() ||
      !a["sensitivity"].contains("parts") ||
      !a["sensitivity"]["parts"].is_array() ||
      a["sensitivity"]["parts"].empty()) {
    bad("no sensitivity parts (run analyze with --sensitivity blocks or "
        "modules)");
  }
  const std::string ref = a["reference"];
  size_t i = 0;
  for (const auto& p : a["sensitivity"]["parts"]) {
    const std::string at = fmt::format("sensitivity.parts[{}]", i++);
    if (!p.is_object() || !p.contains("part") || !p["part"].is_string() ||
        !p.contains("pattern") || !p["pattern"].is_string()) {
      bad(at + " has no \"part\"/\"pattern\" string");
    }
    if (!p.contains("bytes") || !p["bytes"].is_object() || !p.contains("kl") ||
        !p["kl"].is_object()) {
      bad(at + " has no \"bytes\"/\"kl\" object");
    }
    std::vector<std::string> names = {ref};
    for (const auto& q : a["precisions"]) names.push_back(q);
    for (const auto& n : names) {
      if (!p["bytes"].contains(n) || !IsByteCount(p["bytes"][n]))
        bad(fmt::format("{}.bytes.{} is missing or not a byte count", at, n));
    }
    for (const auto& q : a["precisions"]) {
      const std::string n = q;
      if (!p["kl"].contains(n) || !p["kl"][n].is_number() ||
          !std::isfinite(p["kl"][n].get<double>()) ||
          p["kl"][n].get<double>() < 0) {
        bad(fmt::format("{}.kl.{} is missing or not a KL >= 0", at, n));
      }
    }
  }
}

nlohmann::json LoadAnalysis(const std::string& path) {
  if (!FileExists(path)) Fail("--analysis {}: file not found", path);
  nlohmann::json a;
  try {
    a = ParseJson(ReadFile(path));
  } catch (const nlohmann::json::exception& e) {
    Fail("{}: not valid JSON ({})", path, JsonErrorReason(e));
  }
  CheckAnalysis(a, path);
  return a;
}

MixedPlan PlanMixedPrecision(const nlohmann::json& a, uint64_t budget) {
  CheckAnalysis(a, "analysis");
  MixedPlan plan;
  plan.mode = a["sensitivity"].value("mode", "blocks");
  plan.reference = a["reference"];
  plan.budget_bytes = budget;
  std::vector<std::string> options = {plan.reference};
  for (const auto& p : a["precisions"]) options.push_back(p);
  const auto& parts = a["sensitivity"]["parts"];
  const size_t np = parts.size(), no = options.size();
  const uint64_t fixed = a["fixed_bytes"].get<uint64_t>();
  auto bytes = [&](size_t i, size_t k) -> uint64_t {
    return parts[i]["bytes"][options[k]].get<uint64_t>();
  };
  auto kl = [&](size_t i, size_t k) -> double {
    return k == 0 ? 0.0 : parts[i]["kl"][options[k]].get<double>();
  };
  // Every part at one precision.
  std::map<std::string, uint64_t> total_bytes;
  for (size_t k = 0; k < no; ++k) {
    MixedPlan::Uniform u{options[k], fixed, 0.0};
    for (size_t i = 0; i < np; ++i) {
      u.bytes += bytes(i, k);
      u.predicted_kl += kl(i, k);
    }
    total_bytes[options[k]] = u.bytes;
    plan.uniform.push_back(u);
  }
  uint64_t least = fixed;
  for (size_t i = 0; i < np; ++i) {
    uint64_t m = bytes(i, 0);
    for (size_t k = 1; k < no; ++k) m = std::min(m, bytes(i, k));
    least += m;
  }
  if (least > budget) {
    Fail(
        "--memory {}: too small; the smallest assignment needs {} of "
        "weights",
        GiB(budget), GiB(least));
  }
  // DP over the room left after the fixed bytes, in kSteps units.
  constexpr uint64_t kSteps = 4096;
  const uint64_t room = budget - fixed;
  const uint64_t unit = std::max<uint64_t>(1, (room + kSteps - 1) / kSteps);
  const size_t cap = room / unit;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> best(cap + 1, inf), next(cap + 1);
  best[0] = 0;
  std::vector<std::vector<int8_t>> pick(np, std::vector<int8_t>(cap + 1, -1));
  for (size_t i = 0; i < np; ++i) {
    std::fill(next.begin(), next.end(), inf);
    for (size_t c = 0; c <= cap; ++c) {
      if (best[c] == inf) continue;
      for (size_t k = 0; k < no; ++k) {
        const uint64_t cost = (bytes(i, k) + unit - 1) / unit;
        if (c + cost > cap) continue;
        const double v = best[c] + kl(i, k);
        if (v < next[c + cost]) {
          next[c + cost] = v;
          pick[i][c + cost] = static_cast<int8_t>(k);
        }
      }
    }
    best.swap(next);
  }
  size_t end = 0;
  for (size_t c = 0; c <= cap; ++c) {
    if (best[c] < best[end] || (best[end] == inf && best[c] < inf)) end = c;
  }
  if (best[end] == inf) {
    // Rounding up left no room: the least assignment fits only exactly.
    Fail(
        "--memory {}: too tight for the plan's byte rounding (least "
        "assignment {})",
        GiB(budget), GiB(least));
  }
  plan.choices.resize(np);
  for (size_t i = np; i-- > 0;) {
    const size_t k = static_cast<size_t>(pick[i][end]);
    plan.choices[i] = {parts[i]["part"], parts[i]["pattern"], options[k],
                       bytes(i, k), kl(i, k)};
    end -= (bytes(i, k) + unit - 1) / unit;
  }
  plan.bytes = fixed;
  for (const auto& c : plan.choices) {
    plan.bytes += c.bytes;
    plan.predicted_kl += c.kl;
  }
  plan.map = MakeMap(plan.choices, total_bytes);
  return plan;
}

nlohmann::ordered_json MixedPlan::ToJson() const {
  nlohmann::ordered_json j;
  j["mode"] = mode;
  j["reference"] = reference;
  j["budget_bytes"] = budget_bytes;
  j["weights_bytes"] = bytes;
  j["predicted_kl"] = predicted_kl;
  j["precision_map"] = map.ToString();
  j["choices"] = nlohmann::ordered_json::array();
  for (const auto& c : choices) {
    j["choices"].push_back({{"part", c.part},
                            {"precision", c.precision},
                            {"bytes", c.bytes},
                            {"kl", c.kl}});
  }
  j["uniform"] = nlohmann::ordered_json::array();
  for (const auto& u : uniform) {
    j["uniform"].push_back({{"precision", u.precision},
                            {"weights_bytes", u.bytes},
                            {"predicted_kl", u.predicted_kl},
                            {"fits", u.bytes <= budget_bytes}});
  }
  return j;
}

std::string MixedPlan::ToText() const {
  std::string s = fmt::format(
      "mixed precision for {} of weights ({} sensitivity, reference {}):\n",
      GiB(budget_bytes), mode, reference);
  for (const auto& c : choices) {
    s += fmt::format("  {:<28} {:<6} {:>10}  KL {:.4g}\n", c.part, c.precision,
                     GiB(c.bytes), c.kl);
  }
  s += fmt::format("weights {}, predicted KL {:.4g} (sum over parts)\n",
                   GiB(bytes), predicted_kl);
  for (const auto& u : uniform) {
    s += fmt::format("  all {:<6} {}  predicted KL {:.4g}{}\n", u.precision,
                     GiB(u.bytes), u.predicted_kl,
                     u.bytes <= budget_bytes ? "" : "  (does not fit)");
  }
  s += "--precision-map '" + map.ToString() + "'\n";
  return s;
}

}  // namespace bioquant
