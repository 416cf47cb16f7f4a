#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the
oracles and data in ../shared and from examples/data: small, deterministic,
stdlib only. Re-run after changing a target's input layout:
    python3 fuzz/make_seeds.py [SHARED_DIR]"""

import json
import struct
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared"
EXAMPLES = REPO / "examples" / "data"
TASKS = ["bc5cdr_chem", "ncbi_disease", "chemprot", "ddi2013", "hoc",
         "litcovid", "medqa", "medqa_5opt", "pubmedqa"]  # AllTasks() order
MAX = 4096  # bytes per seed file taken from a data file


def put(target, name, data):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def head(path, limit=MAX):
    """The first lines of a file, at most `limit` bytes, whole lines."""
    data = Path(path).read_bytes()[:limit]
    cut = data.rfind(b"\n")
    return data[:cut + 1] if cut > 0 else data


def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


# safetensors: small valid files of several dtypes.
put("safetensors", "f32.safetensors", safetensors(
    {"w": ("F32", [2, 3], struct.pack("<6f", *range(6)))}, {"format": "pt"}))
put("safetensors", "mixed.safetensors", safetensors({
    "a": ("BF16", [4], bytes(8)), "b": ("I8", [2, 2], bytes([1, 2, 3, 4])),
    "c": ("U8", [3], bytes([7, 8, 9])), "d": ("F16", [1, 1], bytes(2))}))
put("safetensors", "empty.safetensors", safetensors({}))

# model_config: every architecture oracle's config.json.
for d in sorted((SHARED / "oracles" / "arch").iterdir()):
    if (d / "config.json").exists():
        put("model_config", d.name + ".json", (d / "config.json").read_bytes())
put("model_config", "stories260k.json",
    (SHARED / "oracles/stories260k/hf/config.json").read_bytes())

# tokenizer: small tokenizer.json files + NUL + text.
text = "Aspirin 81 mg (acetylsalicylic acid) — naïve 患者 <|eot_id|> \t\n  end"
for name, path in [("stories260k", "oracles/stories260k/hf/tokenizer.json"),
                   ("llama-gqa", "oracles/arch/llama-gqa/tokenizer.json")]:
    put("tokenizer", name, (SHARED / path).read_bytes() + b"\0" + text.encode())

# chat_template: small templates + NUL + messages.
msgs = json.dumps([{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Is aspirin an NSAID?"},
                   {"role": "assistant", "content": "Yes."},
                   {"role": "user", "content": "And ibuprofen?"}])
ct = SHARED / "oracles" / "chat_templates"
for p in [ct / "llama-2-chat.reconstructed.jinja",
          ct / "mistral-7b-instruct-v0.3.tokenizer_config.chat_template.jinja",
          ct / "llama.cpp" / "Qwen-Qwen2.5-7B-Instruct.jinja"]:
    put("chat_template", p.stem, p.read_bytes() + b"\0" + msgs.encode())
put("chat_template", "macro",
    "{% macro f(n) %}{% if n %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
    "{{ f(3) }}{% for m in messages %}{{ m.role | upper }}{% endfor %}")

# task_loader: task index byte + the head of an example data file.
files = {"bc5cdr_chem": "bc5cdr_chem/test.tsv",
         "ncbi_disease": "ncbi_disease/test.tsv",
         "chemprot": "chemprot/test.tsv", "ddi2013": "ddi2013/test.tsv",
         "hoc": "hoc/test.tsv", "litcovid": "litcovid/test.tsv",
         "medqa": "medqa/test_4opt.jsonl", "medqa_5opt": "medqa/test_5opt.tsv",
         "pubmedqa": "pubmedqa/test.tsv"}
for i, t in enumerate(TASKS):
    put("task_loader", t, bytes([i]) + head(EXAMPLES / files[t]))

# score_file: task byte + format byte + the head of a published prediction file.
ref = SHARED / "data" / "bionlp" / "reference_predictions"
for t, f, fmt in [("bc5cdr_chem", "bc5cdr_chem/gpt-4_zero_shot.bio", 2),
                  ("ncbi_disease", "ncbi_disease/gpt-3.5_zero_shot.bio", 2),
                  ("chemprot", "chemprot/Chempro_gpt-4-0314_0_shot.tsv", 0),
                  ("ddi2013", "ddi2013/DDI2013_gpt-4-0314_1_shot.tsv", 0),
                  ("pubmedqa", "pubmedqa/pubmedqa_gpt-35-0301_one_shot.tsv", 0)]:
    put("score_file", t, bytes([TASKS.index(t), fmt]) + head(ref / f))
put("score_file", "hoc.jsonl", bytes([TASKS.index("hoc"), 1]) +
    b'{"gold": ["sustaining proliferative signaling"], "pred": "none"}\n')

# answer_parser: task byte + a model output.
outs = {"bc5cdr_chem": "Chemicals: aspirin, 5-fluorouracil\n",
        "ncbi_disease": "<think>hmm</think>The diseases are [\"breast cancer\"]",
        "chemprot": "Answer: CPR:4", "ddi2013": "DDI-effect.",
        "hoc": "activating invasion and metastasis; none",
        "litcovid": "Treatment, Mechanism", "medqa": "The answer is (C).",
        "medqa_5opt": "E) None of the above", "pubmedqa": "Final answer: maybe"}
for i, t in enumerate(TASKS):
    put("answer_parser", t, bytes([i]) + outs[t].encode())

# npy: small valid arrays.
def npy(shape, values, descr="<f4"):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        descr, "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")")
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    fmt = "<%d%s" % (len(values), "f" if descr == "<f4" else "d")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + \
        struct.pack(fmt, *values)
put("npy", "f4_2x3.npy", npy([2, 3], [0.5, 1, 2, 3, 4, 5]))
put("npy", "f8_4.npy", npy([4], [1, 2, 3, 4], "<f8"))

# serve_request: route byte (1 = chat) + a request body.
put("serve_request", "chat", b"\x01" + json.dumps({
    "model": "m", "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "n": 2, "seed": 3,
    "stop": ["\n"], "stream": True,
    "stream_options": {"include_usage": True}}).encode())
put("serve_request", "completion", b"\x00" + json.dumps({
    "model": "m", "prompt": "The patient", "max_tokens": 4,
    "ignore_eos": True, "top_k": 5}).encode())
put("serve_request", "token_ids", b"\x00" + json.dumps({
    "prompt": [1, 2, 3], "max_tokens": 2}).encode())
# gguf: small v3 files (metadata of several kinds, tensors of several types).
def gguf(kv, tensors, align=32):
    def string(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, (vtype, val) in kv.items():
        out += string(key) + struct.pack("<I", vtype)
        if vtype == 8:
            out += string(val)
        elif vtype == 9:  # array of (elem type, values)
            et, vals = val
            out += struct.pack("<IQ", et, len(vals))
            for v in vals:
                out += string(v) if et == 8 else struct.pack(
                    {4: "<I", 5: "<i", 6: "<f"}[et], v)
        else:
            out += struct.pack({4: "<I", 5: "<i", 6: "<f", 7: "<?",
                                10: "<Q"}[vtype], val)
    blob, infos = b"", b""
    for name, (gtype, dims, raw) in tensors.items():
        pad = (-len(blob)) % align
        blob += bytes(pad)
        infos += string(name) + struct.pack("<I", len(dims)) + \
            b"".join(struct.pack("<Q", d) for d in dims) + \
            struct.pack("<IQ", gtype, len(blob))
        blob += raw
    out += infos
    out += bytes((-len(out)) % align)
    return out + blob
q8 = struct.pack("<e", 0.05) + bytes((i * 7) % 256 for i in range(32))
q4k = struct.pack("<ee", 0.01, 0.002) + bytes((i * 13) % 256 for i in range(140))
put("gguf", "llama-like.gguf", gguf(
    {"general.architecture": (8, "llama"), "llama.block_count": (4, 1),
     "llama.context_length": (4, 64), "llama.rope.freq_base": (6, 10000.0),
     "tokenizer.ggml.model": (8, "gpt2"),
     "tokenizer.ggml.tokens": (9, (8, ["a", "b", "<s>"])),
     "tokenizer.ggml.scores": (9, (6, [0.0, -1.0, 0.0])),
     "general.alignment": (4, 32)},
    {"f32": (0, [4, 2], struct.pack("<8f", *range(8))),
     "q8_0": (8, [32], q8), "q4_k": (12, [256], q4k)}))
put("gguf", "empty.gguf", gguf({}, {}))
print("seeds written under", FUZZ / "corpus")
