"""Figures from saved results, so they can be redrawn without recomputing anything.

* :func:`plot_profiles`: the metric against patch size for several profiles
  (:mod:`flexiast.evaluate`), as FlexiAST's Fig. 1 and 3 (several models), Fig. 5 (BL
  against PI for one model: dashed against solid) and Fig. 4a (both axes, time only,
  frequency only); beside it, the metric against forward GFLOPs per clip, the trade-off a
  deployment chooses from.
* :func:`plot_runs`: validation metric against cumulative training FLOPs and training
  time, for coarse-to-fine runs against their baseline (coarse-to-fine paper, Sec. 3;
  the baseline's best is the dotted line that Table 2's savings are measured to).

Inputs are profile JSON files (or directories holding ``profile.json``) and training
run directories (their ``history.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .models.points import point_kind
from .profiles import PROFILE_FORMAT, read_profile

__all__ = ["plot_profiles", "plot_runs", "profiles_figure", "runs_figure", "read_history", "load_inputs",
           "run_metric"]

LINESTYLE = {"pi": "-", "bl": "--"}
AXIS_MARKER = {"both": "o", "time": "s", "freq": "^"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_history(run_dir: str | Path) -> list[dict]:
    """The epoch records of a training run (``history.json``)."""
    path = Path(run_dir) / "history.json"
    try:
        history = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{run_dir}: not a training run (no history.json)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(history, list) or not history:
        raise ValueError(f"{path}: holds no epochs")
    return history


def run_metric(run_dir: str | Path) -> str:
    """The run's metric name (``accuracy`` or ``mAP``), from its summary when it finished."""
    summary = Path(run_dir) / "summary.json"
    return json.loads(summary.read_text()).get("metric", "metric") if summary.exists() else "metric"


def load_inputs(paths) -> tuple[str, list[tuple[str, object]]]:
    """``("profiles" | "runs", [(path, data), ...])``: what each input is, all of one kind."""
    items = []
    for p in map(Path, paths):
        if p.is_dir() and (p / "history.json").exists():
            items.append(("runs", (str(p), read_history(p))))
        elif p.is_dir() or p.suffix == ".json":
            items.append(("profiles", (str(p), read_profile(p))))
        else:
            raise ValueError(f"{p}: neither a profile ({PROFILE_FORMAT} JSON) nor a run directory (history.json)")
    kinds = {k for k, _ in items}
    if len(kinds) != 1:
        raise ValueError("give either profiles or training runs, not both (they make different figures)")
    return kinds.pop(), [item for _, item in items]


def _profile_labels(profiles: list[dict]) -> list[str]:
    labels = []
    resizes = {p["resize"] for p in profiles}
    axes = {p["axes"] for p in profiles}
    for p in profiles:
        label = p.get("label") or Path(str(p.get("checkpoint", "model"))).name
        if len(resizes) > 1:
            label += f" ({p['resize'].upper()})"
        if len(axes) > 1:
            label += f", {p['axes']}"
        labels.append(label)
    return labels


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    _pyplot().close(fig)
    return out


def plot_profiles(profiles: list[dict], out: str | Path, **kwargs) -> Path:
    """Draw :func:`profiles_figure` into ``out`` (.png, .pdf, .svg)."""
    return _save(profiles_figure(profiles, **kwargs), out)


def plot_runs(runs: list[tuple[str, list[dict]]], out: str | Path, **kwargs) -> Path:
    """Draw :func:`runs_figure` into ``out`` (.png, .pdf, .svg)."""
    return _save(runs_figure(runs, **kwargs), out)


def profiles_figure(profiles: list[dict], *, labels: list[str] | None = None, metric: str | None = None,
                    title: str | None = None):
    """Metric against the operating point (left: patch size, or input length for a family whose
    tokens follow the input) and against GFLOPs per clip (right), one line per profile.

    Profiles of the same model share a colour; BL is dashed, PI solid; the marker shows
    the axes resized (circle both, square time, triangle frequency).
    """
    plt = _pyplot()
    metric = metric or profiles[0]["metric"]
    kinds = {point_kind(p).name + (" cut to clip lengths" if p.get("length_feed") == "cut" else "")
             for p in profiles}
    if len(kinds) > 1:
        raise ValueError(f"profiles over {' and over '.join(sorted(kinds))} rows cannot share a figure's x axis")
    kind = point_kind(profiles[0])
    for p in profiles:
        keys = [kind.row_key(r) for r in p["rows"]]
        if len(set(keys)) != len(keys):  # a profile over clip lengths at several patch sizes
            raise ValueError(f"profile of {p.get('checkpoint')} has several rows at one x value ({kind.key_name}): "
                             "a line needs one row per x value; profile one patch size per profile (--patch-sizes)")
        if metric not in p["rows"][0]:
            raise ValueError(f"profile of {p.get('checkpoint')} has no {metric!r}; it has "
                             f"{', '.join(k for k in p['rows'][0] if k not in ('size', 'patch'))}")
    if labels is not None and len(labels) != len(profiles):
        raise ValueError(f"{len(labels)} labels for {len(profiles)} profiles")
    # One colour per model (the profile's own name, else its checkpoint); labels only rename lines.
    keys = [str(p.get("label") or p.get("checkpoint")) for p in profiles]
    labels = labels or _profile_labels(profiles)
    models = list(dict.fromkeys(keys))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = set()
    for p, label, key in zip(profiles, labels, keys):
        colour = colours[models.index(key) % len(colours)]
        style = dict(color=colour, linestyle=LINESTYLE.get(p["resize"], "-"), marker=AXIS_MARKER.get(p["axes"], "o"),
                     markersize=4, label=label)
        rows = sorted(p["rows"], key=kind.row_key)
        sizes.update(kind.row_key(r) for r in rows)
        left.plot([kind.row_key(r) for r in rows], [r[metric] for r in rows], **style)
        rows = sorted(rows, key=lambda r: r["gflops"])
        right.plot([r["gflops"] for r in rows], [r[metric] for r in rows], **style)
    left.set_xticks(sorted(sizes))
    left.set_xlabel(kind.axis_label)
    right.set_xscale("log")
    import matplotlib.ticker as ticker

    right.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    right.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    right.xaxis.set_minor_formatter(ticker.NullFormatter())
    right.set_xlabel("forward GFLOPs per clip")
    for ax in (left, right):
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    first = profiles[0]
    fig.suptitle(title or f"{metric} at every {kind.noun} ({first.get('data', 'data')}, {first['clips']} clips)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def runs_figure(runs: list[tuple[str, list[dict]]], *, labels: list[str] | None = None, baseline: int | None = 0,
                metric: str = "metric", title: str | None = None):
    """Validation metric against cumulative training TFLOPs (left) and seconds (right).

    The value drawn is the one that selects ``best.safetensors`` (``val_select``: the metric, or its
    mean over the validation patch sizes).
    ``runs`` are ``(name, history)``; epochs of coarse phases are drawn hollow. The run
    at index ``baseline`` (None: none) sets the dotted line at its best validation value.
    """
    plt = _pyplot()
    labels = labels or [Path(name).name for name, _ in runs]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((name, history), label) in enumerate(zip(runs, labels)):
        colour = colours[i % len(colours)]
        x_flops = [h["train_flops_cum"] / 1e12 for h in history]
        x_time = [h["train_seconds_cum"] for h in history]
        y = [h["val_select"] for h in history]
        final = [bool(h.get("final_phase", True)) for h in history]
        for ax, x in ((left, x_flops), (right, x_time)):
            ax.plot(x, y, color=colour, label=label, linewidth=1.2)
            ax.scatter([a for a, f in zip(x, final) if f], [b for b, f in zip(y, final) if f], color=colour, s=14)
            ax.scatter([a for a, f in zip(x, final) if not f], [b for b, f in zip(y, final) if not f],
                       facecolors="none", edgecolors=colour, s=14)
    if baseline is not None and len(runs) > 1:
        best = max(h["val_select"] for h in runs[baseline][1] if h.get("final_phase", True))
        for ax in (left, right):
            ax.axhline(best, color="grey", linestyle=":", linewidth=1)
    left.set_xlabel("cumulative training TFLOPs")
    right.set_xlabel("cumulative training seconds")
    for ax in (left, right):
        ax.set_ylabel(f"validation {metric}")
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(title or "validation against training cost (hollow: coarse phases; dotted: baseline's best)",
                 fontsize=10)
    fig.tight_layout()
    return fig
