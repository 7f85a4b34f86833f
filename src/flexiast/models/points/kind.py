"""What every kind of operating point answers (:class:`PointKind`): its default point, a
caller's choice, an evaluation grid, a recipe's phases, and how a point is written in a
profile row and in tables. A new kind subclasses it in a module of its own beside
``patch.py`` and ``length.py`` and is named in ``POINT_KINDS`` (``__init__.py``)."""

from __future__ import annotations

from typing import ClassVar

from ...features import Compression
from .point import OperatingPoint

__all__ = ["PointKind", "named"]


def named(given: dict) -> list[str]:
    return [name for name, value in given.items() if value is not None]


class PointKind:
    """What a family's calls vary, and everything that depends on it: its default point,
    a caller's choice, an evaluation grid, and how a point is written in a profile row.

    ``name`` is a profile's ``row_kind``; ``column`` heads the point's column in tables."""

    name: ClassVar[str]
    column: ClassVar[str]
    #: The row key that tells rows apart, and every key a stored row must have for its point.
    key_name: ClassVar[str]
    row_required: ClassVar[tuple[str, ...]]
    #: What one point is called in messages, and why the stored one was used.
    noun: ClassVar[str]
    stored_reason: ClassVar[str]
    #: Whether a point may be counted on inputs of other mel bins than the model's.
    any_mel_bins: ClassVar[bool] = False
    #: The x axis of a figure of rows (:func:`flexiast.report.profiles_figure`).
    axis_label: ClassVar[str]
    #: Whether a profile of these rows chooses a point to deploy (``predict --max-gflops``); a
    #: profile over clip lengths measures each length and chooses none.
    chooses: bool = True

    @classmethod
    def for_profile(cls, profile: dict) -> "PointKind":
        """The kind that reads ``profile``'s rows (a kind with variants reads which from the profile)."""
        return cls()

    def stored(self, config) -> OperatingPoint:
        """The point the model was trained at."""
        raise NotImplementedError

    def given(self, config, *, arch: str, patch_size=None, resize=None, pos_grid: str = "leading",
              frames: int | None = None) -> OperatingPoint:
        """A caller's choice (None: the stored one); options this kind does not take are refused, naming them."""
        raise NotImplementedError

    def grid(self, config, frames: int, *, arch: str, patch_sizes=None, resize=None, axes=None,
             input_lengths=None) -> tuple[list[OperatingPoint], list]:
        """``(points, sizes left out)``: a profile's rows for a loader giving ``frames``-frame clips."""
        raise NotImplementedError

    def count_grid(self, config, frames: int, *, arch: str, patch_sizes=None, resize=None,
                   input_lengths=None) -> list[OperatingPoint]:
        """The points ``flexiast flops`` counts (no data, so nothing is left out silently)."""
        raise NotImplementedError

    def token_columns(self, model, layer: int) -> tuple[int, int]:
        """``(width, stride)`` in input frames of the time columns of ``model.embed``'s ``layer``
        (``model`` fixed at a point): what per-time-step embeddings are placed by."""
        raise NotImplementedError

    # -- a recipe's phases (coarse-to-fine, ICASSP 2024, Sec. 2.2-2.3) ------------------------
    def phase_geometry(self, model_section, compression: Compression, frames: int) -> dict:
        """The model configuration's changes for a phase whose input is ``frames`` frames after
        ``compression`` (``model_section``: the recipe's ``model:``)."""
        raise NotImplementedError

    def phase_points(self, model_section, phase, compression: Compression, frames: int) -> list[OperatingPoint]:
        """The points a phase's steps draw from, in the order its sampler's weights name them."""
        raise NotImplementedError

    def eval_point(self, model_section, phase, compression: Compression, frames: int, size,
                   resize: str) -> OperatingPoint:
        """The validation point of ``size`` (a patch size on the phase's axes, or None: the stored one)."""
        raise NotImplementedError

    def misfit(self, point: OperatingPoint, mel_bins: int) -> str | None:
        """Why ``point`` does not fit its input of ``mel_bins`` x ``point.frames``, or None."""
        return None

    def eval_points(self, model_section, phase, compression: Compression, frames: int, mel_bins: int, sizes: list,
                    resize: str) -> dict[str, OperatingPoint]:
        """``{name: point}``: the validation points of ``sizes`` that fit a phase's input."""
        points = {str(s if s is not None else "stored"): self.eval_point(model_section, phase, compression, frames,
                                                                         s, resize) for s in sizes}
        return {name: p for name, p in points.items() if self.misfit(p, mel_bins) is None}

    def check_recipe(self, *, arch: str, compression: Compression, key: str, eval_sizes=None, select=None) -> None:
        """Refuse, naming the key, what a recipe asks of points this kind does not have."""

    def init_hints(self, transfer: str) -> dict:
        """What a recipe's ``init_from`` takes for this kind: how a kernel of another size moves in."""
        return {}

    def row_fields(self, point: OperatingPoint) -> dict:
        """The keys that name ``point`` in a profile row (JSON)."""
        raise NotImplementedError

    def row_point(self, row: dict, profile: dict) -> OperatingPoint:
        """The point a stored profile row was measured at."""
        raise NotImplementedError

    def row_label(self, row: dict) -> str:
        """A row's point in a table cell."""
        raise NotImplementedError

    def row_text(self, row: dict) -> str:
        """A row's point in a sentence."""
        return self.row_label(row)

    def row_key(self, row: dict):
        """What tells a profile's rows apart (and must match across folds): ``row[key_name]``."""
        return row[self.key_name]

    def count_fields(self, point: OperatingPoint) -> dict:
        """The keys that name ``point`` in ``flexiast flops --json``."""
        raise NotImplementedError

    def profile_fields(self, config, resize, axes) -> dict:
        """What a profile of this kind says about how its rows were made."""
        raise NotImplementedError

    def tag(self, profile: dict) -> str:
        """A short name for a profile's settings (an output folder's suffix)."""
        raise NotImplementedError

    def describe(self, profile: dict) -> str:
        """How a profile's rows feed the model, for its Markdown header."""
        raise NotImplementedError

    def csv_header(self) -> list[str]:
        raise NotImplementedError

    def csv_cells(self, row: dict) -> list:
        raise NotImplementedError

    def markdown_header(self) -> tuple[str, str]:
        """``(column names, alignment)`` of the point's columns in a Markdown table."""
        raise NotImplementedError

    def markdown_cells(self, row: dict) -> str:
        raise NotImplementedError
