"""Classification metrics as the AST code reports them: accuracy, mAP, mean AUC and d'.

* accuracy: ``argmax(scores) == argmax(target)`` (targets may be soft; single-label tasks);
* AP of a class: mean over its positives of the precision at that positive's rank
  (scikit-learn's ``average_precision_score``: ties broken by taking all tied scores
  together); mAP: mean over classes that have at least one positive;
* AUC of a class: the Mann-Whitney statistic, P(score of a positive > score of a
  negative) with ties counted 1/2; mean AUC over classes with both positives and
  negatives;
* d' = sqrt(2) * Phi^-1(mean AUC) (AST: ``d_prime``).

Written by hand (about 40 lines) so the toolkit does not pull scikit-learn for four
functions; ``tests/test_metrics.py`` checks them against hand-computed values.
"""

from __future__ import annotations

import math

import torch

__all__ = ["accuracy", "average_precision", "roc_auc", "d_prime", "classification_metrics"]


def accuracy(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy of ``scores [N, K]`` against ``target [N, K]`` (probabilities) or ``[N]``."""
    labels = target.argmax(dim=-1) if target.dim() == 2 else target
    return float((scores.argmax(dim=-1) == labels).double().mean()) if len(scores) else float("nan")


def _class_ap(s: torch.Tensor, y: torch.Tensor) -> float:
    order = torch.argsort(s, descending=True, stable=True)
    s, y = s[order].double(), y[order].double()
    # Positions where the score changes: precision and recall are taken per distinct score.
    last = torch.cat([s[1:] != s[:-1], torch.tensor([True])]).nonzero().squeeze(-1)
    tp = torch.cumsum(y, 0)[last]
    precision = tp / (last + 1).double()
    recall_step = torch.diff(torch.cat([torch.zeros(1, dtype=torch.double), tp])) / y.sum()
    return float((precision * recall_step).sum())


def average_precision(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class AP ``[K]``; NaN for a class without positives."""
    y = target > 0.5
    return torch.tensor([_class_ap(scores[:, k], y[:, k]) if y[:, k].any() else math.nan
                         for k in range(scores.shape[1])], dtype=torch.double)


def roc_auc(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class ROC AUC ``[K]`` (Mann-Whitney, ties 1/2); NaN without both classes."""
    y = target > 0.5
    out = []
    for k in range(scores.shape[1]):
        pos, neg = scores[y[:, k], k].double(), scores[~y[:, k], k].double()
        if not len(pos) or not len(neg):
            out.append(math.nan)
            continue
        allv = torch.cat([pos, neg])
        ranks = _average_ranks(allv)
        u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
        out.append(float(u / (len(pos) * len(neg))))
    return torch.tensor(out, dtype=torch.double)


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied values sharing their mean rank."""
    sorted_v, order = torch.sort(v, stable=True)
    ranks = torch.empty_like(v)
    uniq, inverse = torch.unique(sorted_v, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=v.dtype).index_add_(0, inverse, torch.arange(1, len(v) + 1, dtype=v.dtype))
    counts = torch.zeros(len(uniq), dtype=v.dtype).index_add_(0, inverse, torch.ones(len(v), dtype=v.dtype))
    ranks[order] = (sums / counts)[inverse]
    return ranks


def d_prime(auc: float) -> float:
    """``sqrt(2) * Phi^-1(auc)``."""
    return float(math.sqrt(2.0) * torch.special.ndtri(torch.tensor(auc, dtype=torch.double)))


def classification_metrics(scores: torch.Tensor, target: torch.Tensor, multilabel: bool) -> dict:
    """``{"accuracy"}`` for single-label tasks, plus ``mAP``, ``AUC`` and ``d_prime`` for multi-label."""
    scores, target = scores.detach().float().cpu(), target.detach().float().cpu()
    if not multilabel:
        return {"accuracy": accuracy(scores, target)}
    ap, auc = average_precision(scores, target), roc_auc(scores, target)
    mean_auc = float(auc.nanmean())
    return {"mAP": float(ap.nanmean()), "AUC": mean_auc, "d_prime": d_prime(mean_auc),
            "accuracy": accuracy(scores, target)}
