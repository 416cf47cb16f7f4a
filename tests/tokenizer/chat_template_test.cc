// Chat template tests: every shared/oracles/chat_templates/expected/*.json
// (rendered by Python Jinja2 the way transformers does) byte for byte with
// and without the system message, llama.cpp's template cases where Python
// Jinja2 rendered them, Mistral v0.3's own tokenizer_config.json, Jinja
// semantics in isolation, bad input, and the `template` command.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/error.h"
#include "util/file.h"

namespace bioquant {
namespace {

using nlohmann::ordered_json;
using testing::OracleDir;

std::string ChatDir() { return OracleDir() + "/chat_templates"; }

ordered_json ReadOrdered(const std::string& path) {
  return ordered_json::parse(ReadFile(path));
}

// Renders a template string with no messages-related variables of interest.
std::string R(const std::string& tmpl,
              const nlohmann::json& extra = nlohmann::json::object()) {
  ChatTemplateOptions o;
  o.add_generation_prompt = false;
  o.extra_context = extra;
  return RenderChatTemplate(tmpl, nlohmann::json::array(), o, "t");
}

std::string ErrorOf(const std::string& tmpl,
                    const nlohmann::json& extra = nlohmann::json::object()) {
  try {
    R(tmpl, extra);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// ---- the shared oracles ----------------------------------------------------

std::vector<std::string> ExpectedFiles() {
  std::vector<std::string> files;
  const std::string dir = ChatDir() + "/expected";
  if (!std::filesystem::exists(dir)) return files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".json") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The message of a Python exception repr such as "TemplateError('msg')".
std::string PyErrorMessage(const std::string& repr) {
  const size_t open = repr.find('(');
  return repr.substr(open + 2, repr.size() - open - 4);
}

TEST(ChatTemplateOracles, AllExpectedFilesRenderByteExactly) {
  BIOQUANT_REQUIRE_SHARED();
  const auto files = ExpectedFiles();
  ASSERT_GE(files.size(), 13u);
  int checked = 0;
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    const ordered_json c = ReadOrdered(path);
    const std::string tmpl =
        ReadFile(ChatDir() + "/" + c["template_file"].get<std::string>());
    ChatTemplateOptions o;
    o.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    o.bos_token = c["bos_token"].get<std::string>();
    o.eos_token = c["eos_token"].get<std::string>();
    o.date = c["strftime_now_fixed_to"].get<std::string>();
    o.extra_context = nlohmann::json::parse(c["extra_context"].dump());
    const ordered_json& messages = c["messages"];
    ASSERT_EQ(messages[0]["role"], "system");
    ordered_json without = messages;
    without.erase(without.begin());

    if (c["expected"].is_null()) {
      // gemma-2 refuses a system message with its own raise_exception text.
      ASSERT_TRUE(c.contains("error"));
      try {
        RenderChatTemplate(tmpl, messages, o, "chat_template");
        ADD_FAILURE() << "expected an error";
      } catch (const Error& e) {
        EXPECT_EQ(
            std::string(e.what()),
            "chat_template: " + PyErrorMessage(c["error"].get<std::string>()));
      }
    } else {
      EXPECT_EQ(RenderChatTemplate(tmpl, messages, o),
                c["expected"].get<std::string>());
    }
    EXPECT_EQ(RenderChatTemplate(tmpl, without, o),
              c["expected_without_system_message"].get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(files.size()));
}

TEST(ChatTemplateOracles, LlamaCppCasesRenderedByPythonJinja) {
  BIOQUANT_REQUIRE_SHARED();
  const ordered_json all =
      ReadOrdered(ChatDir() + "/llama.cpp_test_chat_template_cases.json");
  int rendered = 0, errors = 0;
  for (const auto& c : all["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ChatTemplateOptions o;
    o.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    o.bos_token = c["bos_token"].get<std::string>();
    o.eos_token = c["eos_token"].get<std::string>();
    o.date = "2024-07-26";
    const std::string tmpl = c["template"].get<std::string>();
    if (c.contains("python_jinja2_error")) {
      // Python Jinja2 raised; so must we (with the template's own text when
      // it came from raise_exception).
      const std::string py = c["python_jinja2_error"].get<std::string>();
      try {
        RenderChatTemplate(tmpl, c["messages"], o);
        ADD_FAILURE() << "expected an error like " << py;
      } catch (const Error& e) {
        if (py.rfind("TemplateError(", 0) == 0) {
          EXPECT_EQ(std::string(e.what()),
                    "chat_template: " + PyErrorMessage(py));
        } else {
          EXPECT_NE(std::string(e.what()).find(PyErrorMessage(py)),
                    std::string::npos)
              << e.what();
        }
      }
      ++errors;
      continue;
    }
    EXPECT_EQ(RenderChatTemplate(tmpl, c["messages"], o),
              c["python_jinja2_render"].get<std::string>());
    ++rendered;
  }
  EXPECT_EQ(rendered + errors, static_cast<int>(all["cases"].size()));
  EXPECT_GE(rendered, 30);
}

TEST(ChatTemplateOracles, MistralV03TokenizerConfig) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string dir = OracleDir() + "/tokenizers/mistral-7b-instruct-v0.3";
  const ChatTemplateConfig cfg = ReadChatTemplateConfig(dir);
  EXPECT_EQ(cfg.bos_token, "<s>");
  EXPECT_EQ(cfg.eos_token, "</s>");
  ASSERT_FALSE(cfg.chat_template.empty());
  // The same template as the expected-file copy, so the same rendering.
  const ordered_json c = ReadOrdered(
      ChatDir() +
      "/expected/mistral-7b-instruct-v0.3.tokenizer_config.chat_template."
      "short_conversation.json");
  ChatTemplateOptions o;
  o.bos_token = cfg.bos_token;
  o.eos_token = cfg.eos_token;
  EXPECT_EQ(RenderChatTemplate(cfg.chat_template, c["messages"], o),
            c["expected"].get<std::string>());

  // Tools: the [AVAILABLE_TOOLS] block goes before the last user message;
  // keys keep their order and non-strings go through tojson.
  ordered_json messages = ordered_json::parse(R"([
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "tool_calls": [{"id": "abcdefghi", "function": {"name": "get", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_call_id": "abcdefghi", "content": "sunny"},
    {"role": "assistant", "content": "Sunny."},
    {"role": "user", "content": "Thanks"}])");
  o.extra_context =
      ordered_json::parse(R"({"tools": [{"type": "function", "function":
      {"name": "get", "description": "Get weather", "parameters": {"type": "object"}}}]})");
  // Hand-checked against Python Jinja2 3.1 with transformers' settings.
  EXPECT_EQ(RenderChatTemplate(cfg.chat_template, messages, o),
            "<s>[INST] Weather?[/INST][TOOL_CALLS] [{\"name\": \"get\", "
            "\"arguments\": {\"city\": "
            "\"Paris\"}, \"id\": \"abcdefghi\"}]</s>[TOOL_RESULTS] "
            "{\"content\": sunny, "
            "\"call_id\": \"abcdefghi\"}[/TOOL_RESULTS] "
            "Sunny.</s>[AVAILABLE_TOOLS] [{\"type\": "
            "\"function\", \"function\": {\"name\": \"get\", \"description\": "
            "\"Get weather\", "
            "\"parameters\": {\"type\": \"object\"}}}][/AVAILABLE_TOOLS][INST] "
            "Thanks[/INST]");

  // Roles that do not alternate: the template's own message.
  ordered_json bad = ordered_json::parse(R"([{"role": "user", "content": "a"},
                                             {"role": "user", "content": "b"}])");
  o.extra_context = ordered_json::object();
  try {
    RenderChatTemplate(cfg.chat_template, bad, o);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "chat_template: After the optional system message, conversation "
              "roles must "
              "alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplateOracles, StrftimeNowFollowsDate) {
  BIOQUANT_REQUIRE_SHARED();
  const std::string tmpl = ReadFile(
      ChatDir() + "/llama.cpp/Mistral-Small-3.2-24B-Instruct-2506.jinja");
  ChatTemplateOptions o;
  o.date = "2025-01-31";
  const std::string out = RenderChatTemplate(
      tmpl, nlohmann::json::parse(R"([{"role":"user","content":"x"}])"), o);
  EXPECT_NE(out.find("The current date is 2025-01-31."), std::string::npos);
}

// ---- Jinja semantics, each checked against Python Jinja2 3.1 ---------------

TEST(Jinja, WhitespaceControlAndTrimming) {
  // lstrip_blocks + trim_blocks.
  EXPECT_EQ(R("  {% if true %}\n  x\n  {% endif %}\n  y"), "  x\n  y");
  EXPECT_EQ(R("a\r\nb  {#- c -#}  d\n{# x #}\ne"), "a\nbd\ne");
  EXPECT_EQ(R("{%- if true -%}\n  x  \n{%- endif -%}\n"), "x");
  EXPECT_EQ(R("x\n"), "x");  // one trailing newline is dropped
  EXPECT_EQ(R("x\n\n"), "x\n");
  EXPECT_EQ(R("{{ 'a' }}  {% if true %}b{% endif %}"),
            "a  b");  // not at line start
  EXPECT_EQ(R("a\n    {%+ if true %}b{% endif %}"), "a\n    b");
  EXPECT_EQ(R("{% if true +%}\nb{% endif %}"), "\nb");
  EXPECT_EQ(R("{{- ' a ' -}}  \n {{ 'b' }}"), " a b");
  EXPECT_EQ(R("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(Jinja, ValuesPrintLikePython) {
  EXPECT_EQ(R("{{ none }}{{ true }}{{ [1,'a',none, 1.5, {'a': 'b\"'}] }}{{ "
              "1e20 }}{{ 1.0e-5 }}"
              "{{ 10/4 }}{{ 7//2 }}{{ -7 % 3 }}{{ 2**10 }}"),
            "NoneTrue[1, 'a', None, 1.5, {'a': 'b\"'}]1e+201e-052.5321024");
  EXPECT_EQ(R("{{ \"it's\" }}{{ [\"it's\", 'a\"b', 'a\\nb'] }}"),
            "it's[\"it's\", 'a\"b', 'a\\nb']");
  EXPECT_EQ(R("{{ 'x' ~ 1.0 }}{{ 0.1+0.2 }}{{ 1/3 }}{{ 100000000000000000.0 "
              "}}{{ (1,2) }}"),
            "x1.00.300000000000000040.33333333333333331e+17(1, 2)");
  EXPECT_EQ(
      R("{{ -7 // 2 }}{{ 7.5 // 2 }}{{ 2 ** -1 }}{{ 1 + 2.5 }}{{ 4 / 2 }}"),
      "-43.00.53.52.0");
  EXPECT_EQ(R("{{ [1,2] + [3] }}{{ 'ab' * 2 }}{{ 1 ~ 2 ~ none }}"),
            "[1, 2, 3]abab12None");
  EXPECT_EQ(R("{{ {'b':1,'a':2}|dictsort }}{{ {'b':1,'a':2}|items|list }}"),
            "[('a', 2), ('b', 1)][('b', 1), ('a', 2)]");
  EXPECT_EQ(R("{% set ns = namespace(a=1) %}{{ ns }}"), "<Namespace {'a': 1}>");
}

TEST(Jinja, ToJsonMatchesPythonJsonDumps) {
  const nlohmann::json x = nlohmann::json::parse(
      R"({"a": [1, 2.5, "é\n\u2028\u0001"], "b": null, "c": true, "d": 1e16, "e": 1e-7})");
  EXPECT_EQ(R("{{ x|tojson }}", {{"x", x}}),
            "{\"a\": [1, 2.5, \"é\\n\u2028\\u0001\"], \"b\": null, \"c\": "
            "true, \"d\": 1e+16, "
            "\"e\": 1e-07}");
  EXPECT_EQ(R("{{ x|tojson(indent=2) }}",
              {{"x", nlohmann::json::parse(R"({"a": [1, {}], "b": []})")}}),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 'x'}|tojson(sort_keys=true) }}{{ "
              "'é'|tojson(ensure_ascii=true) }}"),
            "{\"a\": \"x\", \"b\": 1}\"\\u00e9\"");
  EXPECT_NE(ErrorOf("{{ nothing|tojson }}").find("'nothing' is undefined"),
            std::string::npos);
}

TEST(Jinja, ScopingLoopsAndNamespaces) {
  EXPECT_EQ(R("{% for i in range(3) %}{% if i == 0 %}{% set x = 'a' %}{% endif "
              "%}[{{ x }}]{% endfor %}"),
            "[a][][]");
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = 2 %}{{ x "
              "}}{% endfor %}{{ x }}"),
            "12121");
  EXPECT_EQ(R("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}"),
            "2");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n "
              "= ns.n + i %}"
              "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(R("{% for x in [1,2,3] if x > 1 %}{{ loop.index }}/{{ loop.length "
              "}}{{ loop.first }}"
              "{{ loop.last }}{{ loop.revindex }}{% endfor %}"),
            "1/2TrueFalse22/2FalseTrue1");
  EXPECT_EQ(R("{% for m in [1,2] %}{{ loop.previtem }}|{{ loop.nextitem }};{% "
              "endfor %}"),
            "|2;1|;");
  EXPECT_EQ(R("{% for m in [1,2,3] %}{{ loop.cycle('a','b') }}{{ loop.index0 "
              "}}{% endfor %}"),
            "a0b1a2");
  EXPECT_EQ(R("{% for a in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}"
              "{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}"),
            "02");
  EXPECT_EQ(
      R("{% for k, v in {'a': 1, 'b': 2}|items %}{{k}}={{v}};{% endfor %}"),
      "a=1;b=2;");
  EXPECT_EQ(R("{% set a, b = [1, 2] %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(R("{% macro m(a, b=2) %}{{ a }}{{ b }}{{ y }}{% endmacro %}{% set "
              "y = 5 %}"
              "{{ m(1) }}{{ m(1, b=3) }}"),
            "125135");
  EXPECT_EQ(R("{% set x %}  a {{ 1 }}{% endset %}[{{ x }}]{% set y | trim %}  "
              "b  {% endset %}[{{ y }}]"),
            "[  a 1][b]");
  EXPECT_EQ(R("{% filter upper %}ab{% endfilter %}{% with q = 3 %}{{ q }}{% "
              "endwith %}{{ q }}"),
            "AB3");
}

TEST(Jinja, ExpressionsTestsAndUndefined) {
  EXPECT_EQ(R("{{ 1 if 0 else 2 if 0 else 3 }}{{ not 1 == 2 }}{{ 1 in [1] }}{{ "
              "'a' not in 'abc' }}"),
            "3TrueTrueFalse");
  EXPECT_EQ(R("{{ 'x' if false }}|{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}"),
            "|TrueFalse");
  EXPECT_EQ(R("{{ 3 is divisibleby 3 }}{{ 'a' is string }}{{ {} is mapping "
              "}}{{ [] is iterable }}"
              "{{ 1 is sequence }}{{ 1 is number }}{{ true is boolean }}{{ 1.0 "
              "is integer }}"),
            "TrueTrueTrueTrueFalseTrueTrueFalse");
  EXPECT_EQ(R("{{ none is none }}{{ x is none }}{{ 1 is eq 1 }}{{ 'A' is upper "
              "}}{{ 3 is odd }}"
              "{{ x is not defined }}{{ raise_exception is callable }}{{ 2 is "
              "in [1, 2] }}"),
            "TrueFalseTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 1 == 1.0 }}{{ true == 1 }}{{ [1] == [1.0] }}{{ {'a': 1} == "
              "{'a': 1} }}"),
            "TrueTrueTrueTrue");
  EXPECT_EQ(R("{{ d.bar }}|{{ d.bar|length }}|{{ d.x is defined and d.x.y }}",
              {{"d", nlohmann::json::object()}}),
            "|0|False");
  EXPECT_EQ(R("{{ 'abc'[5] }}{{ [1][5] is defined }}{{ none.x }}{{ 'abc'.x }}"),
            "False");
  EXPECT_EQ(R("{{ none|default('d') }}{{ undefined|default('d') }}{{ "
              "''|default('d', true) }}"),
            "Nonedd");
  // Jinja2 raises on using (not testing) an undefined value.
  EXPECT_EQ(ErrorOf("{{ foo.bar }}"), "t: line 1: 'foo' is undefined");
  EXPECT_EQ(ErrorOf("\n{{ d.bar.baz }}", {{"d", nlohmann::json::object()}}),
            "t: line 2: 'dict object' has no attribute 'bar'");
  EXPECT_EQ(ErrorOf("{{ foo + 'a' }}"), "t: line 1: 'foo' is undefined");
  EXPECT_EQ(ErrorOf("{{ 'a' + 1 }}"),
            "t: line 1: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(
      ErrorOf("{{ 1 < 'a' }}"),
      "t: line 1: '<' not supported between instances of 'int' and 'str'");
  EXPECT_EQ(ErrorOf("{{ 5 / 0 }}"), "t: line 1: division by zero");
}

TEST(Jinja, FiltersAndStringMethods) {
  EXPECT_EQ(R("{{ 'abc'[::-1] }}{{ [1,2,3][1:] }}{{ 'héllo'[1] }}{{ "
              "'héllo'[-2:] }}{{ [1,2,3,4][::2] }}"),
            "cba[2, 3]élo[1, 3]");
  EXPECT_EQ(R("{{ '%s-%d'|format('a', 3) }}{{ 'hello world'.title() }}{{ "
              "'a,b'.split(',') }}"),
            "a-3Hello World['a', 'b']");
  EXPECT_EQ(R("{{ 'a b  c'.split() }}{{ 'a b c'.split(' ', 1) }}{{ "
              "'abc'.startswith(('x','a')) }}"
              "{{ 'a/b/c'.rsplit('/', 1) }}"),
            "['a', 'b', 'c']['a', 'b c']True['a/b', 'c']");
  EXPECT_EQ(R("{{ '{} is {x}'.format(1, x=2) }}{{ 'abc'|upper }}{{ "
              "'aBc'|capitalize }}{{ '  x '|trim }}"
              "{{ 'abc'|replace('b','x') }}{{ [3,1]|first }}{{ [3,1]|last }}{{ "
              "'ab'|list }}{{ 5|string }}"),
            "1 is 2ABCAbcxaxc31['a', 'b']5");
  EXPECT_EQ(
      R("{{ ' a '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ ' a '.lstrip() }}|{{ "
        "' a '.rstrip() }}|"
        "{{ 'Hello. world-foo'|title }}|{{ 'ßa'|upper }}|{{ 'ÀB'|lower }}"),
      "a|a|a | a|Hello. World-Foo|SSA|àb");
  EXPECT_EQ(R("{{ [1,2,3]|select('odd')|list }}{{ [1,2,3]|reject('equalto', "
              "2)|list }}"
              "{{ ['b','A','a']|sort }}{{ ['b','A','a']|unique|list }}{{ "
              "[3,1,2]|max }}{{ []|sum }}"),
            "[1, 3][1, 3]['A', 'a', 'b']['b', 'A']30");
  const nlohmann::json users = nlohmann::json::parse(
      R"([{"n": "a", "r": "user"}, {"n": "b"}, {"n": "c", "r": "user"}])");
  EXPECT_EQ(R("{{ u|map(attribute='n')|join(',') }}|{{ u|selectattr('r', "
              "'equalto', 'user')|map(attribute='n')|list }}"
              "|{{ u|rejectattr('r', 'defined')|list }}|{{ "
              "u|selectattr('r')|list|length }}",
              {{"u", users}}),
            "a,b,c|['a', 'c']|[{'n': 'b'}]|2");
  EXPECT_EQ(R("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}"),
            "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(R("{{ 1.5|int }}{{ '3'|int }}{{ 'x'|int }}{{ 3|float }}{{ "
              "2.567|round(2) }}{{ 2.5|round }}"
              "{{ -3|abs }}"),
            "1303.02.572.03");
  EXPECT_EQ(R("{{ d.items()|list }}{{ d.keys()|list }}{{ d.values()|list }}{{ "
              "d.get('a') }}{{ d.get('z') }}"
              "{{ d.get('z', 2) }}{{ d|length }}",
              {{"d", {{"a", 1}}}}),
            "[('a', 1)]['a'][1]1None21");
  EXPECT_EQ(R("{{ 'é'|length }}{{ 'a'*3 }}{{ 'abc'|list|reverse|join }}{{ "
              "'abc'|reverse }}"),
            "1aaacbacba");
}

TEST(Jinja, PythonObjectQuirks) {
  // Filters return generators (always truthy, no len, no tojson); dict
  // methods return views; |safe makes Markup, which escapes what is added.
  EXPECT_EQ(
      R("{% if []|select('odd') %}T{% else %}F{% endif %}{{ {'a':1}.items() }}"
        "{{ {'a':1}.keys() }}{{ {'a': 1}.items()|length }}{{ [1, "
        "2]|reverse|list }}"),
      "Tdict_items([('a', 1)])dict_keys(['a'])1[2, 1]");
  EXPECT_EQ(R("{{ 'a'|safe + '<b>' }}{{ '<i>' + 'x'|safe }}{{ '<i>' ~ 'x'|safe "
              "}}{{ '<&>'|e }}"),
            "a&lt;b&gt;&lt;i&gt;x<i>x&lt;&amp;&gt;");
  EXPECT_EQ(R("{% set d = {1: 'one', 'k': 2, none: 3, true: 4} %}{{ d }}{{ "
              "d[1] }}{{ d|tojson }}"
              "{{ d[none] }}{{ 1.0 in d }}"),
            "{1: 4, 'k': 2, None: 3}4{\"1\": 4, \"k\": 2, \"null\": 3}3True");
  EXPECT_EQ(R("{{ none|selectattr('a')|list }}{{ none|map(attribute='a')|list "
              "}}{{ 7|round }}"
              "{{ '0x10'|int }}{{ 0x10 }}"),
            "[][]7016");
  EXPECT_EQ(ErrorOf("{{ [1]|map('string')|tojson }}"),
            "t: line 1: Object of type generator is not JSON serializable");
  EXPECT_EQ(ErrorOf("{{ [1]|select|length }}"),
            "t: line 1: object of type 'generator' has no len()");
  EXPECT_EQ(ErrorOf("{{ {'a': 1}.keys()|tojson }}"),
            "t: line 1: Object of type dict_keys is not JSON serializable");
  EXPECT_EQ(ErrorOf("{{ none.x.y }}"),
            "t: line 1: 'None' has no attribute 'x'");
  EXPECT_EQ(
      ErrorOf("{{ x.append(1) }}", {{"x", nlohmann::json::array()}}),
      "t: line 1: access to attribute 'append' of 'list' object is unsafe.");
}

// ---- bad input
// ---------------------------------------------------------------

TEST(ChatTemplateErrors, SyntaxErrorsNameSourceAndLine) {
  const auto error_of = [](const std::string& tmpl) -> std::string {
    try {
      RenderChatTemplate(tmpl, nlohmann::json::array(), ChatTemplateOptions{},
                         "my.jinja");
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  };
  EXPECT_EQ(error_of("line1\n{{ foo( }}"),
            "my.jinja: line 2: unexpected '}', expected ')'");
  EXPECT_EQ(
      error_of("{{ x y }}"),
      "my.jinja: line 1: expected token 'end of print statement', got 'y'");
  EXPECT_EQ(error_of("{% endfor %}"),
            "my.jinja: line 1: Encountered unknown tag 'endfor'");
  const std::string unclosed = error_of("{% if x %}\n\n{% for a in b %}");
  EXPECT_EQ(unclosed.rfind("my.jinja: line 3: unexpected end of template", 0),
            0u)
      << unclosed;
  EXPECT_NE(unclosed.find("'endfor'"), std::string::npos);
  EXPECT_EQ(error_of("a\n{# never closed"),
            "my.jinja: line 2: Missing end of comment tag");
  EXPECT_EQ(
      error_of("{% for %}"),
      "my.jinja: line 1: expected token 'name', got 'end of statement block'");
  EXPECT_EQ(error_of("{% break %}"),
            "my.jinja: line 1: 'break' outside of a loop");
  for (const std::string bad :
       {"{{ 1 +", "{% if %}", "{{ 'abc }}", "{% set %}", "{{ x|nope }}"}) {
    const std::string e = error_of(bad);
    EXPECT_EQ(e.rfind("my.jinja: line 1: ", 0), 0u) << bad << " -> " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

// An untrusted template cannot crash the process or run without bound:
// recursion, nesting, tag length, loop work, output and repetition are
// bounded, each with a one-line error.
TEST(ChatTemplateErrors, UntrustedTemplatesAreBounded) {
  const auto error_of = [](const std::string& tmpl) -> std::string {
    try {
      RenderChatTemplate(tmpl, nlohmann::json::array(), ChatTemplateOptions{},
                         "evil.jinja");
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  };
  const auto expect = [&](const std::string& tmpl, const std::string& want) {
    const std::string e = error_of(tmpl);
    EXPECT_NE(e.find(want), std::string::npos) << e;
    EXPECT_EQ(e.rfind("evil.jinja: ", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  };
  expect("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
         "calls nested more than 100 deep");
  expect(
      "{% macro a(n) %}{{ b(n) }}{% endmacro %}"
      "{% macro b(n) %}{{ a(n) }}{% endmacro %}{{ a(1) }}",
      "calls nested more than 100 deep");
  // Recursion that ends is fine.
  std::string countdown;
  for (int n = 50; n > 0; --n) countdown += std::to_string(n);
  EXPECT_EQ(R("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}"
              "{% endmacro %}{{ f(50) }}"),
            countdown);
  expect(
      "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}",
      "more than 4096 tokens");
  expect("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}",
         "nested more than 200 levels deep");
  expect("{{ " + std::string(1000, '-') + "1 }}",
         "nested more than 200 levels deep");
  std::string nested_ifs;
  for (int i = 0; i < 300; ++i) nested_ifs += "{% if true %}";
  for (int i = 0; i < 300; ++i) nested_ifs += "{% endif %}";
  expect(nested_ifs, "nested more than 200 levels deep");
  std::string chain = "{{ 'a'";
  for (int i = 0; i < 5000; ++i) chain += " ~ 'a'";
  expect(chain + " }}", "more than 4096 tokens");
  expect(
      "{% for i in range(2000) %}{% for j in range(1000) %}{% endfor %}"
      "{% endfor %}",
      "more than 1000000 loop iterations");
  expect("{{ 'x' * 100000000000 }}", "repetition of more than 64 MiB");
  expect("{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}",
         "output exceeds 64 MiB");
  // 64-bit integers (Python's are unbounded): overflow is an error, and a
  // huge exponent costs at most 63 rounds (found by fuzzing: a macro that
  // doubles its argument forever).
  expect(
      "{% macro f(n) %}{% if n %}{{ f(n * 2) }}{% endif %}{% endmacro %}"
      "{{ f(3) }}",
      "integer overflow in '*'");
  expect("{{ 9223372036854775807 + 1 }}", "integer overflow in '+'");
  expect("{{ -9223372036854775807 - 2 }}", "integer overflow in '-'");
  expect("{{ (-9223372036854775807 - 1) // -1 }}", "integer overflow in '//'");
  expect("{{ -(-9223372036854775807 - 1) }}", "integer overflow in unary '-'");
  expect("{{ 2 ** 1000000000000 }}", "integer overflow in '**'");
  EXPECT_EQ(R("{{ 2 ** 62 }}|{{ (-2) ** 63 }}|{{ 1 ** 1000000000000 }}|"
              "{{ (-9223372036854775807 - 1) % -1 }}|{{ 7 % -1 }}"),
            "4611686018427387904|-9223372036854775808|1|0|0");
}

TEST(ChatTemplateErrors, RaiseExceptionAndBadOptions) {
  EXPECT_EQ(ErrorOf("a{{ raise_exception('Nope: ' ~ 1) }}"), "t: Nope: 1");
  ChatTemplateOptions o;
  o.date = "2024-13-01";
  EXPECT_THROW(RenderChatTemplate("x", nlohmann::json::array(), o), Error);
  o.date = "26 Jul 2024";
  EXPECT_THROW(RenderChatTemplate("x", nlohmann::json::array(), o), Error);
  o.date = "2024-07-26";
  EXPECT_EQ(RenderChatTemplate("{{ strftime_now('%d %b %Y %A') }}",
                               nlohmann::json::array(), o),
            "26 Jul 2024 Friday");
  EXPECT_THROW(RenderChatTemplate("x", nlohmann::json::object(), o), Error);
}

TEST(ChatTemplateConfig, ReadsStringsListsAndTokenObjects) {
  const std::string dir = testing::TempDir("chat_cfg");
  WriteFile(
      dir + "/tokenizer_config.json",
      R"({"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "T"},
                                  {"name": "default", "template": "D"}]})");
  ChatTemplateConfig c = ReadChatTemplateConfig(dir);
  EXPECT_EQ(c.chat_template, "D");
  EXPECT_EQ(c.bos_token, "<s>");
  EXPECT_EQ(c.eos_token, "</s>");
  WriteFile(dir + "/tokenizer_config.json", R"({"eos_token": null})");
  c = ReadChatTemplateConfig(dir);
  EXPECT_EQ(c.chat_template, "");
  WriteFile(dir + "/chat_template.jinja", "J");
  EXPECT_EQ(ReadChatTemplateConfig(dir).chat_template, "J");
  WriteFile(dir + "/tokenizer_config.json", "{not json");
  EXPECT_THROW(ReadChatTemplateConfig(dir), Error);
  EXPECT_THROW(ReadChatTemplateConfig(dir + "/missing"), Error);
}

// ---- the CLI ---------------------------------------------------------------

TEST(TemplateCommand, RendersOracleCaseByteExactly) {
  BIOQUANT_REQUIRE_SHARED();
  const ordered_json c = ReadOrdered(
      ChatDir() + "/expected/Qwen-Qwen2.5-7B-Instruct.short_conversation.json");
  const std::string dir = testing::TempDir("tmpl_cli");
  WriteFile(dir + "/messages.json",
            ordered_json{{"messages", c["messages"]}}.dump());
  auto r = testing::RunBioquant(
      {"template", "--template",
       ChatDir() + "/" + c["template_file"].get<std::string>(), "--messages",
       dir + "/messages.json", "--add-generation-prompt", "--eos-token",
       "<|im_end|>"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, c["expected"].get<std::string>());

  // --model with a folder holding only tokenizer files.
  r = testing::RunBioquant(
      {"template", "--model",
       OracleDir() + "/tokenizers/mistral-7b-instruct-v0.3", "--messages",
       dir + "/messages.json", "--date", "2024-07-26"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      r.out.rfind("<s>[INST] Hello![/INST] Hi there. How can I help?</s>", 0),
      0u)
      << r.out;

  // --tools and --extra-context become variables, key order kept.
  WriteFile(dir + "/tools.json", R"([{"b": 1, "a": [1, 2.5]}])");
  WriteFile(dir + "/extra.json", R"({"date_string": "x"})");
  WriteFile(dir + "/t.jinja", "{{ tools|tojson }}|{{ date_string }}\n");
  r = testing::RunBioquant({"template", "--template", dir + "/t.jinja",
                            "--messages", dir + "/messages.json", "--tools",
                            dir + "/tools.json", "--extra-context",
                            dir + "/extra.json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[{\"b\": 1, \"a\": [1, 2.5]}]|x");
}

TEST(TemplateCommand, BadInputIsOneLineError) {
  const std::string dir = testing::TempDir("tmpl_cli_bad");
  WriteFile(dir + "/t.jinja",
            "{% for m in messages %}{{ m.content }}{% endfor %}");
  auto r = testing::RunBioquant({"template", "--template", dir + "/t.jinja",
                                 "--messages", dir + "/missing.json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.json"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  WriteFile(dir + "/bad.json", "[{\"role\": ");
  r = testing::RunBioquant({"template", "--template", dir + "/t.jinja",
                            "--messages", dir + "/bad.json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.json"), std::string::npos) << r.err;

  WriteFile(dir + "/ok.json", R"([{"role": "user", "content": "hi"}])");
  WriteFile(dir + "/syntax.jinja", "ok\n{% if %}");
  r = testing::RunBioquant({"template", "--template", dir + "/syntax.jinja",
                            "--messages", dir + "/ok.json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("syntax.jinja: line 2:"), std::string::npos) << r.err;

  r = testing::RunBioquant({"template", "--messages", dir + "/ok.json"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = testing::RunBioquant({"template", "--template", dir + "/t.jinja",
                            "--messages", dir + "/ok.json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi");
}

}  // namespace
}  // namespace bioquant
