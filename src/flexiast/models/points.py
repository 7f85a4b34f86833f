"""Operating points: what one call of a model runs at, for every family.

flexiast's promise is one model at any operating point chosen when it runs. What a call can
vary depends on the family, and the family says so once (``ModelFamily.points``):

* :class:`PatchPoints` (AST, SSAST): the **patch size**. FlexiAST (Feng et al., Interspeech
  2023, Sec. 2) runs one model at any ``(freq, time)`` patch, the kernel PI-resized
  (``resize="pi"``, eq. 3) or bilinearly resized (``"bl"``) and the positional grid
  resized bilinearly, on the trained input length. An SSAST's heads predict patches of
  its stored size, so its points are that one size only (``flexible=False``).
* :class:`LengthPoints` (HTS-AT, CNN14): the **input length**. Their tokens follow the
  input; a point of ``L`` frames feeds a clip of the trained ``T`` frames average-pooled
  over time by ``C = T / L`` (coarse-to-fine's pooled compression, Feng et al., ICASSP
  2024, Sec. 2.1), so a point still covers all the audio a trained window covers and its
  cost is the cost of that audio.

An :class:`OperatingPoint` is the value: the frames the model takes, its patch and resize
method (or none), its positional-grid policy, the pooling factor that brings a trained
window to its frames, and a label. ``point.call()`` is the keyword arguments of
``model(spec, **call)`` and ``point.fixed(model)`` the model with nothing resized per call.

Everything that iterates over settings (evaluation grids and profile rows, budget choice,
prediction windows, embeddings, export, ``flexiast flops``, the engine's phases and its
distillation teacher) asks a family's kind for its points and runs each the same way, so
no code outside ``models/`` asks which family it holds. A new kind (the packed, any-length
batches of ElasticAST) is a new :class:`PointKind` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..constants import AXES, PATCH_SIZES, POS_GRID_POLICIES, RESIZE_METHODS
from ..features import Compression, compress_spec
from ..resize import grid_shape, to_pair

__all__ = ["OperatingPoint", "PointKind", "PatchPoints", "LengthPoints", "point_kind", "POINT_KINDS",
           "axis_patch", "pooled_compression"]


@dataclass(frozen=True)
class OperatingPoint:
    """One call's setting: ``frames`` the model takes; ``patch`` ``(freq, time)`` and ``resize``
    (how the kernel moves to it) for a patch family, None where the family has no patch or the
    call keeps the stored one; ``pos_grid`` (how an AST's positional grid follows an input of
    another length); ``pool``, the factor by which a trained window is average-pooled over
    time to give ``frames`` (1: fed as trained); ``size``, the single size a profile row
    names (``16`` for ``16x16`` on both axes)."""

    frames: int
    patch: tuple[int, int] | None = None
    resize: str | None = None
    pos_grid: str = "leading"
    pool: int = 1
    size: int | None = None

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
        """``model`` fixed at this point (``model.fixed``): nothing resized per call."""
        return model.fixed(input_tdim=self.frames, **self.call())

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
        if self.patch is not None:
            return f"patch {self.patch[0]}x{self.patch[1]}" + (f", {self.resize.upper()}" if self.resize else "")
        return f"{self.frames} input frames"

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


def _named(given: dict) -> list[str]:
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

    def eval_points(self, model_section, phase, compression: Compression, frames: int, mel_bins: int, sizes: list,
                    resize: str) -> dict[str, OperatingPoint]:
        """``{name: point}``: the validation points of ``sizes`` that fit a phase's input."""
        raise NotImplementedError

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


class PatchPoints(PointKind):
    """Points of a family whose calls take a patch size (FlexiAST Sec. 2), at the trained length.
    ``flexible=False``: only the stored patch (an SSAST, whose heads predict its patches)."""

    name = "patch_size"
    column = "patch"
    key_name = "size"
    row_required = ("size", "patch")
    noun = "patch size"
    stored_reason = "stored patch size"
    any_mel_bins = True
    axis_label = "patch size (along the resized axes)"

    def __init__(self, flexible: bool = True):
        self.flexible = flexible

    def _check(self, config, patch, arch: str, setting: str) -> tuple[int, int]:
        patch = to_pair(patch, "patch_size")
        if not self.flexible and patch != tuple(config.patch_size):
            stored = config.patch_size
            raise ValueError(f"{setting}: a {arch} model runs at its stored {stored[0]}x{stored[1]} patch only")
        return patch

    def stored(self, config) -> OperatingPoint:
        return OperatingPoint(config.input_tdim, tuple(config.patch_size), "pi")

    def given(self, config, *, arch: str, patch_size=None, resize=None, pos_grid: str = "leading",
              frames: int | None = None) -> OperatingPoint:
        if resize is not None and resize not in RESIZE_METHODS:
            raise ValueError(f"resize={resize!r} is not one of {', '.join(RESIZE_METHODS)}")
        if pos_grid not in POS_GRID_POLICIES:
            raise ValueError(f"pos_grid={pos_grid!r} is not one of {', '.join(POS_GRID_POLICIES)}")
        patch = self._check(config, patch_size, arch, "patch_size") if patch_size is not None \
            else tuple(config.patch_size)
        return OperatingPoint(frames or config.input_tdim, patch, resize or "pi", pos_grid)

    def _sizes(self, config, patch_sizes, axes: str, arch: str):
        for s in PATCH_SIZES if patch_sizes is None else patch_sizes:
            if isinstance(s, bool) or not isinstance(s, int):
                raise ValueError(f"patch size {s!r}: a profile takes single sizes (8, 16, ...) on the chosen axes; "
                                 "use axes='time' or 'freq' for one axis")
            yield int(s), self._check(config, axis_patch(s, axes, config.patch_size), arch, "patch_sizes")

    def grid(self, config, frames: int, *, arch: str, patch_sizes=None, resize=None, axes=None,
             input_lengths=None) -> tuple[list[OperatingPoint], list]:
        if input_lengths is not None:
            raise ValueError(f"input_lengths (--input-lengths): a {arch} model is profiled over patch sizes "
                             "(--patch-sizes) at its trained length")
        resize = "pi" if resize is None else resize
        axes = "both" if axes is None else axes
        points, skipped = [], []
        for s, patch in self._sizes(config, patch_sizes, axes, arch):
            try:
                grid_shape((config.input_fdim, frames), patch)
            except ValueError:
                skipped.append(s)
                continue
            points.append(OperatingPoint(frames, patch, resize, size=s))
        if not points:
            raise ValueError(f"no patch size in {list(patch_sizes or PATCH_SIZES)} fits the input "
                             f"({config.input_fdim} mel bins x {frames} frames) on axes={axes}")
        return points, skipped

    def count_grid(self, config, frames: int, *, arch: str, patch_sizes=None, resize=None,
                   input_lengths=None) -> list[OperatingPoint]:
        if input_lengths is not None:
            raise ValueError(f"--input-lengths: a {arch} model is counted per patch size (--patch-sizes)")
        if not self.flexible and patch_sizes is None:
            patch_sizes = [config.patch_size]
        sizes = PATCH_SIZES if patch_sizes is None else patch_sizes
        return [OperatingPoint(frames, self._check(config, p, arch, "--patch-sizes"), resize or RESIZE_METHODS[0])
                for p in sizes]

    def token_columns(self, model, layer: int) -> tuple[int, int]:
        return model.config.patch_size[1], model.config.stride[1]  # the patches' columns, at every layer

    def _phase_pair(self, model_section, phase, size, compression: Compression) -> tuple[int, int]:
        """``size`` on the phase's axes (the stored patch for None), time x C in a ``patch:C`` phase."""
        base = to_pair(model_section.patch_size, "model.patch_size")
        pf, pt = base if size is None else axis_patch(size, phase.patch.axes, base)
        return (pf, pt * compression.factor) if compression.method == "patch" else (pf, pt)

    def phase_geometry(self, model_section, compression: Compression, frames: int) -> dict:
        """The input length and the stored kernel: ``p x Cp`` in a ``patch:C`` phase, whose widened
        kernel does not overlap (the recipe's stride applies to the base kernel)."""
        kernel = self._phase_pair(model_section, None, None, compression)
        base = to_pair(model_section.patch_size, "model.patch_size")
        stride = model_section.stride
        stride = to_pair(stride, "model.stride") if stride and kernel == base else None
        return {"input_tdim": frames, "patch_size": kernel, "stride": stride}

    def phase_points(self, model_section, phase, compression: Compression, frames: int) -> list[OperatingPoint]:
        return [OperatingPoint(frames, self._phase_pair(model_section, phase, s, compression), phase.patch.resize)
                for s in (phase.patch.sizes or [None])]

    def eval_points(self, model_section, phase, compression: Compression, frames: int, mel_bins: int, sizes: list,
                    resize: str) -> dict[str, OperatingPoint]:
        out = {}
        for s in sizes:
            pf, pt = self._phase_pair(model_section, phase, s, compression)
            if pf <= mel_bins and pt <= frames:
                out[str(s if s is not None else "stored")] = OperatingPoint(frames, (pf, pt), resize, size=s)
        return out

    def init_hints(self, transfer: str) -> dict:
        return {"kernel_resize": transfer}

    def row_fields(self, point: OperatingPoint) -> dict:
        return {"size": point.size, "patch": list(point.patch)}

    def row_point(self, row: dict, profile: dict) -> OperatingPoint:
        return OperatingPoint(profile["input"]["frames"], tuple(row["patch"]), profile["resize"], size=row.get("size"))

    def row_label(self, row: dict) -> str:
        return f"{row['patch'][0]}x{row['patch'][1]}"

    def count_fields(self, point: OperatingPoint) -> dict:
        return {"patch_size": list(point.patch)}

    def profile_fields(self, config, resize, axes) -> dict:
        return {"resize": resize or "pi", "axes": axes or "both", "stored_patch": list(config.patch_size)}

    def tag(self, profile: dict) -> str:
        return f"{profile['resize']}-{profile['axes']}"

    def describe(self, profile: dict) -> str:
        return f"resize {profile['resize'].upper()}, axes {profile['axes']}"

    def csv_header(self) -> list[str]:
        return ["size", "patch_freq", "patch_time"]

    def csv_cells(self, row: dict) -> list:
        return [row["size"], *row["patch"]]

    def markdown_header(self) -> tuple[str, str]:
        return "patch", "---"

    def markdown_cells(self, row: dict) -> str:
        return self.row_label(row)


class LengthPoints(PointKind):
    """Points of a family whose tokens follow the input length (HTS-AT, CNN14): a point of
    ``L`` frames is a trained window of ``T`` frames average-pooled by ``T / L``."""

    name = "input_length"
    column = "frames"
    key_name = "frames"
    row_required = ("frames", "compression")
    noun = "input length"
    stored_reason = "stored input length"
    axis_label = "input frames (each clip average-pooled to them)"

    def stored(self, config) -> OperatingPoint:
        return OperatingPoint(config.input_tdim)

    def given(self, config, *, arch: str, patch_size=None, resize=None, pos_grid: str = "leading",
              frames: int | None = None) -> OperatingPoint:
        given = _named({"patch_size (--patch-size)": patch_size, "resize (--resize)": resize,
                        "pos_grid (--pos-grid)": None if pos_grid == "leading" else pos_grid})
        if given:
            raise ValueError(f"{' and '.join(given)}: a {arch} model takes no patch size or positional grid (its "
                             "family's calls have none: the patches are fixed by the weights and the tokens follow "
                             "the input length); leave it out, or budget with --max-gflops/--max-ms over input "
                             "lengths")
        return OperatingPoint(frames or config.input_tdim)

    def _refuse_patches(self, arch: str, **given) -> None:
        named = _named(given)
        if named:
            raise ValueError(f"{', '.join(named)}: a {arch} model takes no patch size; its profile is over "
                             "input lengths (input_lengths, --input-lengths)")

    def grid(self, config, frames: int, *, arch: str, patch_sizes=None, resize=None, axes=None,
             input_lengths=None) -> tuple[list[OperatingPoint], list]:
        self._refuse_patches(arch, **{"patch_sizes (--patch-sizes)": patch_sizes, "resize (--resize)": resize,
                                      "axes (--axes)": axes})
        lengths = [frames] if input_lengths is None else list(input_lengths)
        if not lengths:
            raise ValueError("input_lengths is empty")
        for n in lengths:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"input length {n!r} must be a positive number of frames")
            if n > frames or frames % n:
                divisors = [frames // c for c in range(1, min(frames, 16) + 1) if frames % c == 0]
                raise ValueError(f"input length {n}: a profile feeds the {frames}-frame clips average-pooled by a "
                                 f"whole factor, so a length must divide {frames} (e.g. "
                                 f"{', '.join(map(str, divisors[:6]))})")
        return [OperatingPoint(n, pool=frames // n) for n in sorted(set(lengths), reverse=True)], []

    def count_grid(self, config, frames: int, *, arch: str, patch_sizes=None, resize=None,
                   input_lengths=None) -> list[OperatingPoint]:
        if patch_sizes is not None or resize is not None:
            raise ValueError(f"--patch-sizes and --resize: a {arch} model takes no patch size; give --input-lengths")
        top = config.input_tdim
        lengths = input_lengths or sorted({max(1, top // 4), max(1, top // 2), top})
        return [OperatingPoint(n) for n in lengths]

    def token_columns(self, model, layer: int) -> tuple[int, int]:
        width = model.token_frames(layer)  # the time columns of the layer's grid, side by side
        return width, width

    def phase_geometry(self, model_section, compression: Compression, frames: int) -> dict:
        return {"input_tdim": frames}  # the input length is the whole geometry

    def phase_points(self, model_section, phase, compression: Compression, frames: int) -> list[OperatingPoint]:
        return [OperatingPoint(frames)]

    def eval_points(self, model_section, phase, compression: Compression, frames: int, mel_bins: int, sizes: list,
                    resize: str) -> dict[str, OperatingPoint]:
        return {"stored": OperatingPoint(frames)}

    def check_recipe(self, *, arch: str, compression: Compression, key: str, eval_sizes=None, select=None) -> None:
        why = f"a {arch} model's calls take no patch size"
        if compression.method == "patch":
            raise ValueError(f"{key}.compression: patch:C widens a patch kernel and {why}; compress with fshift:C, "
                             "avgpool:C or maxpool:C")
        if eval_sizes is not None:
            raise ValueError(f"train.eval_patch_sizes: {why}; a {arch} model validates at its input length")
        if select is not None and select != "mean":
            raise ValueError(f"train.select: {select!r} names a patch size and {why}; use 'mean'")

    def row_fields(self, point: OperatingPoint) -> dict:
        return {"frames": point.frames, "compression": str(point.compression), "factor": point.pool}

    def row_point(self, row: dict, profile: dict) -> OperatingPoint:
        frames = profile["input"]["frames"]
        factor = frames // row["frames"]
        if factor * row["frames"] != frames:
            raise ValueError(f"the profiled input length {row['frames']} does not divide the model's {frames} frames; "
                             "evaluate this model again")
        return OperatingPoint(row["frames"], pool=factor)

    def row_label(self, row: dict) -> str:
        return str(row["frames"])

    def row_text(self, row: dict) -> str:
        return f"{row['frames']} frames ({row['compression']})"

    def count_fields(self, point: OperatingPoint) -> dict:
        return {"frames": point.frames}

    def profile_fields(self, config, resize, axes) -> dict:
        return {"resize": None, "axes": None, "stored_patch": None,
                "feed": "each clip average-pooled over time to the row's length"}

    def tag(self, profile: dict) -> str:
        return "lengths"

    def describe(self, profile: dict) -> str:
        return (f"over input lengths: each {profile['input']['frames']}-frame clip average-pooled over time to the "
                "row's length")

    def csv_header(self) -> list[str]:
        return ["input_frames", "compression"]

    def csv_cells(self, row: dict) -> list:
        return [row["frames"], row["compression"]]

    def markdown_header(self) -> tuple[str, str]:
        return "input frames | pooling", "---:|---"

    def markdown_cells(self, row: dict) -> str:
        return f"{row['frames']} | {row['compression']}"


#: Every kind by its profile ``row_kind``.
POINT_KINDS: dict[str, type[PointKind]] = {PatchPoints.name: PatchPoints, LengthPoints.name: LengthPoints}


def point_kind(profile: dict) -> PointKind:
    """The kind whose rows ``profile`` holds (profiles written before kinds had names: patch sizes)."""
    name = profile.get("row_kind", PatchPoints.name)
    if name not in POINT_KINDS:
        raise ValueError(f"profile rows of kind {name!r}: flexiast reads {', '.join(POINT_KINDS)}")
    return POINT_KINDS[name]()
