"""Analytic FLOP counts of a CNN14 at any input length (the CNN14 family's counter).

Counted as ``torch.utils.flop_counter.FlopCounterMode`` counts: 2 FLOPs per multiply-accumulate
of every convolution and matrix product; the BatchNorms, ReLUs, poolings, dropout and the clip
pooling are not counted. For ``B`` clips of ``T`` frames and ``F`` mel bins, block ``k`` (1-based,
``C_0 = 1``) runs on a ``T_k x F_k`` map, ``T_1 = T``, ``F_1 = F`` and ``T_{k+1} = floor(T_k / 2)``,
``F_{k+1} = floor(F_k / 2)`` after each pooled block (all but the last); ``D`` is the last
width, ``K`` the classes:

=============  ==========================================  ===========================
component      forward                                     backward
=============  ==========================================  ===========================
conv1 of k     ``2 B T_k F_k C_k C_{k-1} 9``                twice forward
conv2 of k     ``2 B T_k F_k C_k C_k 9``                    twice forward
fc1            ``2 B D D``                                 twice forward
head           ``2 B D K`` (``fc_audioset``)                twice forward
=============  ==========================================  ===========================

Every product's backward computes its weight's gradient and its input's: even the first
convolution's input, the output of ``bn0`` whose affine weights learn. So an input
average-pooled 2x over time (``avgpool:2``) costs half of every convolution, to the floor of
the odd rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import FlopCountBase
from .config import CNN14Config
from .model import _no_call

__all__ = ["flops", "FlopCount"]


@dataclass(frozen=True)
class FlopCount(FlopCountBase):
    """FLOPs of one forward pass (``B`` clips at once) per component, and its backward.
    ``tokens`` and ``grid`` are the input's positions, ``(mel_bins, frames)`` (frequency x time, as
    every family's grids): what the first block computes at."""

    convs: int
    fc1: int
    head: int
    tokens: int
    grid: tuple[int, int]
    batch_size: int


def flops(config: CNN14Config, input_shape, **call) -> FlopCount:
    """FLOPs of ``model(spec)`` for ``spec`` of ``input_shape``: ``(frames, mel_bins)`` for one
    clip or ``(batch, frames, mel_bins)``. CNN14 takes no per-call settings (``call`` must be empty)."""
    _no_call(call, "flops")
    batch, frames, bins = FlopCount.input_of(input_shape, config.input_fdim, "CNN14")
    if frames < config.min_frames:
        raise ValueError(f"input_shape has {frames} frames; this CNN14 needs an input length of at least "
                         f"{config.min_frames} frames")
    t, f, convs, c_in = frames, bins, 0, 1
    for k, c in enumerate(config.channels):
        convs += 2 * batch * t * f * 9 * (c * c_in + c * c)
        c_in = c
        if k < config.num_blocks - 1:
            t, f = t // 2, f // 2
    d = config.num_features
    return FlopCount(convs=convs, fc1=2 * batch * d * d, head=2 * batch * d * config.num_classes,
                     tokens=frames * bins, grid=(bins, frames), batch_size=batch)
