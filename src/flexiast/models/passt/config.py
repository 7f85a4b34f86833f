"""The configuration of a PaSST: an AST's fields, with PaSST's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ast.config import PRESETS, ASTConfig

__all__ = ["PaSSTConfig", "PRESETS"]


@dataclass(frozen=True)
class PaSSTConfig(ASTConfig):
    """Everything needed to rebuild a :class:`flexiast.models.passt.PaSST` (Koutini et al.,
    Interspeech 2022): every :class:`ASTConfig` field, with the defaults of PaSST-S, its released
    AudioSet model: 128 mel bins x 998 frames (10 s at a 10 ms hop), 16 x 16 patches at stride
    10 x 10 (a 12 x 99 grid), DeiT-B's widths, cls and distillation tokens, 527 classes. What
    differs from an AST is how positions are stored (:mod:`.model`), not any field."""

    input_tdim: int = 998
    stride: tuple[int, int] | None = (10, 10)

    arch: ClassVar[str] = "passt"
