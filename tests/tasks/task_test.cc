#include "tasks/task.h"

#include <gtest/gtest.h>

#include <set>

#include "util/error.h"

namespace bioquant {
namespace {

TEST(TaskRegistryTest, HasTheNineTasksInOrder) {
  std::vector<std::string> ids;
  for (const TaskInfo& t : AllTasks()) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<std::string>{
                     "bc5cdr_chem", "ncbi_disease", "chemprot", "ddi2013",
                     "hoc", "litcovid", "medqa", "medqa_5opt", "pubmedqa"}));
}

TEST(TaskRegistryTest, LabelSetsAndNegativeClasses) {
  EXPECT_EQ(FindTask("bc5cdr_chem").labels,
            std::vector<std::string>{"Chemical"});
  EXPECT_EQ(FindTask("ncbi_disease").type, TaskType::kNer);
  const TaskInfo& chemprot = FindTask("chemprot");
  EXPECT_EQ(chemprot.type, TaskType::kRelation);
  EXPECT_EQ(chemprot.labels.size(), 6u);
  EXPECT_EQ(chemprot.negative_label, "false");
  EXPECT_EQ(FindTask("ddi2013").negative_label, "DDI-false");
  EXPECT_EQ(FindTask("hoc").labels.size(), 10u);
  EXPECT_EQ(FindTask("litcovid").labels.size(), 7u);
  EXPECT_EQ(FindTask("medqa").labels.size(), 4u);
  EXPECT_EQ(FindTask("medqa_5opt").labels.size(), 5u);
  EXPECT_EQ(FindTask("pubmedqa").labels,
            (std::vector<std::string>{"yes", "no", "maybe"}));
  for (const TaskInfo& t : AllTasks()) {
    // The negative class of RE tasks must be in the label set.
    if (t.type == TaskType::kRelation) {
      EXPECT_EQ(std::set<std::string>(t.labels.begin(), t.labels.end())
                    .count(t.negative_label),
                1u)
          << t.id;
    } else {
      EXPECT_TRUE(t.negative_label.empty()) << t.id;
    }
    EXPECT_FALSE(t.description.empty()) << t.id;
  }
}

TEST(TaskRegistryTest, TypeNamesAreStable) {
  EXPECT_STREQ(TaskTypeName(TaskType::kNer), "ner");
  EXPECT_STREQ(TaskTypeName(TaskType::kRelation), "re");
  EXPECT_STREQ(TaskTypeName(TaskType::kMultiLabel), "multilabel");
  EXPECT_STREQ(TaskTypeName(TaskType::kQa), "qa");
}

TEST(TaskRegistryTest, UnknownTaskListsKnownOnes) {
  try {
    FindTask("bc5cdr");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unknown task 'bc5cdr'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bc5cdr_chem, ncbi_disease"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace bioquant
