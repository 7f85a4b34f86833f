"""Attention on CPU: PyTorch's fused kernel against the explicit product, fp32 and bf16.

Forward and backward of one attention layer's core, ``softmax(q k^T / sqrt(d)) v``, on
``[batch, heads, tokens, 64]``: AST-tiny layers (3 heads) at 128 frames (66 tokens,
batch 32) and at 1024 frames with patch 32, 16 and 8 (130, 514 and 2,050 tokens, batch
8), and an AST-base layer (12 heads) at 512 frames (602 tokens, batch 4). "fused" is
``scaled_dot_product_attention`` (its flash kernel on CPU); "explicit" is two matrix
products and a float32 softmax. ``flexiast.models.ast.attention.attend`` takes the explicit path on
CPU (fp32 and bf16) while the scores number at most ``EXPLICIT_ATTENTION_MAX_SCORES`` (2^23), the
fused one otherwise.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from common import dtypes, interleaved, ms, ratio_spread, run_script, spread, table

CASES = {"66 tokens, batch 32": (32, 3, 66), "130 tokens, batch 8": (8, 3, 130), "514 tokens, batch 8": (8, 3, 514),
         "AST-base, 602 tokens, batch 4": (4, 12, 602), "2,050 tokens, batch 8": (8, 3, 2050)}
QUICK = {"2 heads, 34 tokens, batch 2": (2, 2, 34)}


def explicit(q, k, v):
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    return torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype), v)


def fwd_bwd(fn, shape, dtype):
    q, k, v = (torch.randn(*shape, 64, dtype=dtype, requires_grad=True) for _ in range(3))

    def run():
        fn(q, k, v).float().square().sum().backward()
        q.grad = k.grad = v.grad = None
    return run


def measure(quick: bool) -> list[dict]:
    out = []
    for name, shape in (QUICK if quick else CASES).items():
        for dname in dtypes():
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dname]
            fns = {"fused": fwd_bwd(F.scaled_dot_product_attention, shape, dtype),
                   "explicit": fwd_bwd(explicit, shape, dtype)}
            out.append(dict(name=name, dtype=dname, times=interleaved(fns, repeats=2 if quick else 9, warmup=1)))
    return out


def section(results: list[dict]) -> str:
    lines = ["## Attention kernels on CPU", "", "`python benchmarks/bench_attention.py`. " +
             __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(), ""]
    rows = []
    for r in results:
        t = r["times"]
        rows.append([r["name"], r["dtype"], ms(spread(t["fused"])[0]), ms(spread(t["explicit"])[0]),
                     "{:.2f}x ({:.2f}-{:.2f})".format(*ratio_spread(t["fused"], t["explicit"]))])
    lines += table(["AST layer", "dtype", "fused, ms", "explicit, ms", "explicit speed-up"], rows)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_script(__doc__, measure, section)
