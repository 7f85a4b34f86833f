"""The ``model:`` section of a recipe for a CNN14, and the configuration it gives with the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..section import PresetSection
from .config import PRESETS, CNN14Config

__all__ = ["CNN14Section", "config_from_recipe"]


@dataclass
class CNN14Section(PresetSection):
    """The network. ``preset`` gives the widths (base: PANNs' CNN14, 64 .. 2048 channels; micro:
    every width / 8); ``channels`` overrides it. There is no ``patch_size`` or ``stride``: a CNN
    computes every position of its input, so a recipe giving them is refused as an unknown key.
    ``num_classes`` and the input size come from the data and features; initial weights (a PANNs
    checkpoint) are the recipe's ``init.path``.
    """

    arch: str = CNN14Config.arch
    preset: str | None = "base"
    channels: list[int] | None = None
    conv_dropout: float = 0.2
    fc_dropout: float = 0.5

    presets: ClassVar[dict] = PRESETS
    width_fields: ClassVar[tuple[str, ...]] = ("channels",)
    required: ClassVar[tuple[str, ...]] = ("channels",)


def config_from_recipe(section: CNN14Section, *, num_classes: int, input_fdim: int, input_tdim: int,
                       labels=None) -> CNN14Config:
    """The CNN14 a recipe trains: its section's network on the data's classes and input size.

    Every check is :class:`CNN14Config`'s; a ``ValueError`` names the field."""
    return CNN14Config(num_classes=num_classes, input_fdim=input_fdim, input_tdim=input_tdim,
                       conv_dropout=section.conv_dropout, fc_dropout=section.fc_dropout, labels=labels,
                       **section.widths())
