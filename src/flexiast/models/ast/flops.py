"""Analytic FLOP counts of an AST at any patch size (the AST family's counter).

Counted as ``torch.utils.flop_counter.FlopCounterMode`` counts: 2 FLOPs per
multiply-accumulate of every matrix product and convolution; normalisations,
activations, softmax, interpolation and bias additions are not counted. With ``B`` clips,
``N = gf * gt`` patch tokens (``gf, gt = floor((n - p) / s) + 1`` per axis), ``S = N + P``
tokens of which ``P`` are prefix tokens, width ``D``, MLP width ``M``, ``L`` layers, patch
area ``K = pf * pt`` and ``C`` classes:

====================  ==============================================  ===============================
component             forward                                         backward
====================  ==============================================  ===============================
patch_resize (PI)     ``2 D (h0 w0 pt + pf h0 pt)``                   same (kernel gradient)
pos_resize            ``2 D (gf0 gt0 gt' + gf' gf0 gt')``             same (grid gradient)
patch_embed           ``2 B N K D``                                   ``2 B N K D`` (no input gradient)
qkv                   ``2 B D^2 (3 S (L - 1) + 2 S + P)``             twice forward
attention             ``4 B S D (S (L - 1) + P)``                     twice forward (``q k^T``, ``a v``)
proj                  ``2 B D^2 (S (L - 1) + P)``                     twice forward
mlp                   ``4 B D M (S (L - 1) + P)``                     twice forward
head                  ``2 B D C``                                     twice forward
====================  ==============================================  ===============================

The last layer runs only for the ``P`` prefix tokens the head reads, keys and values
excepted (:meth:`AST.forward_features` with ``prefix_only``); with ``pooling="mean"`` the
head reads every patch token, and the last layer runs for all ``S`` (``P`` becomes ``S`` in
the last layer's terms above). Both resizes are two
matrix products (:mod:`flexiast.resize`): the stored ``h0 x w0`` kernel to ``pf x pt``,
and the stored ``gf0 x gt0`` positional grid to the ``gf' x gt'`` grid of this patch
size on the trained input length; each costs nothing at the stored size. BL resizing
of the kernel (interpolation), and the cut or resize of the grid to another input
length, are not counted. Backward assumes attention does not recompute its
scores; a flash-attention backward recomputes ``q k^T`` and so costs another
``2 B S^2 D (L - 1)``. Training FLOPs are forward + backward, about 3x forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...constants import RESIZE_METHODS
from ..base import FlopCountBase
from .config import ASTConfig

__all__ = ["flops", "FlopCount"]


@dataclass(frozen=True)
class FlopCount(FlopCountBase):
    """FLOPs of one forward pass (``B`` clips at once) per component, and its backward."""

    patch_resize: int
    pos_resize: int
    patch_embed: int
    qkv: int
    attention: int
    proj: int
    mlp: int
    head: int
    tokens: int
    grid: tuple[int, int]
    batch_size: int

    #: The spectrogram needs no gradient, and the resizes are products with fixed matrices.
    once: ClassVar[tuple[str, ...]] = ("patch_resize", "pos_resize", "patch_embed")


def flops(config: ASTConfig, input_shape, patch_size=None, *, stride=None, resize: str = "pi") -> FlopCount:
    """FLOPs of ``model(spec, patch_size, resize)`` for ``spec`` of ``input_shape``.

    ``input_shape`` is ``(frames, mel_bins)`` for one clip or ``(batch, frames, mel_bins)``;
    ``patch_size`` and ``stride`` follow :meth:`AST.forward` (None: the stored ones).
    """
    batch, frames, bins = FlopCount.input_of(input_shape)
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize={resize!r} is not one of {', '.join(RESIZE_METHODS)}")
    patch, stride = config.resolve_patch(patch_size, stride)
    gf, gt = config.grid_at((bins, frames), patch, stride)
    n = gf * gt
    p = config.prefix_tokens
    s = n + p
    d, layers, m = config.embed_dim, config.depth, config.mlp_dim
    last = p if config.pooling == "prefix" else s  # tokens the last layer computes (the head's)
    rows = s * (layers - 1) + last  # tokens through each per-token product, summed over layers
    k = patch[0] * patch[1]
    (h0, w0), (pf, pt) = config.patch_size, patch
    resized = patch != config.patch_size and resize == "pi"
    (gf0, gt0), (rf, rt) = config.grid, config.grid_at(config.input_size, patch, stride)
    return FlopCount(
        patch_resize=2 * d * (h0 * w0 * pt + pf * h0 * pt) if resized else 0,
        pos_resize=2 * d * (gf0 * gt0 * rt + rf * gf0 * rt) if (rf, rt) != (gf0, gt0) else 0,
        patch_embed=2 * batch * n * k * d,
        qkv=2 * batch * d * d * (3 * s * (layers - 1) + 2 * s + last),
        attention=4 * batch * s * d * rows,
        proj=2 * batch * d * d * rows,
        mlp=4 * batch * d * m * rows,
        head=2 * batch * d * config.num_classes,
        tokens=s,
        grid=(gf, gt),
        batch_size=batch,
    )
