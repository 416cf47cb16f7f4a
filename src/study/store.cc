#include "study/store.h"

#include <sqlite3.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>

#include "util/error.h"
#include "util/json.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;

std::string NowUtc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// SQLite's message, plus the operating system's reason for an I/O error
// ("disk I/O error (No space left on device)") or a hint when it has none.
std::string SqlError(sqlite3* db, const char* message = nullptr) {
  std::string m = message ? message : sqlite3_errmsg(db);
  const int code = sqlite3_errcode(db) & 0xff;  // the primary code
  const int sys = sqlite3_system_errno(db);
  const bool io = code == SQLITE_IOERR || code == SQLITE_FULL ||
                  code == SQLITE_CANTOPEN || code == SQLITE_READONLY;
  if (io && sys != 0) {
    m += fmt::format(" ({})", std::strerror(sys));
  } else if (code == SQLITE_IOERR || code == SQLITE_FULL) {
    // SQLite keeps errno only on some paths (a short write has none).
    m += " (is the disk full, or a file size limit reached?)";
  }
  return m;
}

// Prepared statement with 1-based positional binding; throws Error naming
// the store file on any SQLite failure.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& path, const char* sql)
      : db_(db), path_(path) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      Fail("{}: {} (in: {})", path, SqlError(db), sql);
    }
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(const std::string& v) {
    Check(sqlite3_bind_text(stmt_, ++bound_, v.data(),
                            static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& Bind(int64_t v) {
    Check(sqlite3_bind_int64(stmt_, ++bound_, v));
    return *this;
  }
  Stmt& Bind(int v) { return Bind(static_cast<int64_t>(v)); }
  Stmt& BindNull() {
    Check(sqlite3_bind_null(stmt_, ++bound_));
    return *this;
  }
  // v, or NULL when !present.
  Stmt& BindIf(bool present, int64_t v) {
    return present ? Bind(v) : BindNull();
  }
  Stmt& Bind(double v) {
    Check(sqlite3_bind_double(stmt_, ++bound_, v));
    return *this;
  }
  // True while a row is available.
  bool Step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    Fail("{}: {}", path_, SqlError(db_));
  }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           sqlite3_column_bytes(stmt_, col))
             : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK) Fail("{}: {}", path_, SqlError(db_));
  }
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
  int bound_ = 0;
};

void Exec(sqlite3* db, const std::string& path, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = SqlError(db, err);
    sqlite3_free(err);
    Fail("{}: {}", path, msg);
  }
}

// Owns a connection until released; closes it on an exception.
struct DbHandle {
  sqlite3* db = nullptr;
  ~DbHandle() {
    if (db) sqlite3_close_v2(db);
  }
  sqlite3* Release() {
    sqlite3* d = db;
    db = nullptr;
    return d;
  }
};

void OpenDb(const std::string& path, int flags, DbHandle* h) {
  if (sqlite3_open_v2(path.c_str(), &h->db, flags | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    Fail("{}: cannot open ({})", path,
         h->db ? SqlError(h->db) : "out of memory");
  }
  sqlite3_busy_timeout(h->db, 10000);
}

// Percent-encodes a file path for an SQLite "file:" URI.
std::string UriPath(const std::string& path) {
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Without a -wal file the main file holds everything (a clean close
// checkpoints and deletes it), so it is read as immutable: SQLite then creates
// no -wal/-shm side files and the run directory is left exactly as it was.
// With one (a killed or a running writer) a plain read-only connection reads
// through the WAL.
void OpenReadOnly(const std::string& path, DbHandle* h) {
  std::error_code ec;
  if (fs::exists(path + "-wal", ec)) {
    OpenDb(path, SQLITE_OPEN_READONLY, h);
  } else {
    OpenDb("file:" + UriPath(path) + "?immutable=1",
           SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, h);
  }
}

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE generations(
  fingerprint TEXT NOT NULL, precision TEXT NOT NULL, compute TEXT,
  task TEXT NOT NULL, strategy TEXT NOT NULL, template TEXT NOT NULL,
  example_id TEXT NOT NULL, sample INTEGER NOT NULL, prompt_hash TEXT,
  raw_output TEXT, parsed_json TEXT, parse_ok INTEGER, parse_reason TEXT,
  gold_json TEXT, tokens_in INTEGER, tokens_out INTEGER, latency_ms REAL,
  prefill_ms REAL, decode_ms REAL, seed INTEGER, created_at TEXT,
  PRIMARY KEY(fingerprint, precision, task, strategy, template, example_id, sample));
CREATE TABLE measurements(
  fingerprint TEXT NOT NULL, precision TEXT NOT NULL, task TEXT NOT NULL,
  strategy TEXT NOT NULL, load_ms REAL, peak_rss_bytes INTEGER,
  weights_bytes INTEGER, kv_cache_bytes INTEGER, scratch_bytes INTEGER,
  threads INTEGER, batch INTEGER, examples INTEGER, memory_source TEXT,
  PRIMARY KEY(fingerprint, precision, task, strategy));
)sql";

// Version 1 -> 2: measurements.memory_source. Version 1 stores were written
// by bioquant's engine (its process RSS) or a server (nothing measured).
constexpr const char* kMigrate1To2 = R"sql(
ALTER TABLE measurements ADD COLUMN memory_source TEXT;
UPDATE measurements SET memory_source =
  CASE WHEN peak_rss_bytes IS NULL THEN 'not measured' ELSE 'cpu-rss' END;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
)sql";

// The column expression that reads memory_source in a store of `version`.
const char* MemorySourceColumn(int version) {
  return version >= 2 ? "memory_source"
                      : "CASE WHEN peak_rss_bytes IS NULL THEN 'not measured' "
                        "ELSE 'cpu-rss' END";
}

std::map<std::string, std::string> ReadMeta(sqlite3* db,
                                            const std::string& path) {
  // A file that is not a store (or not SQLite at all) fails here.
  {
    sqlite3_stmt* probe = nullptr;
    const int rc = sqlite3_prepare_v2(
        db,
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
        -1, &probe, nullptr);
    const bool has_meta = rc == SQLITE_OK &&
                          sqlite3_step(probe) == SQLITE_ROW &&
                          sqlite3_column_int(probe, 0) > 0;
    const std::string why = rc == SQLITE_OK ? "no meta table" : SqlError(db);
    sqlite3_finalize(probe);
    if (!has_meta) Fail("{}: not a bioquant run store ({})", path, why);
  }
  std::map<std::string, std::string> meta;
  Stmt s(db, path, "SELECT key, value FROM meta");
  while (s.Step()) meta[s.Text(0)] = s.Text(1);
  return meta;
}

void CheckVersion(const std::map<std::string, std::string>& meta,
                  const std::string& path) {
  auto it = meta.find("schema_version");
  if (it == meta.end())
    Fail("{}: not a bioquant run store (no schema_version)", path);
  if (it->second != std::to_string(kStoreSchemaVersion) && it->second != "1") {
    Fail(
        "{}: run store schema version {} is not supported (this bioquant reads "
        "versions 1 to {})",
        path, it->second, kStoreSchemaVersion);
  }
}

void Flatten(const nlohmann::json& j, const std::string& prefix,
             std::map<std::string, nlohmann::json>* out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [k, v] : j.items()) {
      Flatten(v, prefix.empty() ? k : prefix + "." + k, out);
    }
  } else {
    (*out)[prefix] = j;
  }
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

nlohmann::json ParseJsonColumn(const std::string& text) {
  if (text.empty()) return nullptr;
  return ParseJson(text, false);
}

}  // namespace

std::vector<std::string> ConfigDifferences(const nlohmann::json& a,
                                           const nlohmann::json& b) {
  std::map<std::string, nlohmann::json> fa, fb;
  Flatten(a, "", &fa);
  Flatten(b, "", &fb);
  std::set<std::string> keys;
  for (const auto& [k, v] : fa) {
    auto it = fb.find(k);
    if (it == fb.end() || it->second != v) keys.insert(k);
  }
  for (const auto& [k, v] : fb) {
    if (!fa.count(k)) keys.insert(k);
  }
  return {keys.begin(), keys.end()};
}

RunStore::RunStore(std::string path, sqlite3* db, std::string fingerprint,
                   int version)
    : path_(std::move(path)),
      db_(db),
      fingerprint_(std::move(fingerprint)),
      version_(version) {}

RunStore::~RunStore() { sqlite3_close_v2(db_); }

std::unique_ptr<RunStore> RunStore::OpenForRead(const std::string& run_dir) {
  return Open(run_dir, "", nullptr, false);
}

std::unique_ptr<RunStore> RunStore::Open(const std::string& run_dir,
                                         const std::string& fingerprint,
                                         const nlohmann::json& config,
                                         bool create) {
  const std::string path = (fs::path(run_dir) / "store.sqlite").string();
  const bool check = !fingerprint.empty();
  if (create && !check)
    Fail("{}: a new run store needs a model fingerprint", path);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    // Check on a read-only connection first, so that a refused store is left
    // byte-for-byte untouched (a read-write close may checkpoint the WAL).
    std::string stored_fp;
    int version = kStoreSchemaVersion;
    {
      DbHandle ro;
      OpenReadOnly(path, &ro);
      const auto meta = ReadMeta(ro.db, path);
      CheckVersion(meta, path);
      version = std::stoi(meta.at("schema_version"));
      stored_fp =
          meta.count("model_fingerprint") ? meta.at("model_fingerprint") : "";
      if (check) {
        if (stored_fp != fingerprint) {
          Fail("{}: made for another model (fingerprint {}, this model {})",
               path, stored_fp, fingerprint);
        }
        const nlohmann::json stored_cfg = ParseJsonColumn(
            meta.count("config_json") ? meta.at("config_json") : "");
        const auto diff = ConfigDifferences(stored_cfg, config);
        if (!diff.empty()) {
          Fail("{}: made with another configuration (differs in: {})", path,
               Join(diff, ", "));
        }
      }
    }
    DbHandle h;
    if (check) {
      OpenDb(path, SQLITE_OPEN_READWRITE, &h);
      Exec(h.db, path, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
      if (version == 1) {
        // Only after every check passed: a refused store stays untouched.
        Exec(h.db, path, "BEGIN IMMEDIATE");
        try {
          Exec(h.db, path, kMigrate1To2);
          Exec(h.db, path, "COMMIT");
        } catch (...) {
          sqlite3_exec(h.db, "ROLLBACK", nullptr, nullptr, nullptr);
          throw;
        }
        version = kStoreSchemaVersion;
      }
    } else {
      OpenReadOnly(path, &h);
    }
    return std::unique_ptr<RunStore>(
        new RunStore(path, h.Release(), stored_fp, version));
  }
  if (!create) {
    Fail("{}: no run store here (bioquant eval --out {} creates one)", path,
         run_dir);
  }
  if (!fs::is_directory(run_dir, ec))
    Fail("{}: run directory does not exist", run_dir);
  DbHandle h;
  OpenDb(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &h);
  Exec(h.db, path, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
  // Schema and meta in one transaction: a store killed during creation has
  // either everything or no tables (then it is "not a run store", and the
  // user deletes it).
  Exec(h.db, path, "BEGIN IMMEDIATE");
  try {
    Exec(h.db, path, kSchema);
    const std::pair<const char*, std::string> rows[] = {
        {"schema_version", std::to_string(kStoreSchemaVersion)},
        {"model_fingerprint", fingerprint},
        {"config_json", config.dump()},
        {"created_at", NowUtc()}};
    for (const auto& [k, v] : rows) {
      Stmt s(h.db, path, "INSERT INTO meta(key, value) VALUES(?, ?)");
      s.Bind(std::string(k)).Bind(v).Step();
    }
    Exec(h.db, path, "COMMIT");
  } catch (...) {
    sqlite3_exec(h.db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  return std::unique_ptr<RunStore>(
      new RunStore(path, h.Release(), fingerprint, kStoreSchemaVersion));
}

bool RunStore::Has(const GenerationKey& k) const {
  Stmt s(db_, path_,
         "SELECT 1 FROM generations WHERE fingerprint=? AND precision=? AND "
         "task=? "
         "AND strategy=? AND template=? AND example_id=? AND sample=?");
  s.Bind(fingerprint_)
      .Bind(k.precision)
      .Bind(k.task)
      .Bind(k.strategy)
      .Bind(k.templ);
  s.Bind(k.example_id).Bind(k.sample);
  return s.Step();
}

std::set<std::string> RunStore::DoneExamples(const std::string& precision,
                                             const std::string& task,
                                             const std::string& strategy,
                                             const std::string& templ,
                                             int samples) const {
  const int lo = samples <= 1 ? 0 : 1;
  const int hi = samples <= 1 ? 0 : samples;
  Stmt s(
      db_, path_,
      "SELECT example_id FROM generations WHERE fingerprint=? AND precision=? "
      "AND task=? AND strategy=? AND template=? AND sample BETWEEN ? AND ? "
      "GROUP BY example_id HAVING count(*) = ?");
  s.Bind(fingerprint_).Bind(precision).Bind(task).Bind(strategy).Bind(templ);
  s.Bind(lo).Bind(hi).Bind(hi - lo + 1);
  std::set<std::string> done;
  while (s.Step()) done.insert(s.Text(0));
  return done;
}

void RunStore::Put(const GenerationRow& r) {
  // One statement in autocommit mode is one durable transaction.
  Stmt s(
      db_, path_,
      "INSERT OR IGNORE INTO generations(fingerprint, precision, compute, "
      "task, "
      "strategy, template, example_id, sample, prompt_hash, raw_output, "
      "parsed_json, parse_ok, parse_reason, gold_json, tokens_in, tokens_out, "
      "latency_ms, prefill_ms, decode_ms, seed, created_at) "
      "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  const auto dump = [](const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  s.Bind(fingerprint_).Bind(r.key.precision).Bind(r.compute).Bind(r.key.task);
  s.Bind(r.key.strategy)
      .Bind(r.key.templ)
      .Bind(r.key.example_id)
      .Bind(r.key.sample);
  s.Bind(r.prompt_hash).Bind(r.raw_output).Bind(dump(r.parsed));
  s.Bind(static_cast<int>(r.parse_ok)).Bind(r.parse_reason).Bind(dump(r.gold));
  s.Bind(r.tokens_in).Bind(r.tokens_out).Bind(r.latency_ms).Bind(r.prefill_ms);
  s.Bind(r.decode_ms)
      .Bind(r.seed)
      .Bind(r.created_at.empty() ? NowUtc() : r.created_at);
  s.Step();
}

void RunStore::PutMeasurement(const MeasurementRow& m) {
  Stmt s(
      db_, path_,
      "INSERT OR REPLACE INTO measurements(fingerprint, precision, task, "
      "strategy, "
      "load_ms, peak_rss_bytes, weights_bytes, kv_cache_bytes, scratch_bytes, "
      "threads, batch, examples, memory_source) "
      "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.Bind(fingerprint_)
      .Bind(m.precision)
      .Bind(m.task)
      .Bind(m.strategy)
      .Bind(m.load_ms);
  const bool mem = m.memory_measured;
  s.BindIf(mem, m.peak_rss_bytes)
      .BindIf(mem, m.weights_bytes)
      .BindIf(mem, m.kv_cache_bytes);
  s.BindIf(mem, m.scratch_bytes).Bind(m.threads).Bind(m.batch).Bind(m.examples);
  s.Bind(mem ? m.memory_source : std::string("not measured"));
  s.Step();
}

void RunStore::PutMeta(const std::string& key, const std::string& value) {
  Stmt s(db_, path_, "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)");
  s.Bind(key).Bind(value);
  s.Step();
}

std::vector<GenerationRow> RunStore::Rows(const RowFilter& f) const {
  std::string sql =
      "SELECT precision, task, strategy, template, example_id, sample, "
      "compute, "
      "prompt_hash, raw_output, parsed_json, parse_ok, parse_reason, "
      "gold_json, "
      "tokens_in, tokens_out, latency_ms, prefill_ms, decode_ms, seed, "
      "created_at "
      "FROM generations WHERE fingerprint=?";
  if (f.precision) sql += " AND precision=?";
  if (f.task) sql += " AND task=?";
  if (f.strategy) sql += " AND strategy=?";
  if (f.templ) sql += " AND template=?";
  sql += " ORDER BY precision, task, strategy, template, example_id, sample";
  Stmt s(db_, path_, sql.c_str());
  s.Bind(fingerprint_);
  for (const auto* v : {&f.precision, &f.task, &f.strategy, &f.templ}) {
    if (*v) s.Bind(**v);
  }
  std::vector<GenerationRow> rows;
  while (s.Step()) {
    GenerationRow r;
    r.key = {s.Text(0), s.Text(1), s.Text(2),
             s.Text(3), s.Text(4), static_cast<int>(s.Int(5))};
    r.compute = s.Text(6);
    r.prompt_hash = s.Text(7);
    r.raw_output = s.Text(8);
    r.parsed = ParseJsonColumn(s.Text(9));
    r.parse_ok = s.Int(10) != 0;
    r.parse_reason = s.Text(11);
    r.gold = ParseJsonColumn(s.Text(12));
    r.tokens_in = s.Int(13);
    r.tokens_out = s.Int(14);
    r.latency_ms = s.Real(15);
    r.prefill_ms = s.Real(16);
    r.decode_ms = s.Real(17);
    r.seed = s.Int(18);
    r.created_at = s.Text(19);
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<MeasurementRow> RunStore::Measurements() const {
  const std::string sql = fmt::format(
      "SELECT precision, task, strategy, load_ms, peak_rss_bytes, "
      "weights_bytes, kv_cache_bytes, scratch_bytes, threads, batch, "
      "examples, {} FROM measurements WHERE fingerprint=? ORDER BY "
      "precision, task, strategy",
      MemorySourceColumn(version_));
  Stmt s(db_, path_, sql.c_str());
  s.Bind(fingerprint_);
  std::vector<MeasurementRow> out;
  while (s.Step()) {
    MeasurementRow m;
    m.precision = s.Text(0);
    m.task = s.Text(1);
    m.strategy = s.Text(2);
    m.load_ms = s.Real(3);
    m.memory_measured = !s.IsNull(4);
    m.peak_rss_bytes = s.Int(4);
    m.weights_bytes = s.Int(5);
    m.kv_cache_bytes = s.Int(6);
    m.scratch_bytes = s.Int(7);
    m.threads = static_cast<int>(s.Int(8));
    m.batch = static_cast<int>(s.Int(9));
    m.examples = s.Int(10);
    m.memory_source = s.Text(11);
    if (m.memory_source.empty()) m.memory_source = "cpu-rss";
    out.push_back(std::move(m));
  }
  return out;
}

nlohmann::json RunStore::Meta() const {
  const auto meta = ReadMeta(db_, path_);
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : meta) {
    if (k == "schema_version") {
      j[k] = std::stoi(v);
    } else if (k == "config_json") {
      j["config"] = ParseJsonColumn(v);
    } else if (k.size() > 5 && k.compare(k.size() - 5, 5, "_json") == 0) {
      j[k.substr(0, k.size() - 5)] = ParseJsonColumn(v);
    } else {
      j[k] = v;
    }
  }
  return j;
}

}  // namespace bioquant
