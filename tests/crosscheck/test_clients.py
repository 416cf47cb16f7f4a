"""Real clients nobody here wrote talk to `bioquant serve`: the official
OpenAI Python library (chat, completions, streaming, n, errors, auth) and
EleutherAI's lm-evaluation-harness (local-completions and
local-chat-completions on a small local task). Greedy text must equal what
`bioquant generate` gives for the same prompt."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bqserve import bq_json, serve, synth

openai = pytest.importorskip("openai")

DATE = "2025-01-01"
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("clients") / "tiny")


@pytest.fixture(scope="module")
def url(model):
    with serve(model, "--date", DATE, "--max-batch", "4") as u:
        yield u


def client(url, key="none"):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def generate(model, prompt, n, chat=False):
    args = ["generate", "--model", model, "--prompt", prompt,
            "--max-new-tokens", n, "--temperature", "0", "--json",
            "--precision", "bf16"]
    if chat:
        args += ["--chat", "--date", DATE]
    return bq_json(*args)["text"]


def test_openai_library_chat_completions_stream_and_n(model, url, summary):
    c = client(url)
    names = [m.id for m in c.models.list().data]
    assert len(names) == 1
    name = names[0]
    prompts = ["Does aspirin reduce the risk of stroke?",
               "List the chemicals in: cisplatin and 5-fluorouracil.", "Hi"]
    for p in prompts:
        want = generate(model, p, 16, chat=True)
        r = c.chat.completions.create(
            model=name, messages=[{"role": "user", "content": p}],
            max_tokens=16, temperature=0, seed=3)
        assert r.choices[0].message.content == want, p
        assert r.usage.completion_tokens >= 1
        assert r.choices[0].finish_reason in ("stop", "length")
        # Streaming gives the same text, and usage at the end.
        pieces, usage = [], None
        for ev in c.chat.completions.create(
                model=name, messages=[{"role": "user", "content": p}],
                max_tokens=16, temperature=0, stream=True,
                stream_options={"include_usage": True}):
            if ev.choices and ev.choices[0].delta.content:
                pieces.append(ev.choices[0].delta.content)
            if ev.usage:
                usage = ev.usage
        assert "".join(pieces) == want, p
        assert usage is not None and usage.completion_tokens == \
            r.usage.completion_tokens
        # Completions: the prompt as plain text (BOS added by the server).
        want_c = generate(model, p, 12)
        rc = c.completions.create(model=name, prompt=p, max_tokens=12,
                                  temperature=0)
        assert rc.choices[0].text == want_c, p
    # n samples with a seed: n choices, reproducible.
    kw = dict(model=name, messages=[{"role": "user", "content": "Name a drug."}],
              max_tokens=8, temperature=0.9, seed=7, n=3)
    a = c.chat.completions.create(**kw)
    b = c.chat.completions.create(**kw)
    assert len(a.choices) == 3
    assert [x.message.content for x in a.choices] == \
        [x.message.content for x in b.choices]
    summary.add("openai library vs serve (chat, stream, completions == "
                "bioquant generate; n=3 reproducible)", cases=len(prompts) * 3 + 1)


def test_openai_library_sees_errors_and_auth(model):
    with serve(model, "--api-key-env", "BQ_XCHECK_KEY",
               env={"BQ_XCHECK_KEY": "sk-local"}) as u:
        with pytest.raises(openai.AuthenticationError):
            client(u, "wrong").models.list()
        c = client(u, "sk-local")
        name = c.models.list().data[0].id
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "x"}],
                max_tokens=10**9)
        assert "context" in str(e.value)
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(
                model="no-such-model",
                messages=[{"role": "user", "content": "x"}], max_tokens=2)


def lm_eval(tmp_path, url, model_kind, extra_args, limit=6):
    """Runs lm-eval on a 6-question local task; returns its samples."""
    pytest.importorskip("lm_eval")
    data = tmp_path / "qa.jsonl"
    qs = [("Does metformin lower blood glucose?", "yes"),
          ("Is cisplatin an antibiotic?", "no"),
          ("Does smoking raise the risk of lung cancer?", "yes"),
          ("Is insulin made in the liver?", "no"),
          ("Can aspirin cause bleeding?", "yes"),
          ("Is BRCA1 a virus?", "no")]
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                            for q, a in qs))
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "bq_yesno.yaml").write_text(f"""task: bq_yesno
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
  temperature: 0.0
metric_list:
  - metric: exact_match
""")
    out = tmp_path / f"out-{model_kind}"
    name = client(url).models.list().data[0].id
    base = url + ("/completions" if model_kind == "local-completions"
                  else "/chat/completions")
    cmd = [sys.executable, "-m", "lm_eval", "--model", model_kind,
           "--model_args",
           f"model={name},base_url={base},num_concurrent=2,max_retries=1,"
           "tokenizer_backend=None,tokenized_requests=False",
           "--tasks", "bq_yesno", "--include_path", str(tasks),
           "--limit", str(limit), "--output_path", str(out), "--log_samples",
           *extra_args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                       env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                            **__import__("os").environ})
    assert p.returncode == 0, p.stderr[-3000:]
    samples = list(out.rglob("samples_bq_yesno*.jsonl"))
    assert samples, f"no samples under {out}"
    rows = [json.loads(l) for l in samples[0].read_text().splitlines()]
    assert len(rows) == limit
    results = list(out.rglob("results*.json"))
    assert results
    res = json.loads(results[0].read_text())["results"]["bq_yesno"]
    assert any(k.startswith("exact_match") for k in res)
    return qs, rows


def test_lm_eval_local_completions(model, url, tmp_path, summary):
    qs, rows = lm_eval(tmp_path, url, "local-completions", [])
    same = 0
    for r in rows:
        q = r["doc"]["question"]
        want = generate(model, f"Question: {q}\nAnswer:", 8).split("\n")[0]
        got = r["resps"][0][0]
        assert got == want, (q, got, want)
        same += 1
    summary.add("lm-eval local-completions vs serve (responses == bioquant "
                "generate)", cases=same)


def test_lm_eval_local_chat_completions(model, url, tmp_path, summary):
    qs, rows = lm_eval(tmp_path, url, "local-chat-completions",
                       ["--apply_chat_template"])
    for r in rows:
        q = r["doc"]["question"]
        want = generate(model, f"Question: {q}\nAnswer:", 8,
                        chat=True).split("\n")[0]
        assert r["resps"][0][0] == want, q
    summary.add("lm-eval local-chat-completions vs serve (responses == "
                "bioquant generate --chat)", cases=len(rows))

