#include "tasks/prompt.h"

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

#include "tasks/loaders.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

// ---- Built-in wording (project's own). Changing any string below changes
// prompts: bump kBuiltinTemplateVersion and regenerate the golden files in
// tests/tasks/golden_prompts/. ----

struct TaskWording {
  const char* intro;   // what to do
  const char* labels;  // label definitions, or "" to list the bare names
};

const TaskWording& Wording(const std::string& id) {
  static const std::map<std::string, TaskWording> table = {
      {"bc5cdr_chem",
       {"You annotate sentences from biomedical articles. Find every mention "
        "of a chemical in the sentence: drugs, toxins, elements, compounds, "
        "metabolites and their abbreviations or brand names.",
        ""}},
      {"ncbi_disease",
       {"You annotate sentences from biomedical articles. Find every mention "
        "of a disease in the sentence: named diseases, disease classes, "
        "syndromes, inherited disorders and their abbreviations.",
        ""}},
      {"chemprot",
       {"You read sentences from biomedical articles. In each sentence one "
        "chemical is replaced by @CHEMICAL$ and one gene or protein by "
        "@GENE$. Decide which relation the sentence states between the two.",
        "CPR:3 = the chemical raises the activity or amount of the gene "
        "product (activates, up-regulates, induces)\n"
        "CPR:4 = the chemical lowers the activity or amount of the gene "
        "product (inhibits, down-regulates, blocks)\n"
        "CPR:5 = the chemical is an agonist of the gene product\n"
        "CPR:6 = the chemical is an antagonist of the gene product\n"
        "CPR:9 = the chemical is a substrate or a product of the gene product\n"
        "false = the sentence states none of these relations"}},
      {"ddi2013",
       {"You read sentences from drug labels and biomedical articles. In each "
        "sentence two drugs are replaced by @DRUG$. Decide which kind of "
        "drug-drug interaction, if any, the sentence states between them.",
        "DDI-mechanism = one drug changes how the body handles the other "
        "(absorption, metabolism, blood levels, excretion)\n"
        "DDI-effect = taking the two together has a stated effect or a "
        "changed response\n"
        "DDI-advise = the sentence advises or warns about using them "
        "together\n"
        "DDI-int = the sentence says they interact and gives no more detail\n"
        "DDI-false = the sentence states no interaction between these two "
        "drugs"}},
      {"hoc",
       {"You classify abstracts of cancer research articles by the hallmarks "
        "of cancer they discuss. An abstract may discuss several hallmarks.",
        ""}},
      {"litcovid",
       {"You classify abstracts of COVID-19 articles by the research topics "
        "they cover. An article may cover several topics.",
        "Treatment = therapies, drugs, vaccines and clinical care\n"
        "Diagnosis = detecting or assessing the disease: tests, symptoms, "
        "imaging\n"
        "Prevention = measures that prevent, control or mitigate spread\n"
        "Mechanism = how the virus infects and causes disease, how drugs act "
        "on it\n"
        "Transmission = how and when the virus passes between people\n"
        "Epidemic Forecasting = models and estimates of how the outbreak will "
        "develop\n"
        "Case Report = descriptions of individual patients"}},
      {"medqa",
       {"You answer multiple-choice questions from a medical licensing exam. "
        "Exactly one option is correct.",
        ""}},
      {"medqa_5opt",
       {"You answer multiple-choice questions from a medical licensing exam. "
        "Exactly one option is correct.",
        ""}},
      {"pubmedqa",
       {"You read the abstract of a biomedical study and answer the research "
        "question in its title with yes, no or maybe, according to what the "
        "study found.",
        ""}},
  };
  const auto it = table.find(id);
  if (it == table.end()) Fail("no built-in prompt wording for task '{}'", id);
  return it->second;
}

std::string EntityNoun(const TaskInfo& task) {
  std::string noun = task.labels.empty() ? "entity" : task.labels[0];
  for (char& c : noun) c = static_cast<char>(std::tolower(c));
  return noun;
}

std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string LabelSection(const TaskInfo& task) {
  const TaskWording& w = Wording(task.id);
  if (*w.labels) return w.labels;
  std::string out;
  for (const auto& l : task.labels)
    out += (out.empty() ? "" : "\n") + ("- " + l);
  return out;
}

void CheckStyle(const std::string& style) {
  if (style != "list" && style != "inline") {
    Fail("unknown NER output style '{}' (list, inline)", style);
  }
}

// How the answer line must look, per task type.
std::string AnswerFormat(const TaskInfo& task, const StrategySpec& spec) {
  const std::string noun = EntityNoun(task);
  switch (task.type) {
    case TaskType::kNer:
      if (spec.ner_style == "list") {
        return fmt::format(
            "Copy each {0} mention exactly as it is written in the sentence "
            "and give them as a JSON list of strings on a line that starts "
            "with \"Answer:\", for example:\n"
            "Answer: [\"first mention\", \"second mention\"]\n"
            "If the sentence has no {0} mention, write:\nAnswer: []",
            noun);
      }
      return fmt::format(
          "Write the sentence again, word for word, on a line that starts "
          "with \"Answer:\", and put {1} before and {2} after every {0} "
          "mention, for example:\n"
          "Answer: words before {1}first mention{2} words between "
          "{1}second mention{2} words after\n"
          "If the sentence has no {0} mention, write it unchanged.",
          noun, kEntityOpen, kEntityClose);
    case TaskType::kRelation:
      return "Give the class name exactly as written above on a line that "
             "starts with \"Answer:\", for example:\nAnswer: " +
             task.labels[0];
    case TaskType::kMultiLabel:
      return "Give every label that applies, spelled exactly as above and "
             "separated by semicolons, on a line that starts with \"Answer:\", "
             "for example:\nAnswer: " +
             task.labels[0] + "; " + task.labels[1];
    case TaskType::kQa:
      if (task.id == "pubmedqa") {
        return "Give yes, no or maybe on a line that starts with \"Answer:\", "
               "for example:\nAnswer: no";
      }
      return "Give the letter of the correct option (" +
             Join(task.labels, ", ") +
             ") on a line that starts with \"Answer:\", for "
             "example:\nAnswer: " +
             task.labels[1];
  }
  return "";
}

std::string LabelHeading(const TaskInfo& task) {
  switch (task.type) {
    case TaskType::kRelation:
      return "Classes:";
    case TaskType::kMultiLabel:
      return "Labels:";
    default:
      return "";
  }
}

std::string SystemMessage(const TaskInfo& task, const StrategySpec& spec) {
  std::string s = Wording(task.id).intro;
  const std::string heading = LabelHeading(task);
  if (!heading.empty()) s += "\n\n" + heading + "\n" + LabelSection(task);
  s += "\n\n" + AnswerFormat(task, spec);
  const bool cot = spec.kind == StrategyKind::kCot ||
                   spec.kind == StrategyKind::kSelfConsistency;
  if (cot) {
    s += "\n\nFirst think it through step by step and write down your "
         "reasoning. Then finish with the answer line; it must be the last "
         "line of your reply.";
  } else {
    s += "\n\nReply with the answer line only, without explanation.";
  }
  return s;
}

std::string InputBlock(const TaskInfo& task, const Example& ex) {
  switch (task.type) {
    case TaskType::kNer:
    case TaskType::kRelation:
      return "Sentence: " + ex.text;
    case TaskType::kMultiLabel:
      return "Abstract: " + ex.text;
    case TaskType::kQa: {
      if (task.id == "pubmedqa") {
        return "Abstract:\n" + ex.context + "\n\nQuestion: " + ex.text;
      }
      std::string s = "Question: " + ex.text + "\n\nOptions:";
      for (const auto& [letter, option] : ex.options)
        s += "\n" + letter + ". " + option;
      return s;
    }
  }
  return ex.text;
}

std::string StrategyTag(const StrategySpec& spec) {
  switch (spec.kind) {
    case StrategyKind::kZeroShot:
      return "zero-shot";
    case StrategyKind::kFewShot:
      return "few-shot";
    case StrategyKind::kCot:
    case StrategyKind::kSelfConsistency:
      return "cot";
  }
  return "?";
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Replaces every occurrence of any of `slots` in body; returns how many.
int ReplaceSlots(std::string& body, const std::vector<std::string>& slots,
                 const std::string& value) {
  int count = 0;
  for (const auto& slot : slots) {
    size_t pos = 0;
    while ((pos = body.find(slot, pos)) != std::string::npos) {
      body.replace(pos, slot.size(), value);
      pos += value.size();
      ++count;
    }
  }
  return count;
}

}  // namespace

std::string RenderInput(const TaskInfo& task, const Example& ex) {
  if (task.type != TaskType::kQa) return ex.text;
  if (task.id == "pubmedqa") {
    std::string ctx = ex.context;
    for (char& c : ctx)
      if (c == '\n') c = ' ';
    return ex.text + " " + ctx;
  }
  std::string s = ex.text;
  for (const auto& [letter, option] : ex.options)
    s += "\n" + letter + ". " + option;
  return s;
}

std::string RenderAnswer(const TaskInfo& task, const Example& ex,
                         const std::string& ner_style) {
  switch (task.type) {
    case TaskType::kNer: {
      CheckStyle(ner_style);
      if (ner_style == "list") {
        std::vector<std::string> quoted;
        for (const auto& m : GoldMentions(ex))
          quoted.push_back(nlohmann::json(m).dump());
        return "[" + Join(quoted, ", ") + "]";
      }
      // Strict IOB2: an entity is a B and the I's right after it; an I
      // after O starts nothing (as the metrics count it).
      std::string s;
      bool open = false;
      for (size_t i = 0; i < ex.tokens.size(); ++i) {
        if (i) s += ' ';
        if (ex.tags[i] == "B") {
          s += kEntityOpen;
          open = true;
        }
        s += ex.tokens[i];
        if (open && !(i + 1 < ex.tokens.size() && ex.tags[i + 1] == "I")) {
          s += kEntityClose;
          open = false;
        }
      }
      return s;
    }
    case TaskType::kMultiLabel:
      return Join(ex.gold, "; ");
    default:
      return ex.gold.empty() ? "" : ex.gold[0];
  }
}

std::string BuiltinTemplateId(const TaskInfo& task, const StrategySpec& spec) {
  std::string id =
      std::string(TaskTypeName(task.type)) + "." + StrategyTag(spec);
  if (task.type == TaskType::kNer) {
    CheckStyle(spec.ner_style);
    id += "." + spec.ner_style;
  }
  return id + "@" + std::to_string(kBuiltinTemplateVersion);
}

Prompt BuildPrompt(const TaskInfo& task, const Example& example,
                   const StrategySpec& spec,
                   const std::vector<Example>& demos) {
  Prompt p;
  p.template_id = BuiltinTemplateId(task, spec);
  if (!demos.empty() && spec.kind != StrategyKind::kFewShot) {
    Fail("strategy {} takes no demonstrations ({} given)", StrategyName(spec),
         demos.size());
  }
  p.system = SystemMessage(task, spec);
  if (demos.empty()) {
    p.user = InputBlock(task, example);
  } else {
    p.user = "Solved examples:";
    for (size_t i = 0; i < demos.size(); ++i) {
      p.user += fmt::format("\n\nExample {}\n{}\n{} {}", i + 1,
                            InputBlock(task, demos[i]), kAnswerPrefix,
                            RenderAnswer(task, demos[i], spec.ner_style));
    }
    p.user += "\n\nNow the item to solve:\n\n" + InputBlock(task, example);
  }
  p.text = p.system + "\n\n" + p.user;
  return p;
}

UserTemplate MakeUserTemplate(const std::string& name,
                              const std::string& body) {
  UserTemplate t;
  t.path = name;
  t.body = body;
  if (t.body.rfind("\xEF\xBB\xBF", 0) == 0) t.body.erase(0, 3);
  std::string stem = name;
  if (const size_t slash = stem.rfind('/'); slash != std::string::npos)
    stem = stem.substr(slash + 1);
  if (const size_t dot = stem.rfind('.'); dot != std::string::npos && dot > 0)
    stem = stem.substr(0, dot);
  t.id = fmt::format("file:{}@{:08x}", stem,
                     static_cast<uint32_t>(Fnv1a(t.body) >> 32));
  return t;
}

UserTemplate LoadUserTemplate(const std::string& path) {
  return MakeUserTemplate(path, ReadFile(path));
}

Prompt BuildPromptFromTemplate(const UserTemplate& tmpl, const TaskInfo& task,
                               const Example& example,
                               const std::vector<Example>& demos) {
  Prompt p;
  p.template_id = tmpl.id;
  std::string body = tmpl.body;
  if (!demos.empty()) {
    std::string rendered;
    for (size_t i = 0; i < demos.size(); ++i) {
      rendered += fmt::format("{}Input: {}\nOutput: {}", i ? "\n\n" : "",
                              RenderInput(task, demos[i]),
                              RenderAnswer(task, demos[i], "inline"));
    }
    if (ReplaceSlots(body, {"{Examples}", "{EXAMPLES}", "{examples}"},
                     rendered) == 0) {
      Fail(
          "{}: template has no {{Examples}} slot for the {} demonstrations; "
          "use a zero-shot strategy with it",
          tmpl.path, demos.size());
    }
  }
  const std::string input = RenderInput(task, example);
  if (ReplaceSlots(body, {"{Input}", "{INPUT}", "{input}"}, input) == 0) {
    while (!body.empty() &&
           std::isspace(static_cast<unsigned char>(body.back())))
      body.pop_back();
    body += "\n" + input;
  }
  p.user = body;
  p.text = body;
  return p;
}

}  // namespace bioquant
