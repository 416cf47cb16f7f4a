#!/usr/bin/env python3
"""Writes the ggml dequantization goldens: <TYPE>.bin (packed blocks) and
<TYPE>.f32 (what PyPI gguf's gguf.quants.dequantize returns, f32 LE).

Legacy types (Q4_0 ... Q8_0) and BF16 are quantized by gguf itself from
random normals with varied block scales (plus an all-zero block); K-quants
(which gguf-py cannot quantize) are random bytes with the f16 scale fields
replaced by finite random f16 values, so every scale/min bit pattern is
exercised. F16/BF16 rows also hold raw random bit patterns (inf, NaN,
subnormals). Usage: python make_goldens.py [OUTDIR]  (needs gguf, numpy).
"""
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
rng = np.random.default_rng(13)

LEGACY = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
KQUANT = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
# Byte offsets of f16 scale fields inside each K-quant block.
F16_FIELDS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2],
              T.Q5_K: [0, 2], T.Q6_K: [208]}


def finite_f16(n):
    x = rng.normal(0, 1, n) * np.exp(rng.uniform(-12, 4, n))
    return x.astype(np.float16)


def save(t, packed, n):
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    ref = dequantize(packed, t).astype(np.float32).reshape(-1)
    assert ref.size == n, (t.name, ref.size, n)
    (out / f"{t.name}.bin").write_bytes(packed.tobytes())
    (out / f"{t.name}.f32").write_bytes(ref.astype("<f4").tobytes())


def main():
    # Legacy: 8 blocks of 32.
    for t in LEGACY:
        x = rng.normal(0, 1, (8, 32)).astype(np.float32)
        x *= np.exp(rng.uniform(-6, 3, (8, 1))).astype(np.float32)
        x[0] = 0
        x[1] += 0.5  # all-positive-ish block for the min of Q4_1/Q5_1
        save(t, quantize(x.reshape(-1), t), x.size)
    # K-quants: 4 super-blocks of random bytes, finite scales.
    for t in KQUANT:
        bs, ts = GGML_QUANT_SIZES[t]
        raw = rng.integers(0, 256, (4, ts), dtype=np.uint8)
        for off in F16_FIELDS[t]:
            raw[:, off:off + 2] = finite_f16(4).view(np.uint8).reshape(4, 2)
        save(t, raw, 4 * bs)
    # Plain types: values round-tripped through gguf plus raw bit patterns.
    x = (rng.normal(0, 1, 192) * np.exp(rng.uniform(-20, 20, 192))).astype(np.float32)
    bits = rng.integers(0, 1 << 16, 64, dtype=np.uint16)
    bf16 = np.concatenate([quantize(x, T.BF16).view(np.uint16), bits])
    save(T.BF16, bf16.view(np.uint8), 256)
    f16 = np.concatenate([x.astype(np.float16).view(np.uint16), bits])
    save(T.F16, f16.view(np.uint8), 256)
    save(T.F32, x[:64].view(np.uint8), 64)


if __name__ == "__main__":
    main()
