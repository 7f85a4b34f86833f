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
pool (attention)      ``2 D^2 + 4 B N D^2 + 4 B N D + 2 B D^2``       twice forward
head                  ``2 B D C``                                     twice forward
====================  ==============================================  ===============================

The last layer runs only for the ``P`` prefix tokens the head reads, keys and values
excepted (:meth:`AST.forward_features` with ``prefix_only``); with ``pooling="mean"`` the
head reads every patch token, and the last layer runs for all ``S`` (``P`` becomes ``S`` in
the last layer's terms above), as with ``pooling="attention"`` (ElasticAST's pooling: the
query's projection, the keys and values of the ``N`` patch tokens, one query's attention, the
output projection). Both resizes are matrix products (:mod:`flexiast.resize`): the stored
``h0 x w0`` kernel to ``pf x pt``, and the stored ``gf0 x gt0`` positional grid to the
``rf x rt`` grid of this patch size on the trained input length; each costs nothing at the
stored size. A grid resized further to the input's (a longer input, or ``pos_grid="resize"``)
adds ``2 D (rf rt gt + gf rf gt)``; a cut costs nothing. BL resizing of the kernel
(interpolation) is not counted. Backward assumes attention does not recompute its
scores; a flash-attention backward recomputes ``q k^T`` and so costs another
``2 B S^2 D (L - 1)``. Training FLOPs are forward + backward, about 3x forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...constants import RESIZE_METHODS
from ..base import FlopCountBase
from ..packing import Clips
from ..patchout import Patchout, PatchoutDraw, kept_count
from .config import ASTConfig
from .packed import layout

__all__ = ["flops", "packed_flops", "FlopCount"]


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
    pool: int = 0

    #: The spectrogram needs no gradient, and the resizes are products with fixed matrices.
    once: ClassVar[tuple[str, ...]] = ("patch_resize", "pos_resize", "patch_embed")


def _resize_flops(config: ASTConfig, patch, stride, grid, resize: str, pos_grid: str) -> tuple[int, int]:
    """``(patch_resize, pos_resize)`` FLOPs of one call's kernel and positional grid
    (:meth:`AST.pos_embed_for`'s products)."""
    d = config.embed_dim
    (h0, w0), (pf, pt) = config.patch_size, patch
    kernel = 2 * d * (h0 * w0 * pt + pf * h0 * pt) if patch != config.patch_size and resize == "pi" else 0
    (gf0, gt0) = config.grid
    rf, rt = config.grid_at(tuple(max(n, q) for n, q in zip(config.input_size, patch)), patch, stride)
    pos = 2 * d * (gf0 * gt0 * rt + rf * gf0 * rt) if (rf, rt) != (gf0, gt0) else 0
    cut = grid[0] == rf and grid[1] < rt and pos_grid in ("leading", "centre")
    if grid != (rf, rt) and not cut:
        pos += 2 * d * (rf * rt * grid[1] + grid[0] * rf * grid[1])
    return kernel, pos


def _pool_flops(config: ASTConfig, clips: int, tokens: int) -> int:
    """ElasticAST's attention pooling of ``clips`` clips over ``tokens`` positions each."""
    if config.pooling != "attention":
        return 0
    d = config.embed_dim
    return 2 * d * d + 4 * clips * tokens * d * d + 4 * clips * tokens * d + 2 * clips * d * d


def flops(config: ASTConfig, input_shape, patch_size=None, *, stride=None, resize: str = "pi",
          pos_grid: str = "leading", patchout: Patchout | PatchoutDraw | int | None = None) -> FlopCount:
    """FLOPs of ``model(spec, patch_size, resize)`` for ``spec`` of ``input_shape``.

    ``input_shape`` is ``(frames, mel_bins)`` for one clip or ``(batch, frames, mel_bins)``, or
    the :class:`~flexiast.models.packing.Clips` of a packed call (:func:`packed_flops`);
    ``patch_size`` and ``stride`` follow :meth:`AST.forward` (None: the stored ones). With
    ``patchout`` (its amounts, a step's draw or positions, or the count it keeps) every clip
    embeds all ``gf gt`` patches, then
    the layers and the pooling see the ``K`` it keeps: ``N = K`` in every term but ``patch_embed``
    (:mod:`flexiast.models.patchout`).
    """
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize={resize!r} is not one of {', '.join(RESIZE_METHODS)}")
    if isinstance(input_shape, Clips):
        if patchout is not None:
            raise ValueError("patchout takes a batch of one length, not packed clips")
        return packed_flops(config, input_shape, patch_size, stride=stride, resize=resize, pos_grid=pos_grid)
    batch, frames, bins = FlopCount.input_of(input_shape)
    patch, stride = config.resolve_patch(patch_size, stride)
    gf, gt = config.grid_at((bins, frames), patch, stride)
    n = gf * gt if patchout is None else kept_count(patchout, (gf, gt))
    p = config.prefix_tokens
    s = n + p
    d, layers, m = config.embed_dim, config.depth, config.mlp_dim
    last = p if config.pooling == "prefix" else s  # tokens the last layer computes (the head's)
    rows = s * (layers - 1) + last  # tokens through each per-token product, summed over layers
    k = patch[0] * patch[1]
    kernel, pos = _resize_flops(config, patch, stride, (gf, gt), resize, pos_grid)
    return FlopCount(
        patch_resize=kernel,
        pos_resize=pos,
        patch_embed=2 * batch * gf * gt * k * d,
        qkv=2 * batch * d * d * (3 * s * (layers - 1) + 2 * s + last),
        attention=4 * batch * s * d * rows,
        proj=2 * batch * d * d * rows,
        mlp=4 * batch * d * m * rows,
        head=2 * batch * d * config.num_classes,
        tokens=s,
        grid=(gf, gt),
        batch_size=batch,
        pool=_pool_flops(config, batch, n),
    )


def packed_flops(config: ASTConfig, clips: Clips, patch_size=None, *, stride=None, resize: str = "pi",
                 pos_grid: str = "leading") -> FlopCount:
    """FLOPs of ``model(clips, ...)``, packed (:mod:`.packed`): per group of clips embedded
    together, its kernel and grid resizes and its patch embedding; then every layer over all
    ``R x L`` positions of the ``R`` rows of ``L`` (padding included), attention ``4 L^2 D`` per
    row and layer, except that with the ``"prefix"`` head the last layer's queries,
    projection and MLP run for the first ``Q = P x (most clips in a row)`` positions of each
    row only (attention ``4 Q L D`` per row); pooling over each clip's gathered ``max S_i - P``
    patch positions; the head per clip. ``tokens`` is ``R x L``, ``grid`` ``(R, L)``."""
    lay = layout(config, clips, patch_size, stride)
    d, layers, m = config.embed_dim, config.depth, config.mlp_dim
    kernel = pos = embed = 0
    for (patch, st, grid), members in lay.groups.items():
        k, g = _resize_flops(config, patch, st, grid, resize, pos_grid)
        kernel, pos = kernel + k, pos + g
        embed += 2 * len(members) * grid[0] * grid[1] * patch[0] * patch[1] * d
    rows, n, length = len(lay.rows), len(clips), lay.length
    q = config.prefix_tokens * max(len(r) for r in lay.rows) if config.pooling == "prefix" else length
    t = rows * (length * (layers - 1) + q)  # positions through each per-token product, over the layers
    return FlopCount(
        patch_resize=kernel, pos_resize=pos, patch_embed=embed,
        qkv=2 * d * d * rows * (3 * length * (layers - 1) + 2 * length + q),
        attention=4 * rows * length * d * (length * (layers - 1) + q), proj=2 * d * d * t,
        mlp=4 * d * m * t, head=2 * n * d * config.num_classes, tokens=lay.tokens, grid=(rows, length),
        batch_size=n, pool=_pool_flops(config, n, max(lay.sizes) - config.prefix_tokens),
    )
