"""Profiles on disk: typed rows, and a profile read and written as JSON, CSV and Markdown.

A *profile* (:func:`flexiast.evaluate.profile_model`) is one checkpoint's table of operating
points (:mod:`flexiast.models.points`) on one data split: per point, the task metrics,
analytic forward GFLOPs per clip and the measured latency. Its JSON is the document that
``flexiast predict --max-gflops`` reads back; ``row_kind`` names the kind of its points
(``patch_size`` or ``input_length``; profiles written before kinds had names hold patch
sizes), and a :class:`ProfileRow` is one row with its :class:`OperatingPoint`. Every
format writes the rows through the kind's columns, so a new kind of point needs no new
writer.

:func:`fold_mean_profile` averages the k folds' profiles row by row, as FlexiAST Table 1
reports ESC-50 (the mean over the 5 folds).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_text_atomic
from .models.points import OperatingPoint, PointKind, point_kind

__all__ = ["ProfileRow", "profile_rows", "profile_markdown", "profile_json", "store_profile", "write_profile",
           "read_profile", "fold_mean_profile", "metric_names", "PROFILE_FORMAT", "KFOLD_MEAN", "METRICS"]

PROFILE_FORMAT = "flexiast-profile"
#: The ``kind`` of a fold-averaged profile (:func:`fold_mean_profile`).
KFOLD_MEAN = "kfold_mean"
#: Every metric a profile row holds.
METRICS = ("accuracy", "mAP", "AUC", "d_prime")
#: What every row has besides its point and its metrics.
COST_KEYS = ("tokens", "gflops", "latency_ms", "latency_ms_min", "latency_ms_max")
PROFILE_KEYS = ("metric", "multilabel", "resize", "axes", "input", "machine", "rows")


@dataclass(frozen=True)
class ProfileRow:
    """One operating point of a profile: its cost (tokens, forward GFLOPs per clip, latency
    in ms: median, min, max) and its metrics (``<metric>_std`` beside each in a fold average).

    ``tokens``, ``gflops`` and the latency are those of one clip of the point's full length
    (what a budget counts per window). Where clips ran at their own lengths (a packed point),
    ``gflops_mean`` is the mean over the data's clips of each clip's own forward GFLOPs."""

    point: OperatingPoint
    tokens: int
    gflops: float
    latency_ms: float
    latency_ms_min: float
    latency_ms_max: float
    metrics: dict = field(default_factory=dict)
    gflops_mean: float | None = None

    def to_dict(self, kind: PointKind) -> dict:
        """The row as a profile's JSON holds it: the kind's point keys, the costs, the metrics."""
        mean = {} if self.gflops_mean is None else {"gflops_mean": self.gflops_mean}
        return {**kind.row_fields(self.point), "tokens": self.tokens, "gflops": self.gflops, **mean,
                "latency_ms": self.latency_ms, "latency_ms_min": self.latency_ms_min,
                "latency_ms_max": self.latency_ms_max, **self.metrics}

    @classmethod
    def from_dict(cls, row: dict, profile: dict) -> "ProfileRow":
        point = point_kind(profile).row_point(row, profile)
        skip = {*COST_KEYS, "gflops_mean", *point_kind(profile).row_fields(point)}
        return cls(point, row["tokens"], row["gflops"], row["latency_ms"], row.get("latency_ms_min", row["latency_ms"]),
                   row.get("latency_ms_max", row["latency_ms"]), {k: v for k, v in row.items() if k not in skip},
                   row.get("gflops_mean"))


def profile_rows(profile: dict) -> list[ProfileRow]:
    """The typed rows of a profile."""
    return [ProfileRow.from_dict(r, profile) for r in profile["rows"]]


def metric_names(profile: dict) -> list[str]:
    """The task's metric first (mAP for multi-label, accuracy otherwise), then the others."""
    return ["mAP", "AUC", "d_prime", "accuracy"] if profile["multilabel"] else ["accuracy", "mAP", "AUC", "d_prime"]


def _stat(values: list) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of ``values``; None for both where one is not a
    finite number (d' of a perfect AUC)."""
    if any(v is None or not math.isfinite(v) for v in values):
        return None, None
    return statistics.fmean(values), statistics.pstdev(values)


def fold_mean_profile(profiles: list[dict], *, describe: dict | None = None) -> dict:
    """The k-fold profile: fold ``k``'s model profiled on its own test fold (``profiles[k - 1]``),
    averaged row by row.

    Each row keeps the first fold's point, tokens and GFLOPs (checked equal across folds);
    every metric is the mean over folds, ``<metric>_std`` its population standard deviation
    over folds; ``latency_ms`` is the mean of the folds' medians (one machine),
    ``latency_ms_min``/``_max`` the extremes. ``folds`` keeps each fold's rows. The result is a
    profile (:func:`read_profile` reads it, ``flexiast report`` draws it) of ``kind``
    :data:`KFOLD_MEAN`; ``clips`` counts every fold's test clips."""
    if not profiles:
        raise ValueError("no fold profiles to average")
    first = profiles[0]
    kind = point_kind(first)
    key = kind.row_key
    for k, p in enumerate(profiles[1:], start=2):
        for name in ("metric", "row_kind", "length_feed", "packed", "resize", "axes", "input"):
            if p.get(name) != first.get(name):
                raise ValueError(f"fold {k}'s profile has {name} {p.get(name)!r}, fold 1's {first.get(name)!r}: "
                                 "the folds' profiles must be alike to be averaged")
        if [key(r) for r in p["rows"]] != [key(r) for r in first["rows"]]:
            raise ValueError(f"fold {k}'s profile has rows {[key(r) for r in p['rows']]}, fold 1's "
                             f"{[key(r) for r in first['rows']]}")
    rows = []
    for i, r0 in enumerate(profile_rows(first)):
        same = [p["rows"][i] for p in profiles]
        for name in ("tokens", "gflops"):
            if any(r[name] != getattr(r0, name) for r in same):
                raise ValueError(f"row {key(first['rows'][i])}: the folds' models differ in {name}; they are not the "
                                 "same model")
        metrics = {}
        for m in METRICS:
            metrics[m], metrics[f"{m}_std"] = _stat([r[m] for r in same])
        mean = None if r0.gflops_mean is None else statistics.fmean(r["gflops_mean"] for r in same)
        rows.append(ProfileRow(r0.point, r0.tokens, r0.gflops, statistics.fmean(r["latency_ms"] for r in same),
                               min(r["latency_ms_min"] for r in same), max(r["latency_ms_max"] for r in same),
                               metrics, mean).to_dict(kind))
    folds = [{"fold": k, "checkpoint": p.get("checkpoint"), "data": p.get("data"), "clips": p["clips"],
              "rows": [{kind.key_name: key(r), **{m: r[m] for m in METRICS}}
                       for r in p["rows"]]}
             for k, p in enumerate(profiles, start=1)]
    return {"format": PROFILE_FORMAT, "version": 1, "kind": KFOLD_MEAN,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(describe or {}), "metric": first["metric"], "multilabel": first["multilabel"],
            "row_kind": kind.name, **{k: first[k] for k in ("length_feed", "packed", "row_tokens") if k in first},
            "arch": first.get("arch"), "resize": first["resize"],
            "axes": first["axes"], "stored_patch": first.get("stored_patch"), "input": first["input"],
            "compression": first.get("compression", "none"), "n_folds": len(profiles),
            "spread": "population standard deviation over folds",
            "clips": sum(p["clips"] for p in profiles),
            "unreadable_clips": sum(p["unreadable_clips"] for p in profiles),
            "skipped_sizes": first["skipped_sizes"], "machine": first["machine"],
            "latency_runs": first["latency_runs"], "rows": rows, "folds": folds}


def _latency_line(profile: dict, m: dict, what: str) -> str:
    detail = m["precision_reason"] if "precision_reason" in m else f"{m['name']}, {m['threads']} threads"
    return f"Latency: batch 1, {what} of {profile['latency_runs']} calls, {m['precision']}, {detail}, torch {m['torch']}."


def _kfold_markdown(profile: dict, kind: PointKind, metrics: list[str], m: dict) -> str:
    first = profile["folds"][0]["rows"]
    task = profile["metric"]
    key = next(iter(first[0]))
    names, align = kind.markdown_header()
    lines = [f"Fold-averaged profile of `{profile.get('checkpoint', 'k-fold run')}`: each of the {profile['n_folds']} "
             f"folds' models on its own test fold ({profile['clips']} clips in all), {kind.describe(profile)}"
             f"; mean ± {profile['spread']}."
             + (f" Epoch chosen on {profile['epoch_chosen_on']}." if profile.get("epoch_chosen_on") else ""),
             f"Latency: batch 1, mean over folds of the median of {profile['latency_runs']} calls, {m['precision']}, "
             f"{m['name']}, {m['threads']} threads, torch {m['torch']}.", "",
             f"| {names} | tokens | GFLOPs/clip | ms/clip | " + " | ".join(metrics) + " |",
             f"|{align}|---:|---:|---:|" + "---:|" * len(metrics)]
    for r in profile["rows"]:
        cells = ["-" if r[k] is None else f"{r[k]:.4f} ± {r[k + '_std']:.4f}" for k in metrics]
        lines.append(f"| {kind.markdown_cells(r)} | {r['tokens']} | {r['gflops']:.3f} | {r['latency_ms']:.2f} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Per fold, {task}:", "",
              f"| {key} | " + " | ".join(f"fold {f['fold']}" for f in profile["folds"]) + " |",
              "|---:|" + "---:|" * len(profile["folds"])]
    for i, r in enumerate(first):
        lines.append(f"| {r[key]} | " + " | ".join(
            "-" if f["rows"][i][task] is None else f"{f['rows'][i][task]:.4f}" for f in profile["folds"]) + " |")
    return "\n".join(lines) + "\n"


def profile_markdown(profile: dict) -> str:
    """The profile as a Markdown table with a line of provenance."""
    kind = point_kind(profile)
    metrics = metric_names(profile)
    m = profile["machine"]
    if profile.get("kind") == KFOLD_MEAN:
        return _kfold_markdown(profile, kind, metrics, m)
    names, align = kind.markdown_header()
    compression = profile.get("compression", "none")
    mean = "gflops_mean" in profile["rows"][0]
    lines = [f"Profile of `{profile.get('checkpoint', 'model')}` on {profile.get('data', 'data')} "
             f"({profile['clips']} clips): {kind.describe(profile)}, input {profile['input']['frames']} frames x "
             f"{profile['input']['mel_bins']} mel bins"
             + (f" (compression {compression})." if compression != "none" else "."),
             _latency_line(profile, m, "median")
             + (" Tokens, GFLOPs/clip and ms/clip are those of a clip of the row's full length; mean GFLOPs/clip "
                "averages each clip's own, at the length it ran." if mean else ""), "",
             f"| {names} | tokens | GFLOPs/clip | " + ("mean GFLOPs/clip | " if mean else "") + "ms/clip | "
             + " | ".join(metrics) + " |",
             f"|{align}|---:|---:|---:|" + ("---:|" if mean else "") + "---:|" * len(metrics)]
    for r in profile["rows"]:
        lines.append(f"| {kind.markdown_cells(r)} | {r['tokens']} | {r['gflops']:.3f} | "
                     + (f"{r['gflops_mean']:.3f} | " if mean else "") + f"{r['latency_ms']:.2f} | "
                     + " | ".join(_cell(r[k]) for k in metrics) + " |")
    if profile["skipped_sizes"]:
        lines.append(f"\nLeft out (larger than the input): {', '.join(map(str, profile['skipped_sizes']))}.")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4f}"


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


def profile_csv(profile: dict) -> str:
    """The rows as CSV: the kind's point columns, the costs, the metrics (each with its spread in a fold average)."""
    kind = point_kind(profile)
    metrics = metric_names(profile)
    if profile.get("kind") == KFOLD_MEAN:  # each metric's spread over folds beside it
        metrics = [name for k in metrics for name in (k, f"{k}_std")]
    buf = io.StringIO()
    w = csv.writer(buf)
    costs = [*COST_KEYS, *(["gflops_mean"] if "gflops_mean" in profile["rows"][0] else [])]
    w.writerow([*kind.csv_header(), *costs, *metrics])
    for r in profile["rows"]:
        w.writerow([*kind.csv_cells(r), *(r[k] for k in costs), *(r[k] for k in metrics)])
    return buf.getvalue()


def write_profile(profile: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``profile.md``, ``profile.csv`` and ``profile.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "profile.md", "csv": out / "profile.csv", "json": out / "profile.json"}
    write_text_atomic(paths["md"], profile_markdown(profile))
    write_text_atomic(paths["csv"], profile_csv(profile))
    store_profile(profile, paths["json"])
    return paths


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
    try:
        kind = point_kind(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    missing = [k for k in PROFILE_KEYS if k not in data]
    row_keys = (*kind.row_required, "tokens", "gflops", "latency_ms", data.get("metric"))
    missing += [f"rows[{i}].{k}" for i, r in enumerate(data["rows"]) for k in row_keys
                if not isinstance(r, dict) or k not in r]
    if missing:
        raise ValueError(f"{path}: the profile lacks {', '.join(map(str, missing[:5]))}; write it again with "
                         "flexiast evaluate")
    return data
