"""ESC-50 style k-fold cross-validation: every fold trained, per-fold and mean test accuracy.

Fold ``k`` (1-based) of ``K`` tests on fold ``k``, validates on fold ``k mod K + 1`` (the
best epoch is chosen there, not on the test fold as the AST code does), and trains on
the remaining ``K - 2`` folds. ``{fold}`` in ``init.path`` or ``loss.teacher`` becomes ``k``
(a FlexiAST fold starts from the same fold's AST). The reader must accept ``folds=[...]`` (``esc50`` does).
Each fold is a complete run in ``OUT/fold{k}``; ``OUT/kfold.json`` and ``OUT/kfold.md``
hold the table. Running the same recipe again resumes: finished folds return their
summaries, an interrupted fold continues from its checkpoint.
"""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

from ..config import RunConfig
from .trainer import resume, run_training

__all__ = ["fold_config", "run_kfold"]


def fold_config(cfg: RunConfig, k: int, out: Path) -> RunConfig:
    K = cfg.data.kfold
    val = k % K + 1
    fold = copy.deepcopy(cfg)
    fold.data.kfold = 0
    fold.data.train = {"folds": [j for j in range(1, K + 1) if j not in (k, val)]}
    fold.data.val = {"folds": [val]}
    fold.data.test = {"folds": [k]}
    if fold.init.path:
        fold.init.path = fold.init.path.replace("{fold}", str(k))
    if fold.loss.teacher:
        fold.loss.teacher = fold.loss.teacher.replace("{fold}", str(k))
    fold.name = f"{cfg.name}-fold{k}"
    fold.out = str(out / f"fold{k}")
    return fold


def run_kfold(cfg: RunConfig, run_dir: Path | None = None) -> dict:
    """Every fold of ``cfg`` (paths already absolute, :func:`flexiast.engine.train`), then the table."""
    out = Path(run_dir or cfg.out_dir)
    folds = []
    for k in range(1, cfg.data.kfold + 1):
        fc = fold_config(cfg, k, out)
        if (Path(fc.out) / "last.pt").exists():
            summary = resume(fc.out)  # finished folds return their summary at once
        else:
            summary = run_training(fc, Path(fc.out))
        folds.append(summary)
    metric = folds[0]["metric"]
    rows = []
    for k, s in enumerate(folds, start=1):
        test = s.get("test", {}).get("best", {})
        rows.append({"fold": k, "best_epoch": s["best_epoch"], "val": s["best_val"],
                     "test": {size: m[metric] for size, m in test.items() if not size.startswith("_")}})
    sizes = list(rows[0]["test"])
    mean = {size: statistics.fmean(r["test"][size] for r in rows) for size in sizes}
    spread = {size: statistics.pstdev([r["test"][size] for r in rows]) for size in sizes}
    result = {"metric": metric, "folds": rows, "mean": mean, "std": spread}
    out.mkdir(parents=True, exist_ok=True)
    (out / "kfold.json").write_text(json.dumps(result, indent=1))
    lines = [f"| fold | best epoch | val {metric} | " + " | ".join(f"test @{s}" for s in sizes) + " |",
             "|---" * (3 + len(sizes)) + "|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['best_epoch']} | {r['val']:.4f} | "
                     + " | ".join(f"{r['test'][s]:.4f}" for s in sizes) + " |")
    lines.append("| mean ± std | | | " + " | ".join(f"{mean[s]:.4f} ± {spread[s]:.4f}" for s in sizes) + " |")
    (out / "kfold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result
