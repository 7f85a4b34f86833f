"""Audio of any length as model inputs: windows of the trained length, and batches of
windows taken across clips.

Audio longer than a trained clip is cut into windows of the trained length ``hop`` samples
apart, the last one ending at the end of the audio (:func:`window_starts`), or on the frame
grid where framewise scores must line up (:func:`grid_window_starts`). A :class:`WindowTask`
says what runs on the windows and how a clip's result is made from its windows';
:func:`batched_windows` runs it on batches taken across clips, in order. A packed task
(ElasticAST, Feng et al., Interspeech 2024, arXiv 2407.08691) takes windows of different
lengths in one batch, which its model packs into rows of tokens.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

__all__ = ["window_starts", "grid_window_starts", "WindowTask", "batched_windows", "WithCompression"]


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Sample offsets of windows ``window`` long every ``hop``, the last one ending at the end."""
    if hop < 1:
        raise ValueError(f"hop of {hop} samples must be positive")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def grid_window_starts(num_samples: int, window: int, hop: int, grid: int) -> list[int]:
    """:func:`window_starts` with every start on a multiple of ``grid`` samples (``hop`` must be
    one): the last window starts at the first multiple at or after ``num_samples - window``,
    so it may run up to ``grid - 1`` samples past the end (padded as a short clip is). With
    ``grid`` one model frame, every window's frames lie on one grid of the audio's frames."""
    if hop % grid:
        raise ValueError(f"hop of {hop} samples is not a whole number of {grid}-sample frames")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(-(-(num_samples - window) // grid) * grid)
    return starts


@dataclass(frozen=True)
class WindowTask:
    """What runs on a clip's windows and how they make the clip's result.

    ``cut(inference_model, waveform) -> (specs, spans)`` cuts a waveform into the model's
    inputs and their spans in samples (:meth:`InferenceModel.spectrograms`; it runs in data
    loader workers, which get the features but not the network);
    ``compute(specs[B, frames, bins]) -> {name: tensor [B, ...]}`` runs the model on a batch
    of windows (from one clip or many); ``finish(source, samples, spans, input_shape,
    outputs)`` turns one clip's rows of those outputs, in window order, into its result;
    ``setting`` is what every result shares (the patch size chosen, ...). With ``packed``,
    ``compute`` takes a list of windows ``[frames_i, bins]`` of any lengths (a clip's own
    length, others' windows), and may give a list of per-window tensors for an output whose
    shape follows the window (its frame embeddings).
    """

    cut: Callable[..., tuple[torch.Tensor, list[tuple[int, int]]]]
    compute: Callable[[torch.Tensor], dict]
    finish: Callable[..., dict]
    setting: dict = field(default_factory=dict)
    packed: bool = False


def _joined(pieces: list):
    """One clip's rows of an output from its pieces: tensors concatenated, per-window lists stacked."""
    if isinstance(pieces[0], torch.Tensor):
        return torch.cat(pieces)
    return torch.stack([w for piece in pieces for w in piece])


def batched_windows(items: Iterable, compute: Callable[[torch.Tensor], dict],
                    batch_size: int, packed: bool = False) -> Iterator[tuple[object, dict | None]]:
    """Run ``compute`` on batches of ``batch_size`` windows taken across clips, in order.

    ``items`` yields ``(key, specs[windows, frames, bins])`` (``specs`` None for a clip
    that could not be read); yields ``(key, {name: rows of that clip})`` (or ``(key, None)``)
    in the order of ``items``, each as soon as all its windows have run. Windows of
    another shape than those waiting (whole clips of other lengths) start a new batch, unless
    ``packed``: then windows of every length share batches and ``compute`` gets them as a list.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    waiting: list[list] = []  # [open clip, specs not yet computed]
    opened: deque = deque()  # [key, windows left, output pieces], in the order of items
    count = 0

    def run(n: int) -> None:
        nonlocal count
        taken = []
        while n:
            clip, specs = waiting[0]
            part = specs[:n]
            taken.append((clip, part))
            if len(part) == len(specs):
                waiting.pop(0)
            else:
                waiting[0][1] = specs[len(part):]
            n -= len(part)
        out = compute([w for _, part in taken for w in part] if packed else torch.cat([part for _, part in taken]))
        start = 0
        for clip, part in taken:
            clip[2].append({k: v[start:start + len(part)] for k, v in out.items()})
            clip[1] -= len(part)
            start += len(part)
        count -= start

    def finished() -> Iterator[tuple[object, dict | None]]:
        while opened and opened[0][1] == 0:
            key, _, pieces = opened.popleft()
            yield key, None if pieces is None else {k: _joined([p[k] for p in pieces]) for k in pieces[0]}

    for key, specs in items:
        if specs is None:
            opened.append([key, 0, None])
        else:
            if not packed and waiting and waiting[-1][1].shape[1:] != specs.shape[1:]:
                run(count)
            clip = [key, len(specs), []]
            opened.append(clip)
            waiting.append([clip, specs])
            count += len(specs)
            while count >= batch_size:
                run(batch_size)
        yield from finished()
    if count:
        run(count)
    yield from finished()


@dataclass(frozen=True)
class WithCompression:
    """A window cutter run with another compression than the model's own: the pooling that
    feeds a shorter operating point (:meth:`flexiast.models.points.OperatingPoint.feed`); and
    with other ``features`` where given: a packed point's shorter windows, whose tokens fit a row
    (:meth:`flexiast.deploy.model.InferenceModel.deployed`). Tasks are run with the stored model
    (in loader workers too), so the cutter carries what differs."""

    cut: Callable
    compression: object
    features: object = None

    def __call__(self, im, wave: torch.Tensor):
        changes = {"compression": self.compression}
        if self.features is not None:
            changes["features"] = self.features
        return self.cut(dataclasses.replace(im, **changes), wave)
