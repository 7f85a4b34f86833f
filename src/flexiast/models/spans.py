"""How many frames of a clip an operating point keeps, and its tokens: clips of their own lengths.

ElasticAST (Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv 2407.08691) runs clips at their
native lengths, packed into rows of at most ``L'`` tokens; a clip never shares tokens with
another, so a row must hold a whole clip. At an :class:`~flexiast.models.points.OperatingPoint`:

* a clip padded to one length keeps its leading ``frames * pool`` frames (then ``point.feed``
  pools it), padded to them;
* a ``packed`` clip keeps its own length, padded only to the **fewest** frames the model takes at
  the point (one patch column for an AST: :func:`fewest_frames`) and cut to at most ``frames``,
  and to the frames of the most tokens that fit one row of ``row_tokens`` (:func:`clip_span`).
  Longer audio is cut there in evaluation and windowed there in deployment, never dropped.

Tokens are the family's FLOP counter's (:func:`flexiast.models.flops`), so this serves every family.
"""

from __future__ import annotations

from .points import OperatingPoint
from .registry import flops

__all__ = ["point_tokens", "fewest_frames", "clip_span"]


def point_tokens(config, frames: int, point: OperatingPoint) -> int | None:
    """Tokens of a clip of ``frames`` frames at ``point`` for a model of ``config``, or None where
    the model does not take so short a clip."""
    try:
        return flops(config, (int(frames), config.input_fdim), **point.call()).tokens
    except ValueError:
        return None


def fewest_frames(config, point: OperatingPoint) -> int:
    """The fewest frames the model takes at ``point`` (a shorter clip is padded to them): one patch
    column for an AST, 32 frames for CNN14. A ``ValueError`` where not even ``point.frames`` are taken."""
    if point_tokens(config, point.frames, point) is None:
        raise ValueError(f"{point.frames} frames are fewer than the model takes at {point.label}")
    lo, hi = 1, point.frames
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if point_tokens(config, mid, point) is not None else (mid + 1, hi)
    return lo


def clip_span(config, point: OperatingPoint, row_tokens: int | None = None) -> tuple[int, int]:
    """``(shortest, longest)`` model frames a clip keeps at ``point`` before ``point.feed``: both
    ``frames * pool`` where clips are padded to one length; packed, the fewest the point takes and
    ``frames``; where a clip of ``frames`` frames has more tokens than a row of ``row_tokens``
    holds, the longest is lowered to the fewest frames that give the most tokens a row holds (whole
    patch columns, so no frame of a window goes unread). A row that cannot hold the shortest clip
    is refused, naming ``row_tokens``."""
    if not point.packed:
        return point.frames * point.pool, point.frames * point.pool
    shortest = fewest_frames(config, point)
    if row_tokens is None:
        return shortest, point.frames
    least = point_tokens(config, shortest, point)
    if least > row_tokens:
        raise ValueError(f"row_tokens={row_tokens} (--row-tokens) cannot hold the shortest clip at {point.label} "
                         f"({shortest} frames: {least} tokens with the prefix); raise it")
    if point_tokens(config, point.frames, point) <= row_tokens:
        return shortest, point.frames
    lo, hi = shortest, point.frames
    while lo < hi:  # the most tokens that fit a row ...
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if point_tokens(config, mid, point) <= row_tokens else (lo, mid - 1)
    most, hi = point_tokens(config, lo, point), lo
    lo = shortest
    while lo < hi:  # ... and the fewest frames that give them: no frame a patch column leaves unread
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if point_tokens(config, mid, point) >= most else (mid + 1, hi)
    return shortest, lo
