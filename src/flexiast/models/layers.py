"""Layers and checks that several families build from.

* :class:`DropPath`: stochastic depth (Huang et al., "Deep Networks with Stochastic Depth",
  ECCV 2016, as timm's ``DropPath`` applies it to a residual branch), used by the AST's and
  HTS-AT's transformer blocks;
* :class:`Mlp`: the transformer's position-wise feed-forward network (ViT, Dosovitskiy et
  al. 2021; Swin, Liu et al. 2021): ``fc2(GELU(fc1(x)))``, dropout after each;
* :func:`check_spectrogram`: the input every family's ``forward`` takes, ``[batch, frames,
  mel_bins]``, checked with errors that say what was expected.

Each module keeps the parameter names (``fc1``, ``fc2``) and the order of operations and
random draws that the families had, so checkpoints load unchanged and outputs (and dropout
masks, for a seed) are the same bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .packing import Clips

__all__ = ["DropPath", "Mlp", "check_spectrogram"]


class DropPath(nn.Module):
    """Stochastic depth: in training, a residual branch ``f(x)`` is kept for each sample with
    probability ``1 - p`` and scaled by ``1 / (1 - p)``, so its expectation is unchanged:
    ``x + DropPath(f(x))`` is ``x + b f(x) / (1 - p)``, ``b ~ Bernoulli(1 - p)`` per sample.
    In evaluation, or with ``p = 0``, it is the identity."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Mlp(nn.Module):
    """``drop(fc2(drop(GELU(fc1(x)))))`` with the exact (erf) GELU of ViT and Swin; ``hidden``
    is ``mlp_ratio`` times ``dim`` (4 in both papers)."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


def check_spectrogram(spec, input_fdim: int, built_for: str | None = None, min_frames: int = 0,
                      too_short: str = "") -> None:
    """Refuse anything but a spectrogram tensor ``[batch, frames, input_fdim]`` of at least
    ``min_frames`` frames (``too_short`` is the error otherwise, ``{frames}`` in it the length
    given). ``built_for`` names the model in
    the mel-bin error ("this HTS-AT was built for input_fdim=64"); without it the error says what
    "the model expects"."""
    if isinstance(spec, Clips):
        raise TypeError(f"this {built_for or 'model'} does not pack clips of their own lengths (only a family "
                        "whose ModelFamily.packs is set does); pad them to one length (Clips.padded) or train "
                        "with data.batching: bucketed")
    if not isinstance(spec, torch.Tensor):
        raise TypeError(f"expected a spectrogram tensor [batch, frames, mel_bins], got {type(spec).__name__}")
    if spec.dim() != 3:
        raise ValueError(f"expected a spectrogram [batch, frames, mel_bins] (3 dims), got shape "
                         f"{tuple(spec.shape)}; add a batch dimension with spec.unsqueeze(0)")
    if spec.shape[-1] != input_fdim:
        expected = (f"; this {built_for} was built for input_fdim={input_fdim}" if built_for
                    else f", the model expects {input_fdim}")
        raise ValueError(f"spectrogram has {spec.shape[-1]} mel bins{expected} (shape is [batch, frames, mel_bins])")
    if spec.shape[1] < min_frames:
        raise ValueError(too_short.format(frames=spec.shape[1]))
