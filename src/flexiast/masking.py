"""Which patches SSAST's masked-patch task hides, drawn for a whole batch at once.

SSAST (Gong et al., AAAI 2022, Sec. 2.2-2.3) hides ``M`` of a clip's ``N`` patches and
asks the encoder to recover them. Two ways to choose them:

* ``uniform``: ``M`` positions drawn without replacement (SSAST's frame model,
  ``gen_maskid_frame``);
* ``cluster``: squares of side ``c``, ``c`` drawn once per clip from {3, 4, 5}, at random
  places, added until ``M`` positions are covered (SSAST's patch model,
  ``gen_maskid_patch``): neighbouring patches go together, so the task cannot be solved by
  interpolating a hidden patch from its neighbours.

Both are computed here for every clip of a batch with tensor operations (no loop over
clips), from a counter-based hash of ``(seed, step, clip, ...)``: the masks of a clip
depend on nothing else, so a resumed run, another batch composition or another number of
ranks draws the same ones. Each position ``n`` gets a score and the ``M`` smallest are
masked. Uniform: the score is a hash ``u_n`` in [0, 1). Cluster: square ``k = 0 .. K-1`` has
its top-left corner at a hashed place of ``[1 - c, gf) x [1 - c, gt)`` (clipped to the grid, so
each position lies in the same number of places' squares), and a position's score is
``k + u_n`` for the first square that
covers it, or ``K + u_n`` if none does; taking the ``M`` smallest takes whole squares in
order, a random part of the last one, and (were ``K`` squares too few) random positions.

Where this differs from SSAST's loop, on purpose: squares are clipped at the grid's edges
and may start before them (SSAST's linear index ``start + t_dim * i + j`` grows from its
start only, runs past the end of a row into the next one, and never masks position 0, so
its first rows and columns are masked less often), and the last square is cut at random
positions (SSAST keeps the lowest ids of a Python set).
"""

from __future__ import annotations

import math

import torch

__all__ = ["MASKINGS", "mask_count", "draw_masks", "hash32", "uniform01"]

#: How masked positions are chosen; ``auto`` is SSAST's rule: cluster for a patch model, uniform
#: for a frame model (a patch as tall as the spectrogram).
MASKINGS = ("auto", "cluster", "uniform")

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for ``x`` in [0, 2^32) held in int64, without overflowing int64:
    ``x = hi 2^16 + lo``, so ``x c = (hi c mod 2^16) 2^16 + lo c (mod 2^32)``."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + ((hi * c) & 0xFFFF) * 65536) & _M32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' ``lowbias32``: xor-shift, multiply, twice) of int64
    values, elementwise; the result is in [0, 2^32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _key(*parts) -> torch.Tensor:
    """One hash of several keys (tensors broadcast together, or ints), chained."""
    h = torch.zeros((), dtype=torch.int64)
    for p in parts:
        p = torch.as_tensor(p, dtype=torch.int64)
        h = hash32(_mul32(h, 0x9E3779B1) + hash32(p + 0x632BE5AB))
    return h


def uniform01(key: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1) from hashed keys (32 random bits each)."""
    return hash32(key).double() / 2.0 ** 32


def mask_count(masked: int | float, patches: int, *, setting: str = "pretrain.masked") -> int:
    """Masked patches per clip: ``masked`` itself (an int), or that fraction of ``patches``
    rounded (a float in (0, 1)), so a coarse phase with 4x fewer patches masks 4x fewer.
    A ``ValueError`` names ``setting`` when the count is not 1 .. ``patches``."""
    if isinstance(masked, bool) or not isinstance(masked, (int, float)):
        raise ValueError(f"{setting}: {masked!r} is neither a count nor a fraction")
    if isinstance(masked, float):
        if not 0.0 < masked < 1.0:
            raise ValueError(f"{setting}: {masked} is a fraction of the patches and must lie in (0, 1)")
        count = max(1, round(masked * patches))
    else:
        count = masked
    if not 1 <= count <= patches:
        raise ValueError(f"{setting}: {count} masked patches, but the input has {patches} per clip; give at "
                         "most that many, or a fraction of the patches (a float in (0, 1)), which scales with "
                         "the input" if count > patches else f"{setting}: {count} masked patches; give at least 1")
    return count


def draw_masks(grid: tuple[int, int], count: int, *, seed: int, step: int, clips: torch.Tensor,
               stream: int = 0, cluster: bool = True, sizes: tuple[int, ...] = (3, 4, 5)) -> torch.Tensor:
    """``[B, count]`` masked positions (row-major in the ``(freq, time)`` ``grid``, ascending)
    of the clips numbered ``clips [B]``, at optimizer step ``step``; ``stream`` tells apart
    independent draws of one step (SSAST's two passes). Computed on ``clips``' device."""
    gf, gt = grid
    n = gf * gt
    if not 1 <= count <= n:
        raise ValueError(f"{count} masked patches of a {gf} x {gt} grid ({n} patches)")
    device = clips.device
    clip_key = _key(seed, step, stream, clips.to(torch.int64).cpu()).to(device)  # [B]
    pos = torch.arange(n, device=device)
    tie = uniform01(_mul32(clip_key[:, None], 0x27D4EB2F) + pos)  # [B, N] in [0, 1)
    if not cluster:
        return torch.topk(tie, count, dim=1, largest=False).indices.sort(dim=1).values
    b = clips.shape[0]
    side = torch.tensor(sizes, device=device)[(hash32(clip_key ^ 0x5BD1E995) % len(sizes))]  # [B]
    squares = math.ceil(4 * count / min(sizes) ** 2) + 4  # enough to cover ``count`` with overlaps
    k = torch.arange(squares, device=device)
    reach = side[:, None] - 1  # a square may hang over any edge, so every position is covered alike
    corner_key = _mul32(hash32(clip_key[:, None] + 0x165667B1), 0x2545F491) + 2 * k  # [B, K]
    cf = (uniform01(corner_key) * (gf + reach)).long() - reach
    ct = (uniform01(corner_key + 1) * (gt + reach)).long() - reach
    big = max(sizes)
    i, j = torch.meshgrid(torch.arange(big, device=device), torch.arange(big, device=device), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)  # offsets of the largest square
    f, t = cf[:, :, None] + i, ct[:, :, None] + j  # [B, K, big^2]
    inside = (i < side[:, None, None]) & (j < side[:, None, None]) & (f >= 0) & (f < gf) & (t >= 0) & (t < gt)
    index = torch.where(inside, f * gt + t, torch.full_like(f, n)).reshape(b, -1)
    order = k[None, :, None].expand(b, squares, big * big).reshape(b, -1).double()
    first = torch.full((b, n + 1), float(squares), dtype=torch.float64, device=device)
    first.scatter_reduce_(1, index, order, reduce="amin")
    score = first[:, :n] + tie
    return torch.topk(score, count, dim=1, largest=False).indices.sort(dim=1).values
