// Markdown and HTML renderings of `bioquant analyze`: per-block figures
// (inline SVG, study/svg.h, as the study report draws), the top five most
// sensitive parts, and per-module tables.
#include <fmt/format.h>

#include <cmath>

#include "analysis/analysis.h"
#include "study/svg.h"

namespace bioquant {
namespace {

double Num(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : std::nan("");
}

std::string G(double v, int digits = 4) {
  if (!std::isfinite(v)) return "–";
  return fmt::format("{:.{}g}", v, digits);
}

std::string Main(const nlohmann::json& a) {
  return a["precisions"][0].get<std::string>();
}

// The rows of the summary table per block.
struct BlockRow {
  int64_t layer;
  double outlier_ratio, beyond, aw, rel, kl, top1;
  int64_t act_cols;
  double act_max;
};

std::vector<BlockRow> Blocks(const nlohmann::json& a) {
  const std::string p = Main(a);
  std::vector<BlockRow> rows;
  const auto& parts = a["sensitivity"]["parts"];
  const bool by_block = a["sensitivity"]["mode"] == "blocks";
  for (const auto& b : a["blocks"]) {
    BlockRow r{};
    r.layer = b["layer"].get<int64_t>();
    r.outlier_ratio = Num(b["weight_outlier_ratio"]);
    r.beyond = Num(b["frac_beyond_6sigma"]);
    r.aw = Num(b["act_weighted_error"][p]);
    r.rel = Num(b["rel_frobenius"][p]);
    r.act_cols = b["activation_outlier_columns"].get<int64_t>();
    r.act_max = Num(b["activation_absmax"]);
    r.kl = r.top1 = std::nan("");
    if (by_block && r.layer < static_cast<int64_t>(parts.size())) {
      r.kl = Num(parts[r.layer]["kl"][p]);
      r.top1 = Num(parts[r.layer]["top1"][p]);
    }
    rows.push_back(r);
  }
  return rows;
}

std::string Header(const nlohmann::json& a) {
  return fmt::format(
      "model `{}`, reference {}, precisions {}, {} calibration tokens, "
      "sensitivity: {} ({:.1f} s; total {:.1f} s)",
      a["model"].get<std::string>(), a["reference"].get<std::string>(),
      a["precisions"].dump(), a["calibration"]["tokens"].get<int64_t>(),
      a["sensitivity"]["mode"].get<std::string>(),
      Num(a["seconds"]["sensitivity"]), Num(a["seconds"]["total"]));
}

const char* kErrorNote =
    "The relative Frobenius error ||W'-W||/||W|| is blind to weight outliers: "
    "they inflate ||W|| as much as the error, so a block with outliers can "
    "look best. The activation-weighted error (each column's error weighted "
    "by the RMS of its input on the calibration text) is the change of the "
    "module's output, what the next layer sees; it ranks quantization error.";

}  // namespace

std::string RenderAnalysisMarkdown(const nlohmann::json& a) {
  const std::string p = Main(a);
  std::string s = "# bioquant analyze\n\n" + Header(a) + "\n\n";
  s += "## Most sensitive parts (" + p + ")\n\n";
  if (a["top5"].empty()) {
    s += "No sensitivity measured (`--sensitivity blocks|modules`).\n\n";
  } else {
    s += "| rank | part | mean KL | top-1 agreement |\n|---|---|---|---|\n";
    int k = 1;
    for (const auto& t : a["top5"]) {
      s += fmt::format("| {} | {} | {} | {} |\n", k++,
                       t["part"].get<std::string>(), G(Num(t["kl"])),
                       G(Num(t["top1"])));
    }
    s += "\n";
  }
  s += "## Per block (" + p + ")\n\n";
  s += "| block | weight absmax/σ | >6σ share | act. outlier cols | act. "
       "absmax | act-weighted error | rel. Frobenius | KL | top-1 |\n"
       "|---|---|---|---|---|---|---|---|---|\n";
  for (const BlockRow& r : Blocks(a)) {
    s += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                     r.layer, G(r.outlier_ratio), G(r.beyond), r.act_cols,
                     G(r.act_max), G(r.aw), G(r.rel), G(r.kl), G(r.top1));
  }
  s += std::string("\n") + kErrorNote + "\n\n";
  if (a["sensitivity"]["mode"] == "modules") {
    s += "## Per module type (" + p +
         ")\n\n| part | KL | top-1 |\n|---|---|---|\n";
    for (const auto& pj : a["sensitivity"]["parts"]) {
      s += fmt::format("| {} | {} | {} |\n", pj["part"].get<std::string>(),
                       G(Num(pj["kl"][p])), G(Num(pj["top1"][p])));
    }
    s += "\n";
  }
  s += "## Per module\n\n| module | absmax | std | excess kurtosis | >6σ | "
       "row absmax spread | act. outlier cols | rel. Frobenius | SNR dB | "
       "act-weighted |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& m : a["modules"]) {
    const auto& w = m["weights"];
    const auto& e = m["quant_error"][p];
    s += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                     m["name"].get<std::string>(), G(Num(w["absmax"])),
                     G(Num(w["std"])), G(Num(w["excess_kurtosis"])),
                     G(Num(w["frac_beyond_6sigma"])),
                     G(Num(w["row_absmax_spread"])),
                     m["activations"]["outlier_columns"].get<int64_t>(),
                     G(Num(e["rel_frobenius"])), G(Num(e["snr_db"])),
                     G(Num(e["act_weighted"])));
  }
  return s;
}

std::string RenderAnalysisHtml(const nlohmann::json& a) {
  const std::string p = Main(a);
  const auto rows = Blocks(a);
  std::vector<std::string> groups;
  for (const auto& r : rows) groups.push_back(std::to_string(r.layer));
  auto chart = [&](const std::string& title, const std::string& y, auto field,
                   size_t color) {
    svg::BarChart c;
    c.title = title;
    c.x_label = "decoder block";
    c.y_label = y;
    c.groups = groups;
    svg::Series s{p, svg::PaletteColor(color), {}, {}, {}};
    for (const auto& r : rows) s.values.push_back(field(r));
    c.series.push_back(s);
    c.value_labels = rows.size() <= 12;
    c.value_digits = 3;
    return "<figure>" + svg::RenderBarChart(c) + "</figure>\n";
  };
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>bioquant analyze</title><style>body{font-family:sans-serif;"
      "max-width:1100px;margin:auto;padding:16px}table{border-collapse:"
      "collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid "
      "#ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
      "</style></head><body>\n<h1>bioquant analyze</h1>\n<p>" +
      svg::Escape(Header(a)) + "</p>\n";
  h += "<h2>Most sensitive parts (" + p + ")</h2>\n";
  if (a["top5"].empty()) {
    h += "<p>No sensitivity measured.</p>\n";
  } else {
    h += "<table><tr><th>rank</th><th>part</th><th>mean KL</th><th>top-1 "
         "agreement</th></tr>\n";
    int k = 1;
    for (const auto& t : a["top5"]) {
      h +=
          fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                      k++, svg::Escape(t["part"].get<std::string>()),
                      G(Num(t["kl"])), G(Num(t["top1"])));
    }
    h += "</table>\n";
  }
  if (a["sensitivity"]["mode"] == "blocks") {
    h += chart(
        "Sensitivity: mean KL when only this block is " + p, "mean KL (nats)",
        [](const BlockRow& r) { return r.kl; }, 5);
  } else if (a["sensitivity"]["mode"] == "modules") {
    svg::BarChart c;
    c.title = "Sensitivity: mean KL when only this module type is " + p;
    c.x_label = "module type";
    c.y_label = "mean KL (nats)";
    svg::Series s{p, svg::PaletteColor(5), {}, {}, {}};
    for (const auto& pj : a["sensitivity"]["parts"]) {
      c.groups.push_back(pj["part"].get<std::string>());
      s.values.push_back(Num(pj["kl"][p]));
    }
    c.series.push_back(s);
    h += "<figure>" + svg::RenderBarChart(c) + "</figure>\n";
  }
  h += chart(
      "Weight outliers: largest absmax / σ of the block's modules",
      "absmax / σ", [](const BlockRow& r) { return r.outlier_ratio; }, 1);
  h += chart(
      "Quantization error, activation-weighted (" + p + ")",
      "RMS output change", [](const BlockRow& r) { return r.aw; }, 2);
  h += chart(
      "Quantization error, relative Frobenius (" + p + ")", "||W'-W|| / ||W||",
      [](const BlockRow& r) { return r.rel; }, 3);
  h += chart(
      "Activation outliers: input columns above the threshold", "columns",
      [](const BlockRow& r) { return double(r.act_cols); }, 4);
  h += "<p>" + svg::Escape(kErrorNote) + "</p>\n";
  h += "<h2>Per module</h2>\n<table><tr><th>module</th><th>absmax</th><th>"
       "std</th><th>excess kurtosis</th><th>&gt;6σ</th><th>row absmax "
       "spread</th><th>act. outlier cols</th><th>rel. Frobenius</th><th>SNR "
       "dB</th><th>act-weighted</th></tr>\n";
  for (const auto& m : a["modules"]) {
    const auto& w = m["weights"];
    const auto& e = m["quant_error"][p];
    h += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}"
        "</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        svg::Escape(m["name"].get<std::string>()), G(Num(w["absmax"])),
        G(Num(w["std"])), G(Num(w["excess_kurtosis"])),
        G(Num(w["frac_beyond_6sigma"])), G(Num(w["row_absmax_spread"])),
        m["activations"]["outlier_columns"].get<int64_t>(),
        G(Num(e["rel_frobenius"])), G(Num(e["snr_db"])),
        G(Num(e["act_weighted"])));
  }
  h += "</table></body></html>\n";
  return h;
}

}  // namespace bioquant
