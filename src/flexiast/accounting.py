"""Coarse-to-fine savings against a baseline run: the paper's Table 2 (and Table 3), read two ways.

Coarse-to-fine (Feng et al., ICASSP 2024) Sec. 3.3: "we terminate the final phase of
training at the earliest epoch that surpasses the baseline performance ... the baseline
reference, where the epoch number with the highest accuracy is selected"; Table 2's Acc
column is the run's number at that epoch. A run's *cost* up to an epoch is the training
FLOPs and wall time spent until the end of that epoch (``train_flops_cum``,
``train_seconds_cum`` in ``history.json``), coarse phases included; evaluation is not
counted. Savings are ``1 - cost(run) / cost(baseline reference)``. Only epochs of the final
(full-resolution) phase are compared.

:func:`savings` reports both readings:

* ``validation`` (clean): the baseline's reference is its earliest final-phase epoch at its
  highest validation number (``val_select``); the run stops at its earliest final-phase
  epoch whose validation number reaches it (``>=``). Nothing is decided on test; the test
  numbers at both epochs are reported where the histories hold them.
* ``paper``: the same with the test metric (``test_select``, recorded per epoch with
  ``train.test_every_epoch``): the reference is the baseline's earliest epoch at its highest
  test number, the run stops at its earliest final-phase epoch whose test number *strictly*
  surpasses it, and that test number is the Acc column. Without per-epoch test numbers in
  both histories it is not available (:func:`paper_savings` raises, naming the option).

A run that never reaches (surpasses) the baseline has no savings; its best final-phase
number is reported instead.

:func:`fixed_budget` is the AudioSet setting of Table 2, where the paper trains 1 coarse
and 3 fine epochs against the 5-epoch baseline and reports a small mAP drop: the run is
read at the end of its ``N``-th final-phase epoch and compared with the baseline's whole
run (its last epoch): the saving the paper reports (35.32% of FLOPs for Fshift 4->1) is
``1 - (c + 3) / 5`` with ``c`` the cost of the coarse epoch relative to a full one, which
only the whole 5-epoch baseline as reference gives, and AST's AudioSet result is its
weight average over all 5 epochs.

:func:`no_budget` is Table 3, the accuracy without a budget: the test number at each run's best
validation epoch, and the paper's (AST's) number, the weight-averaged model's where the run
averages, else the best per-epoch test number.

:func:`pretraining_savings` reads two SSAST pretraining runs (Table 6's SSAST rows): what each
whole run cost, what the run spent until its validation pretraining loss (masked-patch
``NCE + w MSE`` on fixed validation masks) first reached the baseline's *final* one, and, given
the runs fine-tuned from each, their downstream test numbers: the paper's reading of Table 6 is
the whole pretraining's cost against the fine-tuned accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_history", "savings", "validation_savings", "paper_savings", "fixed_budget", "no_budget", "has_test",
           "is_pretraining", "pretraining_savings"]

#: What a history needs for the paper's reading, in words.
TEST_NEEDED = ("per-epoch test numbers (history.json 'test_select'), which a run records with "
               "train.test_every_epoch=true (or when its validation split is its test split)")


def load_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training history (is {run_dir} a flexiast run?)")
    return json.loads(path.read_text())


def _final(history: list[dict], run_dir) -> list[dict]:
    final = [r for r in history if r["final_phase"]]
    if not final:
        raise ValueError(f"{run_dir}: no finished epoch of its final (full-resolution) phase")
    return final


def has_test(history: list[dict]) -> bool:
    """Whether every final-phase epoch of ``history`` has its test number."""
    final = [r for r in history if r["final_phase"]]
    return bool(final) and all("test_select" in r for r in final)


def _cost(run: dict, ref: dict) -> dict:
    return {"flops_saved": 1 - run["train_flops_cum"] / ref["train_flops_cum"],
            "time_saved": 1 - run["train_seconds_cum"] / ref["train_seconds_cum"]}


def _reading(run_final: list[dict], base_final: list[dict], key: str, strict: bool) -> dict:
    """Reference = the baseline's earliest epoch at its highest ``key``; stop = the run's earliest
    epoch above it (``strict``) or at least it."""
    target = max(r[key] for r in base_final)
    ref = next(r for r in base_final if r[key] == target)
    reach = next((r for r in run_final if (r[key] > target if strict else r[key] >= target)), None)
    out = {"decided_on": "test" if key == "test_select" else "validation", "rule": ">" if strict else ">=",
           "baseline_epoch": ref["epoch"], "baseline_value": target, "baseline_flops": ref["train_flops_cum"],
           "baseline_seconds": ref["train_seconds_cum"], "run_best": max(r[key] for r in run_final),
           "reached": reach is not None}
    if reach is None:
        out.update(run_epoch=None, run_value=None, flops_saved=None, time_saved=None)
        return out
    out.update(run_epoch=reach["epoch"], run_phase_epoch=reach.get("phase_epoch"),
               run_value=reach[key], run_flops=reach["train_flops_cum"], run_seconds=reach["train_seconds_cum"],
               **_cost(reach, ref))
    return out


def validation_savings(run_dir: str | Path, baseline_dir: str | Path) -> dict:
    """The validation-decided reading; ``baseline_test`` and ``run_test`` are the test numbers at
    the two epochs (None where the history has no per-epoch test)."""
    run_final = _final(load_history(run_dir), run_dir)
    base_final = _final(load_history(baseline_dir), baseline_dir)
    out = _reading(run_final, base_final, "val_select", strict=False)
    ref = next(r for r in base_final if r["epoch"] == out["baseline_epoch"])
    out["baseline_test"] = ref.get("test_select")
    reach = next((r for r in run_final if r["epoch"] == out["run_epoch"]), None)
    out["run_test"] = reach.get("test_select") if reach is not None else None
    return out


def paper_savings(run_dir: str | Path, baseline_dir: str | Path) -> dict:
    """The paper's reading (Sec. 3.3), decided on the test metric; ``run_value`` is Table 2's
    Acc (mAP) column and ``difference`` its bracket. Raises ValueError naming what is missing
    where a history lacks per-epoch test numbers."""
    runs = {"run": (run_dir, load_history(run_dir)), "baseline": (baseline_dir, load_history(baseline_dir))}
    missing = [str(d) for d, h in runs.values() if not has_test(h)]
    if missing:
        raise ValueError(f"the paper's reading of Table 2 is decided on test and needs {TEST_NEEDED}; "
                         f"{' and '.join(missing)} lack{'s' if len(missing) == 1 else ''} them")
    run_final = _final(runs["run"][1], run_dir)
    base_final = _final(runs["baseline"][1], baseline_dir)
    out = _reading(run_final, base_final, "test_select", strict=True)
    out["difference"] = None if out["run_value"] is None else out["run_value"] - out["baseline_value"]
    return out


def savings(run_dir: str | Path, baseline_dir: str | Path) -> dict:
    """Both readings: ``validation`` (:func:`validation_savings`) and ``paper``
    (:func:`paper_savings`, or None with ``paper_unavailable`` saying why). The validation
    reading's fields are also at the top level, under the names earlier versions returned
    (``baseline_best``, ``baseline_epoch``, ``reached``, ``run_epoch``, ``run_value``,
    ``flops_saved``, ``time_saved``, ...)."""
    val = validation_savings(run_dir, baseline_dir)
    out = {"baseline_best": val["baseline_value"], "baseline_epoch": val["baseline_epoch"],
           "baseline_flops": val["baseline_flops"], "baseline_seconds": val["baseline_seconds"],
           "run_best": val["run_best"], "reached": val["reached"], "flops_saved": val["flops_saved"],
           "time_saved": val["time_saved"]}
    if val["reached"]:
        out.update(run_epoch=val["run_epoch"], run_value=val["run_value"], run_flops=val["run_flops"],
                   run_seconds=val["run_seconds"])
    out["validation"] = val
    try:
        out["paper"], out["paper_unavailable"] = paper_savings(run_dir, baseline_dir), None
    except ValueError as e:
        out["paper"], out["paper_unavailable"] = None, str(e)
    return out


def fixed_budget(run_dir: str | Path, baseline_dir: str | Path, fine_epochs: int) -> dict:
    """The run at the end of its ``fine_epochs``-th final-phase epoch against the baseline's whole
    run (its last final-phase epoch): validation and test numbers of both (per-epoch weights;
    test None without per-epoch test numbers), their differences, and FLOPs and time saved."""
    if fine_epochs < 1:
        raise ValueError(f"fine_epochs={fine_epochs} must be at least 1")
    run_final = _final(load_history(run_dir), run_dir)
    base_final = _final(load_history(baseline_dir), baseline_dir)
    if len(run_final) < fine_epochs:
        raise ValueError(f"{run_dir}: its final phase has {len(run_final)} finished epoch(s), fewer than "
                         f"--fine-epochs {fine_epochs}")
    at, ref = run_final[fine_epochs - 1], base_final[-1]
    diff = lambda a, b: None if a is None or b is None else a - b  # noqa: E731
    out = {"fine_epochs": fine_epochs, "run_epoch": at["epoch"], "baseline_epoch": ref["epoch"],
           "baseline_final_epochs": len(base_final),
           "run_val": at["val_select"], "baseline_val": ref["val_select"],
           "val_difference": at["val_select"] - ref["val_select"],
           "run_test": at.get("test_select"), "baseline_test": ref.get("test_select"),
           "run_flops": at["train_flops_cum"], "run_seconds": at["train_seconds_cum"],
           "baseline_flops": ref["train_flops_cum"], "baseline_seconds": ref["train_seconds_cum"], **_cost(at, ref)}
    out["test_difference"] = diff(out["run_test"], out["baseline_test"])
    if out["run_test"] is None or out["baseline_test"] is None:
        out["test_unavailable"] = f"the test difference needs {TEST_NEEDED}"
    return out


def _no_budget_side(run_dir, history: list[dict]) -> dict:
    final = _final(history, run_dir)
    best_val = max(r["val_select"] for r in final)
    at_val = next(r for r in final if r["val_select"] == best_val)
    out = {"final_epochs": len(final), "best_val_epoch": at_val["epoch"], "best_val": best_val,
           "test_at_best_val": at_val.get("test_select")}
    summary_path = Path(run_dir) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    averaged = summary.get("test_select", {}).get("averaged")
    if averaged is not None:
        out.update(paper_value=averaged, paper_source="weight-averaged model")
    elif has_test(history):
        best = max(r["test_select"] for r in final)
        epoch = next(r for r in final if r["test_select"] == best)["epoch"]
        out.update(paper_value=best, paper_source=f"best test epoch ({epoch})")
    else:
        out.update(paper_value=None, paper_source=None)
    return out


def no_budget(run_dir: str | Path, baseline_dir: str | Path) -> dict:
    """Table 3 ("trained until convergence without training budget constraints"), read two ways,
    for ``run`` and ``baseline`` each, with ``validation_difference`` and ``paper_difference``:

    * ``test_at_best_val`` (at ``best_val_epoch``): the test number at the run's best validation
      epoch of its final phase (what ``best.safetensors`` scores; nothing is decided on test);
    * ``paper_value`` (``paper_source`` says which): the number AST's code reports, which the
      coarse-to-fine paper's baselines use (Sec. 3.1): the weight-averaged model where the run
      averages (AST's AudioSet setting; ``summary.json`` ``test_select.averaged``), else the best
      test number over the final phase's epochs (AST picks its epoch on the evaluation set); None
      without per-epoch test numbers or averaging.

    Both are capped by the recipes: the final phase ends after its ``epochs`` (the baseline's
    length in the c2f recipes), where the paper trains "until convergence"; ``final_epochs`` says
    how many each had."""
    sides = {name: _no_budget_side(d, load_history(d)) for name, d in (("run", run_dir), ("baseline", baseline_dir))}
    diff = lambda a, b: None if a is None or b is None else a - b  # noqa: E731
    return {**sides,
            "validation_difference": diff(sides["run"]["test_at_best_val"], sides["baseline"]["test_at_best_val"]),
            "paper_difference": diff(sides["run"]["paper_value"], sides["baseline"]["paper_value"])}


def is_pretraining(history: list[dict]) -> bool:
    """Whether ``history`` is a pretraining run's (its validation records masked-patch numbers)."""
    return bool(history) and any("mse" in v or "masked_acc" in v for v in _stored(history[-1]).values())


def _stored(record: dict) -> dict:
    return {k: v for k, v in record.get("val", {}).items() if not k.startswith("_")}


def _pretrain_loss(record: dict) -> float:
    (numbers,) = _stored(record).values()
    return numbers["loss"]


def _downstream(run_dir) -> dict:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    test = summary.get("test", {}).get("best")
    if test is None:
        raise ValueError(f"{run_dir}: no test numbers in summary.json (a fine-tuning run with a test split)")
    values = {k: v[summary["metric"]] for k, v in test.items() if not k.startswith("_")}
    return {"run_dir": str(run_dir), "metric": summary["metric"], "value": sum(values.values()) / len(values)}


def pretraining_savings(run_dir: str | Path, baseline_dir: str | Path, downstream=None) -> dict:
    """Two pretraining runs (SSAST): ``whole`` (the cost of each whole run and the saving), ``to_loss``
    (the baseline's final validation pretraining loss; the run's earliest final-phase epoch at or
    below it, and its cost to there; None where it never gets there), and with ``downstream =
    (run's fine-tuned run, baseline's fine-tuned run)`` the test numbers of the models fine-tuned
    from each (``summary.json``'s best weights, the mean over its test sizes)."""
    runs = {"run": (run_dir, load_history(run_dir)), "baseline": (baseline_dir, load_history(baseline_dir))}
    for d, h in runs.values():
        if not is_pretraining(h):
            raise ValueError(f"{d}: not a pretraining run (its validation records no masked-patch numbers)")
    run_final, base_final = (_final(h, d) for d, h in runs.values())
    run_last, base_last = runs["run"][1][-1], runs["baseline"][1][-1]
    target = _pretrain_loss(base_final[-1])
    reach = next((r for r in run_final if _pretrain_loss(r) <= target), None)
    out = {"measure": "validation pretraining loss (NCE + w MSE on fixed masks), the baseline's final epoch",
           "whole": {"run_flops": run_last["train_flops_cum"], "run_seconds": run_last["train_seconds_cum"],
                     "baseline_flops": base_last["train_flops_cum"],
                     "baseline_seconds": base_last["train_seconds_cum"], **_cost(run_last, base_last),
                     "run_loss": _pretrain_loss(run_final[-1]), "baseline_loss": target},
           "to_loss": None}
    if reach is not None:
        out["to_loss"] = {"run_epoch": reach["epoch"], "run_loss": _pretrain_loss(reach),
                          "run_flops": reach["train_flops_cum"], "run_seconds": reach["train_seconds_cum"],
                          **_cost(reach, base_last)}
    if downstream is not None:
        ft_run, ft_base = (_downstream(d) for d in downstream)
        out["downstream"] = {"run": ft_run, "baseline": ft_base, "difference": ft_run["value"] - ft_base["value"]}
    return out
