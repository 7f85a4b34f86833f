"""The ``model:`` section of a recipe for an HTS-AT, and the configuration it gives with the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..section import PresetSection
from .config import PRESETS, HTSATConfig

__all__ = ["HTSATSection", "config_from_recipe"]


@dataclass
class HTSATSection(PresetSection):
    """The network. ``preset`` gives the widths (tiny: the paper's Swin-T; mini; micro); explicit
    fields override it. There is no ``patch_size`` or ``stride``: HTS-AT's 4 x 4 patches are
    fixed and its number of tokens follows the input length, so a recipe giving them is
    refused as an unknown key. ``num_classes`` and the input size come from the data and
    features; initial weights (official HTS-AT, ImageNet Swin-T, a CLAP audio tower) are the
    recipe's ``init.path``.
    """

    arch: str = HTSATConfig.arch
    preset: str | None = "tiny"
    embed_dim: int | None = None
    depths: list[int] | None = None
    num_heads: list[int] | None = None
    window_size: int = 8
    mlp_ratio: float = 4.0
    freq_ratio: int = 4
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1

    presets: ClassVar[dict] = PRESETS
    width_fields: ClassVar[tuple[str, ...]] = ("embed_dim", "depths", "num_heads")
    required: ClassVar[tuple[str, ...]] = ("embed_dim", "depths", "num_heads")


def config_from_recipe(section: HTSATSection, *, num_classes: int, input_fdim: int, input_tdim: int,
                       labels=None) -> HTSATConfig:
    """The HTS-AT a recipe trains: its section's network on the data's classes and input size.

    Every check is :class:`HTSATConfig`'s; a ``ValueError`` names the field."""
    return HTSATConfig(num_classes=num_classes, input_fdim=input_fdim, input_tdim=input_tdim,
                       window_size=section.window_size, mlp_ratio=section.mlp_ratio, freq_ratio=section.freq_ratio,
                       drop_rate=section.drop_rate, drop_path_rate=section.drop_path_rate, labels=labels,
                       **section.widths())
