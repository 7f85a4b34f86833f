"""Points of a family whose calls take a patch size (AST, SSAST): FlexiAST (Feng et al.,
Interspeech 2023, Sec. 2) runs one model at any ``(freq, time)`` patch, the kernel PI-resized
(eq. 3) or bilinearly resized and the positional grid resized bilinearly, on the trained
input length; a coarse-to-fine ``patch:C`` phase widens the stored kernel to ``p x Cp``
(ICASSP 2024, Sec. 2.1)."""

from __future__ import annotations

from ...constants import PATCH_SIZES, POS_GRID_POLICIES, RESIZE_METHODS
from ...features import Compression
from ...resize import grid_shape, to_pair
from .kind import PointKind
from .point import OperatingPoint, axis_patch

__all__ = ["PatchPoints"]


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

    def eval_point(self, model_section, phase, compression: Compression, frames: int, size,
                   resize: str) -> OperatingPoint:
        return OperatingPoint(frames, self._phase_pair(model_section, phase, size, compression), resize, size=size)

    def misfit(self, point: OperatingPoint, mel_bins: int) -> str | None:
        pf, pt = point.patch
        if pf > mel_bins or pt > point.frames:
            return f"patch {pf}x{pt} is larger than the input ({mel_bins} x {point.frames})"
        return None

    def init_hints(self, transfer: str) -> dict:
        return {"kernel_resize": transfer}

    def row_fields(self, point: OperatingPoint) -> dict:
        return {"size": point.size, "patch": list(point.patch)}

    def row_point(self, row: dict, profile: dict) -> OperatingPoint:
        return OperatingPoint(profile["input"]["frames"], tuple(row["patch"]), profile["resize"], size=row.get("size"),
                              packed=bool(profile.get("packed")))

    def row_label(self, row: dict) -> str:
        return f"{row['patch'][0]}x{row['patch'][1]}"

    def count_fields(self, point: OperatingPoint) -> dict:
        return {"patch_size": list(point.patch)}

    def profile_fields(self, config, resize, axes) -> dict:
        return {"resize": resize or "pi", "axes": axes or "both", "stored_patch": list(config.patch_size)}

    def tag(self, profile: dict) -> str:
        return f"{profile['resize']}-{profile['axes']}" + ("-packed" if profile.get("packed") else "")

    def describe(self, profile: dict) -> str:
        packed = (f", each clip at its own length (at most {profile['input']['frames']} frames), packed (ElasticAST)"
                  if profile.get("packed") else "")
        return f"resize {profile['resize'].upper()}, axes {profile['axes']}{packed}"

    def csv_header(self) -> list[str]:
        return ["size", "patch_freq", "patch_time"]

    def csv_cells(self, row: dict) -> list:
        return [row["size"], *row["patch"]]

    def markdown_header(self) -> tuple[str, str]:
        return "patch", "---"

    def markdown_cells(self, row: dict) -> str:
        return self.row_label(row)
