"""Hand-written references: FlexiAST's bilinear matrix B and PI-resize as the official code
builds them, and an independent AST/FlexiAST forward in plain tensor operations, for
layouts HF cannot hold.

Reads an official-layout state dict (``v.*``, ``mlp_head.*``; ``module.`` stripped) and
follows the AST/FlexiAST code path literally: conv patch embedding on ``[B, 1, F, T]``,
prefix tokens, positional embeddings, pre-norm blocks with eager softmax attention,
final norm, mean of prefix tokens, LayerNorm + Linear.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bilinear_axis_matrix(n_in: int, n_out: int) -> np.ndarray:
    """1-D bilinear resize (half-pixel centres, no antialiasing) by hand, ``(n_out, n_in)``."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, n_in - 1)
        m[i, lo] += 1 - (src - lo)
        m[i, hi] += src - lo
    return m


def reference_B(old, new) -> np.ndarray:
    """FlexiAST eq. (1): ``vec(resize(x)) = B vec(x)`` for a row-major ``old`` image resized to
    ``new``: ``kron(A_rows, A_cols)``, float64."""
    return np.kron(bilinear_axis_matrix(old[0], new[0]), bilinear_axis_matrix(old[1], new[1]))


def pinv_resize(weight: torch.Tensor, new) -> torch.Tensor:
    """The official construction: one-hot basis images resized, stacked, pseudo-inverted (NumPy)."""
    old = tuple(weight.shape[-2:])
    mat = []
    for i in range(old[0] * old[1]):
        basis = np.zeros(old)
        basis[np.unravel_index(i, old)] = 1.0
        up = F.interpolate(torch.from_numpy(basis)[None, None], size=new, mode="bilinear", align_corners=False)
        mat.append(up[0, 0].numpy().reshape(-1))
    B = np.stack(mat).T
    P = torch.from_numpy(np.linalg.pinv(B.T)).to(weight.dtype)
    return (weight.reshape(*weight.shape[:2], -1) @ P.T).reshape(*weight.shape[:2], *new)


def forward(sd: dict, spec: torch.Tensor, *, heads: int, prefix: int, patch, stride, pos_embed: torch.Tensor,
            patch_weight: torch.Tensor, patch_bias: torch.Tensor, eps: float = 1e-6, head_eps: float = 1e-5):
    x = spec.unsqueeze(1).transpose(2, 3)
    x = F.conv2d(x, patch_weight, patch_bias, stride=stride).flatten(2).transpose(1, 2)
    tokens = [sd["v.cls_token"]] + ([sd["v.dist_token"]] if prefix == 2 else [])
    x = torch.cat([t.expand(x.shape[0], -1, -1) for t in tokens] + [x], dim=1) + pos_embed
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("v.blocks."))
    d = x.shape[-1]
    for i in range(depth):
        p = f"v.blocks.{i}."
        h = F.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        qkv = h @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = qkv.reshape(x.shape[0], x.shape[1], 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1) @ v
        a = a.transpose(1, 2).reshape(x.shape)
        x = x + a @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        h = F.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        h = F.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        x = x + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    x = F.layer_norm(x, (d,), sd["v.norm.weight"], sd["v.norm.bias"], eps)
    pooled = x[:, :prefix].mean(1)
    pooled = F.layer_norm(pooled, (d,), sd["mlp_head.0.weight"], sd["mlp_head.0.bias"], head_eps)
    return pooled @ sd["mlp_head.1.weight"].T + sd["mlp_head.1.bias"]
