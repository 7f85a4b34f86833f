"""The ``model:`` section of a recipe for an AST, and the configuration it gives with the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...resize import to_pair
from ..section import PresetSection
from .config import PRESETS, ASTConfig

__all__ = ["ASTSection", "config_from_recipe"]


@dataclass
class ASTSection(PresetSection):
    """The network. ``preset`` gives the widths (tiny/small/base); explicit fields override it.

    ``patch_size`` is the stored (base) kernel; FlexiAST keeps 16 and resizes it per step.
    ``stride`` applies at that kernel (AST's overlapping 10). ``prefix_tokens``: 2, DeiT's
    cls and distillation tokens (AST's backbone), or 1, a ViT's [CLS] (FlexiAST's standard
    ASTs, Sec. 3.2); it must match the initial weights'. ``partial_patches``: ``drop`` (AST's
    and the FlexiAST authors' floor) or ``pad`` (zeros to whole patches, the ceil grid of
    FlexiAST Sec. 2.2). ``pooling``: what the classifier reads, ``prefix`` (AST) or ``mean``
    of the patch tokens (SSAST's fine-tuning default). ``num_classes`` and the input size
    come from the data and features.
    """

    arch: str = ASTConfig.arch
    preset: str | None = "base"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    patch_size: int | list[int] = 16
    stride: int | list[int] | None = None
    prefix_tokens: int = 2
    partial_patches: str = "drop"
    pooling: str = "prefix"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    presets: ClassVar[dict] = PRESETS
    width_fields: ClassVar[tuple[str, ...]] = ("embed_dim", "depth", "num_heads", "mlp_ratio")
    required: ClassVar[tuple[str, ...]] = ("embed_dim", "depth", "num_heads")


def config_from_recipe(section: ASTSection, *, num_classes: int, input_fdim: int, input_tdim: int,
                       labels=None) -> ASTConfig:
    """The AST a recipe trains: its section's network on the data's classes and input size.

    Every check is :class:`ASTConfig`'s; a ``ValueError`` names the field."""
    return ASTConfig(num_classes=num_classes, input_fdim=input_fdim, input_tdim=input_tdim,
                     patch_size=to_pair(section.patch_size, "patch_size"),
                     stride=None if section.stride is None else to_pair(section.stride, "stride"),
                     prefix_tokens=section.prefix_tokens, partial_patches=section.partial_patches,
                     pooling=section.pooling, drop_rate=section.drop_rate, drop_path_rate=section.drop_path_rate,
                     labels=labels, **section.widths())
