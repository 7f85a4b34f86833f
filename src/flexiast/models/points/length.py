"""Points over input lengths, fed one of two ways (``feed``):

* ``pool``: the operating points of a family whose tokens follow the input length (HTS-AT,
  CNN14). A point of ``L`` frames feeds a window of the trained ``T`` frames average-pooled
  over time by ``T / L`` (coarse-to-fine's pooled compression, ICASSP 2024, Sec. 2.1), so it
  still covers all the audio a trained window covers and its cost is the cost of that audio.
* ``cut``: ElasticAST's evaluation across lengths (Feng, Erol, Chung, Senocak; Interspeech
  2024, arXiv 2407.08691: accuracy against the most frames a clip keeps, VoxCeleb from 256 to
  3,072 frames), for every family: a row of ``s`` seconds feeds each clip its
  leading ``L`` frames (the frames ``s`` seconds of audio give); a shorter clip is padded to
  ``L`` (a model trained on fixed-length clips, as it was trained) or, packed, keeps its own
  length (a family that packs). A patch family's rows are at ``(patch, length)``: every
  operating point of its own grid at every length. Such a profile measures the lengths; it
  chooses no point to deploy (``chooses`` is False).
"""

from __future__ import annotations

import dataclasses

from ...features import Compression
from .kind import PointKind, named
from .point import OperatingPoint

__all__ = ["LengthPoints", "LENGTH_FEEDS"]

#: How a row's input length is made from a clip: pooled from a trained window, or cut from the clip.
LENGTH_FEEDS = ("pool", "cut")


class LengthPoints(PointKind):
    """Points over input lengths: with ``feed="pool"`` (a family's own kind, HTS-AT and CNN14) a
    point of ``L`` frames is a trained window of ``T`` frames average-pooled by ``T / L``; with
    ``feed="cut"`` (a profile over clip lengths, any family) it is each clip's leading ``L``
    frames, padded to ``L`` or, packed, at its own length."""

    name = "input_length"
    column = "frames"
    noun = "input length"
    stored_reason = "stored input length"

    def __init__(self, feed: str = "pool"):
        if feed not in LENGTH_FEEDS:
            raise ValueError(f"feed={feed!r} is not one of {', '.join(LENGTH_FEEDS)}")
        self.feed = feed
        cut = feed == "cut"
        self.key_name = "seconds" if cut else "frames"
        self.row_required = ("seconds", "frames") if cut else ("frames", "compression")
        self.axis_label = "clip length (s; each clip cut to it)" if cut else \
            "input frames (each clip average-pooled to them)"
        self.chooses = not cut

    @classmethod
    def for_profile(cls, profile: dict) -> "LengthPoints":
        return cls(profile.get("length_feed", "pool"))

    def clip_points(self, base: list[OperatingPoint], lengths, *, packed: bool) -> list[OperatingPoint]:
        """Every point of ``base`` (a patch family's grid at the trained length, or the stored
        point) at every ``(seconds, frames)`` of ``lengths``, fed cut (``packed``: shorter clips at
        their own length)."""
        if self.feed != "cut":
            raise ValueError("clip lengths are a profile of the cut feed (LengthPoints('cut'))")
        if not lengths:
            raise ValueError("lengths (--lengths) is empty")
        return [dataclasses.replace(b, frames=int(frames), pool=1, packed=packed, seconds=float(seconds))
                for b in base for seconds, frames in lengths]

    def stored(self, config) -> OperatingPoint:
        return OperatingPoint(config.input_tdim)

    def given(self, config, *, arch: str, patch_size=None, resize=None, pos_grid: str = "leading",
              frames: int | None = None) -> OperatingPoint:
        given = named({"patch_size (--patch-size)": patch_size, "resize (--resize)": resize,
                        "pos_grid (--pos-grid)": None if pos_grid == "leading" else pos_grid})
        if given:
            raise ValueError(f"{' and '.join(given)}: a {arch} model takes no patch size or positional grid (its "
                             "family's calls have none: the patches are fixed by the weights and the tokens follow "
                             "the input length); leave it out, or budget with --max-gflops/--max-ms over input "
                             "lengths")
        return OperatingPoint(frames or config.input_tdim)

    def _refuse_patches(self, arch: str, **given) -> None:
        given = named(given)
        if given:
            raise ValueError(f"{', '.join(given)}: a {arch} model takes no patch size; its profile is over "
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

    def eval_point(self, model_section, phase, compression: Compression, frames: int, size,
                   resize: str) -> OperatingPoint:
        return OperatingPoint(frames)  # validation sizes are refused by check_recipe

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
        if self.feed == "cut":
            return {"size": point.size, "patch": None if point.patch is None else list(point.patch),
                    "seconds": point.seconds, "frames": point.frames}
        return {"frames": point.frames, "compression": str(point.compression), "factor": point.pool}

    def row_point(self, row: dict, profile: dict) -> OperatingPoint:
        if self.feed == "cut":
            patch = None if row.get("patch") is None else tuple(row["patch"])
            return OperatingPoint(row["frames"], patch, profile.get("resize") if patch else None, size=row.get("size"),
                                  packed=bool(profile.get("packed")), seconds=row["seconds"])
        frames = profile["input"]["frames"]
        factor = frames // row["frames"]
        if factor * row["frames"] != frames:
            raise ValueError(f"the profiled input length {row['frames']} does not divide the model's {frames} frames; "
                             "evaluate this model again")
        return OperatingPoint(row["frames"], pool=factor)

    def _patch(self, row: dict) -> str:
        return "-" if row.get("patch") is None else f"{row['patch'][0]}x{row['patch'][1]}"

    def row_label(self, row: dict) -> str:
        if self.feed == "cut":
            return f"{row['seconds']:g} s" if row.get("patch") is None else f"{self._patch(row)}, {row['seconds']:g} s"
        return str(row["frames"])

    def row_text(self, row: dict) -> str:
        if self.feed == "cut":
            return f"{self.row_label(row)} ({row['frames']} frames)"
        return f"{row['frames']} frames ({row['compression']})"

    def count_fields(self, point: OperatingPoint) -> dict:
        return {"frames": point.frames}

    def profile_fields(self, config, resize, axes) -> dict:
        if self.feed == "cut":  # added to the family's own fields (its resize and axes)
            return {"length_feed": "cut", "feed": "each clip cut to its leading frames of the row's length"}
        return {"resize": None, "axes": None, "stored_patch": None,
                "feed": "each clip average-pooled over time to the row's length"}

    def tag(self, profile: dict) -> str:
        if self.feed == "cut":
            resize = f"-{profile['resize']}" if profile.get("resize") else ""
            return "clip-lengths" + ("-packed" if profile.get("packed") else "") + resize
        return "lengths"

    def describe(self, profile: dict) -> str:
        if self.feed == "cut":
            shorter = ("a shorter clip kept at its own length, packed (ElasticAST)" if profile.get("packed")
                       else "a shorter clip padded to it")
            resize = f"; resize {profile['resize'].upper()}, axes {profile['axes']}" if profile.get("resize") else ""
            return f"over clip lengths: each clip cut to its leading frames of the row's length, {shorter}{resize}"
        return (f"over input lengths: each {profile['input']['frames']}-frame clip average-pooled over time to the "
                "row's length")

    def csv_header(self) -> list[str]:
        if self.feed == "cut":
            return ["size", "patch_freq", "patch_time", "seconds", "frames"]
        return ["input_frames", "compression"]

    def csv_cells(self, row: dict) -> list:
        if self.feed == "cut":
            patch = row.get("patch") or [None, None]
            return [row.get("size"), *patch, row["seconds"], row["frames"]]
        return [row["frames"], row["compression"]]

    def markdown_header(self) -> tuple[str, str]:
        if self.feed == "cut":
            return "patch | clip length | frames", "---|---:|---:"
        return "input frames | pooling", "---:|---"

    def markdown_cells(self, row: dict) -> str:
        if self.feed == "cut":
            return f"{self._patch(row)} | {row['seconds']:g} s | {row['frames']}"
        return f"{row['frames']} | {row['compression']}"
