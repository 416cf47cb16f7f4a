"""Logits and greedy ids: `bioquant logits` / `bioquant generate` vs
transformers' AutoModelForCausalLM (eager attention, float32) on the same
checkpoint, for every architecture and option bioquant supports.

Checkpoints come from `bioquant synth` (tiny Llama GQA, Qwen2 with q/k/v bias
and tied embeddings, Mistral with a 64-token window) and from variants of
them: a config edit (llama3 RoPE scaling, a 16-token Mistral window) or a
model transformers itself initialises and saves (explicit head_dim that is not
hidden/heads, tied Llama embeddings). Each is stored in f32 and in bf16.

Limits:
  f32 compute (bioquant's default) vs transformers f32: 1e-4 absolute on every
  logit of every position, for f32 and bf16 storage alike (bf16 weights widen
  to f32 exactly in both); 32 greedy ids identical.
  transformers computing in bf16 (torch_dtype=bfloat16) vs bioquant's f32
  compute: BF16_COMPUTE_BOUND below (measured, not a target: bf16 rounds every
  activation to 8 significant bits).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from conftest import THREADS, run_bioquant

torch.set_num_threads(THREADS)

F32_TOL = 1e-4
# transformers in bf16 vs bioquant in f32 on bf16 weights: largest difference
# relative to the largest |logit| of the reference. bf16 has 8 significant
# bits (relative step 2^-8 = 0.0039); errors of ~30 rounded matmuls and norms
# add up to a few steps. Measured: 0.0082 (transformers 4.57.6, torch 2.15).
BF16_COMPUTE_BOUND = 0.025
PROMPT_LEN = 80  # longer than mistral-tiny's 64-token window
GREEDY = 32


def prompt_ids(vocab: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    # Leave the top of the vocab out: the synth tokenizers keep their
    # special tokens there.
    return [int(x) for x in rng.integers(3, vocab - 8, PROMPT_LEN)]


def edit_config(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


def hf_made(base, dst, dtype: str, seed: int, **changes):
    """A checkpoint initialised and saved by transformers (its own init and
    its own writer), with base's tokenizer files."""
    cfg = json.loads((base / "config.json").read_text())
    cfg.pop("bioquant_synthetic", None)
    cfg.update(changes)
    config = AutoConfig.for_model(**cfg)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():  # make the norms non-trivial too
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
    model.save_pretrained(dst, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if (base / f).exists():
            shutil.copy(base / f, dst / f)
    return dst


CASES = [
    # name, how it is made
    ("llama-gqa", "tiny", None),
    ("qwen2-bias-tied", "qwen2-tiny", None),
    ("mistral-window64", "mistral-tiny", None),
    ("mistral-window16", "mistral-tiny", {"edit": {"sliding_window": 16}}),
    ("llama3-rope-scaling", "tiny", {"edit": {"rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}}),
    ("llama-explicit-head-dim", "tiny", {"hf": {"head_dim": 48}}),
    ("llama-tied", "tiny", {"hf": {"tie_word_embeddings": True}}),
]


@pytest.fixture(scope="module")
def checkpoints(synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    made = {}

    def get(name, dtype):
        key = (name, dtype)
        if key in made:
            return made[key]
        _, preset, how = next(c for c in CASES if c[0] == name)
        base = synth(preset, dtype, seed=7)
        if how is None:
            path = base
        elif "edit" in how:
            path = edit_config(base, root / f"{name}-{dtype}", **how["edit"])
        else:
            path = hf_made(base, root / f"{name}-{dtype}", dtype, seed=11, **how["hf"])
        made[key] = path
        return path

    return get


def reference(path, dtype=torch.float32):
    model = AutoModelForCausalLM.from_pretrained(
        path, torch_dtype=dtype, attn_implementation="eager")
    model.eval()
    return model


def hf_logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    return out.float().numpy()


def hf_greedy(model, ids, n):
    """Argmax decoding through the KV cache, n tokens, no stop token."""
    out = []
    with torch.no_grad():
        res = model(torch.tensor([ids]), use_cache=True)
        for _ in range(n):
            nxt = int(res.logits[0, -1].argmax())
            out.append(nxt)
            res = model(torch.tensor([[nxt]]), past_key_values=res.past_key_values,
                        use_cache=True)
    return out


def bq_logits(path, ids, workdir, *extra):
    out = workdir / "logits.npy"
    run_bioquant("logits", "--model", path, "--ids", ",".join(map(str, ids)),
                 "--out", out, "--threads", THREADS, "--precision", "f32", *extra)
    return np.load(out)


def bq_greedy(path, ids, n):
    res = run_bioquant.json("generate", "--model", path, "--prompt-ids",
                            ",".join(map(str, ids)), "--max-new-tokens", n,
                            "--ignore-eos", "--temperature", 0, "--precision",
                            "f32", "--threads", THREADS, "--json")
    return [int(x) for x in res["output_ids"]]


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_logits_and_greedy_match_transformers(name, dtype, checkpoints, workdir, summary):
    path = checkpoints(name, dtype)
    cfg = json.loads((path / "config.json").read_text())
    ids = prompt_ids(cfg["vocab_size"], seed=len(name))
    model = reference(path)
    ref = hf_logits(model, ids)
    got = bq_logits(path, ids, workdir)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    diff = float(np.abs(got - ref).max())
    # The same through the KV cache, fed 7 tokens a call.
    chunked = bq_logits(path, ids, workdir, "--chunk", 7)
    chunk_diff = float(np.abs(chunked - ref).max())

    ref_ids = hf_greedy(model, ids, GREEDY)
    got_ids = bq_greedy(path, ids, GREEDY)
    summary.add("logits (f32 compute vs transformers f32, eager)", 1,
                max_abs_logit_diff=max(diff, chunk_diff))
    assert diff <= F32_TOL, f"{name} {dtype}: max |logit diff| {diff:.3g} > {F32_TOL}"
    assert chunk_diff <= F32_TOL, f"{name} {dtype} chunked: {chunk_diff:.3g}"
    assert got_ids == ref_ids, f"{name} {dtype}: greedy ids differ\n{got_ids}\n{ref_ids}"
    summary.add("greedy ids (32 tokens, through the KV cache)", 1,
                tokens_differing=sum(a != b for a, b in zip(ref_ids, got_ids)))


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2-bias-tied", "mistral-window16",
                                  "llama3-rope-scaling"])
def test_bf16_compute_within_documented_bound(name, checkpoints, workdir, summary):
    path = checkpoints(name, "bf16")
    cfg = json.loads((path / "config.json").read_text())
    ids = prompt_ids(cfg["vocab_size"], seed=len(name))
    ref = hf_logits(reference(path, torch.bfloat16), ids)
    got = bq_logits(path, ids, workdir)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    top1 = float((got.argmax(-1) == ref.argmax(-1)).mean())
    summary.add("logits (transformers bf16 compute vs bioquant f32, bf16 weights)", 1,
                max_diff_rel_to_max_logit=rel, top1_disagreement=1.0 - top1)
    assert rel <= BF16_COMPUTE_BOUND, f"{name}: {rel:.3g} > {BF16_COMPUTE_BOUND}"


@pytest.mark.parametrize("name,base", [("mistral-window16", "mistral-window64"),
                                       ("llama3-rope-scaling", "llama-gqa")])
def test_each_option_changes_the_logits(name, base, checkpoints, workdir):
    """The config edits above are not no-ops: the same weights give other
    logits (so the comparisons above test the option, not the base)."""
    ids = prompt_ids(512, seed=3)
    a = bq_logits(checkpoints(name, "f32"), ids, workdir)
    b = bq_logits(checkpoints(base, "f32"), ids, workdir)
    # Random small weights make attention nearly uniform, so position effects
    # are small (llama3 scaling: 0.0087), yet far above the tolerance.
    assert float(np.abs(a - b).max()) > 10 * F32_TOL
