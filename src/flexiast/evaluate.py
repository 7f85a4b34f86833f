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

The profile is written as Markdown, CSV and JSON (:mod:`flexiast.profiles`), and stored
beside the checkpoint, where ``flexiast predict --max-gflops`` reads it.
"""

from __future__ import annotations

import contextlib
import datetime
import statistics
import time

import torch

from . import distributed, faults
from .constants import AXES
from .hardware import Precision, device_capability, resolve_precision
from .metrics import classification_metrics
from .models import FlexModel, family_of, flops
from .models.packing import Clips
from .models.points import OperatingPoint, axis_patch
from .profiles import (KFOLD_MEAN, METRICS, PROFILE_FORMAT, ProfileRow, fold_mean_profile, profile_json,
                       profile_markdown, read_profile, store_profile, write_profile)

__all__ = ["AXES", "evaluate_model", "axis_patch", "measure_latency", "profile_model", "write_profile",
           "store_profile", "read_profile", "profile_markdown", "profile_json", "machine_info", "fold_mean_profile",
           "PROFILE_FORMAT", "KFOLD_MEAN", "METRICS"]


@torch.no_grad()
def evaluate_model(model: FlexModel, loader, points: dict[str, OperatingPoint], *, multilabel: bool,
                   info: distributed.DistInfo = distributed.DistInfo(), autocast=contextlib.nullcontext) -> dict:
    """Metrics per operating point: ``{name: {"accuracy": ..., ...}}`` over the whole (gathered) split.

    ``points`` maps a display name to the :class:`~flexiast.models.points.OperatingPoint` to
    run: each clip is fed to it (``point.feed``: pooled to a shorter input length) and the model
    called with ``point.call()``. Each rank scores its share; predictions are gathered by clip
    index so every clip counts once. ``"_clips"`` and ``"_skipped"`` count the clips scored and
    those left out as unreadable (under ``on_error="skip"``), and ``"_unreadable"`` lists the
    latter's errors (file, reason); ``"_frames"`` lists the input lengths this rank saw.
    A batch's ``spec`` may be packed clips of their own lengths
    (:class:`~flexiast.models.packing.Clips`): each clip is fed to the point on its own; a
    padded batch with its clips' ``lengths`` passes them (pooled with the point) to a family
    that leaves padding out of its pooling (``ModelFamily.pools_lengths``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pools_lengths = family_of(model).pools_lengths
    scores = {name: [] for name in points}
    targets, indices, errors, frames = [], [], [], set()
    for batch in loader:
        errors += batch["errors"]
        if batch["spec"] is None:
            continue
        spec = batch["spec"].to(device)
        frames.update(spec.lengths if isinstance(spec, Clips) else [int(spec.shape[1])])
        for name, point in points.items():
            call = point.call()
            if pools_lengths and "lengths" in batch:
                call["lengths"] = batch["lengths"].to(device) // point.pool
            with autocast():
                scores[name].append(model(_feed(point, spec), **call).float().cpu())
        targets.append(batch["target"])
        indices.append(batch["index"])
        faults.point("validation")
    model.train(was_training)
    local = {"indices": torch.cat(indices) if indices else torch.empty(0, dtype=torch.long),
             "targets": torch.cat(targets) if targets else None,
             "scores": {n: torch.cat(s) if s else None for n, s in scores.items()}, "errors": errors}
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
    return out


def _feed(point: OperatingPoint, spec):
    """``point.feed`` of a batch, or of each of a batch's packed clips."""
    if not isinstance(spec, Clips) or point.pool == 1:
        return point.feed(spec)
    return Clips(tuple(point.feed(s[None])[0] for s in spec.specs), spec.patches, spec.row_tokens)


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


def profile_model(model: FlexModel, loader, *, multilabel: bool, patch_sizes=None, resize: str | None = None,
                  axes: str | None = None, frames: int | None = None, precision: str = "auto", latency_runs: int = 20,
                  describe: dict | None = None, input_lengths=None) -> dict:
    """The accuracy/cost profile of ``model`` on ``loader`` at its family's grid of operating
    points (:meth:`~flexiast.models.points.PointKind.grid`): every size in ``patch_sizes``
    (default :data:`~flexiast.constants.PATCH_SIZES`, ``resize`` pi, ``axes`` both) for a patch
    family, every length in ``input_lengths`` (default: ``frames``) for one whose tokens follow
    the input; options of the other kind are refused, naming the family.

    ``frames`` is the input length the loader yields (default: the model's trained
    length); sizes whose patch does not fit it are left out and listed under ``"skipped"``.
    ``precision`` (auto, fp32, bf16; :func:`flexiast.hardware.resolve_precision`) applies to
    both metrics and latency; the profile records what it resolved to and why.
    ``describe`` adds provenance (checkpoint, data) to the profile. Every row has
    accuracy, mAP, mean AUC and d'; ``"metric"`` names the task's (mAP if ``multilabel``).
    """
    cfg = model.config
    kind = family_of(model).points
    frames = frames or cfg.input_tdim
    device = next(model.parameters()).device
    chosen = resolve_precision(precision, device, setting="precision")
    points, skipped = kind.grid(cfg, frames, arch=model.arch, patch_sizes=patch_sizes, resize=resize, axes=axes,
                                input_lengths=input_lengths)
    named = {str(kind.row_key(kind.row_fields(p))): p for p in points}
    # mAP, mean AUC and d' are well defined for one-hot targets too, so every profile has all four.
    results = evaluate_model(model, loader, named, multilabel=True, autocast=chosen.autocast)
    if results["_frames"] != [frames]:
        raise ValueError(f"the data gave inputs of {results['_frames']} frames; the profile is for {frames}")
    rows = []
    for name, point in named.items():
        fixed = point.fixed(model)
        count = flops(fixed.config, (point.frames, cfg.input_fdim))
        lat = measure_latency(fixed, point.frames, runs=latency_runs, autocast=chosen.autocast)
        del fixed
        row = ProfileRow(point, count.tokens, count.forward / 1e9, 1e3 * lat["median"], 1e3 * lat["min"],
                         1e3 * lat["max"], results[name])
        rows.append(row.to_dict(kind))
    return {"format": PROFILE_FORMAT, "version": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(describe or {}), "metric": "mAP" if multilabel else "accuracy", "multilabel": multilabel,
            "row_kind": kind.name, "arch": model.arch, **kind.profile_fields(cfg, resize, axes),
            "input": {"frames": frames, "mel_bins": cfg.input_fdim}, "clips": results["_clips"],
            "unreadable_clips": results["_skipped"], "skipped_sizes": skipped,
            "machine": machine_info(device, chosen), "latency_runs": latency_runs, "rows": rows}
