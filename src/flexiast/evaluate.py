"""Accuracy and cost of one model at every operating point: the evidence for choosing one.

FlexiAST (Feng et al., Interspeech 2023, Sec. 3, Table 1, Fig. 1 and 3-5) evaluates one
model at each patch size in ``P = {8, 10, 12, 16, 20, 24, 30, 32, 40, 48}``, with the
kernel PI-resized (or bilinearly, "BL", for standard ASTs in Fig. 5) and the positional
grid resized bilinearly, along both axes or one (Fig. 4a). A *profile* is that table for
one checkpoint, one data split and one resize method: per operating point, the task metric(s)
(:func:`flexiast.metrics.classification_metrics`), forward GFLOPs per clip
(:func:`flexiast.models.flops`, analytic) and measured latency per clip (batch 1, median
of ``latency_runs`` timed calls after warm-up, on the machine that ran it).

The points are the family's (:mod:`flexiast.models.points`): patch sizes for an AST; for a
family whose tokens follow the input (HTS-AT, CNN14) **input lengths**, a row of ``L``
frames feeding each clip of the trained ``T`` frames average-pooled over time by
``C = T / L`` (a whole factor: ``avgpool:C``, coarse-to-fine's pooled compression), not
its first ``L`` frames. The pooled clip still covers all the audio a deployed window
covers, so a row's metric is what deploying with that compression gives and its GFLOPs
are the cost of that audio; the first ``L`` frames would leave the rest of each clip
unscored, and covering it would take ``C`` windows, the same cost as the full length.
One loop runs every kind.

Cost and latency are those of the model deployed at that point (``point.fixed(model)``):
the kernel is resized once per size, not per clip, so neither includes the resize (its
one-time cost is in ``docs/PERFORMANCE.md``).

Clips of their own lengths (ElasticAST, Feng, Erol, Chung, Senocak; Interspeech 2024, arXiv
2407.08691). For a family that packs, ``packed`` runs every point on each clip at its own
length (cut to the point's frames, never padded but to the fewest frames the point takes),
packed into rows of ``row_tokens`` tokens, instead of padded to the trained length; and
``clip_lengths`` profiles ElasticAST's evaluation across lengths: each clip cut to its leading
frames of each length, at every point of the family's grid
(:class:`~flexiast.models.points.LengthPoints` with ``feed="cut"``), padded to the length for
a model trained on fixed-length clips (as it was trained) or at its own length, packed. Such
inputs come from :class:`ClipInputs`, which makes each clip once per span of frames the points
keep (:func:`flexiast.models.spans.clip_span`).

The profile is written as Markdown, CSV and JSON (:mod:`flexiast.profiles`), and stored
beside the checkpoint, where ``flexiast predict --max-gflops`` reads it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import statistics
import time

import torch

from . import distributed, faults
from .audio import AudioError
from .constants import AXES
from .features import compress_spec, normalize, pad_or_cut
from .hardware import Precision, device_capability, resolve_precision
from .metrics import classification_metrics
from .models import FlexModel, family_of, flops
from .models.packing import DEFAULT_ROW_TOKENS, Clips
from .models.points import LengthPoints, OperatingPoint, PointKind, axis_patch
from .models.spans import clip_span, point_tokens
from .profiles import (KFOLD_MEAN, METRICS, PROFILE_FORMAT, ProfileRow, fold_mean_profile, profile_json,
                       profile_markdown, read_profile, store_profile, write_profile)

__all__ = ["AXES", "evaluate_model", "axis_patch", "measure_latency", "profile_model", "profile_points", "clip_spans",
           "ClipInputs", "collate_clips", "write_profile", "store_profile", "read_profile", "profile_markdown",
           "profile_json", "machine_info", "fold_mean_profile", "PROFILE_FORMAT", "KFOLD_MEAN", "METRICS"]


def clip_spans(model: FlexModel, points: dict[str, OperatingPoint], row_tokens: int | None = None) -> dict:
    """``{name: (shortest, longest)}``: the model frames each point keeps of a clip
    (:func:`flexiast.models.spans.clip_span`; packed rows of ``row_tokens``, default
    ElasticAST's 2048)."""
    row = row_tokens or DEFAULT_ROW_TOKENS
    return {name: clip_span(model.config, p, row) for name, p in points.items()}


class ClipInputs(torch.utils.data.Dataset):
    """An evaluation :class:`~flexiast.data.AudioDataset` with each clip made once per span:
    clip ``i`` is ``{"inputs": {(lo, hi): spec [n, bins]}, "target", "index"}`` where the clip's
    log-mel keeps its leading ``hi`` model frames, is padded to ``lo`` (with the features' pad
    value, before normalisation, as training pads), then normalised and compressed as training
    evaluates a clip; ``(T, T)`` is exactly the dataset's own item. An unreadable clip is
    ``{"error", "index"}`` under ``on_error="skip"``, as there. Batch with :func:`collate_clips`."""

    def __init__(self, dataset, spans):
        if dataset.train:
            raise ValueError("ClipInputs makes evaluation clips; give a dataset with train=False")
        self.dataset, self.spans = dataset, sorted(set(spans))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        ds = self.dataset
        try:
            spec = ds.log_mel(i)
        except AudioError as e:
            if ds.on_error == "skip":
                return {"error": str(e), "index": i}
            raise
        f, c = ds.features, ds.compression
        pool = c.factor if c.method in ("avgpool", "maxpool") else 1
        target = torch.zeros(ds.num_classes)
        target[list(ds.manifest.items[i].labels)] = 1.0
        inputs = {}
        for lo, hi in self.spans:
            n = spec.shape[-2]
            fit = spec[..., : hi * pool, :] if n > hi * pool else pad_or_cut(spec, lo * pool, f.pad_value) \
                if n < lo * pool else spec
            inputs[(lo, hi)] = compress_spec(normalize(fit, f), c)
        return {"inputs": inputs, "target": target, "index": i}


def collate_clips(batch: list[dict]) -> dict:
    """:class:`ClipInputs` items as a batch: ``"inputs"`` ``{span: [spec, ...]}`` (None when every
    clip was unreadable), ``"target"``, ``"index"``, ``"errors"``; ``"spec"`` is None."""
    kept = [b for b in batch if "error" not in b]
    errors = [b["error"] for b in batch if "error" in b]
    if not kept:
        return {"spec": None, "inputs": None, "target": None, "index": torch.empty(0, dtype=torch.long),
                "errors": errors}
    return {"spec": None, "inputs": {span: [b["inputs"][span] for b in kept] for span in kept[0]["inputs"]},
            "target": torch.stack([b["target"] for b in kept]), "index": torch.tensor([b["index"] for b in kept]),
            "errors": errors}


def _point_input(batch: dict, point: OperatingPoint, span, row_tokens: int, device):
    """A batch as ``point`` takes it: its clips of ``span`` (packed: :class:`Clips`), the batch's own
    ``spec`` where that is already :class:`Clips`, or the padded ``spec``."""
    if batch.get("inputs") is None:
        if isinstance(batch["spec"], Clips):  # a packed loader's clips, at the lengths it gave them
            return batch["spec"].to(device)
        if point.packed:
            raise ValueError(f"{point.label} runs each clip at its own length: evaluate it on ClipInputs batches "
                             "(flexiast.evaluate.ClipInputs, collate_clips), not padded ones")
        return point.feed(batch["spec"].to(device))
    specs = [x.to(device) for x in batch["inputs"][span]]
    return Clips(tuple(specs), row_tokens=row_tokens) if point.packed else point.feed(torch.stack(specs))


@torch.no_grad()
def evaluate_model(model: FlexModel, loader, points: dict[str, OperatingPoint], *, multilabel: bool,
                   info: distributed.DistInfo = distributed.DistInfo(), autocast=contextlib.nullcontext,
                   row_tokens: int | None = None) -> dict:
    """Metrics per operating point: ``{name: {"accuracy": ..., ...}}`` over the whole (gathered) split.

    ``points`` maps a display name to the :class:`~flexiast.models.points.OperatingPoint` to
    run: each clip is fed to it (``point.feed``: pooled to a shorter input length) and the model
    called with ``point.call()``. ``loader`` yields :func:`flexiast.data.collate` batches of
    clips padded to one length, or :func:`collate_clips` batches of :class:`ClipInputs`, whose
    clips each point takes at its span (:func:`clip_spans`), packed into rows of ``row_tokens``
    for a packed point. Each rank scores its share; predictions are gathered by clip
    index so every clip counts once. ``"_clips"`` and ``"_skipped"`` count the clips scored and
    those left out as unreadable (under ``on_error="skip"``), and ``"_unreadable"`` lists the
    latter's errors (file, reason); ``"_frames"`` lists the input lengths of padded batches this
    rank saw, and ``"_lengths"`` ``{name: {frames: clips}}`` the lengths each point ran at (the
    frames as text, so the dict survives a JSON round trip).
    A padded batch with its clips' ``lengths`` (a length bucket's, :class:`flexiast.data.Collate`)
    passes them, pooled with the point, to a family that leaves padding out of its pooling
    (``ModelFamily.pools_lengths``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pools_lengths = family_of(model).pools_lengths
    row = row_tokens or DEFAULT_ROW_TOKENS
    spans = clip_spans(model, points, row)
    scores = {name: [] for name in points}
    lengths = {name: collections.Counter() for name in points}
    targets, indices, errors, frames = [], [], [], set()
    for batch in loader:
        errors += batch["errors"]
        if batch["spec"] is None and batch.get("inputs") is None:
            continue
        if isinstance(batch["spec"], torch.Tensor):
            frames.add(int(batch["spec"].shape[1]))
        for name, point in points.items():
            x = _point_input(batch, point, spans[name], row, device)
            lengths[name].update(x.lengths if isinstance(x, Clips) else [int(x.shape[1])] * len(x))
            call = point.call()
            if pools_lengths and batch.get("inputs") is None and batch.get("lengths") is not None:
                call["lengths"] = batch["lengths"].to(device) // point.pool
            with autocast():
                scores[name].append(model(x, **call).float().cpu())
        targets.append(batch["target"])
        indices.append(batch["index"])
        faults.point("validation")
    model.train(was_training)
    local = {"indices": torch.cat(indices) if indices else torch.empty(0, dtype=torch.long),
             "targets": torch.cat(targets) if targets else None,
             "scores": {n: torch.cat(s) if s else None for n, s in scores.items()}, "errors": errors,
             "lengths": lengths}
    gathered = distributed.gather_objects(local, info)
    parts = [p for p in gathered if p["targets"] is not None]
    errors = sorted(e for p in gathered for e in p["errors"])
    if not parts:
        raise RuntimeError(f"evaluation saw no readable clips ({len(errors)} unreadable, e.g. {errors[:1]})")
    idx = torch.cat([p["indices"] for p in parts])
    order = torch.argsort(idx)
    keep = torch.ones_like(order, dtype=torch.bool)
    keep[1:] = idx[order][1:] != idx[order][:-1]
    order = order[keep]
    target = torch.cat([p["targets"] for p in parts])[order]
    out = {}
    for name in points:
        s = torch.cat([p["scores"][name] for p in parts])[order]
        out[name] = classification_metrics(s, target, multilabel)
    out["_clips"] = int(len(order))
    out["_skipped"] = len(errors)
    out["_unreadable"] = errors
    out["_frames"] = sorted(frames)
    out["_lengths"] = {n: {str(f): k for f, k in sorted(sum((p["lengths"][n] for p in gathered),
                                                            collections.Counter()).items())} for n in points}
    return out


@torch.inference_mode()
def measure_latency(model: FlexModel, frames: int, call: dict | None = None, *, runs: int = 20, warmup: int = 3,
                    autocast=contextlib.nullcontext) -> dict:
    """Seconds of ``model(spec[1, frames, bins], **call)``: median, min and max of ``runs`` calls.

    The first (warm-up) calls build and cache the resize matrices, so the timed calls
    are what a deployed model at this point costs per clip.
    """
    if runs < 1:
        raise ValueError(f"runs={runs} must be at least 1")
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    spec = torch.zeros(1, frames, model.config.input_fdim, device=p.device)
    sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + runs):
        sync()
        start = time.perf_counter()
        with autocast():
            model(spec, **(call or {}))
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    model.train(was_training)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": runs}


def machine_info(device: torch.device, precision: Precision) -> dict:
    """The machine a profile's latencies belong to: device, its name, threads, torch, the
    precision used and why, and the device's capability (ISA level, native bf16)."""
    cap = device_capability(device)
    return {"device": device.type, "name": cap["name"], "threads": torch.get_num_threads(), "torch": torch.__version__,
            "precision": precision.name, "precision_reason": precision.reason, "capability": cap,
            "latency_batch": 1}


def profile_points(model: FlexModel, frames: int | None = None, *, patch_sizes=None, resize: str | None = None,
                   axes: str | None = None, input_lengths=None, clip_lengths=None,
                   packed: bool = False) -> tuple[PointKind, list[OperatingPoint], list]:
    """``(kind, points, left out)`` of a profile (:func:`profile_model`): the family's grid at
    ``frames`` (default: trained), each point packed with ``packed``; with ``clip_lengths``
    (``[(seconds, frames)]``), every point of that grid (without ``patch_sizes``: the stored
    point) at every length, cut
    (:class:`~flexiast.models.points.LengthPoints` ``feed="cut"``). A family that cannot pack is
    refused ``packed``, naming it."""
    cfg, family = model.config, family_of(model)
    frames = frames or cfg.input_tdim
    if packed and not family.packs:
        raise ValueError(f"packed: a {model.arch} model cannot take packed clips (its family does not pack); "
                         "profile it with clips padded to one length")
    if clip_lengths is not None and input_lengths is not None:
        raise ValueError("give clip lengths (lengths, --lengths: each clip cut to them) or input lengths "
                         "(input_lengths, --input-lengths: each clip pooled to them), not both")
    kind = family.points
    points, skipped = kind.grid(cfg, frames, arch=model.arch, patch_sizes=patch_sizes, resize=resize, axes=axes,
                                input_lengths=input_lengths)
    if clip_lengths is not None:
        if patch_sizes is None:  # a row per length at the stored point; patch_sizes adds others
            points, skipped = [kind.stored(cfg)], []
        kind = LengthPoints("cut")
        every = kind.clip_points(points, clip_lengths, packed=packed)
        points = [p for p in every if point_tokens(cfg, p.frames, p) is not None]
        skipped = [*skipped, *(f"{p.label} at {p.seconds:g} s" for p in every if p not in points)]
        if not points:
            raise ValueError(f"no clip length in {', '.join(f'{s:g} s' for s, _ in clip_lengths)} is as long as a "
                             f"{model.arch} model takes at {', '.join(sorted({p.label for p in every}))}")
    elif packed:
        points = [dataclasses.replace(p, packed=True) for p in points]
    return kind, points, skipped


def profile_model(model: FlexModel, loader, *, multilabel: bool, patch_sizes=None, resize: str | None = None,
                  axes: str | None = None, frames: int | None = None, precision: str = "auto", latency_runs: int = 20,
                  describe: dict | None = None, input_lengths=None, clip_lengths=None, packed: bool = False,
                  row_tokens: int | None = None) -> dict:
    """The accuracy/cost profile of ``model`` on ``loader`` at its family's grid of operating
    points (:meth:`~flexiast.models.points.PointKind.grid`): every size in ``patch_sizes``
    (default :data:`~flexiast.constants.PATCH_SIZES`, ``resize`` pi, ``axes`` both) for a patch
    family, every length in ``input_lengths`` (default: ``frames``) for one whose tokens follow
    the input; options of the other kind are refused, naming the family. ``clip_lengths``
    (``[(seconds, frames)]``) profiles every point at every clip length instead, each clip cut
    to it (ElasticAST's evaluation); ``packed`` runs each clip at its own length, packed into
    rows of ``row_tokens`` (:func:`profile_points`). Those need :class:`ClipInputs` batches
    (:func:`clip_spans` gives the spans to make).

    ``frames`` is the input length the loader yields (default: the model's trained
    length); sizes whose patch does not fit it are left out and listed under ``"skipped"``.
    ``precision`` (auto, fp32, bf16; :func:`flexiast.hardware.resolve_precision`) applies to
    both metrics and latency; the profile records what it resolved to and why.
    ``describe`` adds provenance (checkpoint, data) to the profile. Every row has
    accuracy, mAP, mean AUC and d'; ``"metric"`` names the task's (mAP if ``multilabel``).
    Tokens, GFLOPs and latency are a clip's of the row's full length; a packed row adds
    ``gflops_mean``, the mean of each clip's own forward GFLOPs at the length it ran.
    """
    cfg = model.config
    frames = frames or cfg.input_tdim
    device = next(model.parameters()).device
    chosen = resolve_precision(precision, device, setting="precision")
    kind, points, skipped = profile_points(model, frames, patch_sizes=patch_sizes, resize=resize, axes=axes,
                                           input_lengths=input_lengths, clip_lengths=clip_lengths, packed=packed)
    named = {kind.row_label(kind.row_fields(p)): p for p in points}
    # mAP, mean AUC and d' are well defined for one-hot targets too, so every profile has all four.
    results = evaluate_model(model, loader, named, multilabel=True, autocast=chosen.autocast, row_tokens=row_tokens)
    if results["_frames"] and results["_frames"] != [frames]:
        raise ValueError(f"the data gave inputs of {results['_frames']} frames; the profile is for {frames}")
    rows = []
    for name, point in named.items():
        fixed = point.fixed(model)
        count = flops(fixed.config, (point.frames, cfg.input_fdim))
        lat = measure_latency(fixed, point.frames, runs=latency_runs, autocast=chosen.autocast)
        mean = None
        if point.packed:  # each clip's own cost, at the length it ran
            ran = results["_lengths"][name]
            mean = sum(k * flops(fixed.config, (int(n), cfg.input_fdim)).forward for n, k in ran.items()) \
                / sum(ran.values()) / 1e9
        del fixed
        row = ProfileRow(point, count.tokens, count.forward / 1e9, 1e3 * lat["median"], 1e3 * lat["min"],
                         1e3 * lat["max"], results[name], mean)
        rows.append(row.to_dict(kind))
    family = family_of(model).points
    packing = {"packed": True, "row_tokens": row_tokens or DEFAULT_ROW_TOKENS} if packed else {}
    return {"format": PROFILE_FORMAT, "version": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(describe or {}), "metric": "mAP" if multilabel else "accuracy", "multilabel": multilabel,
            "row_kind": kind.name, "arch": model.arch, **family.profile_fields(cfg, resize, axes),
            **kind.profile_fields(cfg, resize, axes), **packing,
            "input": {"frames": frames, "mel_bins": cfg.input_fdim}, "clips": results["_clips"],
            "unreadable_clips": results["_skipped"], "skipped_sizes": skipped,
            "machine": machine_info(device, chosen), "latency_runs": latency_runs, "rows": rows}
