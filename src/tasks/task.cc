#include "tasks/task.h"

#include "tasks/loaders.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {

const char* TaskTypeName(TaskType type) {
  switch (type) {
    case TaskType::kNer:
      return "ner";
    case TaskType::kRelation:
      return "re";
    case TaskType::kMultiLabel:
      return "multilabel";
    case TaskType::kQa:
      return "qa";
  }
  return "?";
}

const std::vector<TaskInfo>& AllTasks() {
  // Label strings are exactly as they appear in the published files; the HoC
  // hallmarks are lower case there.
  static const std::vector<TaskInfo> tasks = {
      {"bc5cdr_chem",
       TaskType::kNer,
       {"Chemical"},
       "",
       "BC5CDR chemical mentions in PubMed sentences (NER)"},
      {"ncbi_disease",
       TaskType::kNer,
       {"Disease"},
       "",
       "NCBI-disease mentions in PubMed sentences (NER)"},
      {"chemprot",
       TaskType::kRelation,
       {"CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false"},
       "false",
       "ChemProt chemical-gene relation classification (RE)"},
      {"ddi2013",
       TaskType::kRelation,
       {"DDI-advise", "DDI-effect", "DDI-mechanism", "DDI-int", "DDI-false"},
       "DDI-false",
       "DDI 2013 drug-drug interaction classification (RE)"},
      {"hoc",
       TaskType::kMultiLabel,
       {"activating invasion and metastasis", "avoiding immune destruction",
        "cellular energetics", "enabling replicative immortality",
        "evading growth suppressors", "genomic instability and mutation",
        "inducing angiogenesis", "resisting cell death",
        "sustaining proliferative signaling", "tumor promoting inflammation"},
       "",
       "Hallmarks of Cancer abstract classification (multi-label)"},
      {"litcovid",
       TaskType::kMultiLabel,
       {"Treatment", "Diagnosis", "Prevention", "Mechanism", "Transmission",
        "Epidemic Forecasting", "Case Report"},
       "",
       "LitCovid COVID-19 topic classification (multi-label)"},
      {"medqa",
       TaskType::kQa,
       {"A", "B", "C", "D"},
       "",
       "MedQA-USMLE, 4 options (QA)"},
      {"medqa_5opt",
       TaskType::kQa,
       {"A", "B", "C", "D", "E"},
       "",
       "MedQA-USMLE, 5 options (QA)"},
      {"pubmedqa",
       TaskType::kQa,
       {"yes", "no", "maybe"},
       "",
       "PubMedQA-labeled, yes/no/maybe from an abstract (QA)"},
  };
  return tasks;
}

const TaskInfo& FindTask(const std::string& id) {
  std::string known;
  for (const TaskInfo& t : AllTasks()) {
    if (t.id == id) return t;
    known += (known.empty() ? "" : ", ") + t.id;
  }
  Fail("unknown task '{}' (known: {})", id, known);
}

std::vector<Example> LoadSplit(const std::string& data_dir,
                               const std::string& task_id,
                               const std::string& split) {
  const TaskInfo& task = FindTask(task_id);
  const std::string path = SplitPath(data_dir, task, split);
  if (!FileExists(path)) {
    const std::vector<std::string> have = AvailableSplits(data_dir, task_id);
    std::string list;
    for (const auto& s : have) list += (list.empty() ? "" : ", ") + s;
    Fail("{}: no such file (split '{}' of task '{}'; available: {})", path,
         split, task_id, list.empty() ? "none" : list);
  }
  return LoadTaskFile(task, path);
}

std::vector<std::string> AvailableSplits(const std::string& data_dir,
                                         const std::string& task_id) {
  const TaskInfo& task = FindTask(task_id);
  std::vector<std::string> out;
  for (const char* split : {"test", "test_sample200", "train", "dev"}) {
    if (FileExists(SplitPath(data_dir, task, split))) out.push_back(split);
  }
  return out;
}

}  // namespace bioquant
