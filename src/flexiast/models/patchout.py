"""Patchout: training on a subset of an AST's patch tokens (Koutini et al., "Efficient training
of audio transformers with patchout", Interspeech 2022; the PaSST model).

After the positional embeddings are added, a training step drops some of the ``gf x gt`` patch
tokens before the first layer, which then see ``K + P`` tokens instead of ``gf gt + P`` (``P``
prefix tokens). Every layer's work falls with the tokens: the per-token products in
proportion, attention with their square. Evaluation keeps every token (PaSST Sec. 2).

* **Structured**: ``time`` whole time columns and ``freq`` whole frequency rows are dropped,
  leaving ``kf x kt`` tokens, ``kf = gf - drop(gf, freq)``, ``kt = gt - drop(gt, time)``
  (PaSST's AudioSet setting drops 40 of 99 columns and 4 of 12 rows);
* **unstructured**: then ``tokens`` of the remaining ``kf kt`` tokens, anywhere.

Each amount is a count (an integer: ``drop(n, a) = a``) or a fraction of the axis (a float in
``[0, 1)``: ``drop(n, a) = floor(a n)``, which keeps at least one); a fraction follows the grid
of every patch size FlexiAST draws and every coarse phase's shorter input. The kept tokens stay
in grid order (row-major, frequency then time), with their positional embeddings.

Which tokens clip ``i`` of optimizer step ``s`` keeps is drawn from a generator seeded by
``(seed, s, i)`` alone, ``i`` its index in the training set, as every random choice of a
training step here (:mod:`flexiast.engine.point_sampler`): two ranks, or a run resumed from a
checkpoint, keep the same tokens of the same clip. (PaSST draws one permutation per batch from
the global generator.) Every clip of a batch keeps the same number of tokens, so the batch stays
one tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Patchout", "PatchoutDraw", "dropped", "step_positions", "keep", "kept_count"]

#: Mixed into every patchout draw's seed, apart from the other draws of a step.
_STREAM = 0x9A7C0


def dropped(n: int, amount: float) -> int:
    """How many of ``n`` columns, rows or tokens ``amount`` drops: the count itself (an int),
    or ``floor(amount * n)`` for a fraction (a float)."""
    if isinstance(amount, float):
        return math.floor(amount * n)
    return int(amount)


def _check_amount(name: str, amount) -> None:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"patchout {name}={amount!r} must be a count (an integer) or a fraction (a float in [0, 1))")
    if isinstance(amount, float) and not 0.0 <= amount < 1.0:
        raise ValueError(f"patchout {name}={amount!r}: a fraction must lie in [0, 1) (an integer is a count)")
    if isinstance(amount, int) and amount < 0:
        raise ValueError(f"patchout {name}={amount!r}: a count must not be negative")


@dataclass(frozen=True)
class Patchout:
    """How much a training step drops: ``time`` columns, ``freq`` rows (structured) and
    ``tokens`` (unstructured), each a count or a fraction (module docstring)."""

    time: int | float = 0
    freq: int | float = 0
    tokens: int | float = 0

    def __post_init__(self):
        for name in ("time", "freq", "tokens"):
            _check_amount(name, getattr(self, name))

    @property
    def active(self) -> bool:
        """Whether it drops anything on some grid."""
        return any(getattr(self, n) != 0 for n in ("time", "freq", "tokens"))

    def kept(self, grid: tuple[int, int]) -> tuple[int, int, int]:
        """``(kf, kt, k)``: the rows and columns kept on a ``(gf, gt)`` grid, and the tokens
        kept of their ``kf kt``. A ``ValueError`` names the amount that leaves none."""
        gf, gt = grid
        kf, kt = gf - dropped(gf, self.freq), gt - dropped(gt, self.time)
        for name, kept, n, what in (("freq", kf, gf, "frequency rows"), ("time", kt, gt, "time columns")):
            if kept < 1:
                raise ValueError(f"patchout {name}={getattr(self, name)!r} drops every one of the {n} {what} "
                                 f"of a {gf}x{gt} token grid")
        k = kf * kt - dropped(kf * kt, self.tokens)
        if k < 1:
            raise ValueError(f"patchout tokens={self.tokens!r} drops every one of the {kf * kt} tokens left "
                             f"of a {gf}x{gt} token grid")
        return kf, kt, k

    def draw(self, keys) -> "PatchoutDraw":
        """The draw for a batch whose clip ``j`` is seeded by ``keys[j]`` (``(seed, step, index)``)."""
        return PatchoutDraw(self, tuple(tuple(int(x) for x in key) for key in keys))


@dataclass(frozen=True)
class PatchoutDraw:
    """The tokens each clip of one batch keeps: ``keys[j]`` (``(seed, step, index)``) seeds clip
    ``j``'s choice. What a training step passes a model as ``patchout=``."""

    patchout: Patchout
    keys: tuple[tuple[int, ...], ...]

    def kept_positions(self, grid: tuple[int, int]) -> np.ndarray:
        """``[batch, K]``: each clip's kept positions on the ``(gf, gt)`` grid (``f gt + t``),
        increasing."""
        gf, gt = grid
        kf, kt, k = self.patchout.kept(grid)
        out = np.empty((len(self.keys), k), dtype=np.int64)
        for j, key in enumerate(self.keys):
            rng = np.random.default_rng(np.random.SeedSequence([*key, _STREAM]))
            cols = np.sort(rng.permutation(gt)[:kt])
            rows = np.sort(rng.permutation(gf)[:kf])
            positions = (rows[:, None] * gt + cols[None, :]).reshape(-1)
            out[j] = positions[np.sort(rng.permutation(kf * kt)[:k])]
        return out

    def positions(self, grid: tuple[int, int], device=None) -> torch.Tensor:
        """:meth:`kept_positions` as a ``[batch, K]`` long tensor on ``device``."""
        return torch.from_numpy(self.kept_positions(grid)).to(device)


def step_positions(config, spec_shape, patch_size, draw: PatchoutDraw, device=None) -> torch.Tensor:
    """The ``[batch, K]`` positions ``draw`` keeps of a call at ``patch_size`` (None: the stored
    one) on a batch of ``spec_shape`` ``[batch, frames, mel_bins]``, for a model of ``config`` (an
    AST's or a subclass's). A training step draws them before the call and passes the tensor, so
    a compiled forward sees a tensor of one shape at every step, not a new Python object."""
    patch, stride = config.resolve_patch(patch_size)
    return draw.positions(config.grid_at((spec_shape[2], spec_shape[1]), patch, stride), device)


def keep(tokens: torch.Tensor, grid: tuple[int, int], patchout: "PatchoutDraw | torch.Tensor") -> torch.Tensor:
    """``tokens [batch, gf gt, D]`` (with their positions) reduced to ``[batch, K, D]``: those a
    draw keeps on ``grid``, or the ``[batch, K]`` positions given (:func:`step_positions`)."""
    idx = patchout if isinstance(patchout, torch.Tensor) else patchout.positions(grid, tokens.device)
    if idx.dim() != 2 or idx.shape[0] != tokens.shape[0]:
        raise ValueError(f"patchout positions of shape {tuple(idx.shape)} for a batch of {tokens.shape[0]} clips")
    return tokens.gather(1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


def kept_count(patchout, grid: tuple[int, int] | None) -> int:
    """The tokens per clip ``patchout`` keeps on ``grid``: for :class:`Patchout` amounts or a
    :class:`PatchoutDraw`, what the grid leaves; for ``[batch, K]`` positions, ``K``; an int is
    that count already (what a FLOP count caches by)."""
    if isinstance(patchout, torch.Tensor):
        return int(patchout.shape[-1])
    if isinstance(patchout, int):
        return patchout
    amounts = patchout.patchout if isinstance(patchout, PatchoutDraw) else patchout
    return amounts.kept(grid)[2]
