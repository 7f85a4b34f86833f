"""Sound event detection from framewise scores: windows stitched so each frame of the audio
is scored once, and the runs of frames above a threshold as events.

A model with framewise output (``model.sed``: HTS-AT, Chen et al., ICASSP 2022, Sec. 2.3)
scores every frame of a window. Long audio is cut into windows that start on the frame
grid; :func:`stitch_framewise` picks, for each frame of the audio, the window in which it
lies most centrally, and :func:`detect_events` turns the stitched scores into events.
"""

from __future__ import annotations

import torch

__all__ = ["SED_THRESHOLD", "stitch_framewise", "detect_events"]

#: The default score above which a frame counts as an event (:func:`detect_events`).
SED_THRESHOLD = 0.5


def stitch_framewise(starts: list[int], frames_per_window: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which window scores each of the audio's ``total`` frames, and at which of its frames.

    Window ``w`` begins at the audio's frame ``starts[w]`` (a whole number of frames) and
    holds ``frames_per_window`` frames. Each audio frame ``g`` is scored once, by the window
    in which it lies most centrally: among the windows holding it (``0 <= g - starts[w] <
    frames_per_window``), the one whose frame ``g - starts[w]`` is nearest the window's
    middle frame ``(frames_per_window - 1) / 2``; on a tie, the earlier window. Returns
    ``(window [total], frame in that window [total])``. Raises where a frame lies in no window.
    """
    n = frames_per_window
    start = torch.tensor(starts, dtype=torch.long)
    if len(starts) > 1 and not bool((start[1:] > start[:-1]).all()):
        raise ValueError(f"window starts {starts} must increase")
    g = torch.arange(total, dtype=torch.long)
    # Windows of one length: the one whose middle is nearest holds g whenever any window does,
    # so each frame needs only the two windows whose (doubled) middles bracket 2g: O(frames).
    middle = 2 * start + (n - 1)  # twice each window's middle frame, increasing
    after = torch.searchsorted(middle, 2 * g).clamp(max=len(starts) - 1)  # first middle >= 2g
    before = (after - 1).clamp(min=0)
    earlier = (2 * g - middle[before]).abs() <= (middle[after] - 2 * g).abs()  # a tie: the earlier window
    window = torch.where(earlier, before, after)
    local = g - start[window]
    if not bool(((local >= 0) & (local < n)).all()):
        raise ValueError("some frames lie in no window")
    return window, local


def detect_events(scores: torch.Tensor, labels: list[str], *, hop_s: float, first_s: float = 0.0,
                  duration_s: float | None = None, threshold: float = SED_THRESHOLD, min_duration_s: float = 0.0,
                  merge_gap_s: float = 0.0) -> list[dict]:
    """Events from framewise scores ``[frames, classes]``: per class, each run of consecutive
    frames whose score is above ``threshold`` (strictly) is one event.

    Frame ``g`` is centred at ``first_s + g * hop_s`` seconds and stands for the ``hop_s``
    around its centre, so an event of frames ``a .. b`` runs from ``first_s + (a - 1/2)
    hop_s`` to ``first_s + (b + 1/2) hop_s``, clipped to ``[0, duration_s]``. Events of one
    class that are ``merge_gap_s`` or less apart are merged first; events shorter than
    ``min_duration_s`` are then dropped. An event's ``score`` is the largest frame score in
    it. Returns ``{"onset_s", "offset_s", "label", "index", "score"}`` (times rounded to the
    microsecond) sorted by onset (then class index).
    """
    if scores.dim() != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores of shape {tuple(scores.shape)}: expected [frames, {len(labels)} classes]")
    if min_duration_s < 0 or merge_gap_s < 0:
        raise ValueError(f"min_duration_s={min_duration_s} and merge_gap_s={merge_gap_s} must not be negative")
    above = (scores > threshold).cpu()
    edges = torch.diff(torch.nn.functional.pad(above.to(torch.int8).T, (1, 1)), dim=1)  # [classes, frames + 1]
    events = []
    for c in torch.nonzero(above.any(dim=0)).flatten().tolist():
        firsts = torch.nonzero(edges[c] == 1).flatten().tolist()  # a run's first frame
        lasts = (torch.nonzero(edges[c] == -1).flatten() - 1).tolist()  # its last
        runs = []  # [first frame, last frame], runs merged across gaps of merge_gap_s or less
        for a, b in zip(firsts, lasts):
            if runs and (a - runs[-1][1] - 1) * hop_s <= merge_gap_s + 1e-9:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        for a, b in runs:
            onset = max(0.0, first_s + (a - 0.5) * hop_s)
            offset = first_s + (b + 0.5) * hop_s
            if duration_s is not None:
                offset = min(offset, duration_s)
            if offset - onset + 1e-9 < min_duration_s:
                continue
            events.append({"onset_s": round(onset, 6), "offset_s": round(offset, 6), "label": labels[c], "index": c,
                           "score": float(scores[a:b + 1, c].max())})
    return sorted(events, key=lambda e: (e["onset_s"], e["index"]))
