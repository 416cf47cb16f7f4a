// Run store: one SQLite file per run directory (RUN/store.sqlite, WAL mode)
// holding every generation of a study and the measurements per (precision,
// task, strategy). Scoring (study/study.h) is a separate, repeatable step
// over these rows, so a parser or metric fix never needs a re-run.
//
// Schema (version kStoreSchemaVersion, written in meta.schema_version; a store
// with another version is refused naming the file):
//   meta(key TEXT PRIMARY KEY, value TEXT)
//     schema_version, model_fingerprint, config_json (the effective
//     configuration the run was created with), created_at (UTC ISO-8601).
//   generations(... PRIMARY KEY(fingerprint, precision, task, strategy,
//     template, example_id, sample))  — one row per generated completion.
//   measurements(... PRIMARY KEY(fingerprint, precision, task, strategy)),
//     memory_source: what peak_rss_bytes measured (BackendMemory::source:
//     "cpu-rss", "gpu-allocated", "gpu-reserved"; "not measured").
//
// Version history: 1 had no memory_source. A version-1 store opened for
// writing is migrated in place (the column added, filled with "cpu-rss"
// where memory was measured — version 1 had only bioquant's engine to
// measure — and "not measured" where not; schema_version set to 2); read
// for a report it is read as if migrated, and left untouched.
//
// Durability: every Put is its own transaction; WAL + synchronous=NORMAL
// survives SIGKILL of the process (only an OS crash can lose the last rows,
// which resume then simply redoes).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

struct sqlite3;

namespace bioquant {

inline constexpr int kStoreSchemaVersion = 2;

// Primary key of a generation row (fingerprint is the store's own).
struct GenerationKey {
  std::string precision;  // stable precision name, e.g. "nf4", "llm-int8"
  std::string task;       // task id, e.g. "bc5cdr_chem"
  std::string
      strategy;       // strategy spec, e.g. "zero-shot", "few-shot:5", "sc:5"
  std::string templ;  // prompt template "name@version"
  std::string example_id;
  // 0 for deterministic strategies; self-consistency stores its n samples as
  // 1..n (so the vote in study.cc takes every row with sample > 0).
  int sample = 0;
};

struct GenerationRow {
  GenerationKey key;
  std::string
      compute;  // resolved compute type, e.g. "f32", "w4a16", "llm-int8"
  std::string prompt_hash;
  std::string raw_output;
  // What the parser gave at run time (informational; scoring re-parses
  // raw_output). Any JSON; null when unparsed.
  nlohmann::json parsed;
  bool parse_ok = false;
  std::string parse_reason;  // why parsing failed, empty when parse_ok
  // NER: {"tokens":[...],"tags":[...]}; others: a JSON list of gold labels
  // (QA: ["B"] or ["yes"]; multi-label: every gold label). Letter-answer QA
  // (MedQA) may instead store {"labels":["B"],"options":{"A":"text",...}} so
  // that re-parsing can match an answer given as option text.
  nlohmann::json gold;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  double latency_ms = 0;  // wall time of its batch / rows the batch produced
  double prefill_ms = 0;
  double decode_ms = 0;
  int64_t seed = 0;
  std::string created_at;  // filled by Put when empty (UTC ISO-8601)
};

// Upserted after each (precision, task, strategy) finishes. Bytes are the
// engine's memory ledger except peak_rss_bytes (process peak, getrusage).
// A backend that cannot measure memory (a remote server) stores them as
// NULL: memory_measured false, the byte fields 0.
struct MeasurementRow {
  std::string precision;
  std::string task;
  std::string strategy;
  double load_ms = 0;
  int64_t peak_rss_bytes = 0;
  int64_t weights_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t scratch_bytes = 0;
  int threads = 0;
  int batch = 1;
  int64_t examples = 0;  // examples finished under this measurement
  bool memory_measured = true;
  // What peak_rss_bytes is (BackendMemory::source); "not measured" when
  // !memory_measured.
  std::string memory_source = "cpu-rss";
};

// Filters for RunStore::Rows; an unset field matches everything.
struct RowFilter {
  std::optional<std::string> precision;
  std::optional<std::string> task;
  std::optional<std::string> strategy;
  std::optional<std::string> templ;
};

class RunStore {
 public:
  // Opens RUN/store.sqlite (run_dir must exist when create is true; it is not
  // created here). With create=false a missing store throws. An existing
  // store is refused — Error, nothing written, file bytes unchanged — when
  // its schema version is unknown, when it was made for another model
  //   "RUN/store.sqlite: made for another model (fingerprint X, this model Y)"
  // or another configuration
  //   "RUN/store.sqlite: made with another configuration (differs in: seed)".
  // Pass fingerprint "" and config null to open any store read-only-ish (for
  // scoring/report): no comparison is made.
  static std::unique_ptr<RunStore> Open(const std::string& run_dir,
                                        const std::string& fingerprint,
                                        const nlohmann::json& config,
                                        bool create);
  // Opens an existing store for reading (report/score); refuses unknown
  // schema versions. Same as Open(run_dir, "", nullptr, false).
  static std::unique_ptr<RunStore> OpenForRead(const std::string& run_dir);

  ~RunStore();
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  const std::string& path() const { return path_; }
  const std::string& fingerprint() const { return fingerprint_; }

  bool Has(const GenerationKey& key) const;
  // Example ids for which every sample is stored: sample 0 when samples <= 1,
  // else samples 1..samples.
  std::set<std::string> DoneExamples(const std::string& precision,
                                     const std::string& task,
                                     const std::string& strategy,
                                     const std::string& templ,
                                     int samples) const;
  // INSERT OR IGNORE in its own transaction: a re-run never duplicates or
  // overwrites a row.
  void Put(const GenerationRow& row);
  void PutMeasurement(const MeasurementRow& row);  // upsert
  // An extra meta entry (upsert), e.g. "predicted_memory_json". Keys ending
  // in "_json" hold JSON and come back parsed under the name without the
  // suffix in Meta().
  void PutMeta(const std::string& key, const std::string& value);

  // Rows ordered by precision, task, strategy, template, example_id, sample.
  std::vector<GenerationRow> Rows(const RowFilter& filter = {}) const;
  std::vector<MeasurementRow> Measurements() const;
  // {"schema_version": 1, "model_fingerprint": ..., "config": {...},
  //  "created_at": ...}
  nlohmann::json Meta() const;

 private:
  RunStore(std::string path, sqlite3* db, std::string fingerprint, int version);

  std::string path_;
  sqlite3* db_;
  std::string fingerprint_;
  int version_;  // of the file as read (1 when read-only and not migrated)
};

// Top-level keys whose values differ between two configurations ("seed",
// "generation.max_new_tokens" for nested objects), sorted. Exposed for tests
// and for the runner's messages.
std::vector<std::string> ConfigDifferences(const nlohmann::json& a,
                                           const nlohmann::json& b);

}  // namespace bioquant
