// Breakdowns every study report carries per precision, with the paired
// comparison against the reference precision (study/study.h):
//
//  NER hallucination  predicted mentions that do not occur in the input
//                     sentence (compared lower-cased with all whitespace
//                     removed), per 100 predicted mentions, and how many
//                     examples have at least one; bootstrap CI over examples.
//  rare concepts      NER recall and RE macro-F1 split by how often the gold
//                     entity (RE: the entity pair) occurs in the task's train
//                     split — "unseen", "1-2", ">=3" — with bootstrap CIs and
//                     the relative drop per bucket against the reference, so
//                     "rare concepts degrade first" is answered by data.
//                     Entities are counted by normalized text (lower case,
//                     single spaces). RE pairs need entity names in the
//                     sentence (<e1>..</e1>, <e2>..</e2>); the published
//                     ChemProt and DDI files mask them (@CHEMICAL$), and the
//                     breakdown then says it is unavailable.
//  answer flips       the examples whose prediction changed (study.cc).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tasks/stats.h"

namespace bioquant {

// Lower case (ASCII), every whitespace character removed.
std::string NormalizeForMatch(const std::string& s);
// Lower case, runs of whitespace as one space, trimmed: an entity's key.
std::string ConceptKey(const std::string& s);

// Whether a predicted mention occurs in the sentence (tokens joined by
// spaces), case- and whitespace-insensitively.
bool MentionOccurs(const std::string& mention,
                   const std::vector<std::string>& tokens);

// One NER example as scored: its sentence, gold tags, the mentions the model
// predicted (empty when unparsed) and the predicted IOB2 tags.
struct NerScored {
  std::string id;
  std::vector<std::string> tokens, gold_tags, pred_tags, mentions;
};

// {"mentions", "hallucinated", "per_100_mentions", "ci_low", "ci_high",
//  "examples", "examples_with_any"}
nlohmann::json Hallucination(const std::vector<NerScored>& ex,
                             const BootstrapOptions& b);

// Rarity bucket of a train-split count: "unseen" (0), "1-2", ">=3".
const char* RarityBucket(int64_t count);
inline const char* const kRarityBuckets[] = {"unseen", "1-2", ">=3"};

// Gold entity texts (ConceptKey of the tokens of each gold span) of a
// sentence.
std::vector<std::string> GoldEntityKeys(const std::vector<std::string>& tokens,
                                        const std::vector<std::string>& tags);

// NER recall per bucket: {"unseen": {"gold", "recall", "ci_low",
// "ci_high"}, ...}; a gold entity is found when a predicted entity has
// exactly its span. `train_counts`: ConceptKey -> occurrences.
nlohmann::json NerRarity(const std::vector<NerScored>& ex,
                         const std::map<std::string, int64_t>& train_counts,
                         const BootstrapOptions& b);

// One RE example: its pair key ("" = unknown), gold and predicted label
// (nullopt when unparsed).
struct ReScored {
  std::string id, pair;
  std::string gold;
  std::optional<std::string> pred;
};
// "<e1>A</e1> ... <e2>B</e2>" -> "a|b"; "" when the sentence does not name
// both entities.
std::string RePairKey(const std::string& sentence);

// RE macro-F1 (all classes incl. the negative one) per bucket, as NerRarity.
nlohmann::json ReRarity(const std::vector<ReScored>& ex,
                        const std::map<std::string, int64_t>& train_counts,
                        const std::vector<std::string>& labels,
                        const std::string& negative_label,
                        const BootstrapOptions& b);

// Paired comparisons of the same examples (ref[i] and x[i] are one
// example). Hallucination: {"reference", "value", "delta", "delta_ci_low",
// "delta_ci_high"} of the per-100 rate. Rarity: per bucket {"examples",
// "reference", "value", "delta", "delta_ci_*", "relative_drop",
// "relative_drop_ci_*"} (relative drop null when the reference is 0).
nlohmann::json PairedHallucination(const std::vector<NerScored>& ref,
                                   const std::vector<NerScored>& x,
                                   const BootstrapOptions& b);
nlohmann::json PairedNerRarity(
    const std::vector<NerScored>& ref, const std::vector<NerScored>& x,
    const std::map<std::string, int64_t>& train_counts,
    const BootstrapOptions& b);
nlohmann::json PairedReRarity(
    const std::vector<ReScored>& ref, const std::vector<ReScored>& x,
    const std::map<std::string, int64_t>& train_counts,
    const std::vector<std::string>& labels, const std::string& negative_label,
    const BootstrapOptions& b);

}  // namespace bioquant
