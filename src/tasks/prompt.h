// Prompt templates: the project's own built-in wording for every task type and
// strategy, and user templates read from files with an {Input} slot.
//
// Answer contract shared with the parsers (tasks/parse.h): every built-in
// prompt asks for a final line that starts with "Answer:" —
//   NER, style "list":   Answer: ["mention one", "mention two"]   (or [])
//   NER, style "inline": Answer: the sentence with <e>mention</e> marked
//   RE:                  Answer: <one class name, e.g. CPR:4 or DDI-effect>
//   multi-label:         Answer: <label>; <label>   (label names as listed)
//   QA:                  Answer: <letter>  or  Answer: yes|no|maybe
// Chain-of-thought (and self-consistency, which samples the CoT prompt n
// times) asks for the reasoning first and the same answer line last.
#pragma once

#include <string>
#include <vector>

#include "tasks/strategy.h"
#include "tasks/task.h"

namespace bioquant {

inline constexpr char kAnswerPrefix[] = "Answer:";
inline constexpr char kEntityOpen[] = "<e>";
inline constexpr char kEntityClose[] = "</e>";

// Bumped whenever the wording of a built-in template changes; part of every
// template id so stored results say which wording produced them.
inline constexpr int kBuiltinTemplateVersion = 1;

struct Prompt {
  std::string template_id;  // name@version, e.g. "ner.zero-shot.list@1"
  std::string system;       // chat form: system message (the instructions)
  std::string user;         // chat form: user message (demos + the item)
  std::string text;         // plain form: system + "\n\n" + user
};

// The built-in prompt. `demos` must be empty unless spec is few-shot (then it
// holds the k demonstrations with their gold answers). Self-consistency uses
// the chain-of-thought prompt; its n, temperature and seeds come from
// Samples(). Throws Error for an unknown NER style.
Prompt BuildPrompt(const TaskInfo& task, const Example& example,
                   const StrategySpec& spec, const std::vector<Example>& demos);

// The built-in template id without building a prompt ("re.cot@1").
std::string BuiltinTemplateId(const TaskInfo& task, const StrategySpec& spec);

// A template file: the item goes where {Input} stands ({INPUT} and {input}
// are accepted too, as Chen et al.'s files use both); without a slot the item
// is appended on a new line. An optional {Examples} slot receives rendered
// demonstrations. A UTF-8 byte-order mark is dropped.
struct UserTemplate {
  std::string path;
  std::string body;
  std::string id;  // "file:<name>@<first 8 hex digits of FNV-1a of body>"
};
UserTemplate LoadUserTemplate(const std::string& path);
UserTemplate MakeUserTemplate(const std::string& name, const std::string& body);
Prompt BuildPromptFromTemplate(const UserTemplate& tmpl, const TaskInfo& task,
                               const Example& example,
                               const std::vector<Example>& demos);

// The item as user templates receive it, close to how Chen et al. fed it:
// NER/RE the sentence, multi-label the abstract, MedQA the question and
// "A. option" lines, PubMedQA the question followed by the abstract.
std::string RenderInput(const TaskInfo& task, const Example& example);

// The gold answer as the text after "Answer: " (used for demonstrations).
std::string RenderAnswer(const TaskInfo& task, const Example& example,
                         const std::string& ner_style);

}  // namespace bioquant
