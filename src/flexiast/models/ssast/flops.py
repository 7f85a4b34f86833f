"""Analytic FLOPs of an SSAST pass (counted as ``FlopCounterMode`` counts; the AST family's
terms, :mod:`flexiast.models.ast.flops`).

The encoder runs every layer for every token (no head reads the prefix tokens alone):
the AST count with the last layer computed for all ``S`` tokens (``pooling="mean"``'s). With
``masked = M`` and ``passes = P`` (:meth:`SSAST.forward` with masks: SSAST's joint task has
``P = 2``, the discriminative and the generative pass) the encoder runs on ``P B`` clips and
each pass's head on its ``B M`` hidden tokens: ``head = 2 P B M (D^2 + D K)`` for ``K`` values
per patch. Without masks (``masked=0``), one pass and both heads on all ``N`` patch tokens:
``head = 4 B N (D^2 + D K)``. The mask embedding's blend is elementwise and not counted.
"""

from __future__ import annotations

import dataclasses

from ..ast.flops import FlopCount, flops as ast_flops
from .config import SSASTConfig

__all__ = ["flops"]


def flops(config: SSASTConfig, input_shape, patch_size=None, *, stride=None, resize: str = "pi",
          masked: int = 0, passes: int = 2) -> FlopCount:
    """FLOPs of ``model(spec, masked=[passes, B, masked])`` (or of ``model(spec)`` for ``masked=0``)."""
    batch, frames, bins = FlopCount.input_of(input_shape)
    runs = passes if masked else 1
    encoder = ast_flops(config.replace(pooling="mean"), (runs * batch, frames, bins), patch_size,
                        stride=stride, resize=resize)
    d, k = config.embed_dim, config.patch_area
    rows = runs * batch * masked if masked else 2 * batch * encoder.tokens - 2 * batch * config.prefix_tokens
    return dataclasses.replace(encoder, head=2 * rows * (d * d + d * k), batch_size=batch)
