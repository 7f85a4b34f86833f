"""Analytic FLOPs of a PaSST call (counted as ``FlopCounterMode`` counts): the AST's terms
(:mod:`flexiast.models.ast.flops`), with its positions resized per axis.

A PaSST resizes its frequency table (``gf0`` rows, width ``D``) and its time table (``gt0``
columns) each by one matrix product, ``2 D n n'`` for an axis moved from ``n`` to ``n' != n``
positions: to the grid ``(rf, rt)`` of the call's patch size on the trained input, then, where
the input's grid differs and is not a cut of the time table (``leading``, ``centre``), from
there to it. Adding the two tables is elementwise and not counted.
"""

from __future__ import annotations

import dataclasses

from ..ast.flops import FlopCount, flops as ast_flops
from .config import PaSSTConfig

__all__ = ["flops"]


def _axis(d: int, old: int, new: int) -> int:
    return 2 * d * old * new if old != new else 0


def flops(config: PaSSTConfig, input_shape, patch_size=None, *, stride=None, resize: str = "pi",
          pos_grid: str = "leading", patchout=None) -> FlopCount:
    """FLOPs of ``model(spec, patch_size, ...)`` for ``spec`` of ``input_shape`` (``(frames,
    mel_bins)`` or ``(batch, frames, mel_bins)``), with ``patchout`` as an AST's."""
    count = ast_flops(config, input_shape, patch_size, stride=stride, resize=resize, pos_grid=pos_grid,
                      patchout=patchout)
    patch, stride = config.resolve_patch(patch_size, stride)
    d, (gf0, gt0), grid = config.embed_dim, config.grid, count.grid
    rf, rt = config.grid_at(tuple(max(n, q) for n, q in zip(config.input_size, patch)), patch, stride)
    pos = _axis(d, gf0, rf) + _axis(d, gt0, rt)
    cut = grid[0] == rf and grid[1] < rt and pos_grid in ("leading", "centre")
    if grid != (rf, rt) and not cut:
        pos += _axis(d, rf, grid[0]) + _axis(d, rt, grid[1])
    return dataclasses.replace(count, pos_resize=pos)
