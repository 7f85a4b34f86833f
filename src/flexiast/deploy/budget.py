"""Choosing the operating point to deploy: the one given, the stored one, or the most accurate
profiled row within a budget.

A caller asks for a point with a :class:`PointRequest`: a patch size (and resize method and
positional-grid policy) for a patch family, nothing for one whose tokens follow the input, or a
budget (``max_gflops``, ``max_ms`` per clip of the trained length). A budget reads the
checkpoint's stored profile (:mod:`flexiast.evaluate`) and picks the most accurate row whose
cost fits (:func:`choose_row`); the row's point is the kind's
(:meth:`flexiast.models.points.PointKind.row_point`), so one path serves every family.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..models.points import OperatingPoint, PointKind, point_kind

__all__ = ["PointRequest", "Choice", "choose_row", "choose_point"]


@dataclass(frozen=True)
class PointRequest:
    """How a caller picks the operating point: ``patch_size`` (int or ``(freq, time)``) with
    ``resize`` and ``pos_grid`` for a patch family, or a budget, ``max_gflops`` / ``max_ms``
    per clip of the trained length; nothing: the stored point. ``packed``: whether clips run
    at their own lengths, packed into rows of ``row_tokens`` tokens (None: as the weights were
    trained; :meth:`flexiast.deploy.model.InferenceModel.packing`)."""

    patch_size: object = None
    max_gflops: float | None = None
    max_ms: float | None = None
    resize: str | None = None
    pos_grid: str = "leading"
    packed: bool | None = None
    row_tokens: int | None = None

    @property
    def budget(self) -> bool:
        return self.max_gflops is not None or self.max_ms is not None

    def budget_text(self) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in (("max GFLOPs", self.max_gflops), ("max ms", self.max_ms))
                         if v is not None)

    def request(self) -> "PointRequest":
        """The request alone (a subclass's options stripped)."""
        return PointRequest(self.patch_size, self.max_gflops, self.max_ms, self.resize, self.pos_grid, self.packed,
                            self.row_tokens)


@dataclass(frozen=True)
class Choice:
    """The point chosen, why (``reason``: given, stored, or the budget's row and its numbers)
    and the profile row it came from (None unless a budget chose)."""

    point: OperatingPoint
    reason: str
    row: dict | None = None


def choose_row(profile: dict, *, max_gflops: float | None = None, max_ms: float | None = None) -> dict:
    """The most accurate profiled row whose GFLOPs and latency fit the budgets.

    Ties in the metric go to the cheaper row. Raises, naming the cheapest row, when none fits.
    """
    if max_gflops is None and max_ms is None:
        raise ValueError("give a budget: max_gflops or max_ms")
    metric = profile["metric"]
    fits = [r for r in profile["rows"]
            if (max_gflops is None or r["gflops"] <= max_gflops) and (max_ms is None or r["latency_ms"] <= max_ms)]
    if not fits:
        kind = point_kind(profile)
        cheapest = min(profile["rows"], key=lambda r: (r["gflops"], r["latency_ms"]))
        budget = " and ".join(f"{name} {v:g}" for name, v in (("--max-gflops", max_gflops), ("--max-ms", max_ms))
                              if v is not None)
        raise ValueError(f"no profiled {kind.noun} fits {budget}: the cheapest, {kind.row_text(cheapest)}, costs "
                         f"{cheapest['gflops']:.3g} GFLOPs and {cheapest['latency_ms']:.3g} ms per clip")
    return max(fits, key=lambda r: (r[metric], -r["gflops"]))


def choose_point(kind: PointKind, config, request: PointRequest, *, arch: str, profile: dict | None = None) -> Choice:
    """The :class:`Choice` of ``request`` for a model of ``config``: its budget's row of
    ``profile`` (which the caller has checked belongs to these weights), the point it names, or
    the stored one. A profile of another kind of rows, or one measured with another resize
    method than the one asked for, is refused."""
    if not request.budget:
        point = kind.given(config, arch=arch, patch_size=request.patch_size, resize=request.resize,
                           pos_grid=request.pos_grid)
        return Choice(point, "given" if request.patch_size is not None else kind.stored_reason)
    if request.patch_size is not None:
        raise ValueError("give a patch size or a budget, not both")
    kind.given(config, arch=arch, resize=request.resize, pos_grid=request.pos_grid)  # refuses what it lacks
    if not point_kind(profile).chooses:
        raise ValueError("the profile is over clip lengths (evaluate --lengths): it measures each length and "
                         "chooses no operating point; budget with a profile of operating points (evaluate without "
                         "--lengths)")
    if point_kind(profile).name != kind.name:
        raise ValueError(f"the stored profile's rows are {point_kind(profile).name}s, not {kind.name}s; evaluate "
                         "this model again")
    if request.resize is not None and request.resize != profile["resize"]:
        raise ValueError(f"the stored profile was measured with resize={profile['resize']}, "
                         f"not {request.resize}; evaluate with --resize {request.resize} to budget it")
    row = choose_row(profile, max_gflops=request.max_gflops, max_ms=request.max_ms)
    point = kind.row_point(row, profile)
    if request.pos_grid != "leading":
        point = dataclasses.replace(point, pos_grid=request.pos_grid)
    m = profile["metric"]
    reason = (f"most accurate profiled {kind.noun} within {request.budget_text()}: {kind.row_text(row)}, "
              f"{m} {row[m]:.4f} on {profile.get('data')}, {row['gflops']:.3g} GFLOPs, {row['latency_ms']:.3g} ms "
              f"on {profile['machine']['name']}")
    return Choice(point, reason, row)
