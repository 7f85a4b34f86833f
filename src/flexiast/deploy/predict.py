"""Predicting labels (and sound events) for audio of any length, at any operating point.

A clip is scored as training evaluates one. Longer audio is cut into overlapping windows of
the trained length (hop: half a window unless given), each scored as a training clip, and
the window scores (softmax, or sigmoid for multi-label models) are averaged (or
max-pooled). With ``whole=True`` the clip is scored in one pass instead, the positional
grid following its length. The operating point is the one given, the stored one, or a
budget's (:mod:`flexiast.deploy.budget`); a point of a shorter input length feeds each window
average-pooled to it, as the profile measured it.

Clips of their own lengths (ElasticAST, Feng et al., Interspeech 2024, arXiv 2407.08691): at
a ``packed`` point (``PredictOptions.packed``, by default as the weights were trained) audio no
longer than a window is scored at its own length, not padded, and the windows of many files run
packed together; each result equals the file scored alone at that length
(:meth:`flexiast.deploy.model.InferenceModel.deployed` says how long a window is).

A model with framewise output (``model.sed``: HTS-AT) also gets sound events
(:mod:`flexiast.deploy.events`): windows start on the frame grid, each frame of the audio
is scored by the window in which it lies most centrally, and the runs above a threshold
are events.

All the options of a prediction are one :class:`PredictOptions`, checked before any audio
is read or any model runs; the CLI, :mod:`flexiast.batch` and the Python API pass it whole.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..hardware import resolve_precision
from ..models import family_of, flops
from ..models.packing import Clips
from ..models.spans import point_tokens
from .budget import PointRequest
from .events import SED_THRESHOLD, detect_events, stitch_framewise
from .windows import WindowTask, WithCompression

__all__ = ["PredictOptions", "prediction_task", "format_prediction", "top_labels", "packed_clips"]


@dataclass(frozen=True)
class PredictOptions(PointRequest):
    """How to predict: the operating point (:class:`~flexiast.deploy.budget.PointRequest`:
    ``patch_size``, ``max_gflops``, ``max_ms``, ``resize``, ``pos_grid``, ``packed``,
    ``row_tokens``), ``top_k`` labels,
    the ``hop_seconds`` between windows of long audio, how window scores ``aggregate`` (mean
    or max), ``whole`` (one pass over the whole clip), ``precision``; and for a model with
    framewise output the sound events: ``threshold`` (default 0.5), ``framewise`` (every
    frame's scores in the result), ``min_duration_s`` and ``merge_gap_s``."""

    top_k: int = 5
    hop_seconds: float | None = None
    aggregate: str = "mean"
    whole: bool = False
    precision: str = "auto"
    threshold: float | None = None
    framewise: bool = False
    min_duration_s: float = 0.0
    merge_gap_s: float = 0.0

    def check(self, im) -> None:
        """Refuse what cannot work with ``im``, naming the option, before anything runs."""
        if not family_of(im.model).classifier:
            raise ValueError(f"{im.weights}: a {im.model.arch} pretraining model has no classifier to predict with; "
                             "take its embeddings, or fine-tune it")
        if self.aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate={self.aggregate!r} is not one of mean, max")
        if not im.sed and (self.threshold is not None or self.framewise or self.min_duration_s or self.merge_gap_s):
            raise ValueError(f"threshold (--threshold), framewise (--framewise), min_duration_s and merge_gap_s "
                             f"detect sound events; a {im.model.arch} model has no framewise output (no sed)")
        if self.min_duration_s < 0 or self.merge_gap_s < 0:
            raise ValueError(f"min_duration_s={self.min_duration_s} and merge_gap_s={self.merge_gap_s} must not be "
                             "negative")
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be at least 1")
        if self.whole and self.budget:
            raise ValueError("budgets are profiled per clip of the trained length; with whole=True (--whole) the "
                             "cost grows with the clip: give a patch size instead")


def top_labels(scores: torch.Tensor, labels: list[str], k: int) -> list[dict]:
    """The ``k`` highest scores as ``{"label", "index", "score"}``, highest first."""
    values, idx = scores.topk(min(k, scores.numel()))
    return [{"label": labels[i], "index": int(i), "score": float(v)} for v, i in zip(values.tolist(), idx.tolist())]


def prediction_task(im, options: PredictOptions) -> WindowTask:
    """The :class:`WindowTask` of :meth:`flexiast.inference.InferenceModel.predict`: logits per
    window (and framewise scores for a model with ``sed``), and a file's result from them.

    A result holds ``source``, ``duration_s``, the point (``patch_size`` and ``resize``, None
    for a family without patches; ``input_frames``; ``operating_point``, its label; ``packed``), ``choice``
    (why that point) and ``profile_row``, ``compression``, ``precision``, GFLOPs per window and
    in all, how scores were made (``scores``, ``aggregate``), ``window_s`` and ``hop_s`` (the
    audio a window covers and the hop between windows), the ``top`` labels of the aggregated
    scores and, per window, its span in seconds and its own top labels. A model with ``sed``
    adds ``events`` (``{"onset_s", "offset_s", "label", "index", "score"}``), ``sed`` (the
    frame hop and first frame's centre in seconds, the number of frames, the settings) and,
    with ``framewise``, every frame's scores (``times_s``, ``labels``, ``scores``).
    """
    options.check(im)
    device = next(im.model.parameters()).device
    chosen = resolve_precision(options.precision, device, setting="precision")
    choice = im.choose(options)
    point = choice.point
    dim = im.deployed(choice, options.row_tokens)  # fed as the point needs (pooled, or windows that fit a row)
    model = im.at(point)
    call = point.input_call()
    packed, row = point.packed, options.row_tokens or im.row_tokens
    fewest = im.fewest_frames(point) if packed else None
    sed = im.sed
    threshold = SED_THRESHOLD if options.threshold is None else float(options.threshold)
    sr = dim.features.sample_rate
    frame_hop_s, first_s = dim.frame_timing()
    frame_samples = int(round(frame_hop_s * sr))  # a whole number of front-end shifts
    hop = dim.hop(options.hop_seconds)
    if sed:  # windows on the frame grid, so that their frames line up
        hop = max(frame_samples, hop // frame_samples * frame_samples)
    cut = functools.partial(type(im).spectrograms, hop=hop, whole=options.whole, grid=frame_samples if sed else None,
                            fewest=fewest)
    if dim.compression != im.compression or dim.features != im.features:
        cut = WithCompression(cut, dim.compression, dim.features if dim.features != im.features else None)
    multilabel, labels, k, aggregate = im.multilabel, im.labels, options.top_k, options.aggregate
    patch = list(point.patch) if point.patch is not None else None

    def compute(specs) -> dict:
        if packed:  # windows of any length, packed into rows (a whole clip larger than a row gets its own)
            specs = packed_clips(im, point, specs, row, device)
        else:
            specs = specs.to(device)
        with chosen.autocast():
            if not sed:
                return {"logits": model(specs, **call).float().cpu()}
            out = model.sed(specs)
            return {"logits": out.clip.float().cpu(), "framewise": out.framewise.float().cpu()}

    def score(logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)

    def finish(source: str, samples: int, spans: list, shape: tuple, outputs: dict) -> dict:
        scores = score(outputs["logits"])
        total = scores.mean(0) if aggregate == "mean" else scores.max(0).values
        per_window = flops(model.config, tuple(shape)).forward / 1e9
        result = {
            "source": source, "duration_s": samples / sr, "patch_size": patch, "resize": point.resize,
            "input_frames": int(shape[0]), "operating_point": point.label, "choice": choice.reason,
            "profile_row": choice.row, "compression": str(dim.compression), "precision": chosen.name,
            "gflops_per_window": per_window, "gflops_total": per_window * len(spans),
            "scores": "sigmoid" if multilabel else "softmax", "aggregate": aggregate if len(spans) > 1 else "none",
            "packed": packed,
            "window_s": samples / sr if options.whole or (packed and samples <= dim.window_samples)
            else dim.window_samples / sr,
            "hop_s": hop / sr if len(spans) > 1 else None,
            "top": top_labels(total, labels, k),
            "windows": [{"start_s": a / sr, "end_s": min(b, samples) / sr, "top": top_labels(s, labels, k)}
                        for (a, b), s in zip(spans, scores)],
        }
        if sed:
            result.update(_events(dim, score(outputs["framewise"]), spans, samples, frame_samples, labels, options,
                                  threshold))
        return result

    setting = {"patch_size": patch, "resize": point.resize, "choice": choice.reason, "hop_s": hop / sr,
               "input_frames": point.frames, "compression": str(dim.compression), "packed": packed,
               "window_frames": dim.features.frames(dim.compression)}
    if sed:
        setting.update(threshold=threshold, framewise=options.framewise, min_duration_s=options.min_duration_s,
                       merge_gap_s=options.merge_gap_s)
    return WindowTask(cut=cut, compute=compute, finish=finish, setting=setting, packed=packed)


def packed_clips(im, point, specs: list, row_tokens: int, device) -> Clips:
    """Windows of any lengths as :class:`~flexiast.models.packing.Clips` on ``device``, packed into
    rows of ``row_tokens`` tokens; a window larger than a row (a whole clip, ``whole=True``) gets
    a row of its own (windows are cut to fit rows otherwise: :meth:`InferenceModel.deployed`)."""
    most = max(point_tokens(im.model.config, n, point) for n in {int(s.shape[0]) for s in specs})
    return Clips(tuple(s.to(device) for s in specs), row_tokens=max(row_tokens, most))


def _events(im, frame_scores: torch.Tensor, spans: list, samples: int, frame_samples: int, labels: list[str],
            options: PredictOptions, threshold: float) -> dict:
    """The sound events of one clip from its windows' framewise scores ``[windows, frames, classes]``."""
    sr = im.features.sample_rate
    frame_hop_s, first_s = im.frame_timing()
    total_frames = im.audio_frames(samples)
    if len(spans) == 1:  # a short clip's padding, or the frames a whole-clip pass gives
        total_frames = min(total_frames, frame_scores.shape[1])
    starts = [a // frame_samples for a, _ in spans]
    window, local = stitch_framewise(starts, frame_scores.shape[1], total_frames)
    stitched = frame_scores[window, local]  # [frames, classes]
    events = detect_events(stitched, labels, hop_s=frame_hop_s, first_s=first_s, duration_s=samples / sr,
                           threshold=threshold, min_duration_s=options.min_duration_s,
                           merge_gap_s=options.merge_gap_s)
    out = {"sed": {"threshold": threshold, "frame_hop_s": frame_hop_s, "first_frame_s": first_s,
                   "frames": int(total_frames), "min_duration_s": options.min_duration_s,
                   "merge_gap_s": options.merge_gap_s, "event_score": "max"},
           "events": events}
    if options.framewise:
        out["framewise"] = {"times_s": [first_s + g * frame_hop_s for g in range(total_frames)],
                            "labels": labels, "scores": stitched.tolist()}
    return out


def format_prediction(result: dict, windows: bool = True) -> str:
    """A prediction as lines of text: the operating point and why, the top labels, and the windows."""
    compression = f", compression {result['compression']}" if result.get("compression", "none") != "none" else ""
    point = result["operating_point"]
    lines = [f"{result['source']}: {result['duration_s']:.2f} s, {point}{compression} ({result['choice']}), "
             f"{result['gflops_per_window']:.3g} GFLOPs per window"]
    n = len(result["windows"])
    if n > 1:
        lines.append(f"  {n} windows of {result['window_s']:.2f} s, hop {result['hop_s']:.2f} s, "
                     f"{result['aggregate']} of {result['scores']} scores; {result['gflops_total']:.3g} GFLOPs in all")
    lines += [f"  {i + 1}. {x['label']}  {x['score']:.4f}" for i, x in enumerate(result["top"])]
    if windows and n > 1:
        width = max(4, math.ceil(math.log10(max(result["duration_s"], 1) + 1)) + 3)
        for w in result["windows"]:
            best = w["top"][0]
            lines.append(f"    [{w['start_s']:{width}.2f} - {w['end_s']:{width}.2f} s]  {best['label']}  {best['score']:.4f}")
    if "events" in result:
        sed = result["sed"]
        lines.append(f"  {len(result['events'])} event(s) above {sed['threshold']:g} ({result['scores']} scores of "
                     f"{sed['frames']} frames every {1000 * sed['frame_hop_s']:g} ms):")
        lines += [f"    [{e['onset_s']:8.3f} - {e['offset_s']:8.3f} s]  {e['label']}  {e['score']:.4f}"
                  for e in result["events"]]
    return "\n".join(lines)

