"""Tokenizers and chat templates.

`bioquant tokenize --jsonl` vs Hugging Face `tokenizers` (tokenizer.json) or
transformers' LlamaTokenizer and `sentencepiece` (tokenizer.model only; see
the test's docstring for the one difference between those two) on every
tokenizer in
../shared/oracles/tokenizers, over >= 2,000 strings drawn from the eight
datasets in ../shared/data/bionlp plus generated Unicode edge cases: identical
ids (with and without special tokens) and identical decoded text.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
from pathlib import Path

import pytest

from conftest import SHARED, run_bioquant

csv.field_size_limit(sys.maxsize)
TOK = SHARED / "oracles" / "tokenizers"
DATA = SHARED / "data" / "bionlp"
PER_DATASET = 300


def dataset_strings(rng: random.Random) -> list[str]:
    """Texts from every dataset file: whole sentences, abstracts, questions,
    and random slices of them (slices start and end mid-word)."""
    out = []
    for task in sorted(p for p in DATA.iterdir() if p.is_dir()):
        texts = []
        for f in sorted(task.iterdir()):
            if f.suffix == ".tsv":
                rows = list(csv.reader(f.open(encoding="utf-8"), delimiter="\t",
                                       quoting=csv.QUOTE_NONE))
                if rows and len(rows[0]) == 2 and not rows[0][0].islower() and \
                        rows[0][1] in ("O", "B", "I"):
                    sent = []  # CoNLL: one token a line, blank between sentences
                    for r in rows:
                        if r and r[0].strip():
                            sent.append(r[0])
                        elif sent:
                            texts.append(" ".join(sent))
                            sent = []
                else:
                    for r in rows[1:]:
                        if r:
                            texts.append(max(r, key=len))
            elif f.suffix == ".jsonl":
                for line in f.open(encoding="utf-8"):
                    obj = json.loads(line)
                    texts.append(obj.get("question") or max(
                        (v for v in obj.values() if isinstance(v, str)), key=len))
                    if isinstance(obj.get("options"), dict):
                        texts.append("\n".join(f"{k}. {v}" for k, v in obj["options"].items()))
        texts = sorted(set(t for t in texts if t.strip()))
        rng.shuffle(texts)
        picked = texts[: PER_DATASET * 2 // 3]
        for t in texts[: PER_DATASET - len(picked)]:
            a = rng.randrange(len(t))
            picked.append(t[a: a + rng.randint(1, 120)])
        out += picked
    return out


EDGE = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "\r\n", "a\r\nb", "   leading",
    "trailing   ", "double  space", "a\u00a0b", "thin\u2009space", "zero\u200bwidth",
    "TNF-\u03b1 and IL-1\u03b2", "\u03bcg/mL", "37 \u00b0C", "\u00b1 0.5", "\u2264 5%",
    "Na\u207a/K\u207a-ATPase", "C\u2086H\u2081\u2082O\u2086", "caf\u00e9", "cafe\u0301",
    "\u00c5ngstr\u00f6m", "na\u00efve", "\u0130stanbul", "stra\u00dfe", "\ufb01nal",
    "\u4e2d\u6587\u533b\u5b66", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e44\u0e17\u0e22", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439",
    "\U0001f600", "\U0001f9ec\U0001f52c", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f44d\U0001f3fd", "\u2764\ufe0f", "\U0001d400\U0001d401", "\U00010348",
    "1234567890", "3.14159", "1,000,000", "2019-nCoV", "COVID-19", "p<0.05", "n=123",
    "it's", "IT'S", "we're", "they've", "I'd", "you'll", "don't", "'s'", "''", '"quoted"',
    "<|begin_of_text|>", "<|eot_id|>", "<s>", "</s>", "<unk>", "<|im_start|>user",
    "[INST] hi [/INST]", "<s>[INST]", "a<s>b", "<|endoftext|>",
    "@CHEMICAL$ inhibits @GENE$", "<e>aspirin</e>", "@@aspirin##",
    "x" * 300, "ab" * 150, "-" * 64, "=" * 33, "...", "!!!???", "\u2026", "\u2014\u2013-",
    "\\n literal", "tab\tseparated\tvalues", "line1\nline2\n\nline4",
    "ALLCAPS WORDS", "camelCaseWord", "snake_case_word", "http://example.org/a?b=c",
    "e-mail@example.com", "#hashtag", "$100", "100%", "(a)[b]{c}", "\u00bd \u00bc",
    "\u2460\u2461\u2462", "\u2160\u2161", "\uff21\uff22\uff23", "\u3000full\u3000width",
    "\u0000", "\u0001\u0002", "\u007f", "\ufeffbom", "\ufffd", "\U0010ffff",
]


@pytest.fixture(scope="module")
def strings(shared) -> list[str]:
    rng = random.Random(12)
    texts = dataset_strings(rng)
    # Edge cases alone, and glued to biomedical text.
    texts += EDGE + [f"{rng.choice(texts[:50])} {e} end" for e in EDGE]
    assert len(texts) >= 2000, len(texts)
    return texts


def bq_tokenize(model_dir: Path, texts, workdir: Path, special: bool):
    f = workdir / "texts.jsonl"
    f.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    args = ["tokenize", "--model", model_dir, "--jsonl", f]
    if not special:
        args.append("--no-special")
    # Split on \n only: decoded texts may hold U+2028, U+0085, \x1c..
    out = run_bioquant(*args).rstrip("\n").split("\n")
    assert len(out) == len(texts)
    return [json.loads(line) for line in out]


# tokenizer.json files, checked with Hugging Face tokenizers.
JSON_TOKENIZERS = ["derived/llama3", "derived/qwen2", "derived/qwen2.5",
                   "mistral-7b-instruct-v0.3"]
# tokenizer.model only, checked with sentencepiece: (dir, file).
SPM_TOKENIZERS = [("llama-2", "tokenizer.model"), ("mistral-7b-v0.1", "tokenizer.model"),
                  ("stories260k-tok512", "tok512.model"),
                  ("mistral-common-sentencepiece", "tokenizer.model.v1")]


def first_mismatch(texts, got, want):
    for t, g, w in zip(texts, got, want):
        if g != w:
            return f"text {t!r}: bioquant {g} vs reference {w}"
    return None


@pytest.mark.parametrize("name", JSON_TOKENIZERS)
def test_tokenizer_json_matches_hf_tokenizers(name, strings, workdir, summary):
    from tokenizers import Tokenizer

    d = TOK / name
    ref = Tokenizer.from_file(str(d / "tokenizer.json"))
    # bioquant prefers tokenizer.json; give it only that (and the config that
    # says which special tokens are added) so the .model beside it is unused.
    model_dir = workdir / "tok"
    model_dir.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (d / f).exists():
            shutil.copy(d / f, model_dir / f)
    bad = []
    for special in (False, True):
        got = bq_tokenize(model_dir, strings, workdir, special)
        want = [ref.encode(t, add_special_tokens=special).ids for t in strings]
        got_ids = [g["ids"] for g in got]
        n_bad = sum(g != w for g, w in zip(got_ids, want))
        # Decoding is checked on bioquant's ids (the same as the reference's
        # wherever those agree).
        dec_want = [ref.decode(g, skip_special_tokens=False) for g in got_ids]
        n_dec = sum(g["decoded"] != w for g, w in zip(got, dec_want))
        summary.add("tokenizers (tokenizer.json vs HF tokenizers)", len(strings),
                    ids_differing=n_bad, decoded_differing=n_dec)
        if n_bad:
            bad.append(f"special={special}: {n_bad} differ; first "
                       + first_mismatch(strings, got_ids, want))
        if n_dec:
            bad.append(f"special={special}: {n_dec} decoded differ; first "
                       + first_mismatch(strings, [g["decoded"] for g in got], dec_want))
    assert not bad, f"{name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("name,file", SPM_TOKENIZERS)
def test_tokenizer_model_matches_sentencepiece_and_transformers(name, file, strings, workdir,
                                                                summary):
    """A tokenizer.model folder: ids as transformers' LlamaTokenizer (legacy,
    sentencepiece underneath) gives them, with and without BOS. Special-token
    text such as "<s>" becomes the special token there (and in bioquant),
    while plain sentencepiece encodes its characters; on every string with no
    such text, plain sentencepiece must agree too, and its decode of
    bioquant's ids must be bioquant's decoded text."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    src = TOK / name / file
    sp = spm.SentencePieceProcessor(model_file=str(src))
    hf = LlamaTokenizer(vocab_file=str(src), legacy=True)
    model_dir = workdir / "tok"
    model_dir.mkdir()
    (model_dir / "tokenizer.model").symlink_to(src)
    controls = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i)
                or sp.is_unknown(i)]
    plain = [i for i, t in enumerate(strings) if not any(c in t for c in controls)]
    problems = []
    n_bad = n_sp = n_dec = 0
    for special in (False, True):
        got = bq_tokenize(model_dir, strings, workdir, special)
        got_ids = [g["ids"] for g in got]
        want = [hf.encode(t, add_special_tokens=special) for t in strings]
        bad = sum(g != w for g, w in zip(got_ids, want))
        n_bad += bad
        if bad:
            problems.append(f"special={special}: {bad} differ from transformers; first "
                            + first_mismatch(strings, got_ids, want))
        if special:
            continue
        sp_ids = [sp.encode(strings[i]) for i in plain]
        n_sp = sum(got_ids[i] != w for i, w in zip(plain, sp_ids))
        if n_sp:
            problems.append(f"{n_sp} differ from sentencepiece; first " + first_mismatch(
                [strings[i] for i in plain], [got_ids[i] for i in plain], sp_ids))
        dec = [sp.decode(got_ids[i]) for i in plain]
        n_dec = sum(got[i]["decoded"] != d for i, d in zip(plain, dec))
        if n_dec:
            problems.append(f"{n_dec} decoded differ from sentencepiece; first "
                            + first_mismatch([strings[i] for i in plain],
                                             [got[i]["decoded"] for i in plain], dec))
    summary.add("tokenizers (tokenizer.model vs transformers LlamaTokenizer + sentencepiece)",
                2 * len(strings) + len(plain), ids_differing=n_bad + n_sp,
                decoded_differing=n_dec)
    assert not problems, f"{name}:\n" + "\n".join(problems)
