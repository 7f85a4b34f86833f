"""The value: :class:`OperatingPoint`, what one call of a model runs at, and the helpers that
place a patch size on its axes and pool a window to a point's input length."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...constants import AXES
from ...features import Compression, compress_spec

__all__ = ["OperatingPoint", "axis_patch", "pooled_compression"]


@dataclass(frozen=True)
class OperatingPoint:
    """One call's setting: ``frames`` the model takes; ``patch`` ``(freq, time)`` and ``resize``
    (how the kernel moves to it) for a patch family, None where the family has no patch or the
    call keeps the stored one; ``pos_grid`` (how an AST's positional grid follows an input of
    another length); ``pool``, the factor by which a trained window is average-pooled over
    time to give ``frames`` (1: fed as trained); ``size``, the single size a profile row
    names (``16`` for ``16x16`` on both axes).

    Every clip is fed its leading ``frames * pool`` frames, then pooled by ``pool``; a shorter
    clip is padded to them (a fixed-length model, as it was trained) or, with ``packed``, runs
    at its own length, packed with others into rows of tokens (a family that packs: ElasticAST,
    Feng et al., Interspeech 2024, arXiv 2407.08691; :func:`flexiast.models.spans.clip_span`). ``seconds``
    is the clip length a length profile's row was asked at (``evaluate --lengths``)."""

    frames: int
    patch: tuple[int, int] | None = None
    resize: str | None = None
    pos_grid: str = "leading"
    pool: int = 1
    size: int | None = None
    packed: bool = False
    seconds: float | None = None

    def call(self) -> dict:
        """The keyword arguments of ``model(spec, **call)`` at this point: ``{}`` for the
        model's own call, else ``patch_size`` and ``resize`` (and ``pos_grid`` where not the default)."""
        if self.patch is None:
            return {}
        call = {"patch_size": self.patch}
        if self.resize is not None:
            call["resize"] = self.resize
        if self.pos_grid != "leading":
            call["pos_grid"] = self.pos_grid
        return call

    def fixed(self, model):
        """``model`` fixed at this point (``model.fixed``): nothing resized per call. A packed
        point's model is fixed at its trained length, whose positional grid each clip then cuts
        or stretches to its own length as the flexible model does."""
        return model.fixed(input_tdim=None if self.packed else self.frames, **self.call())

    def feed(self, spec: torch.Tensor) -> torch.Tensor:
        """A trained window ``spec [batch, frames, bins]`` brought to this point's frames."""
        return spec if self.pool == 1 else compress_spec(spec, self.compression)

    @property
    def compression(self) -> Compression:
        """What :meth:`feed` applies, as a compression of the trained input."""
        return Compression() if self.pool == 1 else Compression("avgpool", self.pool)

    @property
    def label(self) -> str:
        """``patch 16x16, PI``, or ``512 input frames`` for a family without patches."""
        packed = ", packed" if self.packed else ""
        if self.patch is not None:
            return (f"patch {self.patch[0]}x{self.patch[1]}" + (f", {self.resize.upper()}" if self.resize else "")
                    + packed)
        return f"{self.frames} input frames{packed}"

    def describe(self) -> str:
        """:attr:`label` with the input length where the label lacks it."""
        return self.label if self.patch is None else f"{self.label}, {self.frames} frames"

    def input_call(self) -> dict:
        """What a model fixed at this point (:meth:`fixed` without the grid policy) still takes
        per call: how its positional grid follows an input of another length (``pos_grid``)."""
        return {} if self.pos_grid == "leading" else {"pos_grid": self.pos_grid}


def axis_patch(size: int, axes: str, stored: tuple[int, int]) -> tuple[int, int]:
    """The ``(freq, time)`` patch of ``size`` on ``axes``: ``(s, s)``, ``(f0, s)`` or ``(s, t0)``."""
    if axes not in AXES:
        raise ValueError(f"axes={axes!r} is not one of {', '.join(AXES)}")
    s = int(size)
    return {"both": (s, s), "time": (stored[0], s), "freq": (s, stored[1])}[axes]


def pooled_compression(base: Compression, factor: int) -> Compression:
    """``base`` followed by average pooling of time by ``factor``: how a model is fed a
    point's shorter input length when deployed."""
    if factor == 1:
        return base
    if base.method == "none":
        return Compression("avgpool", factor)
    if base.method == "avgpool":
        return Compression("avgpool", base.factor * factor)
    raise ValueError(f"the model's input is compressed by {base}; a profiled input length that pools it by a "
                     f"further {factor} cannot be deployed on top of that (only on none or avgpool)")
