"""GGUF import: `bioquant --model FILE.gguf` (import-gguf into the cache) vs
transformers' own GGUF loading, `from_pretrained(dir, gguf_file=...)`, which
dequantizes with gguf-py and un-permutes Llama's Q/K rows itself.

Files: synthetic checkpoints (`bioquant synth`, Llama and Qwen2) written as
GGUF by gguf-py's GGUFWriter the way llama.cpp's converter does (Q/K rows
permuted for Llama, matrices quantized to Q8_0 by gguf-py where rows are
whole blocks, the rest F32), and
SmolLM2-135M-Instruct's Q4_1 file when scripts/models.sh fetched it.

Limits:
  logits: F32_TOL absolute on every logit of every position (f32 compute on
  both sides over the same dequantized f32 weights).
  greedy ids: identical.
  SmolLM2 tokenizer: identical ids on every text (without BOS: see below);
  chat template rendered identically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import THREADS, run_bioquant

torch.set_num_threads(THREADS)

F32_TOL = 1e-4
GREEDY = 16


def cache_env(workdir: Path) -> dict:
    return {"BIOQUANT_CACHE_DIR": str(workdir / "cache")}


def run_env(env: dict, *args) -> str:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_bioquant(*args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's Q/K permutation (rotate-half ->
    interleaved pairs)."""
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


HF_TO_GGUF = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    top = {"model.embed_tokens.weight": "token_embd.weight",
           "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf in top:
        return top[hf]
    layer, rest = hf[len("model.layers."):].split(".", 1)
    mod, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{HF_TO_GGUF[mod]}.{kind}"


def write_gguf(ckpt: Path, out: Path) -> Path:
    cfg = json.loads((ckpt / "config.json").read_text())
    arch = cfg["model_type"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(str(out), arch)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    tensors = load_file(str(ckpt / "model.safetensors"))
    for name, t in tensors.items():
        t = t.astype(np.float32)
        if arch == "llama" and "q_proj.weight" in name:
            t = permute(t, heads)
        if arch == "llama" and "k_proj.weight" in name:
            t = permute(t, kv)
        # Rows that are not whole Q8_0 blocks stay F32, as llama.cpp does.
        if t.ndim == 2 and t.shape[1] % 32 == 0:
            q = gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gguf_name(name), q,
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gguf_name(name), t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def hf_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def bq_logits(env, model: Path, ids: list[int], out: Path) -> np.ndarray:
    run_env(env, "logits", "--model", model, "--ids",
            ",".join(map(str, ids)), "--out", out, "--threads", THREADS)
    return np.load(out)


@pytest.mark.parametrize("preset", ["tiny", "qwen2-tiny"])
def test_synthetic_gguf_matches_transformers(preset, synth, workdir, summary):
    ckpt = synth(preset, "f32", seed=3)
    path = write_gguf(ckpt, workdir / "m.gguf")
    env = cache_env(workdir)
    model = AutoModelForCausalLM.from_pretrained(
        str(workdir), gguf_file="m.gguf", torch_dtype=torch.float32,
        attn_implementation="eager").eval()
    rng = np.random.default_rng(5)
    ids = [int(x) for x in rng.integers(3, 400, 40)]
    ref = hf_logits(model, ids)
    got = bq_logits(env, path, ids, workdir / "l.npy")
    diff = float(np.abs(ref - got).max())
    assert diff <= F32_TOL, f"{preset}: max |logit diff| {diff}"
    gen = run_env(env, "generate", "--model", path, "--prompt-ids",
                  ",".join(map(str, ids[:8])), "--max-new-tokens", GREEDY,
                  "--temperature", 0, "--ignore-eos", "--threads", THREADS,
                  "--json")
    bq_ids = json.loads(gen)["output_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids[:8]]), max_new_tokens=GREEDY,
                             do_sample=False, min_new_tokens=GREEDY)
    assert bq_ids == out[0, 8:].tolist()
    summary.add(f"gguf {preset} (Q8_0) vs transformers", 1, max_logit_diff=diff)


def smollm2_gguf() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    p = cache / "bioquant/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.exists():
        pytest.skip(f"{p} absent (run scripts/models.sh)")
    return p


TEXTS = [
    "Is anorectal endosonography valuable in dyschesia?",
    "BRCA1 mutations raise breast-cancer risk 5-fold (p<0.001) in 2024.",
    "  leading spaces, tabs\tand\nnewlines\n\n",
    "<|im_start|>user\nWhat is TNF-α?<|im_end|>",
    "Ünïcödé — naïve café, 東京, emoji 🧬",
]


def test_smollm2_gguf_matches_transformers(workdir, summary):
    path = smollm2_gguf()
    env = cache_env(workdir)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in TEXTS:
        got = json.loads(run_env(env, "tokenize", "--model", path, "--text",
                                 text, "--json"))["ids"]
        # The file says tokenizer.ggml.add_bos_token = false (llama.cpp adds
        # none, nor does SmolLM2's own tokenizer.json); transformers' GGUF
        # tokenizer prepends BOS regardless. Compare the text's ids.
        want = tok(text, add_special_tokens=False)["input_ids"]
        assert got == want, text
    msgs = [{"role": "user", "content": "Which organ produces insulin?"}]
    (workdir / "m.json").write_text(json.dumps(msgs))
    rendered = run_env(env, "template", "--model", path, "--messages",
                       workdir / "m.json", "--add-generation-prompt")
    want = tok.apply_chat_template(msgs, tokenize=False,
                                   add_generation_prompt=True)
    assert rendered.rstrip("\n") == want.rstrip("\n")
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, torch_dtype=torch.float32,
        attn_implementation="eager").eval()
    ids = tok(want, add_special_tokens=False)["input_ids"]
    ref = hf_logits(model, ids)
    got = bq_logits(env, path, ids, workdir / "l.npy")
    diff = float(np.abs(ref - got).max())
    assert diff <= F32_TOL, f"SmolLM2: max |logit diff| {diff}"
    assert (ref.argmax(-1) == got.argmax(-1)).all()
    summary.add("gguf SmolLM2-135M-Instruct Q4_1 vs transformers", len(TEXTS),
                max_logit_diff=diff)
