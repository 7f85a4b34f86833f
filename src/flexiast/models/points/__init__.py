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
no code outside ``models/`` asks which family it holds. A new kind is a new :class:`PointKind`
in a module of this package, named in :data:`POINT_KINDS`.

Clips of their own lengths (ElasticAST, Feng et al., Interspeech 2024, arXiv 2407.08691) are
not a kind but a way any point of a family that packs runs: ``OperatingPoint.packed``, whose
clips keep their lengths between the bounds of :func:`flexiast.models.spans.clip_span`.
ElasticAST's evaluation across lengths is :class:`LengthPoints` with ``feed="cut"``: each
clip cut to a length, at every point of the family's grid.
"""

from __future__ import annotations

from .kind import PointKind
from .length import LENGTH_FEEDS, LengthPoints
from .patch import PatchPoints
from .point import OperatingPoint, axis_patch, pooled_compression

__all__ = ["OperatingPoint", "PointKind", "PatchPoints", "LengthPoints", "point_kind", "POINT_KINDS",
           "axis_patch", "pooled_compression", "LENGTH_FEEDS"]


#: Every kind by its profile ``row_kind``.
POINT_KINDS: dict[str, type[PointKind]] = {PatchPoints.name: PatchPoints, LengthPoints.name: LengthPoints}


def point_kind(profile: dict) -> PointKind:
    """The kind whose rows ``profile`` holds (profiles written before kinds had names: patch sizes)."""
    name = profile.get("row_kind", PatchPoints.name)
    if name not in POINT_KINDS:
        raise ValueError(f"profile rows of kind {name!r}: flexiast reads {', '.join(POINT_KINDS)}")
    return POINT_KINDS[name].for_profile(profile)
