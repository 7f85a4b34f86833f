"""Multi-head self-attention for the AST family, and ElasticAST's attention pooling: the
score computation (:func:`attend`) chooses between explicit products and PyTorch's fused
kernel by device, dtype, mask and size (its docstring has the measurements)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["attend", "Attention", "AttentionPool", "EXPLICIT_ATTENTION_MAX_SCORES"]

#: Most attention scores (batch x heads x queries x keys) for which :func:`attend` forms
#: them explicitly on CPU: 2^23, 32 MiB of float32 softmax.
EXPLICIT_ATTENTION_MAX_SCORES = 1 << 23


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d_head)) v`` over ``[batch, heads, tokens, d_head]``.

    ``mask`` (bool, broadcast to ``[batch, heads, queries, keys]``; True: may attend) gives the
    other keys a score of ``-inf``, so their weights are exactly 0: the block-diagonal mask of a
    packed row (:func:`flexiast.models.packing.block_mask`) makes each clip attend only to itself.

    ``scaled_dot_product_attention`` (flash or memory-efficient kernels) everywhere except
    small score matrices on CPU, where PyTorch's flash kernel is slow. Forward and backward
    of AST-tiny layers took it 5x as long as the two matrix products below in bf16 at 66
    tokens (batch 32), 3x at 130 and 2x at 514 (batch 8), and 1.3-1.7x, 1.3-1.5x and 1.1x in
    fp32; at 2,050 tokens it was 2.4x faster in bf16 and 1.4-2x in fp32
    (``benchmarks/bench_attention.py``, on CPUs with and without native bf16). So the
    scores are formed explicitly, with the softmax in float32, while they number at most
    ``EXPLICIT_ATTENTION_MAX_SCORES``: 32 MiB of float32, glibc's largest heap allocation.
    Near that size the outcome depends on the process's allocator state: inside the full
    benchmark suite (a long-running process, like training) the explicit path was 2.1x
    faster at 514 and at 602 tokens; ``python benchmarks/bench_attention.py`` alone, a
    fresh process, measures it 0.9x and 0.7x there, and still 2.7-3.2x at 66-130 tokens.
    A graph traced with symbolic shapes (ONNX export with a dynamic batch) takes the fused
    kernel, which serves every size.

    A masked fp32 attention (a packed row) takes the fused kernel at every size: the mask
    costs the fused kernel 5-10%, but the explicit path a ``masked_fill`` of the scores
    forward and backward, which made it 1.1-2.3x slower than the fused kernel on rows of
    128-512 positions with 4 heads of 32 and 6 of 64, on one thread, and the packed training
    step of the FSDD recipe's AST 6-17% slower (one and two threads of a loaded 2-core AVX2
    VM; ``benchmarks/bench_packing.py``, docs/PERFORMANCE.md). bf16 and fp16 keep the rule
    above (not measured masked on a CPU that computes them natively).
    """
    b, h, n, _ = q.shape
    symbolic = any(isinstance(x, torch.SymInt) for x in (b, h, n, k.shape[-2]))  # an exported graph, any batch
    if (symbolic or q.device.type != "cpu" or q.dtype not in (torch.bfloat16, torch.float16, torch.float32)
            or (mask is not None and q.dtype == torch.float32)
            or b * h * n * k.shape[-2] > EXPLICIT_ATTENTION_MAX_SCORES):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
    if dropout_p:
        weights = F.dropout(weights, dropout_p)
    return torch.matmul(weights, v)


class Attention(nn.Module):
    """Multi-head self-attention, ``softmax(q k^T / sqrt(d_head)) v``, fused qkv.

    The qkv weight stacks q, k, v (each ``[dim, dim]``) as in timm and AST checkpoints.
    With ``queries=n`` only the first ``n`` tokens attend (to all tokens), and only their
    queries are projected: the output is those ``n`` rows of the full attention. ``mask``:
    which keys each query may attend to (:func:`attend`).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.drop = drop

    def forward(self, x: torch.Tensor, queries: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        if queries is None:
            q, k, v = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        else:
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, :queries], w[:d], None if bias is None else bias[:d])
            q = q.reshape(b, queries, h, d // h).transpose(1, 2)
            k, v = F.linear(x, w[d:], None if bias is None else bias[d:]).reshape(b, n, 2, h, d // h).permute(
                2, 0, 3, 1, 4)
        x = attend(q, k, v, self.drop if self.training else 0.0, mask)
        return self.proj(x.transpose(1, 2).reshape(b, q.shape[2], d))


class AttentionPool(nn.Module):
    """ElasticAST's masked attention pooling (Feng et al., Interspeech 2024): one learned query
    ``u`` attends over a clip's tokens, ``proj(softmax(q k^T / sqrt(d_head)) v)`` per head with
    ``q = W_q u`` and ``[k, v] = W_kv x``; ``mask [batch, tokens]`` (True: the clip's) keeps each
    clip's query on its own tokens. (The authors' released attention omits ``1 / sqrt(d_head)``;
    this applies it, as every other attention here does.)"""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(self.query.to(x.dtype)).reshape(1, h, 1, d // h).expand(b, -1, -1, -1)
        k, v = self.kv(x).reshape(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, mask=None if mask is None else mask[:, None, None, :])
        return self.proj(out.reshape(b, d))
