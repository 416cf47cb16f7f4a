#include "tasks/strategy.h"

#include <charconv>
#include <random>
#include <unordered_map>

#include "tasks/loaders.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

constexpr char kStrategyHelp[] =
    "expected zero-shot, few-shot:K[:random|bm25|rank], cot or sc:N[:T]";

std::vector<std::string> SplitColon(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(':', start);
    parts.push_back(s.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

int ParsePositive(const std::string& s, const std::string& whole) {
  int v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v <= 0) {
    Fail("strategy '{}': '{}' is not a positive whole number ({})", whole, s,
         kStrategyHelp);
  }
  return v;
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// A demonstration must never be the test item itself (possible when the
// evaluated split is also the demo pool).
bool IsSameItem(const Example& a, const Example& b) {
  return a.id == b.id && a.text == b.text && a.context == b.context;
}

}  // namespace

StrategySpec ParseStrategy(const std::string& text) {
  const auto parts = SplitColon(text);
  StrategySpec spec;
  const std::string& kind = parts[0];
  if (kind == "zero-shot" && parts.size() == 1) {
    spec.kind = StrategyKind::kZeroShot;
  } else if (kind == "cot" && parts.size() == 1) {
    spec.kind = StrategyKind::kCot;
  } else if (kind == "few-shot" && (parts.size() == 2 || parts.size() == 3)) {
    spec.kind = StrategyKind::kFewShot;
    spec.k = ParsePositive(parts[1], text);
    if (parts.size() == 3) {
      if (parts[2] == "random")
        spec.selection = DemoSelection::kRandom;
      else if (parts[2] == "bm25")
        spec.selection = DemoSelection::kBm25;
      else if (parts[2] == "rank")
        spec.selection = DemoSelection::kRank;
      else
        Fail("strategy '{}': unknown demo selection '{}' (random, bm25, rank)",
             text, parts[2]);
    }
  } else if (kind == "sc" && (parts.size() == 2 || parts.size() == 3)) {
    spec.kind = StrategyKind::kSelfConsistency;
    spec.n = ParsePositive(parts[1], text);
    spec.temperature = 0.7;
    if (parts.size() == 3) {
      try {
        size_t used = 0;
        spec.temperature = std::stod(parts[2], &used);
        if (used != parts[2].size() || spec.temperature <= 0) throw 0;
      } catch (...) {
        Fail("strategy '{}': temperature '{}' must be a number > 0", text,
             parts[2]);
      }
    }
  } else {
    Fail("unknown strategy '{}' ({})", text, kStrategyHelp);
  }
  return spec;
}

const char* DemoSelectionName(DemoSelection selection) {
  switch (selection) {
    case DemoSelection::kRandom:
      return "random";
    case DemoSelection::kBm25:
      return "bm25";
    case DemoSelection::kRank:
      return "rank";
  }
  return "?";
}

std::string StrategyName(const StrategySpec& spec) {
  switch (spec.kind) {
    case StrategyKind::kZeroShot:
      return "zero-shot";
    case StrategyKind::kCot:
      return "cot";
    case StrategyKind::kFewShot:
      return fmt::format("few-shot:{}:{}", spec.k,
                         DemoSelectionName(spec.selection));
    case StrategyKind::kSelfConsistency:
      return fmt::format("sc:{}:{}", spec.n, spec.temperature);
  }
  return "?";
}

std::vector<SampleSpec> Samples(const StrategySpec& spec, uint64_t seed) {
  std::vector<SampleSpec> out;
  const int n = spec.kind == StrategyKind::kSelfConsistency ? spec.n : 1;
  for (int i = 0; i < n; ++i) {
    out.push_back({i, seed + static_cast<uint64_t>(i), spec.temperature});
  }
  return out;
}

std::string RetrievalText(const Example& example) {
  std::string text = example.text;
  if (!example.context.empty()) text += "\n" + example.context;
  for (const auto& [letter, option] : example.options) text += "\n" + option;
  return text;
}

DemoPool LoadDemoPool(const std::string& data_dir, const TaskInfo& task,
                      const std::string& demos_file, const StrategySpec& spec) {
  DemoPool pool;
  if (!demos_file.empty()) {
    pool.examples = LoadTaskFile(task, demos_file);
    pool.source = demos_file;
  } else {
    const auto splits = AvailableSplits(data_dir, task.id);
    for (const char* split : {"train", "dev"}) {
      if (std::find(splits.begin(), splits.end(), split) != splits.end()) {
        pool.examples = LoadSplit(data_dir, task.id, split);
        pool.source = split;
        break;
      }
    }
    if (pool.source.empty()) {
      Fail(
          "task {} has no train or dev split in {} to draw few-shot "
          "demonstrations from; give --demos FILE (a file in the task's "
          "format) or use zero-shot",
          task.id, data_dir);
    }
  }
  if (spec.kind == StrategyKind::kFewShot &&
      spec.selection == DemoSelection::kRank && pool.source == "dev") {
    // Rank files index the training set; dev ids would silently mismatch.
    Fail(
        "few-shot rank selection for task {} needs the train split (or "
        "--demos FILE with the training items the rank file refers to); "
        "only dev is in {}",
        task.id, data_dir);
  }
  if (spec.kind == StrategyKind::kFewShot &&
      spec.selection == DemoSelection::kBm25) {
    std::vector<std::string> docs;
    docs.reserve(pool.examples.size());
    for (const auto& ex : pool.examples) docs.push_back(RetrievalText(ex));
    pool.bm25 = std::make_shared<Bm25Index>(docs);
  }
  return pool;
}

RankFile RankFile::Load(const std::string& path) {
  RankFile rf;
  rf.path_ = path;
  const nlohmann::json j = ReadJsonFile(path);
  if (!j.is_array()) Fail("{}: expected a JSON list of objects", path);
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_object()) Fail("{}: item {} is not an object", path, i);
    for (const auto& [id, list] : j[i].items()) {
      if (!list.is_array())
        Fail("{}: item {} ('{}') is not a list", path, i, id);
      std::vector<std::string> ids;
      for (const auto& entry : list) {
        if (!entry.is_object() || !entry.contains("train_index")) {
          Fail("{}: item {} ('{}') has an entry without train_index", path, i,
               id);
        }
        const auto& t = entry["train_index"];
        ids.push_back(t.is_string() ? t.get<std::string>() : t.dump());
      }
      rf.ranks_[id] = std::move(ids);
    }
  }
  return rf;
}

const std::vector<std::string>& RankFile::Neighbours(
    const std::string& id) const {
  const auto it = ranks_.find(id);
  if (it == ranks_.end()) Fail("{}: no entry for example id '{}'", path_, id);
  return it->second;
}

std::vector<Example> SelectDemos(const TaskInfo& task, const StrategySpec& spec,
                                 const Example& query, const DemoPool& pool,
                                 uint64_t seed, const RankFile* rank) {
  std::vector<Example> demos;
  if (spec.kind != StrategyKind::kFewShot || spec.k == 0) return demos;
  const size_t k = static_cast<size_t>(spec.k);
  auto TooFew = [&](size_t n) {
    Fail(
        "few-shot:{} for task {}: the demo pool ({}) has only {} usable "
        "examples",
        spec.k, task.id, pool.source, n);
  };
  if (pool.examples.size() < k) TooFew(pool.examples.size());
  switch (spec.selection) {
    case DemoSelection::kRandom: {
      // Partial Fisher-Yates with raw mt19937_64 output (its sequence is
      // fixed by the standard, unlike std::uniform_int_distribution's).
      std::mt19937_64 rng(seed ^ Fnv1a(query.id));
      std::vector<size_t> idx;
      for (size_t i = 0; i < pool.examples.size(); ++i)
        if (!IsSameItem(pool.examples[i], query)) idx.push_back(i);
      if (idx.size() < k) TooFew(idx.size());
      for (size_t i = 0; i < k; ++i) {
        const size_t j = i + rng() % (idx.size() - i);
        std::swap(idx[i], idx[j]);
        demos.push_back(pool.examples[idx[i]]);
      }
      break;
    }
    case DemoSelection::kBm25: {
      if (!pool.bm25)
        Fail("internal: BM25 index was not built for the demo pool");
      // One extra candidate in case the query itself is in the pool.
      for (const auto& [doc, score] :
           pool.bm25->TopK(RetrievalText(query), k + 1)) {
        if (demos.size() == k) break;
        if (!IsSameItem(pool.examples[doc], query))
          demos.push_back(pool.examples[doc]);
      }
      if (demos.size() < k) TooFew(demos.size());
      break;
    }
    case DemoSelection::kRank: {
      if (!rank)
        Fail("few-shot rank selection for task {} needs a rank file", task.id);
      std::unordered_map<std::string, size_t> by_id;
      for (size_t i = 0; i < pool.examples.size(); ++i)
        by_id[pool.examples[i].id] = i;
      const auto& ids = rank->Neighbours(query.id);
      if (ids.size() < k) {
        Fail(
            "rank file lists {} neighbours for example '{}', few-shot needs {}",
            ids.size(), query.id, k);
      }
      for (size_t i = 0; i < k; ++i) {
        const auto it = by_id.find(ids[i]);
        if (it == by_id.end()) {
          Fail(
              "rank file names training example '{}' for example '{}', but "
              "the demo pool ({}) has no example with that id",
              ids[i], query.id, pool.source);
        }
        demos.push_back(pool.examples[it->second]);
      }
      break;
    }
  }
  return demos;
}

}  // namespace bioquant
