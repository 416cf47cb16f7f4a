// bioquant analyze: where quantization hurts a model, module by module and
// block by block (analysis/analysis.h).
#include <cstdio>

#include "analysis/analysis.h"
#include "cli/cli_util.h"
#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

namespace bioquant::cli {
namespace {

int RunAnalyze(int argc, char** argv) {
  CLI::App app(
      "Weight and activation outliers, quantization error and sensitivity "
      "per layer",
      "analyze");
  std::string model, precisions = "nf4", reference, text_file, data_dir,
                     sensitivity = "none", format, out;
  int blocksize = 64, threads = 0;
  bool no_double_quant = false, json = false;
  AnalysisOptions o;
  app.add_option("--model", model, "Hugging Face checkpoint directory")
      ->required();
  app.add_option("--precision", precisions,
                 "precision(s) analysed: int8, nf4, fp4, or a list "
                 "(nf4,int8: the first ranks the parts)")
      ->default_val("nf4");
  app.add_option("--reference", reference,
                 "reference precision (default: the checkpoint's dtype)");
  app.add_option("--text-file", text_file, "calibration text (UTF-8)");
  app.add_option("--data-dir", data_dir,
                 "task data: calibration paragraphs drawn from it");
  app.add_option("--max-tokens", o.max_tokens, "calibration tokens used")
      ->default_val(64);
  app.add_option("--sensitivity", sensitivity, "none | blocks | modules")
      ->default_val("none");
  app.add_option("--blocksize", blocksize, "4-bit block size")->default_val(64);
  app.add_flag("--no-double-quant", no_double_quant,
               "4-bit: absmax kept in f32");
  app.add_option("--threads", threads, "worker threads (0 = all cores)")
      ->default_val(0);
  app.add_flag("--json", json, "print the analysis as one JSON object");
  app.add_option("--format", format, "md | html (with --out)");
  app.add_option("--out", out, "write the md/html (or JSON) report here");
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (!format.empty() && format != "md" && format != "html" &&
      format != "json") {
    Fail("--format: '{}' is not one of md, html, json", format);
  }
  if (!format.empty() && out.empty()) Fail("--format needs --out FILE");
  if (threads < 0) Fail("--threads must be >= 0");
  if (!text_file.empty() && !data_dir.empty()) {
    Fail("--text-file and --data-dir both give calibration text; pick one");
  }
  o.model.model_dir = model;
  o.model.threads = threads;
  o.model.precision.name = reference;
  o.model.precision.quant.blocksize = blocksize;
  o.model.precision.quant.double_quant = !no_double_quant;
  o.precisions = SplitList(precisions);
  o.sensitivity = ParseSensitivityMode(sensitivity);
  std::string source = text_file;
  const std::string text = text_file.empty()
                               ? CalibrationText(data_dir, &source)
                               : ReadFile(text_file);
  std::vector<int32_t> ids;
  {
    auto tok = Tokenizer::Load(model);
    ids = tok->Encode(text, true);
  }
  nlohmann::json a = Analyze(o, ids);
  a["calibration"]["source"] = source;
  if (!out.empty()) {
    const std::string f = format.empty() ? "json" : format;
    WriteFile(out, f == "md"     ? RenderAnalysisMarkdown(a)
                   : f == "html" ? RenderAnalysisHtml(a)
                                 : a.dump(1) + "\n");
  }
  if (json) {
    PrintJson(a);
  } else {
    const std::string p = a["precisions"][0];
    std::printf("analyze %s: %s vs %s, %lld calibration tokens, %.1f s\n",
                model.c_str(), p.c_str(),
                a["reference"].get<std::string>().c_str(),
                static_cast<long long>(a["calibration"]["tokens"]),
                a["seconds"]["total"].get<double>());
    auto first = [&](const char* k) {
      const auto& r = a["rankings"][k];
      return r.empty() ? std::string("–")
                       : fmt::format("block {}", r[0].get<int64_t>());
    };
    std::printf("  most weight outliers:          %s\n",
                first("weight_outliers").c_str());
    std::printf("  largest act-weighted error:    %s\n",
                first("quant_error").c_str());
    std::printf("  largest relative error:        %s\n",
                first("quant_error_relative").c_str());
    int k = 1;
    for (const auto& t : a["top5"]) {
      std::printf("  sensitive #%d: %-28s KL %.4g  top-1 %.4f\n", k++,
                  t["part"].get<std::string>().c_str(), t["kl"].get<double>(),
                  t["top1"].get<double>());
    }
  }
  return 0;
}

BIOQUANT_COMMAND("analyze",
                 "per-layer outliers, quantization error and sensitivity",
                 RunAnalyze);

}  // namespace
}  // namespace bioquant::cli
