#include "study/store.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "testing.h"
#include "util/error.h"

namespace bioquant {
namespace {

namespace fs = std::filesystem;

nlohmann::json Config() {
  return {
      {"seed", 7}, {"threads", 2}, {"generation", {{"max_new_tokens", 64}}}};
}

GenerationRow Row(const std::string& precision, const std::string& example,
                  int sample, const std::string& raw) {
  GenerationRow r;
  r.key = {precision, "chemprot", "zero-shot", "re_zero@1", example, sample};
  r.compute = precision == "nf4" ? "w4a16" : "f32";
  r.prompt_hash = "abc";
  r.raw_output = raw;
  r.parsed = {"CPR:4"};
  r.parse_ok = true;
  r.gold = {"CPR:4"};
  r.tokens_in = 100;
  r.tokens_out = 5;
  r.latency_ms = 12.5;
  r.prefill_ms = 10;
  r.decode_ms = 2.5;
  r.seed = 7;
  return r;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Byte images of the store and its WAL side files (absent files read as "").
std::string StoreBytes(const std::string& dir) {
  std::string all;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string p = dir + "/store.sqlite" + suffix;
    // Size and hash only: a failure message must not print the bytes.
    const std::string bytes = fs::exists(p) ? Slurp(p) : "";
    all += std::string(suffix) + ":" +
           (fs::exists(p) ? std::to_string(bytes.size()) + "/" +
                                std::to_string(std::hash<std::string>()(bytes))
                          : "absent") +
           " ";
  }
  return all;
}

TEST(RunStoreTest, CreatesWithMetaAndWal) {
  const std::string dir = testing::TempDir("store");
  auto s = RunStore::Open(dir, "fp1", Config(), true);
  const auto meta = s->Meta();
  EXPECT_EQ(meta["schema_version"], kStoreSchemaVersion);
  EXPECT_EQ(meta["model_fingerprint"], "fp1");
  EXPECT_EQ(meta["config"], Config());
  EXPECT_FALSE(meta["created_at"].get<std::string>().empty());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/store.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
               "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(RunStoreTest, PutTwiceKeepsOneRowAndTheFirstValue) {
  const std::string dir = testing::TempDir("store");
  auto s = RunStore::Open(dir, "fp1", Config(), true);
  s->Put(Row("bf16", "e1", 0, "first"));
  s->Put(Row("bf16", "e1", 0, "second"));
  s->Put(Row("nf4", "e1", 0, "x"));
  const auto rows = s->Rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].key.precision, "bf16");
  EXPECT_EQ(rows[0].raw_output, "first");
  EXPECT_EQ(rows[0].gold, nlohmann::json({"CPR:4"}));
  EXPECT_EQ(rows[0].parsed, nlohmann::json({"CPR:4"}));
  EXPECT_EQ(rows[0].compute, "f32");
  EXPECT_EQ(rows[0].tokens_in, 100);
  EXPECT_DOUBLE_EQ(rows[0].latency_ms, 12.5);
  EXPECT_FALSE(rows[0].created_at.empty());
  EXPECT_EQ(rows[1].compute, "w4a16");

  RowFilter f;
  f.precision = "nf4";
  EXPECT_EQ(s->Rows(f).size(), 1u);
  f.task = "ddi2013";
  EXPECT_TRUE(s->Rows(f).empty());
}

TEST(RunStoreTest, HasAndDoneExamplesCountSamples) {
  const std::string dir = testing::TempDir("store");
  {
    auto s = RunStore::Open(dir, "fp1", Config(), true);
    s->Put(Row("bf16", "e1", 0, "a"));
    auto sc = [&](const std::string& ex, int sample) {
      auto r = Row("bf16", ex, sample, "a");
      r.key.strategy = "sc:3";
      s->Put(r);
    };
    sc("e1", 1);
    sc("e1", 2);
    sc("e1", 3);
    sc("e2", 1);  // e2 unfinished: 1 of 3 samples
  }
  // Reopened (as a resumed run would): everything is still there.
  auto s = RunStore::Open(dir, "fp1", Config(), false);
  EXPECT_TRUE(s->Has({"bf16", "chemprot", "zero-shot", "re_zero@1", "e1", 0}));
  EXPECT_FALSE(s->Has({"bf16", "chemprot", "zero-shot", "re_zero@1", "e2", 0}));
  EXPECT_FALSE(s->Has({"nf4", "chemprot", "zero-shot", "re_zero@1", "e1", 0}));
  EXPECT_EQ(s->DoneExamples("bf16", "chemprot", "zero-shot", "re_zero@1", 1),
            std::set<std::string>{"e1"});
  EXPECT_EQ(s->DoneExamples("bf16", "chemprot", "sc:3", "re_zero@1", 3),
            std::set<std::string>{"e1"});
  EXPECT_TRUE(
      s->DoneExamples("bf16", "chemprot", "sc:3", "other@1", 3).empty());
}

TEST(RunStoreTest, MeasurementsAreUpserted) {
  const std::string dir = testing::TempDir("store");
  auto s = RunStore::Open(dir, "fp1", Config(), true);
  MeasurementRow m{"nf4", "chemprot", "zero-shot", 120.0, 1000, 500,
                   50,    20,         2,           1,     3};
  s->PutMeasurement(m);
  m.examples = 10;
  m.peak_rss_bytes = 2000;
  s->PutMeasurement(m);
  const auto ms = s->Measurements();
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].examples, 10);
  EXPECT_EQ(ms[0].peak_rss_bytes, 2000);
  EXPECT_EQ(ms[0].weights_bytes, 500);
  EXPECT_DOUBLE_EQ(ms[0].load_ms, 120.0);
}

// Schema 1 (before memory_source; checked in from that version): read as
// is for a report, the file untouched; migrated when opened to resume, its
// measurements labelled as bioquant's engine measured them.
TEST(RunStoreTest, SchemaOneIsReadAsIsAndMigratedWhenResumed) {
  const std::string dir = testing::TempDir("store");
  std::filesystem::copy_file(
      testing::SourceDir() + "/tests/cli/fixtures/store_schema1/store.sqlite",
      dir + "/store.sqlite");
  const std::string before = StoreBytes(dir);
  nlohmann::json meta;
  {
    auto s = RunStore::OpenForRead(dir);
    meta = s->Meta();
    EXPECT_EQ(meta["schema_version"], 1);
    const auto ms = s->Measurements();
    ASSERT_EQ(ms.size(), 1u);
    EXPECT_EQ(ms[0].memory_source, "cpu-rss");
    EXPECT_TRUE(ms[0].memory_measured);
  }
  EXPECT_EQ(StoreBytes(dir), before);
  {
    auto s =
        RunStore::Open(dir, meta["model_fingerprint"], meta["config"], true);
    EXPECT_EQ(s->Meta()["schema_version"], kStoreSchemaVersion);
    EXPECT_EQ(s->Measurements()[0].memory_source, "cpu-rss");
    MeasurementRow m{"nf4", "pubmedqa", "zero-shot", 1.0, 0, 0, 0, 0, 1, 4, 2};
    m.memory_measured = false;
    s->PutMeasurement(m);
  }
  auto s = RunStore::OpenForRead(dir);
  EXPECT_EQ(s->Meta()["schema_version"], 2);
  for (const auto& m : s->Measurements()) {
    EXPECT_EQ(m.memory_source,
              m.precision == "nf4" ? "not measured" : "cpu-rss");
  }
}

TEST(RunStoreTest, MemorySourceIsStored) {
  const std::string dir = testing::TempDir("store");
  auto s = RunStore::Open(dir, "fp1", Config(), true);
  MeasurementRow m{"nf4", "chemprot", "zero-shot", 120.0, 1000, 500,
                   50,    20,         2,           1,     3};
  m.memory_source = "gpu-allocated";
  s->PutMeasurement(m);
  EXPECT_EQ(s->Measurements()[0].memory_source, "gpu-allocated");
}

TEST(RunStoreTest, RefusesAnotherModelAndLeavesStoreUntouched) {
  const std::string dir = testing::TempDir("store");
  {
    auto s = RunStore::Open(dir, "fp1", Config(), true);
    s->Put(Row("bf16", "e1", 0, "a"));
  }
  const std::string before = StoreBytes(dir);
  try {
    RunStore::Open(dir, "fp2", Config(), true);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir + "/store.sqlite: made for another model"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("fp1"), std::string::npos) << msg;
  }
  EXPECT_EQ(StoreBytes(dir), before);
}

TEST(RunStoreTest, RefusesAnotherConfigNamingTheKeys) {
  const std::string dir = testing::TempDir("store");
  {
    RunStore::Open(dir, "fp1", Config(), true)->Put(Row("bf16", "e1", 0, "a"));
  }
  const std::string before = StoreBytes(dir);
  nlohmann::json other = Config();
  other["seed"] = 8;
  other["generation"]["max_new_tokens"] = 32;
  try {
    RunStore::Open(dir, "fp1", other, true);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "made with another configuration (differs in: "
                  "generation.max_new_tokens, seed)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(StoreBytes(dir), before);
  // Reading for a report makes no comparison.
  EXPECT_EQ(RunStore::OpenForRead(dir)->Rows().size(), 1u);
}

TEST(RunStoreTest, ReadsRowsOfAKilledWriterFromTheWal) {
  const std::string dir = testing::TempDir("store");
  auto writer = RunStore::Open(dir, "fp1", Config(), true);
  writer->Put(Row("bf16", "e1", 0, "a"));
  // The writer is still open (as a killed one would leave it): rows and meta
  // live in the WAL only, and a reader must see them.
  ASSERT_TRUE(fs::exists(dir + "/store.sqlite-wal"));
  const auto reader = RunStore::OpenForRead(dir);
  EXPECT_EQ(reader->Rows().size(), 1u);
  EXPECT_EQ(reader->Meta()["model_fingerprint"], "fp1");
  EXPECT_THROW(RunStore::Open(dir, "fp2", Config(), true), Error);
}

TEST(RunStoreTest, ConfigDifferencesSeesAddedAndRemovedKeys) {
  EXPECT_TRUE(ConfigDifferences(Config(), Config()).empty());
  nlohmann::json b = Config();
  b.erase("threads");
  b["batch"] = 4;
  EXPECT_EQ(ConfigDifferences(Config(), b),
            (std::vector<std::string>{"batch", "threads"}));
}

TEST(RunStoreTest, RejectsUnknownSchemaVersionNamingTheFile) {
  const std::string dir = testing::TempDir("store");
  { RunStore::Open(dir, "fp1", Config(), true); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/store.sqlite").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE meta SET value='99' WHERE key='schema_version'",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  for (bool read_only : {false, true}) {
    try {
      if (read_only) {
        RunStore::OpenForRead(dir);
      } else {
        RunStore::Open(dir, "fp1", Config(), true);
      }
      FAIL() << "expected Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(
                    dir + "/store.sqlite: run store schema version 99 "
                          "is not supported"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(RunStoreTest, MissingStoreAndForeignFilesAreErrors) {
  const std::string dir = testing::TempDir("store");
  EXPECT_THROW(RunStore::OpenForRead(dir), Error);
  EXPECT_THROW(RunStore::Open(dir + "/nope", "fp", Config(), true), Error);
  std::ofstream(dir + "/store.sqlite")
      << "this is not sqlite, just some text of a file";
  try {
    RunStore::OpenForRead(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a bioquant run store"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace bioquant
