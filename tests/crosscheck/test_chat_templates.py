"""Chat templates: `bioquant template` vs transformers' own renderer (the
function behind `apply_chat_template`: Jinja2 sandbox, trim_blocks,
lstrip_blocks, raise_exception, tojson, strftime_now) for every template in
../shared/oracles/chat_templates, over generated conversations: with and
without a system message, one to three user turns, generation prompt on and
off. A conversation the template rejects (raise_exception) must make bioquant
fail too.
"""

from __future__ import annotations

import datetime
import json
import random

import pytest

from conftest import SHARED, BioquantError, run_bioquant

TEMPLATES = SHARED / "oracles" / "chat_templates"
DATE = datetime.date(2024, 7, 26)
CONTENTS = [
    "Hello!", "What is 2+2?", "Is metformin first-line for T2D?",
    "Extract the chemicals: Naloxone reverses the effect of clonidine.",
    "Line one\nLine two\n\n  indented", "  spaces around  ", "Quote \" and 'apostrophe'",
    "Unicode: TNF-\u03b1, \u03bcg/mL, \u4e2d\u6587, \U0001f9ec", "{{ not a template }}",
    "<|eot_id|> inside text", "Answer: B", "", "A" * 200,
]


def templates():
    files = sorted(TEMPLATES.glob("*.jinja")) + sorted((TEMPLATES / "llama.cpp").glob("*.jinja"))
    return [f for f in files if f.is_file()]


def special_tokens():
    """bos/eos per template file, from the oracle's expected renderings."""
    out = {}
    for f in (TEMPLATES / "expected").glob("*.json"):
        e = json.loads(f.read_text())
        out[e["template_file"]] = (e.get("bos_token", "<s>"), e.get("eos_token", "</s>"))
    return out


def conversations(seed: int):
    rng = random.Random(seed)
    convs = []
    for system in (False, True):
        for turns in (1, 2, 3):
            msgs = []
            if system:
                msgs.append({"role": "system", "content": rng.choice(CONTENTS[:8])})
            for t in range(turns):
                msgs.append({"role": "user", "content": rng.choice(CONTENTS)})
                if t + 1 < turns:
                    msgs.append({"role": "assistant", "content": rng.choice(CONTENTS)})
            convs.append(msgs)
    return convs


def hf_render(template: str, messages, add_generation_prompt, bos, eos, tools):
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=template, tools=tools,
        add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos,
        strftime_now=lambda fmt: DATE.strftime(fmt))
    return rendered[0]


@pytest.mark.parametrize("path", templates(), ids=lambda p: p.name)
def test_template_matches_transformers(path, shared, workdir, summary):
    rel = str(path.relative_to(TEMPLATES))
    bos, eos = special_tokens().get(rel, ("<s>", "</s>"))
    text = path.read_text(encoding="utf-8")
    # Tool-use templates iterate `tools`: transformers passes None when no
    # tools are given (and those templates raise TypeError), bioquant renders
    # them as if the list were empty. Both get an explicit empty list here.
    tools = [] if "tools" in text else None
    tools_file = workdir / "tools.json"
    tools_file.write_text("[]")
    cases = agree_errors = 0
    mismatches = []
    for i, msgs in enumerate(conversations(seed=len(rel))):
        for gen in (False, True):
            f = workdir / f"m{i}.json"
            f.write_text(json.dumps(msgs))
            try:
                want = hf_render(text, msgs, gen, bos, eos, tools)
            except Exception as e:  # the template's raise_exception, or Jinja's
                want = BioquantError(f"{type(e).__name__}: {e}")
            args = ["template", "--template", path, "--messages", f, "--date",
                    DATE.isoformat(), "--bos-token", bos, "--eos-token", eos]
            if gen:
                args.append("--add-generation-prompt")
            if tools is not None:
                args += ["--tools", tools_file]
            try:
                got = run_bioquant(*args)
            except BioquantError as e:
                got = e
            cases += 1
            if isinstance(want, Exception) or isinstance(got, Exception):
                if isinstance(want, Exception) and isinstance(got, Exception):
                    agree_errors += 1
                    continue
                mismatches.append((msgs, gen, got, want))
                continue
            if got != want:
                mismatches.append((msgs, gen, got, want))
    summary.add("chat templates (bioquant template vs transformers)", cases,
                templates=1, differing=len(mismatches), both_rejected=agree_errors)
    if mismatches:
        msgs, gen, got, want = mismatches[0]
        pytest.fail(f"{rel}: {len(mismatches)}/{cases} differ; first: messages={msgs} "
                    f"add_generation_prompt={gen}\nbioquant: {got!r}\ntransformers: {want!r}")
