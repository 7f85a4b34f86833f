"""Analytic FLOP counts of an HTS-AT at any input length (the HTS-AT family's counter).

Counted as ``torch.utils.flop_counter.FlopCounterMode`` counts: 2 FLOPs per
multiply-accumulate of every matrix product and convolution; the BatchNorm, LayerNorms,
GELU, softmax, the relative-bias gather, padding, shifts and means are not counted. The
input of ``T`` frames is padded to ``T_pad`` (a multiple of ``unit``) and folded into an
image ``freq_ratio * F`` high and ``T_pad / freq_ratio`` wide; stage ``i`` then has a grid
``(H_i, W_i)`` (``H_0 = freq_ratio F / p``, halved at each merging), width ``C_i`` and MLP width
``M_i``. Each block partitions its grid by :func:`flexiast.models.htsat.model.window_plan` into
``nW`` windows of ``N`` tokens over the padded grid ``(Hp, Wp)``; with ``B`` clips:

=============  ==================================================  =====================================
component      forward                                             backward
=============  ==================================================  =====================================
patch_embed    ``2 B H_0 W_0 p^2 D``                               twice forward (``bn0`` learns)
qkv            ``2 B Hp Wp C 3C`` per block                        twice forward
attention      ``4 B Hp Wp N C`` per block (``q k^T``, ``a v``)      twice forward
proj           ``2 B Hp Wp C^2`` per block                         twice forward
mlp            ``4 B H W C M`` per block                           twice forward
merging        ``2 B (H W / 4) 4C 2C`` per merging                 twice forward
head           ``2 B classes P C c_freq_bin 3`` (``P`` positions)  twice forward
=============  ==================================================  =====================================

Window padding (a grid that does not divide into windows) is counted: the padded tokens go
through ``qkv``, attention and ``proj``. The time padding to ``unit`` is counted too: it is
input. So a 256-frame input (Swin-T) costs a quarter of a 1024-frame one, but for the
head and the windows of its small last-stage grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..base import FlopCountBase
from .config import HTSATConfig
from .model import _no_call, window_plan

__all__ = ["flops", "FlopCount"]


@dataclass(frozen=True)
class FlopCount(FlopCountBase):
    """FLOPs of one forward pass (``B`` clips at once) per component, and its backward (twice
    forward: the patch embedding's input, the folded output of ``bn0`` whose affine weights learn,
    gets a gradient too)."""

    patch_embed: int
    qkv: int
    attention: int
    proj: int
    mlp: int
    merging: int
    head: int
    tokens: int
    grid: tuple[int, int]
    batch_size: int


def flops(config: HTSATConfig, input_shape, **call) -> FlopCount:
    """FLOPs of ``model(spec)`` for ``spec`` of ``input_shape``: ``(frames, mel_bins)`` for one
    clip or ``(batch, frames, mel_bins)``. HTS-AT takes no per-call settings (``call`` must be empty)."""
    _no_call(call, "flops")
    batch, frames, bins = FlopCount.input_of(input_shape, config.input_fdim, "HTS-AT")
    p, fr = config.patch_size, config.freq_ratio
    t_pad = math.ceil(frames / config.unit) * config.unit
    h, w = fr * bins // p, t_pad // fr // p
    grid0 = (h, w)
    qkv = attention = proj = mlp = merging = 0
    for i, depth in enumerate(config.depths):
        c = config.embed_dim * 2 ** i
        m = int(c * config.mlp_ratio)
        for j in range(depth):
            plan = window_plan((h, w), config.window_size, shifted=j % 2 == 1)
            padded = plan.padded[0] * plan.padded[1]
            qkv += 2 * batch * padded * c * 3 * c
            attention += 4 * batch * padded * plan.tokens * c
            proj += 2 * batch * padded * c * c
            mlp += 4 * batch * h * w * c * m
        if i < config.num_stages - 1:
            merging += 2 * batch * (h * w // 4) * 4 * c * 2 * c
            h, w = h // 2, w // 2
    positions = fr * w
    return FlopCount(
        patch_embed=2 * batch * grid0[0] * grid0[1] * p * p * config.embed_dim,
        qkv=qkv, attention=attention, proj=proj, mlp=mlp, merging=merging,
        head=2 * batch * config.num_classes * positions * config.num_features * config.c_freq_bin * 3,
        tokens=grid0[0] * grid0[1], grid=grid0, batch_size=batch,
    )
