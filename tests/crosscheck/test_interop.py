"""Interop in both directions, on the CPU.

bioquant -> transformers: a checkpoint written by `bioquant quantize` (nf4
with double quant, fp4 without, int8) loads with `from_pretrained`
(bitsandbytes on the CPU); its logits match `bioquant logits` on the same
folder.
transformers -> bioquant: a model quantized at load by transformers +
bitsandbytes (BitsAndBytesConfig) and written with `save_pretrained` loads in
bioquant; the logits match those transformers computes, and (nf4 without
double quant) the file's bytes equal what `bioquant quantize` writes for the
same source.

Compute types: both sides compute in f32 (the 4-bit Linear layers'
compute_dtype is set to float32 after loading: the checkpoint records
bfloat16, the paper's setting, and bf16 rounding would hide a wrong weight).
Limits: 4-bit weight-only 1e-4 absolute (the same dequantized weights, f32
arithmetic in another order). LLM.int8 (`load_in_8bit`, bioquant
`--precision llm-int8`): int8 activations x int8 weights with 16-bit
outlier columns; INT8_TOL below, because bitsandbytes' CPU path computes the
outlier part and the dequantization in fp16 where bioquant keeps f32.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from conftest import THREADS, run_bioquant

torch.set_num_threads(THREADS)
TOL_4BIT = 1e-4
INT8_TOL = 0.05  # relative to the largest |logit|; see the module docstring
IDS = [5, 99, 17, 250, 3, 77, 120, 300, 42, 8, 61, 199, 404, 12, 33, 470]


def hf_model(path, **kw):
    model = AutoModelForCausalLM.from_pretrained(
        path, torch_dtype=torch.float32, attn_implementation="eager", device_map="cpu", **kw)
    for m in model.modules():
        if m.__class__.__name__ == "Linear4bit":
            m.compute_dtype = torch.float32
            # bitsandbytes 0.50's AVX512-BF16 CPU path repacks the weight and
            # asserts out_features % 32 == 0 ("N must be divisible by
            # block_n": the tiny model's 344-wide MLP fails); its generic
            # path dequantizes and multiplies in compute_dtype.
            m.support_avx512bf16_for_cpu = False
    model.eval()
    return model


def hf_logits(model):
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].float().numpy()


def bq_logits(path, out, precision=None):
    args = ["logits", "--model", path, "--ids", ",".join(map(str, IDS)), "--out", out,
            "--threads", THREADS]
    if precision:
        args += ["--precision", precision]
    run_bioquant(*args)
    return np.load(out)


def linear_classes(model):
    return sorted({m.__class__.__name__ for m in model.modules() if "Linear" in
                   m.__class__.__name__})


@pytest.mark.parametrize("precision,extra", [("nf4", []), ("fp4", ["--no-double-quant"])])
def test_bioquant_4bit_checkpoint_loads_in_transformers(precision, extra, synth, tmp_path,
                                                        summary):
    src = synth("tiny", "bf16", seed=21)
    q = tmp_path / "q"
    run_bioquant("quantize", "--model", src, "--out", q, "--precision", precision,
                 "--threads", THREADS, *extra)
    model = hf_model(q)
    assert "Linear4bit" in linear_classes(model), linear_classes(model)
    ref = hf_logits(model)
    got = bq_logits(q, tmp_path / "l.npy")
    diff = float(np.abs(got - ref).max())
    summary.add("interop bioquant -> transformers (4-bit, f32 compute)", 1,
                max_abs_logit_diff=diff)
    assert diff <= TOL_4BIT, f"{precision}: {diff:.3g}"


@pytest.mark.parametrize("quant_type,dq", [("nf4", True), ("fp4", False), ("nf4", False)])
def test_transformers_4bit_checkpoint_loads_in_bioquant(quant_type, dq, synth, tmp_path,
                                                        summary):
    src = synth("tiny", "f32", seed=22)
    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                             bnb_4bit_use_double_quant=dq,
                             bnb_4bit_compute_dtype=torch.float32)
    model = hf_model(src, quantization_config=cfg)
    assert "Linear4bit" in linear_classes(model), linear_classes(model)
    ref = hf_logits(model)
    saved = tmp_path / "hf"
    model.save_pretrained(saved, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (saved / f).write_bytes((src / f).read_bytes())
    got = bq_logits(saved, tmp_path / "l.npy")
    diff = float(np.abs(got - ref).max())

    # The same source through `bioquant quantize`: the same bytes.
    ours = tmp_path / "bq"
    run_bioquant("quantize", "--model", src, "--out", ours, "--precision", quant_type,
                 "--threads", THREADS, *([] if dq else ["--no-double-quant"]))
    from safetensors.torch import load_file
    a, b = load_file(saved / "model.safetensors"), load_file(ours / "model.safetensors")
    differ = sorted(k for k in a.keys() & b.keys()
                    if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]))
    quantized_keys = [k for k in a if ".weight.quant_state." in k]
    summary.add("interop transformers -> bioquant (4-bit, f32 compute)", 1,
                max_abs_logit_diff=diff, tensors_differing_from_bioquant_quantize=len(differ))
    assert quantized_keys, "transformers saved no 4-bit weights"
    assert diff <= TOL_4BIT, f"{quant_type} dq={dq}: {diff:.3g}"
    # Byte identity where no documented CPU/CUDA case applies (nf4 without
    # double quant); fp4 zero signs and the double-quant statistics differ
    # as test_bnb.py shows and classifies.
    if quant_type == "nf4" and not dq:
        assert not differ, f"tensors that differ from `bioquant quantize`: {differ[:8]}"
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))


def test_llm_int8_both_directions(synth, tmp_path, summary):
    src = synth("tiny", "f32", seed=23)
    model = hf_model(src, quantization_config=BitsAndBytesConfig(load_in_8bit=True))
    assert "Linear8bitLt" in linear_classes(model), linear_classes(model)
    ref = hf_logits(model)
    saved = tmp_path / "hf8"
    model.save_pretrained(saved, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (saved / f).write_bytes((src / f).read_bytes())
    scale = float(np.abs(ref).max())
    # transformers' checkpoint in bioquant, and bioquant's own quantization
    # of the source, both computed as LLM.int8.
    got_saved = bq_logits(saved, tmp_path / "a.npy", "llm-int8")
    got_src = bq_logits(src, tmp_path / "b.npy", "llm-int8")
    ours = tmp_path / "bq8"
    run_bioquant("quantize", "--model", src, "--out", ours, "--precision", "int8",
                 "--threads", THREADS)
    back = hf_model(ours)
    assert "Linear8bitLt" in linear_classes(back)
    ref_back = hf_logits(back)
    rel = max(float(np.abs(got_saved - ref).max()), float(np.abs(got_src - ref).max()),
              float(np.abs(ref_back - ref).max())) / scale
    top1 = float((got_saved.argmax(-1) == ref.argmax(-1)).mean())
    summary.add("interop LLM.int8 (load_in_8bit, CPU) both directions", 3,
                max_diff_rel_to_max_logit=rel, top1_disagreement=1.0 - top1)
    assert rel <= INT8_TOL, f"{rel:.3g}"
    assert np.array_equal(ref_back, ref), "bioquant's int8 file computes differently"
