"""ESC-50 style k-fold cross-validation: every fold trained, per-fold and mean test accuracy.

Fold ``k`` (1-based) of ``K`` tests on fold ``k``. What picks its best epoch is
``data.kfold_protocol`` (:data:`~flexiast.constants.KFOLD_PROTOCOLS`):

* ``held_out`` (the default): fold ``k mod K + 1`` validates and the remaining ``K - 2``
  folds train, so the test fold never picks anything.
* ``ast``: the other ``K - 1`` folds train and the test fold itself is the validation set,
  as AST's ``egs/esc50/run_esc.sh`` runs it (``--data-val`` is the fold's eval file;
  ``src/traintest.py`` validates on it every epoch and keeps the best epoch on it) and as
  the FlexiAST and coarse-to-fine papers report ESC-50. The epoch is then chosen on test:
  the per-fold best is optimistic. AST's ``get_esc_result.py`` reports a milder reading,
  one epoch for all folds: the epoch whose test accuracy averaged over the folds is highest,
  and each fold's accuracy at it; ``kfold.json`` holds that reading too (``ast_common_epoch``,
  from the folds' histories at the validation sizes).

``{fold}`` in ``init.path`` or ``loss.teacher`` becomes ``k`` (a FlexiAST fold starts from
the same fold's AST). The reader must accept ``folds=[...]`` (``esc50`` does). Each fold is
a complete run in ``OUT/fold{k}``; ``OUT/kfold.json`` and ``OUT/kfold.md`` hold the table
(mean and population standard deviation over folds). Running the same recipe again
resumes: finished folds return their summaries, an interrupted fold continues from its
checkpoint. ``flexiast evaluate OUT`` profiles every fold's model on its test fold at every
patch size and writes the fold-averaged profile (:func:`flexiast.deploy.profiling.evaluate_kfold`).
"""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

from ..config import RunConfig
from ..constants import KFOLD_PROTOCOLS
from .trainer import resume, run_training

__all__ = ["fold_config", "fold_splits", "run_kfold", "protocol_note", "KFOLD_FILE"]

#: The table a k-fold run writes into its directory (``flexiast evaluate`` recognises a k-fold run by it).
KFOLD_FILE = "kfold.json"


def fold_splits(k: int, K: int, protocol: str) -> dict[str, list[int]]:
    """The folds fold ``k`` of ``K`` trains, validates and tests on under ``protocol``."""
    if protocol == "ast":
        return {"train": [j for j in range(1, K + 1) if j != k], "val": [k], "test": [k]}
    val = k % K + 1
    return {"train": [j for j in range(1, K + 1) if j not in (k, val)], "val": [val], "test": [k]}


def protocol_note(protocol: str, K: int) -> str:
    """The protocol in one sentence, for kfold.json and kfold.md."""
    if protocol == "ast":
        return (f"protocol ast (AST's egs/esc50/run_esc.sh): fold k trains on the other {K - 1} folds and its best "
                "epoch is chosen on its test fold itself, so the per-fold numbers are optimistic")
    return (f"protocol held_out: fold k tests, fold k mod {K} + 1 picks the best epoch, the other {K - 2} folds "
            "train; the test fold picks nothing")


def fold_config(cfg: RunConfig, k: int, out: Path) -> RunConfig:
    """Fold ``k``'s plain run: its folds as explicit splits (:func:`fold_splits`), ``{fold}`` resolved."""
    K = cfg.data.kfold
    splits = fold_splits(k, K, cfg.data.kfold_protocol)
    fold = copy.deepcopy(cfg)
    fold.data.kfold = 0
    fold.data.kfold_protocol = KFOLD_PROTOCOLS[0]  # a fold is a plain run; its splits say it all
    fold.data.train = {"folds": splits["train"]}
    fold.data.val = {"folds": splits["val"]}
    fold.data.test = {"folds": splits["test"]}
    if fold.init.path:
        fold.init.path = fold.init.path.replace("{fold}", str(k))
    if fold.loss.teacher:
        fold.loss.teacher = fold.loss.teacher.replace("{fold}", str(k))
    fold.name = f"{cfg.name}-fold{k}"
    fold.out = str(out / f"fold{k}")
    return fold


def _common_epoch(histories: list[list[dict]], metric: str) -> dict | None:
    """AST's get_esc_result.py reading: the final-phase epoch whose validation number averaged
    over folds is highest (the first such), and every fold's numbers at it. None where the
    folds ran different numbers of final-phase epochs."""
    finals = [[r for r in h if r["final_phase"]] for h in histories]
    if len({len(f) for f in finals}) != 1 or not finals[0]:
        return None
    means = [statistics.fmean(f[i]["val_select"] for f in finals) for i in range(len(finals[0]))]
    i = means.index(max(means))
    sizes = [s for s in finals[0][i]["val"] if not s.startswith("_")]
    per_fold = [{size: f[i]["val"][size][metric] for size in sizes} for f in finals]
    return {"epoch": finals[0][i]["epoch"], "phase_epoch": finals[0][i]["phase_epoch"], "select_mean": means[i],
            "folds": per_fold, "mean": {s: statistics.fmean(r[s] for r in per_fold) for s in sizes},
            "std": {s: statistics.pstdev([r[s] for r in per_fold]) for s in sizes}}


def run_kfold(cfg: RunConfig, run_dir: Path | None = None) -> dict:
    """Every fold of ``cfg`` (paths already absolute, :func:`flexiast.engine.train`), then the table."""
    out = Path(run_dir or cfg.out_dir)
    K, protocol = cfg.data.kfold, cfg.data.kfold_protocol
    folds = []
    for k in range(1, K + 1):
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
        rows.append({"fold": k, **fold_splits(k, K, protocol), "best_epoch": s["best_epoch"], "val": s["best_val"],
                     "test": {size: m[metric] for size, m in test.items() if not size.startswith("_")}})
    sizes = list(rows[0]["test"])
    mean = {size: statistics.fmean(r["test"][size] for r in rows) for size in sizes}
    spread = {size: statistics.pstdev([r["test"][size] for r in rows]) for size in sizes}
    note = protocol_note(protocol, K)
    result = {"metric": metric, "protocol": protocol, "epoch_chosen_on": "test" if protocol == "ast" else "validation",
              "note": note, "folds": rows, "mean": mean, "std": spread}
    common = None
    if protocol == "ast":
        common = _common_epoch([json.loads((out / f"fold{k}" / "history.json").read_text())
                                for k in range(1, K + 1)], metric)
        result["ast_common_epoch"] = common
    out.mkdir(parents=True, exist_ok=True)
    (out / KFOLD_FILE).write_text(json.dumps(result, indent=1))
    lines = [f"K-fold {metric}, {note}.", "",
             f"| fold | best epoch | val {metric} | " + " | ".join(f"test @{s}" for s in sizes) + " |",
             "|---" * (3 + len(sizes)) + "|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['best_epoch']} | {r['val']:.4f} | "
                     + " | ".join(f"{r['test'][s]:.4f}" for s in sizes) + " |")
    lines.append("| mean ± std | | | " + " | ".join(f"{mean[s]:.4f} ± {spread[s]:.4f}" for s in sizes) + " |")
    if common is not None:
        lines += ["", f"AST's reading (get_esc_result.py): one epoch for all folds, the one whose {metric} on the "
                  f"test folds averaged over folds is highest: epoch {common['epoch']}; mean over folds "
                  + ", ".join(f"@{s} {common['mean'][s]:.4f} ± {common['std'][s]:.4f}" for s in common["mean"])
                  + " (also chosen on test)."]
    (out / "kfold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result
