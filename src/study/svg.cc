#include "study/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace bioquant::svg {
namespace {

constexpr const char* kFont =
    "font-family=\"-apple-system,Segoe UI,Helvetica,Arial,sans-serif\"";
constexpr const char* kAxis = "#444";
constexpr const char* kGrid = "#e3e3e3";

// Rough text width at a font size (no font metrics without a renderer):
// average glyph advance of a sans-serif font is about 0.58 em.
double TextWidth(const std::string& s, double size) {
  return 0.58 * size * s.size();
}

std::string Text(double x, double y, const std::string& s, int size,
                 const char* anchor = "start", const char* extra = "") {
  // `extra` may set its own fill; a repeated attribute would be ignored.
  const bool own_fill = std::string(extra).find("fill=\"") != std::string::npos;
  return fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" "
      "text-anchor=\"{}\"{}{}>{}</text>\n",
      x, y, size, anchor, own_fill ? "" : " fill=\"#222\"", extra, Escape(s));
}

std::string Line(double x1, double y1, double x2, double y2, const char* color,
                 double w = 1, const char* extra = "") {
  return fmt::format(
      "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
      "stroke=\"{}\" "
      "stroke-width=\"{}\"{}/>\n",
      x1, y1, x2, y2, color, w, extra);
}

std::string Open(int w, int h, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {0} {1}\" "
      "width=\"{0}\" "
      "height=\"{1}\" role=\"img\" aria-label=\"{2}\" {3} "
      "style=\"max-width:100%;"
      "height:auto\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
      w, h, Escape(title), kFont);
}

std::string Title(int w, const std::string& title) {
  return Text(w / 2.0, 24, title, 16, "middle", " font-weight=\"600\"");
}

// Horizontal legend, right-aligned at (right, y); returns the markup.
std::string Legend(
    const std::vector<std::pair<std::string, std::string>>& items, double right,
    double y) {
  double total = 0;
  for (const auto& [name, color] : items)
    total += 18 + TextWidth(name, 12) + 16;
  double x = right - total;
  std::string s;
  for (const auto& [name, color] : items) {
    s += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"12\" rx=\"2\" "
        "fill=\"{}\"/>\n",
        x, y - 10, color);
    s += Text(x + 17, y, name, 12);
    x += 18 + TextWidth(name, 12) + 16;
  }
  return s;
}

bool IsNum(double v) { return std::isfinite(v); }

}  // namespace

const std::string& PaletteColor(size_t i) {
  static const std::vector<std::string> kColors = {
      "#0072B2", "#D55E00", "#009E73", "#CC79A7",
      "#E69F00", "#56B4E9", "#000000"};
  return kColors[i % kColors.size()];
}

std::string Escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '&':
        r += "&amp;";
        break;
      case '<':
        r += "&lt;";
        break;
      case '>':
        r += "&gt;";
        break;
      case '"':
        r += "&quot;";
        break;
      default:
        r += c;
    }
  }
  return r;
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(target, 1);
  const int e = static_cast<int>(std::floor(std::log10(raw)));
  double m = 1;
  for (double cand : {1.0, 2.0, 5.0, 10.0}) {
    m = cand;
    if (cand * std::pow(10.0, e) >= raw) break;
  }
  // Tick k is k * m * 10^e, computed as an integer over a power of ten so
  // that 0.6 prints as 0.6 and compares equal to 0.6.
  const double scale = std::pow(10.0, std::abs(e));
  auto at = [&](int64_t k) { return e < 0 ? k * m / scale : k * m * scale; };
  const double step = at(1);
  int64_t k = static_cast<int64_t>(std::floor(lo / step + 1e-9));
  std::vector<double> t;
  for (;; ++k) {
    t.push_back(at(k) == 0 ? 0.0 : at(k));
    if (at(k) >= hi - step * 1e-9 || t.size() > 1000) break;
  }
  return t;
}

std::string FormatTick(double v, double step) {
  int digits = 0;
  while (digits < 6 &&
         std::abs(step * std::pow(10.0, digits) -
                  std::round(step * std::pow(10.0, digits))) > 1e-6) {
    ++digits;
  }
  return fmt::format("{:.{}f}", v, digits);
}

std::string RenderBarChart(const BarChart& c) {
  const int w = c.width;
  double vmax = 0, vmin = 0;
  for (const auto& s : c.series) {
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (!IsNum(s.values[i])) continue;
      vmax = std::max(vmax, s.values[i]);
      vmin = std::min(vmin, s.values[i]);
      if (i < s.hi.size() && IsNum(s.hi[i])) vmax = std::max(vmax, s.hi[i]);
      if (i < s.lo.size() && IsNum(s.lo[i])) vmin = std::min(vmin, s.lo[i]);
    }
  }
  const double y0 = c.y_min.value_or(vmin);
  const double y1 = c.y_max.value_or(vmax > y0 ? vmax * 1.08 : y0 + 1);
  const auto ticks = NiceTicks(y0, y1, 5);
  const double tlo = c.y_min ? *c.y_min : ticks.front();
  const double thi = c.y_max ? *c.y_max : ticks.back();
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;

  const size_t ng = std::max<size_t>(c.groups.size(), 1);
  const double left = 78, right = 24, top = 66;
  const double group_w = (w - left - right) / ng;
  // Group labels: one line, two lines broken before " (", or rotated.
  std::vector<std::vector<std::string>> label_lines;
  double longest = 0;
  for (const auto& g : c.groups) {
    std::vector<std::string> lines = {g};
    const size_t paren = g.find(" (");
    if (TextWidth(g, 12) > group_w - 6 && paren != std::string::npos) {
      lines = {g.substr(0, paren), g.substr(paren + 1)};
    }
    for (const auto& l : lines) longest = std::max(longest, TextWidth(l, 12));
    label_lines.push_back(lines);
  }
  const bool rotate = longest > group_w - 6;
  size_t max_lines = 1;
  for (const auto& l : label_lines) max_lines = std::max(max_lines, l.size());
  const double label_h = rotate ? longest * 0.6 + 14 : 6 + 15.0 * max_lines;
  const double bottom = label_h + 34 + (c.note.empty() ? 0 : 20);
  const int h = std::max(c.height, static_cast<int>(top + 220 + bottom));
  const double plot_h = h - top - bottom;
  auto ypos = [&](double v) {
    return top + plot_h * (1 - (std::clamp(v, tlo, thi) - tlo) / (thi - tlo));
  };

  std::string s = Open(w, h, c.title) + Title(w, c.title);
  std::vector<std::pair<std::string, std::string>> legend;
  for (const auto& se : c.series) legend.push_back({se.name, se.color});
  s += Legend(legend, w - right, 48);
  for (double t : ticks) {
    if (t < tlo - 1e-12 || t > thi + 1e-12) continue;
    s += Line(left, ypos(t), w - right, ypos(t), kGrid);
    s += Text(left - 8, ypos(t) + 4, FormatTick(t, step), 12, "end");
  }
  s += Line(left, top, left, top + plot_h, kAxis);
  s += Line(left, ypos(std::max(tlo, 0.0)), w - right, ypos(std::max(tlo, 0.0)),
            kAxis);
  // Y label rotated along the axis.
  s += fmt::format(
      "<text transform=\"translate(18,{:.1f}) rotate(-90)\" font-size=\"13\" "
      "text-anchor=\"middle\" fill=\"#222\">{}</text>\n",
      top + plot_h / 2, Escape(c.y_label));

  const size_t ns = std::max<size_t>(c.series.size(), 1);
  const double bar_w = std::min(48.0, group_w * 0.8 / ns);
  const bool labels = c.value_labels && bar_w >= 20;
  for (size_t g = 0; g < c.groups.size(); ++g) {
    const double gx = left + group_w * g + (group_w - bar_w * ns) / 2;
    for (size_t k = 0; k < c.series.size(); ++k) {
      const auto& se = c.series[k];
      if (g >= se.values.size() || !IsNum(se.values[g])) continue;
      const double v = se.values[g];
      const double x = gx + bar_w * k;
      const double ya = ypos(std::max(v, std::max(tlo, 0.0)));
      const double yb = ypos(std::min(v, std::max(tlo, 0.0)));
      s += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
          "fill=\"{}\"><title>{} / {}: {:.{}f}</title></rect>\n",
          x + 1, ya, bar_w - 2, std::max(yb - ya, 0.5), se.color,
          Escape(c.groups[g]), Escape(se.name), v, c.value_digits);
      double label_y = ya - 4;
      if (g < se.lo.size() && g < se.hi.size() && IsNum(se.lo[g]) &&
          IsNum(se.hi[g])) {
        const double cx = x + bar_w / 2;
        s += Line(cx, ypos(se.lo[g]), cx, ypos(se.hi[g]), "#222", 1.3);
        s += Line(cx - 4, ypos(se.lo[g]), cx + 4, ypos(se.lo[g]), "#222", 1.3);
        s += Line(cx - 4, ypos(se.hi[g]), cx + 4, ypos(se.hi[g]), "#222", 1.3);
        label_y = std::min(label_y, ypos(se.hi[g]) - 4);
      }
      if (labels) {
        s += Text(x + bar_w / 2, label_y,
                  fmt::format("{:.{}f}", v, c.value_digits), 10, "middle");
      }
    }
    const double lx = left + group_w * (g + 0.5);
    const double ly = top + plot_h + 16;
    if (rotate) {
      s += fmt::format(
          "<text transform=\"translate({:.1f},{:.1f}) rotate(-35)\" "
          "font-size=\"12\" "
          "text-anchor=\"end\" fill=\"#222\">{}</text>\n",
          lx + 4, ly, Escape(c.groups[g]));
    } else {
      for (size_t k = 0; k < label_lines[g].size(); ++k) {
        s += Text(lx, ly + 15.0 * k, label_lines[g][k], 12, "middle",
                  k ? " fill-opacity=\"0.75\"" : "");
      }
    }
  }
  s += Text(left + (w - left - right) / 2, top + plot_h + label_h + 22,
            c.x_label, 13, "middle");
  if (!c.note.empty())
    s += Text(left, h - 8, c.note, 11, "start", " fill-opacity=\"0.8\"");
  return s + "</svg>\n";
}

std::string RenderScatter(const ScatterChart& c) {
  const int w = c.width, h = c.height;
  const double left = 78, right = 150, top = 50,
               bottom = 58 + (c.note.empty() ? 0 : 18);
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  double ymin = xmin, ymax = -xmin;
  for (const auto& p : c.points) {
    xmin = std::min(xmin, p.x);
    xmax = std::max(xmax, p.x);
    ymin = std::min(ymin, p.y_lo.value_or(p.y));
    ymax = std::max(ymax, p.y_hi.value_or(p.y));
  }
  if (c.points.empty()) xmin = xmax = ymin = ymax = 0;
  if (c.x_from_zero) xmin = std::min(xmin, 0.0);
  const double ypad = std::max((ymax - ymin) * 0.1, 0.02);
  const auto xt = NiceTicks(xmin, xmax > xmin ? xmax * 1.05 : xmin + 1, 6);
  const auto yt = NiceTicks(std::max(0.0, ymin - ypad), ymax + ypad, 5);
  const double xlo = xt.front(), xhi = xt.back(), ylo = yt.front(),
               yhi = yt.back();
  const double pw = w - left - right, ph = h - top - bottom;
  auto X = [&](double v) { return left + pw * (v - xlo) / (xhi - xlo); };
  auto Y = [&](double v) { return top + ph * (1 - (v - ylo) / (yhi - ylo)); };

  std::string s = Open(w, h, c.title) + Title(w, c.title);
  const double xs = xt.size() > 1 ? xt[1] - xt[0] : 1;
  const double ys = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double t : yt) {
    s += Line(left, Y(t), left + pw, Y(t), kGrid);
    s += Text(left - 8, Y(t) + 4, FormatTick(t, ys), 12, "end");
  }
  for (double t : xt) {
    s += Line(X(t), top, X(t), top + ph, kGrid);
    s += Text(X(t), top + ph + 18, FormatTick(t, xs), 12, "middle");
  }
  s += Line(left, top + ph, left + pw, top + ph, kAxis);
  s += Line(left, top, left, top + ph, kAxis);
  s += Text(left + pw / 2, top + ph + 42, c.x_label, 13, "middle");
  s += fmt::format(
      "<text transform=\"translate(18,{:.1f}) rotate(-90)\" font-size=\"13\" "
      "text-anchor=\"middle\" fill=\"#222\">{}</text>\n",
      top + ph / 2, Escape(c.y_label));
  for (const auto& p : c.points) {
    if (p.y_lo && p.y_hi) {
      s += Line(X(p.x), Y(*p.y_lo), X(p.x), Y(*p.y_hi), p.color.c_str(), 1.5);
      s += Line(X(p.x) - 4, Y(*p.y_lo), X(p.x) + 4, Y(*p.y_lo), p.color.c_str(),
                1.5);
      s += Line(X(p.x) - 4, Y(*p.y_hi), X(p.x) + 4, Y(*p.y_hi), p.color.c_str(),
                1.5);
    }
    s += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"7\" fill=\"{}\" "
        "stroke=\"white\" "
        "stroke-width=\"1.5\"><title>{}: ({:.4g}, {:.4g})</title></circle>\n",
        X(p.x), Y(p.y), p.color, Escape(p.label), p.x, p.y);
    s += Text(X(p.x) + 11, Y(p.y) + 4, p.label, 13, "start",
              " font-weight=\"600\"");
  }
  if (!c.note.empty())
    s += Text(left, h - 8, c.note, 11, "start", " fill-opacity=\"0.8\"");
  return s + "</svg>\n";
}

std::string RenderForest(const ForestChart& c) {
  const int w = c.width;
  const double row_h = 24, top = 48, label_w = 210, right = 170;
  const double bottom = 56 + (c.note.empty() ? 0 : 18);
  const int h = static_cast<int>(
      top + row_h * std::max<size_t>(c.rows.size(), 1) + bottom);
  double lo = c.threshold.value_or(0), hi = lo;
  lo = std::min(lo, 0.0);
  for (const auto& r : c.rows) {
    if (r.color.empty()) continue;
    lo = std::min({lo, r.lo, r.value});
    hi = std::max({hi, r.hi, r.value});
  }
  const double pad = (hi - lo) * 0.05 + 1e-9;
  const auto ticks =
      NiceTicks(c.x_min.value_or(lo - pad), c.x_max.value_or(hi + pad), 6);
  const double xlo = ticks.front(), xhi = ticks.back();
  const double pw = w - label_w - right, ph = row_h * c.rows.size();
  auto X = [&](double v) {
    return label_w + pw * (std::clamp(v, xlo, xhi) - xlo) / (xhi - xlo);
  };
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  auto tick = [&](double v) {
    return c.percent ? FormatTick(v * 100, step * 100) + "%"
                     : FormatTick(v, step);
  };

  std::string s = Open(w, h, c.title) + Title(w, c.title);
  for (size_t i = 0; i < c.rows.size(); ++i) {
    if (!c.rows[i].color.empty()) continue;
    s += fmt::format(
        "<rect x=\"0\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" "
        "fill=\"#f3f4f6\"/>\n",
        top + row_h * i, w, row_h);
  }
  for (double t : ticks) {
    s += Line(X(t), top, X(t), top + ph, kGrid);
    s += Text(X(t), top + ph + 18, tick(t), 12, "middle");
  }
  s += Line(label_w, top + ph, label_w + pw, top + ph, kAxis);
  if (xlo < 0 && xhi > 0) s += Line(X(0), top, X(0), top + ph, kAxis);
  if (c.threshold) {
    s += Line(X(*c.threshold), top - 6, X(*c.threshold), top + ph, "#B22222",
              1.5, " stroke-dasharray=\"6,4\"");
    s += Text(X(*c.threshold) + 4, top - 8, c.threshold_label, 11, "start",
              " fill=\"#B22222\"");
  }
  for (size_t i = 0; i < c.rows.size(); ++i) {
    const auto& r = c.rows[i];
    const double y = top + row_h * (i + 0.5);
    if (r.color.empty()) {  // a heading row
      s += Text(8, y + 5, r.label, 13, "start", " font-weight=\"600\"");
      continue;
    }
    s += Text(label_w - 10, y + 4, r.label, 12, "end");
    s += Line(X(r.lo), y, X(r.hi), y, r.color.c_str(), 2);
    // A cap at an interval end inside the axis, an arrow head where it is cut.
    for (const auto& [v, dir] : {std::pair{r.lo, -1.0}, std::pair{r.hi, 1.0}}) {
      if (v < xlo || v > xhi) {
        const double x = X(v);
        s += fmt::format(
            "<path d=\"M{:.1f},{:.1f} L{:.1f},{:.1f} L{:.1f},{:.1f} Z\" "
            "fill=\"{}\"/>\n",
            x, y, x - 8 * dir, y - 5, x - 8 * dir, y + 5, r.color);
      } else {
        s += Line(X(v), y - 5, X(v), y + 5, r.color.c_str(), 2);
      }
    }
    s += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5.5\" fill=\"{}\"><title>{}: "
        "{} [{}, "
        "{}]</title></circle>\n",
        X(r.value), y, r.color, Escape(r.label), tick(r.value), tick(r.lo),
        tick(r.hi));
    s +=
        Text(label_w + pw + 12, y + 4, r.annotation, 12, "start",
             fmt::format(" fill=\"{}\" font-weight=\"600\"", r.annotation_color)
                 .c_str());
  }
  s += Text(label_w + pw / 2, top + ph + 40, c.x_label, 13, "middle");
  if (!c.note.empty())
    s += Text(8, h - 8, c.note, 11, "start", " fill-opacity=\"0.8\"");
  return s + "</svg>\n";
}

std::string RenderLegend(
    const std::vector<std::pair<std::string, std::string>>& items, int width) {
  return Open(width, 28, "legend") + Legend(items, width - 8, 19) + "</svg>\n";
}

}  // namespace bioquant::svg
