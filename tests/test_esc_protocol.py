"""ESC-50's k-fold protocols (AST's: train on K - 1 folds, the epoch picked on the test fold), the
fold-averaged profile of ``flexiast evaluate`` on a k-fold run, and both readings of the
coarse-to-fine paper's Table 2 (``flexiast savings``) on hand-written histories."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from flexiast.accounting import fixed_budget, no_budget, paper_savings, savings
from flexiast.cli import main
from flexiast.config import ConfigError, build_config
from flexiast.engine import load_splits, train
from flexiast.evaluate import read_profile

from helpers import tiny_recipe

K = 3
CLIPS_PER_FOLD = 4  # two per class


def _esc_layout(root: Path) -> Path:
    """An ESC-50 layout of K folds; a clip's name says its fold (``f{fold}-{j}.wav``)."""
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for fold in range(1, K + 1):
            for j in range(CLIPS_PER_FOLD):
                cls = j % 2
                name = f"f{fold}-{j}.wav"
                x = 0.4 * np.sin(2 * np.pi * (400 + 1200 * cls) * t) + 0.05 * rng.standard_normal(len(t))
                sf.write(root / "audio" / name, x.astype(np.float32), 16000)
                w.writerow([name, fold, cls, ["dog", "rain"][cls], "True", f"{fold}{j}", "A"])
    return root


def _fold_of(item) -> int:
    return int(Path(item.path).name.split("-")[0][1:])


# -- configuration -------------------------------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    ({"kfold": 3, "kfold_protocol": "leave_one_out"},
     r"data.kfold_protocol: 'leave_one_out' is not one of held_out, ast"),
    ({"kfold_protocol": "ast"}, r"data.kfold_protocol: ast applies to k-fold runs; set data.kfold"),
    ({"kfold": 2}, r"data.kfold: 2 folds under kfold_protocol held_out leave no fold to train on"),
], ids=["unknown name", "ast without kfold", "2 held-out folds"])
def test_kfold_protocol_is_validated(tmp_path, data, message):
    root = _esc_layout(tmp_path / "esc")
    raw = tiny_recipe(root, tmp_path / "cv", data={"format": "esc50", "options": {}, "train": {"folds": [1]},
                                                   "val": {"folds": [2]}, "test": {"folds": [3]}, **data})
    with pytest.raises(ConfigError, match=message):
        build_config(raw)


# -- AST's protocol, end to end -------------------------------------------------------------------
def test_ast_protocol_trains_on_the_other_folds_and_evaluate_averages_the_folds(tmp_path, capsys):
    root = _esc_layout(tmp_path / "esc")
    run = tmp_path / "cv"
    raw = tiny_recipe(root, run, data={"format": "esc50", "options": {}, "kfold": K, "kfold_protocol": "ast",
                                       "train": {}, "val": None, "test": None, "batch_size": 8},
                      train={"eval_patch_sizes": [8, 16]}, phases=[{"epochs": 2}])
    result = train(build_config(raw))
    for k in range(1, K + 1):
        fold_dir = run / f"fold{k}"
        cfg = build_config(yaml.safe_load((fold_dir / "config.yaml").read_text()), check_files=False)
        splits, _ = load_splits(cfg)
        # the clips themselves: training on every other fold, validation and test both fold k
        assert sorted({_fold_of(i) for i in splits["train"].items}) == [j for j in range(1, K + 1) if j != k]
        assert len(splits["train"].items) == (K - 1) * CLIPS_PER_FOLD
        assert [i.path for i in splits["val"].items] == [i.path for i in splits["test"].items]
        assert {_fold_of(i) for i in splits["test"].items} == {k} and len(splits["test"].items) == CLIPS_PER_FOLD
        summary = json.loads((fold_dir / "summary.json").read_text())
        assert summary["epoch_chosen_on"].startswith("test") and "optimistic" in summary["epoch_chosen_on"]
        history = json.loads((fold_dir / "history.json").read_text())
        assert all(h["test_select"] == h["val_select"] and h["test"] == h["val"] for h in history)
    assert result["protocol"] == "ast" and result["epoch_chosen_on"] == "test"
    assert [r["train"] for r in result["folds"]] == [[2, 3], [1, 3], [1, 2]]
    assert "optimistic" in (run / "kfold.md").read_text()
    # AST's get_esc_result.py: the epoch with the best fold-averaged number, each fold at it
    histories = [json.loads((run / f"fold{k}" / "history.json").read_text()) for k in range(1, K + 1)]
    means = [statistics.fmean(h[e]["val_select"] for h in histories) for e in range(2)]
    e = 0 if means[0] >= means[1] else 1
    common = result["ast_common_epoch"]
    assert common["epoch"] == e + 1
    assert common["mean"]["16"] == pytest.approx(statistics.fmean(h[e]["val"]["16"]["accuracy"] for h in histories))

    # flexiast evaluate RUN_DIR: every fold on its own test fold, then the fold average
    assert main(["evaluate", str(run), "--patch-sizes", "8,16", "--resize", "bl", "--latency-runs", "1",
                 "--precision", "fp32", "--batch-size", "4"]) == 0
    assert "the fold average" in capsys.readouterr().out
    folds = [read_profile(run / f"fold{k}" / "eval-best-bl-both") for k in range(1, K + 1)]
    for k, p in enumerate(folds, start=1):
        assert p["clips"] == CLIPS_PER_FOLD and p["resize"] == "bl"
        assert p["checkpoint"].endswith(f"fold{k}/best.safetensors")
    mean = read_profile(run / "eval-best-bl-both")
    assert mean["kind"] == "kfold_mean" and mean["clips"] == K * CLIPS_PER_FOLD and mean["resize"] == "bl"
    assert mean["epoch_chosen_on"] == "test" and mean["protocol"] == "ast"
    assert [r["size"] for r in mean["rows"]] == [8, 16]
    for i, row in enumerate(mean["rows"]):
        for m in ("accuracy", "mAP"):
            values = [p["rows"][i][m] for p in folds]
            assert row[m] == pytest.approx(statistics.fmean(values))
            assert row[f"{m}_std"] == pytest.approx(statistics.pstdev(values))
        assert row["gflops"] == folds[0]["rows"][i]["gflops"]
        assert [f["rows"][i]["accuracy"] for f in mean["folds"]] == [p["rows"][i]["accuracy"] for p in folds]
    # the BL profile at 16 (the stored size: no resize) is the trainer's test of the same weights
    for k, p in enumerate(folds, start=1):
        summary = json.loads((run / f"fold{k}" / "summary.json").read_text())
        assert p["rows"][1]["accuracy"] == pytest.approx(summary["test"]["best"]["16"]["accuracy"])
    # flexiast report draws it like any profile
    assert main(["report", str(run / "eval-best-bl-both"), str(run / "fold1" / "eval-best-bl-both"),
                 "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 0
    # a k-fold run takes no other data
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), "--data", f"esc50:{root},folds=[1]"])


def test_test_every_epoch_records_the_test_split_per_epoch(tmp_path):
    root = _esc_layout(tmp_path / "esc")
    raw = tiny_recipe(root, tmp_path / "run", data={"format": "esc50", "options": {}, "train": {"folds": [1, 2]},
                                                    "val": {"folds": [3]}, "test": {"folds": [1]}, "batch_size": 8},
                      train={"test_every_epoch": True}, phases=[{"epochs": 2}])
    summary = train(build_config(raw))
    assert summary["epoch_chosen_on"] == "validation"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["test"]["_clips"] for h in history] == [CLIPS_PER_FOLD] * 2
    best = history[summary["best_epoch"] - 1]  # best.safetensors holds that epoch's weights
    assert best["test"]["stored"]["accuracy"] == pytest.approx(summary["test"]["best"]["stored"]["accuracy"])
    assert all(h["test_select"] == h["test"]["stored"]["accuracy"] for h in history)
    header = next(csv.reader(open(tmp_path / "run" / "metrics.csv")))
    assert "test_accuracy@stored" in header and "test" not in header
    with pytest.raises(ConfigError, match="train.test_every_epoch: the run has no test split"):
        build_config({**raw, "data": {**raw["data"], "test": None}})


# -- Table 2's two readings -----------------------------------------------------------------------
def _history(path: Path, rows, test=True):
    """rows: (final_phase, val, test, cumulative FLOPs, cumulative seconds) per epoch."""
    path.mkdir()
    records, phase_epoch = [], 0
    for i, (final, val, tst, f, s) in enumerate(rows):
        phase_epoch = phase_epoch + 1 if i and final == rows[i - 1][0] else 1
        r = {"epoch": i + 1, "phase_epoch": phase_epoch, "final_phase": final, "val_select": val,
             "train_flops_cum": f, "train_seconds_cum": s}
        if test:
            r["test_select"] = tst
        records.append(r)
    (path / "history.json").write_text(json.dumps(records))
    return path


BASE = [(True, 0.60, 0.58, 100, 10), (True, 0.70, 0.66, 200, 20), (True, 0.80, 0.70, 300, 30),
        (True, 0.80, 0.74, 400, 40), (True, 0.78, 0.72, 500, 50)]
# A coarse epoch (not compared), then: epoch 2 ties the baseline's best test (0.74, not above it),
# epoch 3 ties its best validation (0.80: reaches it), epoch 4 is the first above 0.74 on test.
RUN = [(False, 0.90, 0.90, 25, 3), (True, 0.75, 0.74, 125, 13), (True, 0.80, 0.71, 225, 23),
       (True, 0.79, 0.76, 325, 33), (True, 0.85, 0.77, 425, 43)]


def test_savings_reads_table_2_both_ways(tmp_path):
    base, run = _history(tmp_path / "base", BASE), _history(tmp_path / "run", RUN)
    s = savings(run, base)
    v, p = s["validation"], s["paper"]
    # validation-decided: baseline's best val 0.80 first at epoch 3; the run reaches it (>=) at epoch 3
    assert (v["baseline_epoch"], v["baseline_value"], v["run_epoch"], v["run_value"]) == (3, 0.80, 3, 0.80)
    assert (v["run_test"], v["baseline_test"]) == (0.71, 0.70)
    assert v["flops_saved"] == pytest.approx(1 - 225 / 300) and v["time_saved"] == pytest.approx(1 - 23 / 30)
    # the paper's: baseline's best test 0.74 at epoch 4; epoch 2's 0.74 does not surpass it, epoch 4's 0.76 does
    assert (p["baseline_epoch"], p["baseline_value"], p["run_epoch"], p["run_value"]) == (4, 0.74, 4, 0.76)
    assert p["difference"] == pytest.approx(0.02) and p["run_phase_epoch"] == 3
    assert p["flops_saved"] == pytest.approx(1 - 325 / 400) and p["time_saved"] == pytest.approx(1 - 33 / 40)
    # the keys earlier versions returned are the validation reading's
    assert (s["reached"], s["run_epoch"], s["baseline_best"], s["run_best"]) == (True, 3, 0.80, 0.85)
    assert s["flops_saved"] == v["flops_saved"] and s["paper_unavailable"] is None


def test_paper_reading_refuses_without_per_epoch_test(tmp_path, capsys):
    base = _history(tmp_path / "base", BASE, test=False)
    run = _history(tmp_path / "run", RUN)
    with pytest.raises(ValueError, match=r"train.test_every_epoch.*base lacks them"):
        paper_savings(run, base)
    s = savings(run, base)
    assert s["paper"] is None and "train.test_every_epoch" in s["paper_unavailable"]
    assert s["validation"]["baseline_test"] is None and s["validation"]["run_test"] == 0.71
    assert main(["savings", str(run), "--baseline", str(base), "--reading", "paper"]) == 2
    assert "train.test_every_epoch" in capsys.readouterr().err
    assert main(["savings", str(run), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "| paper, Sec. 3.3 (decided on test) | not available |" in out and "Paper reading not available" in out


def test_savings_cli_prints_both_readings_and_json(tmp_path, capsys):
    base, run = _history(tmp_path / "base", BASE), _history(tmp_path / "run", RUN)
    assert main(["savings", str(run), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "| validation-decided (clean): reaches (>=) its best val | 3 | 0.8000 | 3 | 0.8000 | 0.7100 | 0.7000 | " \
           "25.0% | 23.3% |" in out
    assert "| paper, Sec. 3.3 (decided on test): surpasses (>) its best test | 4 | 0.7400 | 4 | 0.7600 |" in out
    assert "0.7600 (+0.0200 against the baseline's 0.7400)" in out
    assert main(["savings", str(run), "--baseline", str(base), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["paper"]["run_epoch"] == 4 and data["validation"]["run_epoch"] == 3 and data["run_epoch"] == 3


def test_no_budget_reads_table_3_both_ways(tmp_path, capsys):
    """Table 3: the test number at each run's best validation epoch (first at its highest: the run's
    epoch 5, 0.85 -> 0.77; the baseline's epoch 3, 0.80 -> 0.70), and AST's number, the best test
    epoch (run 0.77 at 5, baseline 0.74 at 4), or the weight-averaged model where a run has one."""
    base, run = _history(tmp_path / "base", BASE), _history(tmp_path / "run", RUN)
    n = no_budget(run, base)
    assert (n["run"]["best_val_epoch"], n["run"]["test_at_best_val"]) == (5, 0.77)
    assert (n["baseline"]["best_val_epoch"], n["baseline"]["test_at_best_val"]) == (3, 0.70)
    assert n["validation_difference"] == pytest.approx(0.07)
    assert (n["run"]["paper_value"], n["baseline"]["paper_value"]) == (0.77, 0.74)
    assert n["paper_difference"] == pytest.approx(0.03) and n["run"]["final_epochs"] == 4
    (base / "summary.json").write_text(json.dumps({"test_select": {"best": 0.70, "averaged": 0.75}}))
    n = no_budget(run, base)
    assert n["baseline"]["paper_source"] == "weight-averaged model" and n["paper_difference"] == pytest.approx(0.02)
    assert main(["savings", str(run), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "| test at the best validation epoch (epochs 5 / 3) | 0.7700 | 0.7000 | +0.0700 |" in out
    assert "| 0.7700 | 0.7500 | +0.0200 |" in out and "until convergence" in out
    bare = _history(tmp_path / "bare", BASE, test=False)
    n = no_budget(run, bare)
    assert n["baseline"]["test_at_best_val"] is None and n["paper_difference"] is None
    assert main(["savings", str(run), "--baseline", str(bare)]) == 0
    assert "| paper (AST's number) | not available: it needs per-epoch test numbers" in capsys.readouterr().out


def test_fixed_budget_reads_the_run_after_n_fine_epochs(tmp_path, capsys):
    base, run = _history(tmp_path / "base", BASE), _history(tmp_path / "run", RUN)
    b = fixed_budget(run, base, 3)  # 1 coarse + 3 fine epochs against the whole 5-epoch baseline
    assert (b["run_epoch"], b["baseline_epoch"]) == (4, 5)
    assert b["val_difference"] == pytest.approx(0.79 - 0.78) and b["test_difference"] == pytest.approx(0.76 - 0.72)
    assert b["flops_saved"] == pytest.approx(1 - 325 / 500) and b["time_saved"] == pytest.approx(1 - 33 / 50)
    with pytest.raises(ValueError, match="has 4 finished epoch"):
        fixed_budget(run, base, 5)
    assert main(["savings", str(run), "--baseline", str(base), "--fine-epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "| test | 0.7600 | 0.7200 | +0.0400 |" in out and "saved 35.0%" in out
