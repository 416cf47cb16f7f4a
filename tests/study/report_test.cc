#include "study/report.h"

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>

#include "study/study.h"
#include "study/svg.h"
#include "tasks/csv.h"
#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {

// study_test.cc: bf16 vs nf4 on pubmedqa (zero-shot, sc:3), chemprot,
// bc5cdr_chem and medqa.
void MakeStudyStore(const std::string& dir, bool only_chemprot_nf4 = false);

namespace {

namespace fs = std::filesystem;

class ReportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir("report"));
    MakeStudyStore(*dir_);
    scores_ =
        new nlohmann::json(ScoreRun(*RunStore::OpenForRead(*dir_), 1, 200));
  }
  static std::string* dir_;
  static nlohmann::json* scores_;
};
std::string* ReportTest::dir_ = nullptr;
nlohmann::json* ReportTest::scores_ = nullptr;

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos;
       p = hay.find(needle, p + 1))
    ++n;
  return n;
}

TEST(SvgTest, NiceTicksCoverTheRangeInRoundSteps) {
  EXPECT_EQ(svg::NiceTicks(0, 1, 5),
            (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  const auto t = svg::NiceTicks(0, 2300, 5);
  EXPECT_EQ(t.front(), 0);
  EXPECT_GE(t.back(), 2300);
  EXPECT_DOUBLE_EQ(t[1] - t[0], 500);
  EXPECT_EQ(svg::FormatTick(0.4, 0.2), "0.4");
  EXPECT_EQ(svg::FormatTick(1500, 500), "1500");
  EXPECT_EQ(svg::Escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
}

TEST(SvgTest, BarChartHasAxesLabelsLegendAndWhiskers) {
  svg::BarChart c;
  c.title = "T <1>";
  c.y_label = "latency (ms)";
  c.x_label = "strategy";
  c.groups = {"zero-shot", "cot"};
  c.series = {{"bf16", "#0072B2", {1.0, 2.0}, {0.5, 1.5}, {1.5, 2.5}},
              {"nf4", "#D55E00", {3.0, NAN}, {}, {}}};
  const std::string s = svg::RenderBarChart(c);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("T &lt;1&gt;"), std::string::npos);
  EXPECT_NE(s.find(">latency (ms)</text>"), std::string::npos);
  EXPECT_NE(s.find(">strategy</text>"), std::string::npos);
  EXPECT_NE(s.find(">zero-shot</text>"), std::string::npos);
  EXPECT_NE(s.find(">nf4</text>"), std::string::npos);  // legend
  EXPECT_EQ(Count(s, "<rect x="),
            3u + 2u);  // 3 bars (NaN skipped) + 2 swatches
}

TEST(SvgTest, ForestCutsLongIntervalsWithArrowsAndDrawsTheThreshold) {
  svg::ForestChart c;
  c.title = "drops";
  c.x_label = "relative drop";
  c.threshold = 0.05;
  c.threshold_label = "5% criterion";
  c.percent = true;
  c.x_min = -0.5;
  c.x_max = 1.0;
  c.rows = {
      {"chemprot", "", 0, 0, 0, ""},
      {"nf4 · zero-shot", "#D55E00", 0.02, -3.0, 0.08, "not established"}};
  const std::string s = svg::RenderForest(c);
  EXPECT_EQ(Count(s, "<path "), 1u);  // the low end is cut
  EXPECT_NE(s.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(s.find(">5% criterion</text>"), std::string::npos);
  EXPECT_NE(s.find(">-50%</text>"), std::string::npos);
  EXPECT_NE(s.find(">relative drop</text>"), std::string::npos);
  EXPECT_NE(s.find(">chemprot</text>"), std::string::npos);
}

// The transformers backend on CUDA measures torch's allocator: Table 1,
// the CSV and the summary say so next to the figure.
TEST(ReportMemoryTest, PeakMemoryIsLabelledWithWhatWasMeasured) {
  const std::string dir = testing::TempDir("report_gpu");
  MakeStudyStore(dir);
  nlohmann::json scores = ScoreRun(*RunStore::OpenForRead(dir), 1, 20);
  for (auto& c : scores["cells"]) {
    if (c["memory"].is_object() && c["precision"] == "nf4")
      c["memory"]["source"] = "gpu-reserved";
  }
  scores["summary"] = SummaryFromScores(scores);
  const std::string md = RenderMarkdown(scores);
  EXPECT_NE(md.find("| 1.00 GiB (GPU reserved) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 3.00 GiB (CPU RSS) |"), std::string::npos) << md;
  const std::string csv = RenderCsv(scores);
  EXPECT_NE(csv.find(",memory_source,"), std::string::npos);
  EXPECT_NE(csv.find(",gpu-reserved,"), std::string::npos);
  for (const auto& p : scores["summary"]["precisions"]) {
    EXPECT_EQ(p["memory_source"],
              p["precision"] == "nf4" ? "gpu-reserved" : "cpu-rss");
  }
  EXPECT_NE(SummaryText(scores).find("GPU reserved"), std::string::npos);
  EXPECT_EQ(report::MemorySourceLabel("gpu-allocated"), "GPU allocated");
}

TEST_F(ReportTest, JsonIsTheScoredRun) {
  const auto j =
      nlohmann::json::parse(RenderReport(*scores_, ReportFormat::kJson));
  EXPECT_EQ(j, *scores_);
}

TEST_F(ReportTest, CsvHasOneRowPerCellWithComparisons) {
  const std::string csv = RenderReport(*scores_, ReportFormat::kCsv);
  std::vector<std::vector<std::string>> rows;
  std::stringstream ss(csv);
  std::string line;
  while (std::getline(ss, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string x;
    while (std::getline(ls, x, ',')) f.push_back(x);
    if (!line.empty() && line.back() == ',') f.push_back("");
    rows.push_back(f);
  }
  ASSERT_EQ(rows.size(), 1u + (*scores_)["cells"].size());
  const auto& h = rows[0];
  for (const auto& r : rows) EXPECT_EQ(r.size(), h.size()) << line;
  auto col = [&](const std::string& name) {
    return static_cast<size_t>(std::find(h.begin(), h.end(), name) - h.begin());
  };
  ASSERT_LT(col("criterion"), h.size());
  bool found = false;
  for (const auto& r : rows) {
    if (r[col("precision")] == "nf4" && r[col("task")] == "pubmedqa" &&
        r[col("strategy")] == "zero-shot") {
      found = true;
      EXPECT_DOUBLE_EQ(std::stod(r[col("value")]), 0.5);
      EXPECT_DOUBLE_EQ(std::stod(r[col("delta")]), -0.25);
      EXPECT_EQ(r[col("criterion")], "violated");
      EXPECT_DOUBLE_EQ(std::stod(r[col("flip_rate")]), 0.75);
      EXPECT_EQ(r[col("weights_bytes")], std::to_string(600LL << 20));
      EXPECT_EQ(r[col("reference")], "bf16");
    }
    if (r[col("precision")] == "bf16" && r[col("task")] == "pubmedqa" &&
        r[col("strategy")] == "zero-shot") {
      EXPECT_EQ(r[col("criterion")], "");
      EXPECT_DOUBLE_EQ(std::stod(r[col("latency_p95_ms")]), 38.5);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(ReportTest, MarkdownHasTable1AndComparisons) {
  const std::string md = RenderReport(*scores_, ReportFormat::kMarkdown);
  EXPECT_NE(md.find("## Table 1 — zero-shot"), std::string::npos);
  EXPECT_NE(md.find("## Table 1 — sc:3"), std::string::npos);
  EXPECT_NE(md.find("| bf16 | bf16 | 2.00 GiB | 3.00 GiB (CPU RSS) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| nf4 | w4a16 | 600.0 MiB | 1.00 GiB (CPU RSS) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("### pubmedqa (accuracy)"), std::string::npos);
  EXPECT_NE(md.find("| zero-shot | nf4 | 0.750 | 0.500 | -0.250"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("✘ violated"), std::string::npos);
  EXPECT_NE(md.find("✔ supported"), std::string::npos);
  EXPECT_NE(md.find("? not established"), std::string::npos);
  // sc:3 ran on pubmedqa only: its Table 1 has no empty task columns.
  const std::string sc = md.substr(md.find("## Table 1 — sc:3"));
  EXPECT_EQ(sc.substr(0, sc.find("\n\n", 20)).find("chemprot"),
            std::string::npos)
      << sc;
}

TEST_F(ReportTest, HtmlIsSelfContainedWithLabelledFigures) {
  const std::string html = RenderReport(*scores_, ReportFormat::kHtml);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  // memory vs score, one metric chart per strategy (2), drop forest, latency,
  // throughput, strategy comparison.
  EXPECT_EQ(Count(html, "<svg "), 7u);
  EXPECT_EQ(Count(html, "</svg>"), 7u);
  EXPECT_NE(html.find("Memory vs. score per precision"), std::string::npos);
  EXPECT_NE(html.find(">weights in memory (GiB)</text>"), std::string::npos);
  EXPECT_NE(html.find(">main metric (95% CI)</text>"), std::string::npos);
  EXPECT_NE(html.find(">latency per example (ms)</text>"), std::string::npos);
  EXPECT_NE(html.find("5% criterion"), std::string::npos);
  EXPECT_NE(html.find("Strategy comparison"), std::string::npos);
  EXPECT_NE(html.find(">pubmedqa (accuracy)</text>"), std::string::npos);
  // No network, no scripts.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST(ReportFormatTest, NamesAndErrors) {
  EXPECT_EQ(ReportFormatFromName("md"), ReportFormat::kMarkdown);
  EXPECT_EQ(ReportFormatFromName("html"), ReportFormat::kHtml);
  EXPECT_STREQ(ReportExtension(ReportFormat::kCsv), "csv");
  try {
    ReportFormatFromName("pdf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--format"), std::string::npos);
  }
}

// End to end through the CLI: all four formats, summary.json and stdout.
TEST(ReportCliTest, WritesEveryFormatAndTheSummary) {
  if (!fs::exists(BIOQUANT_BINARY)) GTEST_SKIP() << "bioquant binary not built";
  const std::string dir = testing::TempDir("reportcli");
  MakeStudyStore(dir);
  for (const char* f : {"md", "html", "csv", "json"}) {
    const auto r = testing::RunBioquant(
        {"report", dir, "--format", f, "--resamples", "100"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string out = dir + "/report." + f;
    EXPECT_NE(r.out.find("wrote " + out), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("nf4"), std::string::npos);
    EXPECT_TRUE(fs::exists(out));
  }
  EXPECT_NO_THROW(nlohmann::json::parse(ReadFile(dir + "/report.json")));
  const auto sum = ReadJsonFile(dir + "/summary.json");
  EXPECT_EQ(sum["precisions"][1]["precision"], "nf4");

  const auto j = testing::RunBioquant(
      {"report", dir, "--format", "csv", "--out", dir + "/x.csv", "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto obj = nlohmann::json::parse(j.out);
  EXPECT_EQ(obj["report"], dir + "/x.csv");
  EXPECT_TRUE(fs::exists(dir + "/x.csv"));

  const auto bad = testing::RunBioquant({"report", dir + "/missing"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("store.sqlite"), std::string::npos) << bad.err;
  const auto fmt_bad = testing::RunBioquant({"report", dir, "--format", "pdf"});
  EXPECT_EQ(fmt_bad.exit_code, 2);
}

// Renders the HTML page in headless Chromium when it is installed and checks
// that the screenshot is not blank (all figures are inline, nothing loads).
TEST_F(ReportTest, HtmlRendersInHeadlessChromium) {
  std::string browser;
  for (const char* b : {"chromium", "chromium-browser", "google-chrome"}) {
    if (std::system(
            (std::string("command -v ") + b + " >/dev/null 2>&1").c_str()) ==
        0) {
      browser = b;
      break;
    }
  }
  if (browser.empty()) GTEST_SKIP() << "no headless Chromium installed";
  const std::string html = *dir_ + "/report.html";
  WriteFile(html, RenderReport(*scores_, ReportFormat::kHtml));
  const std::string png = *dir_ + "/shot.png";
  const std::string cmd =
      browser +
      " --headless --no-sandbox --disable-gpu --hide-scrollbars "
      "--window-size=1300,2000 --screenshot=" +
      png + " file://" + html + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 50000u);  // a blank page compresses to a few KB
}

}  // namespace
}  // namespace bioquant
