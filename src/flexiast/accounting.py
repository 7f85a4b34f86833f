"""Coarse-to-fine savings as the paper's Table 2 computes them (Sec. 3.2).

The baseline's reference is its best validation epoch (the earliest epoch at its
maximum); its cost is the training FLOPs and wall time spent up to the end of that
epoch. A coarse-to-fine run "reaches" the baseline at the earliest epoch of its final
(full-resolution) phase whose validation number is at least the baseline's best; its
cost is everything spent until then, coarse phases included. Savings are
``1 - cost(run) / cost(baseline)``, for FLOPs and for time. A run that never reaches the
baseline has no savings; its best final-phase number is reported instead.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_history", "savings"]


def load_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training history (is {run_dir} a flexiast run?)")
    return json.loads(path.read_text())


def savings(run_dir: str | Path, baseline_dir: str | Path) -> dict:
    run, base = load_history(run_dir), load_history(baseline_dir)
    base_final = [r for r in base if r["final_phase"]]
    run_final = [r for r in run if r["final_phase"]]
    if not base_final or not run_final:
        raise ValueError("both runs need at least one finished epoch of their final phase")
    target = max(r["val_select"] for r in base_final)
    ref = next(r for r in base_final if r["val_select"] == target)
    out = {"baseline_best": target, "baseline_epoch": ref["epoch"], "baseline_flops": ref["train_flops_cum"],
           "baseline_seconds": ref["train_seconds_cum"], "run_best": max(r["val_select"] for r in run_final)}
    reach = next((r for r in run_final if r["val_select"] >= target), None)
    if reach is None:
        out.update(reached=False, flops_saved=None, time_saved=None)
        return out
    out.update(reached=True, run_epoch=reach["epoch"], run_value=reach["val_select"],
               run_flops=reach["train_flops_cum"], run_seconds=reach["train_seconds_cum"],
               flops_saved=1 - reach["train_flops_cum"] / ref["train_flops_cum"],
               time_saved=1 - reach["train_seconds_cum"] / ref["train_seconds_cum"])
    return out
