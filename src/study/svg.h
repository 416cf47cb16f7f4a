// Small, dependency-free SVG charts for the HTML report: grouped bars with
// interval whiskers, a labelled scatter plot, and a dot-and-interval
// ("forest") plot with a threshold line. Output is a standalone <svg> element
// with a viewBox (scales with the page), system fonts, no scripts.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace bioquant::svg {

// Okabe–Ito colour-blind-safe palette, cycled.
const std::string& PaletteColor(size_t i);

// Tick positions covering [lo, hi]: steps of 1, 2 or 5 x 10^k, about `target`
// of them; the first tick <= lo and the last >= hi.
std::vector<double> NiceTicks(double lo, double hi, int target = 5);

// Tick label without trailing zeros at the precision the step needs.
std::string FormatTick(double v, double step);

// Escapes &, <, >, " for text and attribute values.
std::string Escape(const std::string& s);

struct Series {
  std::string name;            // legend entry
  std::string color;           // CSS colour
  std::vector<double> values;  // one per group; NaN = missing (no bar)
  std::vector<double> lo, hi;  // optional whiskers, same length as values
};

struct BarChart {
  std::string title;
  std::string x_label;
  std::string y_label;  // include the unit, e.g. "latency per example (ms)"
  // Group labels; a label that does not fit its slot is broken before " ("
  // into two lines, and rotated only when a line still does not fit.
  std::vector<std::string> groups;
  std::vector<Series> series;
  std::optional<double> y_min, y_max;  // default: 0 .. max(value, hi)
  bool value_labels = true;            // print values above the bars
  int value_digits = 2;
  std::string note;  // small text under the plot (what whiskers mean)
  int width = 900, height = 420;
};
std::string RenderBarChart(const BarChart& chart);

struct Point {
  std::string label;
  std::string color;
  double x = 0, y = 0;
  std::optional<double> y_lo, y_hi;
};

struct ScatterChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Point> points;
  bool x_from_zero = true;
  std::string note;
  int width = 900, height = 420;
};
std::string RenderScatter(const ScatterChart& chart);

// One row per item: a dot at value with a horizontal interval, rows grouped
// under headings (rows with an empty colour); a dashed vertical line at
// `threshold`. Intervals beyond [x_min, x_max] end in an arrow head.
struct ForestRow {
  std::string label;
  std::string color;
  double value = 0, lo = 0, hi = 0;
  std::string annotation;  // printed at the right edge
  std::string annotation_color = "#222";
};
struct ForestChart {
  std::string title;
  std::string x_label;
  std::vector<ForestRow> rows;
  std::optional<double> threshold;
  std::string threshold_label;
  std::optional<double> x_min, x_max;
  bool percent = false;  // tick labels as percentages of 1
  std::string note;
  int width = 900;
};
std::string RenderForest(const ForestChart& chart);

// A legend-only strip (colour swatches with names), for pages that share
// one legend across figures.
std::string RenderLegend(
    const std::vector<std::pair<std::string, std::string>>& items, int width);

}  // namespace bioquant::svg
