"""Accuracy and cost of one model at every patch size: the evidence for choosing one.

FlexiAST (Feng et al., Interspeech 2023, Sec. 3, Table 1, Fig. 1 and 3-5) evaluates one
model at each patch size in ``P = {8, 10, 12, 16, 20, 24, 30, 32, 40, 48}``, with the
kernel PI-resized (or bilinearly, "BL", for standard ASTs in Fig. 5) and the positional
grid resized bilinearly, along both axes or one (Fig. 4a). A *profile* is that table for
one checkpoint, one data split and one resize method: per patch size, the task metric(s)
(:func:`flexiast.metrics.classification_metrics`), forward GFLOPs per clip
(:func:`flexiast.flops.flops`, analytic) and measured latency per clip (batch 1, median
of ``latency_runs`` timed calls after warm-up, on the machine that ran it).

Cost and latency are those of the model deployed at that size
(``model.fixed``, :meth:`flexiast.AST.at_patch_size` for an AST): the kernel is resized once per size, not per clip,
so neither includes the resize (its one-time cost is in ``docs/PERFORMANCE.md``).

A family without patch sizes (HTS-AT, ``ModelFamily.patch_calls`` False) is profiled over
**input lengths** instead (``row_kind: "input_length"``): a row of ``L`` frames feeds each
clip of the trained ``T`` frames average-pooled over time by ``C = T / L`` (a whole factor:
``avgpool:C``, coarse-to-fine's pooled compression), not its first ``L`` frames. The
pooled clip still covers all the audio a deployed window covers, so a row's metric is what
deploying with that compression gives (:meth:`flexiast.inference.InferenceModel.choose` applies
a budget's row as ``avgpool:C``) and its GFLOPs are the cost of that audio; the first
``L`` frames would leave the rest of each clip unscored, and covering it would take ``C``
windows, the same cost as the full length.

The profile is written as Markdown, CSV and JSON, and stored beside the checkpoint
(:func:`flexiast.inference.profile_path`), where ``flexiast predict --max-gflops`` reads it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import math
import statistics
import time
from pathlib import Path

import torch

from . import distributed, faults
from .atomic import write_text_atomic
from .constants import AXES, PATCH_SIZES
from .features import Compression, compress_spec
from .hardware import Precision, device_capability, resolve_precision
from .metrics import classification_metrics
from .models import FlexModel, family_of, flops, patch_call
from .resize import grid_shape

__all__ = ["AXES", "evaluate_model", "axis_patch", "measure_latency", "profile_model", "write_profile",
           "store_profile", "read_profile", "profile_markdown", "machine_info", "fold_mean_profile", "PROFILE_FORMAT",
           "KFOLD_MEAN"]

PROFILE_FORMAT = "flexiast-profile"
#: The ``kind`` of a fold-averaged profile (:func:`fold_mean_profile`).
KFOLD_MEAN = "kfold_mean"
#: Every metric a profile row holds.
METRICS = ("accuracy", "mAP", "AUC", "d_prime")


@torch.no_grad()
def evaluate_model(model: FlexModel, loader, patches: dict, *, multilabel: bool, resize: str = "pi",
                   info: distributed.DistInfo = distributed.DistInfo(), autocast=contextlib.nullcontext,
                   pool: dict | None = None) -> dict:
    """Metrics per patch size: ``{name: {"accuracy": ..., ...}}`` over the whole (gathered) split.

    ``patches`` maps a display name to the ``(freq, time)`` patch to run (None: the model's
    own call, the only one of a family without patch sizes); ``pool`` maps a name to a
    factor by which its input is average-pooled over time first (an input-length row). Each rank scores
    its share; predictions are gathered by clip index so every clip counts once.
    ``"_clips"`` and ``"_skipped"`` count the clips scored and those left out as unreadable
    (under ``on_error="skip"``), and ``"_unreadable"`` lists the latter's errors (file, reason);
    ``"_frames"`` lists the input lengths this rank saw.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = {name: [] for name in patches}
    targets, indices, errors, frames = [], [], [], set()
    for batch in loader:
        errors += batch["errors"]
        if batch["spec"] is None:
            continue
        spec = batch["spec"].to(device)
        frames.add(int(spec.shape[1]))
        for name, patch in patches.items():
            factor = (pool or {}).get(name, 1)
            x = spec if factor == 1 else compress_spec(spec, Compression("avgpool", factor))
            with autocast():
                scores[name].append(model(x, **patch_call(patch, resize)).float().cpu())
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
    for name in patches:
        s = torch.cat([p["scores"][name] for p in parts])[order]
        out[name] = classification_metrics(s, target, multilabel)
    out["_clips"] = int(len(order))
    out["_skipped"] = len(errors)
    out["_unreadable"] = errors
    out["_frames"] = sorted(frames)
    return out


def axis_patch(size: int, axes: str, stored: tuple[int, int]) -> tuple[int, int]:
    """The ``(freq, time)`` patch of ``size`` on ``axes``: ``(s, s)``, ``(f0, s)`` or ``(s, t0)``."""
    if axes not in AXES:
        raise ValueError(f"axes={axes!r} is not one of {', '.join(AXES)}")
    s = int(size)
    return {"both": (s, s), "time": (stored[0], s), "freq": (s, stored[1])}[axes]


@torch.inference_mode()
def measure_latency(model: FlexModel, frames: int, patch, *, resize: str = "pi", runs: int = 20, warmup: int = 3,
                    autocast=contextlib.nullcontext) -> dict:
    """Seconds of ``model(spec[1, frames, bins], patch)``: median, min and max of ``runs`` calls.

    The first (warm-up) calls build and cache the resize matrices, so the timed calls
    are what a deployed model at this size costs per clip.
    """
    if runs < 1:
        raise ValueError(f"runs={runs} must be at least 1")
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    spec = torch.zeros(1, frames, model.config.input_fdim, device=p.device)
    sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
    call = {"patch_size": patch, "resize": resize} if patch is not None else {}  # None: the model's own call
    times = []
    for i in range(warmup + runs):
        sync()
        start = time.perf_counter()
        with autocast():
            model(spec, **call)
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
    """The accuracy/cost profile of ``model`` on ``loader`` at every size in ``patch_sizes``
    (default :data:`~flexiast.constants.PATCH_SIZES`, ``resize`` pi, ``axes`` both), or for a
    family without patch sizes at every length in ``input_lengths`` (default: ``frames``;
    :func:`_length_profile`).

    ``frames`` is the input length the loader yields (default: the model's trained
    length); sizes whose patch does not fit it are left out and listed under ``"skipped"``.
    ``precision`` (auto, fp32, bf16; :func:`flexiast.hardware.resolve_precision`) applies to
    both metrics and latency; the profile records what it resolved to and why.
    ``describe`` adds provenance (checkpoint, data) to the profile. Every row has
    accuracy, mAP, mean AUC and d'; ``"metric"`` names the task's (mAP if ``multilabel``).
    """
    cfg = model.config
    frames = frames or cfg.input_tdim
    device = next(model.parameters()).device
    chosen = resolve_precision(precision, device, setting="precision")
    if not family_of(model).patch_calls:
        given = [name for name, v in (("patch_sizes (--patch-sizes)", patch_sizes), ("resize (--resize)", resize),
                                      ("axes (--axes)", axes)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: a {model.arch} model takes no patch size; its profile is over "
                             "input lengths (input_lengths, --input-lengths)")
        return _length_profile(model, loader, multilabel=multilabel, frames=frames, lengths=input_lengths,
                               chosen=chosen, latency_runs=latency_runs, describe=describe)
    if input_lengths is not None:
        raise ValueError(f"input_lengths (--input-lengths): a {model.arch} model is profiled over patch sizes "
                         "(--patch-sizes) at its trained length")
    patch_sizes = PATCH_SIZES if patch_sizes is None else patch_sizes
    resize = "pi" if resize is None else resize
    axes = "both" if axes is None else axes
    autocast = chosen.autocast
    patches, skipped = {}, []
    for s in patch_sizes:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ValueError(f"patch size {s!r}: a profile takes single sizes (8, 16, ...) on the chosen axes; "
                             "use axes='time' or 'freq' for one axis")
        patch = axis_patch(s, axes, cfg.patch_size)
        try:
            grid_shape((cfg.input_fdim, frames), patch)
        except ValueError:
            skipped.append(int(s))
            continue
        patches[str(s)] = patch
    if not patches:
        raise ValueError(f"no patch size in {list(patch_sizes)} fits the input ({cfg.input_fdim} mel bins x "
                         f"{frames} frames) on axes={axes}")
    # mAP, mean AUC and d' are well defined for one-hot targets too, so every profile has all four.
    results = evaluate_model(model, loader, patches, multilabel=True, resize=resize, autocast=autocast)
    if results["_frames"] != [frames]:
        raise ValueError(f"the data gave inputs of {results['_frames']} frames; the profile is for {frames}")
    rows = []
    for name, patch in patches.items():
        fixed = model.fixed(patch_size=patch, resize=resize, input_tdim=frames)
        count = flops(fixed.config, (frames, cfg.input_fdim))
        lat = measure_latency(fixed, frames, None, runs=latency_runs, autocast=autocast)
        del fixed
        rows.append({"size": int(name), "patch": list(patch), "tokens": count.tokens, "gflops": count.forward / 1e9,
                     "latency_ms": 1e3 * lat["median"], "latency_ms_min": 1e3 * lat["min"],
                     "latency_ms_max": 1e3 * lat["max"], **results[name]})
    return {"format": PROFILE_FORMAT, "version": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(describe or {}), "metric": "mAP" if multilabel else "accuracy", "multilabel": multilabel,
            "row_kind": "patch_size", "resize": resize, "axes": axes, "stored_patch": list(cfg.patch_size),
            "input": {"frames": frames, "mel_bins": cfg.input_fdim}, "clips": results["_clips"],
            "unreadable_clips": results["_skipped"], "skipped_sizes": skipped,
            "machine": machine_info(device, chosen), "latency_runs": latency_runs, "rows": rows}


def _length_profile(model: FlexModel, loader, *, multilabel: bool, frames: int, lengths, chosen: Precision,
                    latency_runs: int, describe: dict | None) -> dict:
    """The profile of a family without patch sizes: a row per input length ``L`` (frames),
    each clip of ``frames`` frames average-pooled over time by ``C = frames / L`` (the
    module docstring says why), with its metrics, analytic forward GFLOPs per clip of ``L``
    frames and the latency of the model fixed at ``L`` frames."""
    cfg = model.config
    lengths = [frames] if lengths is None else list(lengths)
    if not lengths:
        raise ValueError("input_lengths is empty")
    pool = {}
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"input length {n!r} must be a positive number of frames")
        if n > frames or frames % n:
            divisors = [frames // c for c in range(1, min(frames, 16) + 1) if frames % c == 0]
            raise ValueError(f"input length {n}: a profile feeds the {frames}-frame clips average-pooled by a whole "
                             f"factor, so a length must divide {frames} (e.g. {', '.join(map(str, divisors[:6]))})")
        pool[str(n)] = frames // n
    names = list(dict.fromkeys(str(n) for n in sorted(lengths, reverse=True)))
    device = next(model.parameters()).device
    results = evaluate_model(model, loader, {n: None for n in names}, multilabel=True, autocast=chosen.autocast,
                             pool=pool)
    if results["_frames"] != [frames]:
        raise ValueError(f"the data gave inputs of {results['_frames']} frames; the profile is for {frames}")
    rows = []
    for name in names:
        n = int(name)
        fixed = model.fixed(input_tdim=n, **patch_call(None))
        count = flops(fixed.config, (n, cfg.input_fdim))
        lat = measure_latency(fixed, n, None, runs=latency_runs, autocast=chosen.autocast)
        del fixed
        factor = pool[name]
        rows.append({"frames": n, "compression": "none" if factor == 1 else f"avgpool:{factor}", "factor": factor,
                     "tokens": count.tokens, "gflops": count.forward / 1e9, "latency_ms": 1e3 * lat["median"],
                     "latency_ms_min": 1e3 * lat["min"], "latency_ms_max": 1e3 * lat["max"], **results[name]})
    return {"format": PROFILE_FORMAT, "version": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(describe or {}), "metric": "mAP" if multilabel else "accuracy", "multilabel": multilabel,
            "row_kind": "input_length", "arch": model.arch, "resize": None, "axes": None, "stored_patch": None,
            "feed": "each clip average-pooled over time to the row's length",
            "input": {"frames": frames, "mel_bins": cfg.input_fdim}, "clips": results["_clips"],
            "unreadable_clips": results["_skipped"], "skipped_sizes": [],
            "machine": machine_info(device, chosen), "latency_runs": latency_runs, "rows": rows}


def _stat(values: list) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of ``values``; None for both where one is not a
    finite number (d' of a perfect AUC)."""
    if any(v is None or not math.isfinite(v) for v in values):
        return None, None
    return statistics.fmean(values), statistics.pstdev(values)


def fold_mean_profile(profiles: list[dict], *, describe: dict | None = None) -> dict:
    """The k-fold profile: fold ``k``'s model profiled on its own test fold (``profiles[k - 1]``),
    averaged row by row, as FlexiAST Table 1 reports ESC-50 (the mean over the 5 folds).

    Each row keeps the first fold's size, patch (or input length), tokens and GFLOPs (checked
    equal across folds); every metric is the mean over folds, ``<metric>_std`` its population
    standard deviation over folds; ``latency_ms`` is the mean of the folds' medians (one machine),
    ``latency_ms_min``/``_max`` the extremes. ``folds`` keeps each fold's rows. The result is a
    profile (:func:`read_profile` reads it, ``flexiast report`` draws it) of ``kind``
    :data:`KFOLD_MEAN`; ``clips`` counts every fold's test clips."""
    if not profiles:
        raise ValueError("no fold profiles to average")
    first = profiles[0]
    key = "frames" if first.get("row_kind") == "input_length" else "size"
    fixed_keys = ("frames", "compression", "factor") if key == "frames" else ("size", "patch")
    for k, p in enumerate(profiles[1:], start=2):
        for name in ("metric", "row_kind", "resize", "axes", "input"):
            if p.get(name) != first.get(name):
                raise ValueError(f"fold {k}'s profile has {name} {p.get(name)!r}, fold 1's {first.get(name)!r}: "
                                 "the folds' profiles must be alike to be averaged")
        if [r[key] for r in p["rows"]] != [r[key] for r in first["rows"]]:
            raise ValueError(f"fold {k}'s profile has rows {[r[key] for r in p['rows']]}, fold 1's "
                             f"{[r[key] for r in first['rows']]}")
    rows = []
    for i, r0 in enumerate(first["rows"]):
        same = [p["rows"][i] for p in profiles]
        for name in ("tokens", "gflops"):
            if any(r[name] != r0[name] for r in same):
                raise ValueError(f"row {r0[key]}: the folds' models differ in {name}; they are not the same model")
        row = {name: r0[name] for name in (*fixed_keys, "tokens", "gflops") if name in r0}
        row.update(latency_ms=statistics.fmean(r["latency_ms"] for r in same),
                   latency_ms_min=min(r["latency_ms_min"] for r in same),
                   latency_ms_max=max(r["latency_ms_max"] for r in same))
        for m in METRICS:
            row[m], row[f"{m}_std"] = _stat([r[m] for r in same])
        rows.append(row)
    folds = [{"fold": k, "checkpoint": p.get("checkpoint"), "data": p.get("data"), "clips": p["clips"],
              "rows": [{key: r[key], **{m: r[m] for m in METRICS}} for r in p["rows"]]}
             for k, p in enumerate(profiles, start=1)]
    return {"format": PROFILE_FORMAT, "version": 1, "kind": KFOLD_MEAN,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(describe or {}), "metric": first["metric"], "multilabel": first["multilabel"],
            "row_kind": first.get("row_kind", "patch_size"), "arch": first.get("arch"), "resize": first["resize"],
            "axes": first["axes"], "stored_patch": first.get("stored_patch"), "input": first["input"],
            "compression": first.get("compression", "none"), "n_folds": len(profiles),
            "spread": "population standard deviation over folds",
            "clips": sum(p["clips"] for p in profiles),
            "unreadable_clips": sum(p["unreadable_clips"] for p in profiles),
            "skipped_sizes": first["skipped_sizes"], "machine": first["machine"],
            "latency_runs": first["latency_runs"], "rows": rows, "folds": folds}


def _kfold_markdown(profile: dict, metrics: list[str], m: dict) -> str:
    lengths = profile.get("row_kind") == "input_length"
    key = "frames" if lengths else "size"
    first = profile["folds"][0]["rows"]
    task = profile["metric"]
    lines = [f"Fold-averaged profile of `{profile.get('checkpoint', 'k-fold run')}`: each of the {profile['n_folds']} "
             f"folds' models on its own test fold ({profile['clips']} clips in all), "
             + ("over input lengths" if lengths else f"resize {profile['resize'].upper()}, axes {profile['axes']}")
             + f"; mean ± {profile['spread']}."
             + (f" Epoch chosen on {profile['epoch_chosen_on']}." if profile.get("epoch_chosen_on") else ""),
             f"Latency: batch 1, mean over folds of the median of {profile['latency_runs']} calls, {m['precision']}, "
             f"{m['name']}, {m['threads']} threads, torch {m['torch']}.", "",
             f"| {'input frames' if lengths else 'patch'} | tokens | GFLOPs/clip | ms/clip | " + " | ".join(metrics)
             + " |", "|---|---:|---:|---:|" + "---:|" * len(metrics)]
    for r in profile["rows"]:
        name = str(r["frames"]) if lengths else f"{r['patch'][0]}x{r['patch'][1]}"
        cells = ["-" if r[k] is None else f"{r[k]:.4f} ± {r[k + '_std']:.4f}" for k in metrics]
        lines.append(f"| {name} | {r['tokens']} | {r['gflops']:.3f} | {r['latency_ms']:.2f} | " + " | ".join(cells)
                     + " |")
    lines += ["", f"Per fold, {task}:", "",
              f"| {key} | " + " | ".join(f"fold {f['fold']}" for f in profile["folds"]) + " |",
              "|---:|" + "---:|" * len(profile["folds"])]
    for i, r in enumerate(first):
        lines.append(f"| {r[key]} | " + " | ".join(
            "-" if f["rows"][i][task] is None else f"{f['rows'][i][task]:.4f}" for f in profile["folds"]) + " |")
    return "\n".join(lines) + "\n"


def _metric_names(profile: dict) -> list[str]:
    """The task's metric first (mAP for multi-label, accuracy otherwise), then the others."""
    return ["mAP", "AUC", "d_prime", "accuracy"] if profile["multilabel"] else ["accuracy", "mAP", "AUC", "d_prime"]


def profile_markdown(profile: dict) -> str:
    """The profile as a Markdown table with a line of provenance."""
    metrics = _metric_names(profile)
    m = profile["machine"]
    if profile.get("kind") == KFOLD_MEAN:
        return _kfold_markdown(profile, metrics, m)
    if profile.get("row_kind") == "input_length":
        return _length_markdown(profile, metrics, m)
    lines = [f"Profile of `{profile.get('checkpoint', 'model')}` on {profile.get('data', 'data')} "
             f"({profile['clips']} clips): resize {profile['resize'].upper()}, axes {profile['axes']}, "
             f"input {profile['input']['frames']} frames x {profile['input']['mel_bins']} mel bins"
             + (f" (compression {profile['compression']})." if profile.get("compression", "none") != "none" else "."),
             f"Latency: batch 1, median of {profile['latency_runs']} calls, {m['precision']}, "
             + (f"{m['precision_reason']}" if "precision_reason" in m else f"{m['name']}, {m['threads']} threads")
             + f", torch {m['torch']}.", "",
             "| patch | tokens | GFLOPs/clip | ms/clip | " + " | ".join(metrics) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(metrics)]
    for r in profile["rows"]:
        lines.append(f"| {r['patch'][0]}x{r['patch'][1]} | {r['tokens']} | {r['gflops']:.3f} | "
                     f"{r['latency_ms']:.2f} | " + " | ".join(f"{r[k]:.4f}" for k in metrics) + " |")
    if profile["skipped_sizes"]:
        lines.append(f"\nLeft out (larger than the input): {', '.join(map(str, profile['skipped_sizes']))}.")
    return "\n".join(lines) + "\n"


def _length_markdown(profile: dict, metrics: list[str], m: dict) -> str:
    lines = [f"Profile of `{profile.get('checkpoint', 'model')}` on {profile.get('data', 'data')} "
             f"({profile['clips']} clips) over input lengths: each {profile['input']['frames']}-frame x "
             f"{profile['input']['mel_bins']}-bin clip average-pooled over time to the row's length"
             + (f" (after compression {profile['compression']})." if profile.get("compression", "none") != "none"
                else "."),
             f"Latency: batch 1, median of {profile['latency_runs']} calls, {m['precision']}, "
             + (f"{m['precision_reason']}" if "precision_reason" in m else f"{m['name']}, {m['threads']} threads")
             + f", torch {m['torch']}.", "",
             "| input frames | pooling | tokens | GFLOPs/clip | ms/clip | " + " | ".join(metrics) + " |",
             "|---:|---|---:|---:|---:|" + "---:|" * len(metrics)]
    for r in profile["rows"]:
        lines.append(f"| {r['frames']} | {r['compression']} | {r['tokens']} | {r['gflops']:.3f} | "
                     f"{r['latency_ms']:.2f} | " + " | ".join(f"{r[k]:.4f}" for k in metrics) + " |")
    return "\n".join(lines) + "\n"


def _finite(x):
    """JSON has no infinity (d' of a perfect AUC): non-finite numbers become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def profile_json(profile: dict) -> str:
    return json.dumps(_finite(profile), indent=1, allow_nan=False) + "\n"


def store_profile(profile: dict, path: str | Path) -> Path:
    """Write the profile JSON to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    write_text_atomic(path, profile_json(profile))
    return path


def write_profile(profile: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``profile.md``, ``profile.csv`` and ``profile.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "profile.md", "csv": out / "profile.csv", "json": out / "profile.json"}
    write_text_atomic(paths["md"], profile_markdown(profile))
    metrics = _metric_names(profile)
    if profile.get("kind") == KFOLD_MEAN:  # each metric's spread over folds beside it
        metrics = [name for k in metrics for name in (k, f"{k}_std")]
    buf = io.StringIO()
    w = csv.writer(buf)
    if profile.get("row_kind") == "input_length":
        w.writerow(["input_frames", "compression", "tokens", "gflops", "latency_ms", "latency_ms_min",
                    "latency_ms_max", *metrics])
        for r in profile["rows"]:
            w.writerow([r["frames"], r["compression"], r["tokens"], r["gflops"], r["latency_ms"],
                        r["latency_ms_min"], r["latency_ms_max"], *(r[k] for k in metrics)])
    else:
        w.writerow(["size", "patch_freq", "patch_time", "tokens", "gflops", "latency_ms", "latency_ms_min",
                    "latency_ms_max", *metrics])
        for r in profile["rows"]:
            w.writerow([r["size"], *r["patch"], r["tokens"], r["gflops"], r["latency_ms"], r["latency_ms_min"],
                        r["latency_ms_max"], *(r[k] for k in metrics)])
    write_text_atomic(paths["csv"], buf.getvalue())
    store_profile(profile, paths["json"])
    return paths


PROFILE_KEYS = ("metric", "multilabel", "resize", "axes", "input", "machine", "rows")
ROW_KEYS = ("size", "patch", "tokens", "gflops", "latency_ms")
#: The keys of an input-length profile's rows (``row_kind: "input_length"``).
LENGTH_ROW_KEYS = ("frames", "compression", "tokens", "gflops", "latency_ms")


def read_profile(path: str | Path) -> dict:
    """A profile JSON written by :func:`write_profile` (or a directory holding ``profile.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "profile.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such profile; write one with flexiast evaluate") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a profile (invalid JSON: {e}); write it again with flexiast evaluate") from None
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT or not data.get("rows"):
        raise ValueError(f"{path}: not a flexiast profile (no format {PROFILE_FORMAT!r} with rows)")
    missing = [k for k in PROFILE_KEYS if k not in data]
    row_keys = LENGTH_ROW_KEYS if data.get("row_kind") == "input_length" else ROW_KEYS
    missing += [f"rows[{i}].{k}" for i, r in enumerate(data["rows"]) for k in (*row_keys, data.get("metric"))
                if not isinstance(r, dict) or k not in r]
    if missing:
        raise ValueError(f"{path}: the profile lacks {', '.join(map(str, missing[:5]))}; write it again with "
                         "flexiast evaluate")
    return data
