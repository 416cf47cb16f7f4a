// Prompting strategies (zero-shot, few-shot, chain-of-thought,
// self-consistency) and the choice of few-shot demonstrations.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tasks/bm25.h"
#include "tasks/task.h"

namespace bioquant {

enum class StrategyKind { kZeroShot, kFewShot, kCot, kSelfConsistency };
enum class DemoSelection { kRandom, kBm25, kRank };

struct StrategySpec {
  StrategyKind kind = StrategyKind::kZeroShot;
  int k = 0;  // few-shot: number of demonstrations
  DemoSelection selection = DemoSelection::kRandom;
  int n = 1;                 // self-consistency: number of CoT samples
  double temperature = 0.0;  // 0 = greedy; self-consistency defaults to 0.7
  // NER answer style: "list" (JSON list of mentions) or "inline" (the
  // sentence with <e>...</e> around mentions). Ignored by other task types.
  std::string ner_style = "list";
};

// Accepts "zero-shot", "few-shot:K[:random|bm25|rank]", "cot",
// "sc:N[:TEMPERATURE]". Throws Error naming the strategy when malformed.
StrategySpec ParseStrategy(const std::string& text);

// Canonical name that ParseStrategy reads back, e.g. "few-shot:5:bm25",
// "sc:5:0.7"; stored with every result.
std::string StrategyName(const StrategySpec& spec);
const char* DemoSelectionName(DemoSelection selection);

// One generation request per sample: greedy strategies have one sample with
// `seed`; self-consistency has n samples with seeds seed + i.
struct SampleSpec {
  int index = 0;
  uint64_t seed = 0;
  double temperature = 0.0;
};
std::vector<SampleSpec> Samples(const StrategySpec& spec, uint64_t seed);

// Where few-shot demonstrations come from: the task's train split, else its
// dev split, else a --demos FILE in the task's own format.
struct DemoPool {
  std::vector<Example> examples;
  std::string source;                     // "train", "dev" or the file path
  std::shared_ptr<const Bm25Index> bm25;  // built when selection is bm25
};

// Throws a clear Error when the task has neither train nor dev in data_dir
// and no demos_file is given (LitCovid and 4-option MedQA in the published
// layout).
DemoPool LoadDemoPool(const std::string& data_dir, const TaskInfo& task,
                      const std::string& demos_file, const StrategySpec& spec);

// fewshot_similarity_rank.json (Chen et al. 2025): a list of objects mapping a
// test example id to its most similar training examples, best first:
// [{"<test id>": [{"train_index": "<train id>", "cosine_score": 0.9}, ...]}].
class RankFile {
 public:
  static RankFile Load(const std::string& path);
  // Training ids for a test id; throws Error naming the file when absent.
  const std::vector<std::string>& Neighbours(const std::string& id) const;
  size_t size() const { return ranks_.size(); }

 private:
  std::string path_;
  std::map<std::string, std::vector<std::string>> ranks_;
};

// Picks spec.k demonstrations for `query` from the pool:
//  random: a seeded draw without replacement; the generator is seeded with
//          seed XOR a hash of the example id, so each test item gets its own
//          draw, reproducibly and independently of evaluation order;
//  bm25:   the k pool items with the highest BM25 score against the query's
//          input text (ties to the earlier item);
//  rank:   the first k ids the rank file lists for the query's id.
// Demos are returned most-similar first (bm25, rank) or in draw order.
std::vector<Example> SelectDemos(const TaskInfo& task, const StrategySpec& spec,
                                 const Example& query, const DemoPool& pool,
                                 uint64_t seed, const RankFile* rank);

// The text BM25 indexes for an example: its input without any answer.
std::string RetrievalText(const Example& example);

}  // namespace bioquant
