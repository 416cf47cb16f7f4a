"""Metrics: `bioquant score` vs seqeval and scikit-learn.

NER: seqeval (mode="strict", scheme=IOB2: an entity counts only with the
same type, start and end, and a sequence that starts with I- starts no
entity) vs `score` on the published GPT predictions and on 500 randomly
perturbed copies (random sentence subsets, tags changed at random).

RE, multi-label and QA: scikit-learn on 500 random prediction files each.
The conventions `score` documents, in scikit-learn's terms (an output the
parser cannot read is a label outside every class: wrong, never a hit):
  RE    macro_f1_all_classes = f1_score(average="macro",
          labels = classes seen in gold or in parsed predictions, negative
          class included); micro_f1 = f1_score(average="micro", labels =
          positive classes); accuracy = accuracy_score.
  multi-label  label_macro_f1 / micro_f1 = f1_score on the binarised label
          sets (labels seen in gold or predictions; an unparsed output is
          the empty set); exact_match = accuracy_score (subset accuracy).
  QA    accuracy; macro_f1_gold_classes = f1_score(average="macro",
          labels = classes in the gold column).
Limit: 1e-12 (the same counts; only float summation order may differ).
"""

from __future__ import annotations

import json
import random

import pytest

from conftest import SHARED, run_bioquant

TOL = 1e-12
PRED = SHARED / "data" / "bionlp" / "reference_predictions"
COPIES = 500
UNPARSED = "<unparsed>"


def score(task, path):
    return run_bioquant.json("score", "--task", task, path, "--json", "--resamples", 0)


def metric(res, name):
    return res["metrics"][name]["value"]


# ---------------------------------------------------------------- NER
def read_conll(path):
    """[(tokens, gold, pred)] per sentence (blank lines, or a final '.'
    tagged O in both columns, end one)."""
    sents, cur = [], ([], [], [])
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            if cur[0]:
                sents.append(cur)
                cur = ([], [], [])
            continue
        for col, v in zip(cur, parts[:3]):
            col.append(v)
        if parts[0] in (".", "!", "?") and parts[1] == "O" and parts[2] == "O":
            sents.append(cur)
            cur = ([], [], [])
    if cur[0]:
        sents.append(cur)
    return sents


def write_conll(path, sents):
    with path.open("w", encoding="utf-8") as f:
        for toks, gold, pred in sents:
            for t, g, p in zip(toks, gold, pred):
                f.write(f"{t}\t{g}\t{p}\n")
            f.write("\n")


def seqeval_scores(sents):
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    y_true = [s[1] for s in sents]
    y_pred = [s[2] for s in sents]
    kw = dict(mode="strict", scheme=IOB2, zero_division=0)
    return (precision_score(y_true, y_pred, **kw), recall_score(y_true, y_pred, **kw),
            f1_score(y_true, y_pred, **kw))


def perturb(sents, rng):
    """A random subset of sentences with some predicted tags changed."""
    out = []
    for toks, gold, pred in rng.sample(sents, rng.randint(1, min(40, len(sents)))):
        types = sorted({t[2:] for t in gold + pred if t != "O"}) or ["Chemical"]
        pred = list(pred)
        p = rng.choice([0.02, 0.1, 0.3])
        for i in range(len(pred)):
            if rng.random() < p:
                pred[i] = rng.choice(["O", f"B-{rng.choice(types)}", f"I-{rng.choice(types)}"])
        out.append((toks, gold, pred))
    return out


NER_FILES = sorted(PRED.glob("*/*.bio")) if PRED.is_dir() else []


@pytest.mark.parametrize("path", NER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ner_published_predictions_match_seqeval(path, shared, summary):
    sents = read_conll(path)
    want = seqeval_scores(sents)
    res = score(path.parent.name, path)
    got = tuple(metric(res, m) for m in ("ner_precision", "ner_recall", "ner_strict_entity_f1"))
    diff = max(abs(a - b) for a, b in zip(got, want))
    summary.add("metrics NER (score vs seqeval strict IOB2)", 1, max_abs_diff=diff)
    assert diff <= TOL, f"{path}: bioquant P/R/F1 {got} vs seqeval {want}"


def test_ner_perturbed_copies_match_seqeval(shared, workdir, summary):
    rng = random.Random(2025)
    pools = {p: read_conll(p) for p in NER_FILES}
    assert pools, "no published NER predictions"
    worst, first_bad = 0.0, None
    for i in range(COPIES):
        src = list(pools)[i % len(pools)]
        sents = perturb(pools[src], rng)
        f = workdir / f"copy{i}.bio"
        write_conll(f, sents)
        want = seqeval_scores(sents)
        res = score(src.parent.name, f)
        got = tuple(metric(res, m) for m in ("ner_precision", "ner_recall",
                                             "ner_strict_entity_f1"))
        diff = max(abs(a - b) for a, b in zip(got, want))
        worst = max(worst, diff)
        if diff > TOL and (first_bad is None or len(sents) < len(first_bad[0])):
            first_bad = (sents, got, want)
    summary.add("metrics NER (score vs seqeval strict IOB2)", COPIES, max_abs_diff=worst)
    if first_bad:
        sents, got, want = first_bad
        pytest.fail(f"smallest differing copy ({len(sents)} sentences): bioquant {got} "
                    f"vs seqeval {want}\n{sents}")


# ------------------------------------------------ RE, multi-label, QA
def raw_output(label, rng):
    """A model output whose parse is certain: the label in one of the forms
    the flexible parser reads, or text it cannot read."""
    return rng.choice([label, label.lower(), f"Answer: {label}", f"The answer is {label}."])


def task_labels(shared):
    out = run_bioquant.json("tasks", "--data-dir", shared / "data" / "bionlp", "--json")
    tasks = out if isinstance(out, list) else out["tasks"]
    return {t["id"]: t for t in tasks}


def random_file(task, rng, n, kind):
    labels = task["labels"]
    rows, gold, pred = [], [], []
    acc = rng.random()  # how often the prediction is right
    for i in range(n):
        if kind == "multilabel":
            g = rng.sample(labels, rng.randint(1, 3))
            if rng.random() < 0.08:
                out, p = "xyzzy", []
            else:
                p = list(g) if rng.random() < acc else rng.sample(labels, rng.randint(1, 3))
                out = "; ".join(p)
            rows.append({"id": str(i), "gold": g, "pred": out})
        else:
            weights = [rng.random() ** 3 for _ in labels]  # skewed classes
            g = rng.choices(labels, weights)[0]
            if rng.random() < 0.08:
                out, p = rng.choice(["xyzzy", "", "I cannot answer."]), UNPARSED
            else:
                p = g if rng.random() < acc else rng.choice(labels)
                out = raw_output(p, rng)
            rows.append({"id": str(i), "gold": g, "pred": out})
        gold.append(g)
        pred.append(p)
    return rows, gold, pred


def sklearn_scores(kind, task, gold, pred):
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    if kind == "multilabel":
        classes = sorted({c for s in gold + pred for c in s})
        mlb = MultiLabelBinarizer(classes=classes)
        Y, P = mlb.fit_transform(gold), mlb.transform(pred)
        return {"label_macro_f1": f1_score(Y, P, average="macro", zero_division=0),
                "micro_f1": f1_score(Y, P, average="micro", zero_division=0),
                "exact_match": accuracy_score(Y, P)}
    if kind == "re":
        seen = sorted(set(gold) | (set(pred) - {UNPARSED}))
        positives = [c for c in task["labels"] if c != task["negative_label"]]
        return {"macro_f1_all_classes": f1_score(gold, pred, labels=seen, average="macro",
                                                 zero_division=0),
                "micro_f1": f1_score(gold, pred, labels=positives, average="micro",
                                     zero_division=0),
                "accuracy": accuracy_score(gold, pred)}
    return {"accuracy": accuracy_score(gold, pred),
            "macro_f1_gold_classes": f1_score(gold, pred, labels=sorted(set(gold)),
                                              average="macro", zero_division=0)}


GROUPS = {"re": ["chemprot", "ddi2013"], "multilabel": ["hoc", "litcovid"],
          "qa": ["pubmedqa", "medqa"]}


@pytest.mark.parametrize("kind", list(GROUPS))
def test_random_prediction_files_match_sklearn(kind, shared, workdir, summary):
    tasks = task_labels(shared)
    rng = random.Random(len(kind))
    worst, bad = 0.0, None
    for i in range(COPIES):
        name = GROUPS[kind][i % 2]
        n = rng.choice([1, 2, 5, 20, 100])
        rows, gold, pred = random_file(tasks[name], rng, n, kind)
        f = workdir / f"{name}{i}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        res = score(name, f)
        want = sklearn_scores(kind, tasks[name], gold, pred)
        for m, v in want.items():
            diff = abs(metric(res, m) - v)
            worst = max(worst, diff)
            if diff > TOL and (bad is None or n < len(bad[0])):
                bad = (rows, m, metric(res, m), v, name)
    summary.add(f"metrics {kind} (score vs scikit-learn)", COPIES, max_abs_diff=worst)
    if bad:
        rows, m, got, want, name = bad
        pytest.fail(f"{name}: smallest differing file ({len(rows)} rows): {m} bioquant "
                    f"{got} vs sklearn {want}\n{rows}")
