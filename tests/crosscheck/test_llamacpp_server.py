"""`bioquant eval --endpoint` against a real server nobody here wrote:
llama.cpp's OpenAI-compatible server (PyPI llama-cpp-python[server]) serving
a GGUF written (PyPI gguf) from a synthetic checkpoint. The study must run
to completion through both APIs (chat: llama.cpp renders the GGUF's chat
template; completions: plain text prompts, since llama-cpp-python's server
does not take token ids), store every
row, and resume without a new request. As a check of the GGUF itself, the
server's greedy completions (repeat penalty off) are compared with
`bioquant generate` on the original checkpoint."""

import json
import sqlite3
import sys
import urllib.request
from pathlib import Path

import pytest

from bqserve import REPO, bq, bq_json, free_port, process

gguf = pytest.importorskip("gguf")
pytest.importorskip("llama_cpp.server")
torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

def permute(w, n_head, n_head_kv):
    """HF's rotate-half Q/K rows -> GGUF's interleaved layout (what
    llama.cpp's converter does for Llama)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(model_dir, path):
    cfg = json.loads((model_dir / "config.json").read_text())
    tj = json.loads((model_dir / "tokenizer.json").read_text())
    tc = json.loads((model_dir / "tokenizer_config.json").read_text())
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update({k: v.float().numpy() for k, v in load_file(f).items()})
    w = gguf.GGUFWriter(str(path), "llama")
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_name("bioquant-synth-tiny")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    # Tokenizer: byte-level BPE ("gpt2"), every id present.
    vocab = cfg["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(vocab)]
    types = [gguf.TokenType.UNUSED] * vocab
    for tok, i in tj["model"]["vocab"].items():
        tokens[i], types[i] = tok, gguf.TokenType.NORMAL
    ids = {}
    for a in tj["added_tokens"]:
        tokens[a["id"]], types[a["id"]] = a["content"], gguf.TokenType.CONTROL
        ids[a["content"]] = a["id"]
    merges = [m if isinstance(m, str) else " ".join(m)
              for m in tj["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids[tc["bos_token"]])
    w.add_eos_token_id(ids[tc["eos_token"]])
    w.add_add_bos_token(True)
    w.add_chat_template(tc["chat_template"])
    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    for name, t in tensors.items():
        if name in names:
            out = names[name]
        else:
            parts = name.split(".")  # model.layers.N.<module>.weight
            out = f"blk.{parts[2]}.{per_layer['.'.join(parts[3:-1])]}.weight"
        if name.endswith("q_proj.weight"):
            t = permute(t, n_head, n_head)
        elif name.endswith("k_proj.weight"):
            t = permute(t, n_head, n_kv)
        w.add_tensor(out, t.astype("float32"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("llamacpp")
    model = d / "tiny"
    bq("synth", "--preset", "tiny", "--out", model, "--std", "0.08")
    path = d / "tiny.gguf"
    write_gguf(model, path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"

    def ready():
        try:
            with urllib.request.urlopen(base + "/models", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    with process([sys.executable, "-m", "llama_cpp.server", "--model",
                  str(path), "--host", "127.0.0.1", "--port", str(port),
                  "--n_ctx", "2048", "--n_threads", "2",
                  "--model_alias", "tiny-gguf"], ready,
                 log_path=d / "llamacpp.log"):
        yield model, base, path


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def test_gguf_tokens_and_greedy_match_bioquant(server, summary):
    """llama-cpp-python's server takes text prompts only (not token ids):
    its tokenization of the text must be bioquant's, then its greedy
    continuation (repeat penalty off) is compared with bioquant f32."""
    model, base, path = server
    root = base[:-len("/v1")]
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2,
                          verbose=False)
    prompts = ["The patient was given", "Aspirin", "BRCA1 mutations",
               "Does metformin lower blood glucose?"]
    same = 0
    for p in prompts:
        ids = bq_json("tokenize", "--model", model, "--text", p,
                      "--json")["ids"]
        theirs = post(root + "/extras/tokenize",
                      {"input": p, "add_special": True})["tokens"]
        assert theirs == ids, (p, theirs, ids)
        want = bq_json("generate", "--model", model, "--prompt-ids",
                       ",".join(map(str, ids)), "--max-new-tokens", "12",
                       "--ignore-eos", "--temperature", "0", "--json",
                       "--precision", "f32")["output_ids"]
        got = []
        for t in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0,
                              repeat_penalty=1.0, reset=True):
            got.append(t)
            if len(got) == 12:
                break
        same += got == want
        # f32 on both sides, but a random-weight model has near-ties: the
        # first tokens must agree.
        assert got[:4] == want[:4], (p, got, want)
        # And the server answers the same prompt.
        r = post(base + "/completions",
                 {"model": "tiny-gguf", "prompt": p, "max_tokens": 4,
                  "temperature": 0, "repeat_penalty": 1.0, "top_k": 1})
        assert r["choices"][0]["finish_reason"] in ("length", "stop")
    summary.add("llama.cpp server on a GGUF of the synthetic model: same "
                "token ids; greedy 12 ids identical to bioquant f32",
                cases=len(prompts), identical=f"{same}/{len(prompts)}")


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_eval_endpoint_runs_against_llamacpp(server, tmp_path, api, summary):
    model, base, _ = server
    out = tmp_path / f"run-{api}"
    args = ["eval", "--endpoint", base, "--served-model", "tiny-gguf",
            "--tasks", "bc5cdr_chem,chemprot,hoc,pubmedqa",
            "--strategies", "zero-shot", "--data-dir", REPO / "examples/data",
            "--limit", "3", "--max-new-tokens", "16", "--concurrency", "2",
            "--out", out]
    if api == "completions":
        # Text prompts: llama-cpp-python does not take token ids (so no
        # --tokenizer, and no chat template).
        args += ["--api", "completions"]
    p = bq(*args, timeout=900)
    con = sqlite3.connect(out / "store.sqlite")
    rows = con.execute("select count(*) from generations").fetchone()[0]
    assert rows == 12, (rows, p.stderr)
    scores = json.loads((out / "scores.json").read_text())
    assert scores
    # Resume: nothing left to do.
    p2 = bq(*args, timeout=300)
    assert "0 new completions" in p2.stderr, p2.stderr
    summary.add(f"eval --endpoint llama.cpp server ({api} API; resume re-ran "
                "nothing)", cases=rows)

