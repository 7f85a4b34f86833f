"""Optimizers and learning-rate schedules of the AST recipes, as pure functions of the step.

The learning rate of optimizer step ``s`` (0-based, counted within the phase) in epoch
``e`` (0-based, within the phase) is ``lr * warmup(s) * decay(s, e)``:

* ``warmup(s) = min(1, (s + 1) / warmup_steps)`` (AST warms up over its first 1000 steps);
* ``constant``: ``decay = 1``;
* ``multistep``: ``gamma ** #{m in milestones : m <= e}``, exactly ``MultiStepLR`` stepped at
  the end of each epoch, as the AST code does: a milestone ``m`` lowers the rate from epoch
  ``m + 1`` (1-based) on. AST's ESC-50 recipe, ``MultiStepLR(range(5, ...), 0.85)``, is
  ``decay_from: 5, decay_every: 1, gamma: 0.85``: epochs 1-5 at ``lr``, the 6th at
  ``0.85 lr``;
* ``cosine``: ``min_lr/lr + (1 - min_lr/lr) * (1 + cos(pi * t)) / 2`` with ``t`` the fraction of
  post-warmup steps done.

Because the rate is a function of ``(s, e)`` only, a resumed run needs no scheduler state
beyond its step counters, and each phase restarts the schedule (coarse-to-fine, Sec. 2.2).
"""

from __future__ import annotations

import math

import torch

from ..config import OptimizerConfig, ScheduleConfig

__all__ = ["build_optimizer", "lr_factor", "milestones"]


def build_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam or AdamW with torch's default (multi-tensor) kernel.

    The fused kernel makes Adam's step on AST-base 3x faster on CPU
    (``benchmarks/bench_train.py``), but a demo FlexiAST trained with it ended at 0.49
    validation accuracy against 0.67 with this one, same seed (docs/PERFORMANCE.md), so
    it is not used until that is understood.
    """
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def milestones(cfg: ScheduleConfig, epochs: int) -> list[int]:
    """MultiStepLR's milestones: the epoch counts after which the rate is multiplied by ``gamma``."""
    if cfg.milestones is not None:
        return sorted(cfg.milestones)
    if cfg.decay_from is None:
        return []
    return list(range(cfg.decay_from, max(epochs, cfg.decay_from) + 1, cfg.decay_every))


def lr_factor(cfg: ScheduleConfig, base_lr: float, step: int, epoch: int, total_steps: int, epochs: int) -> float:
    """The multiplier of ``base_lr`` at phase step ``step`` in phase epoch ``epoch`` (both 0-based)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.name == "multistep":
        decay = cfg.gamma ** sum(1 for m in milestones(cfg, epochs) if m <= epoch)
    elif cfg.name == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        t = min(1.0, max(0, step - cfg.warmup_steps) / span)
        floor = cfg.min_lr / base_lr if base_lr > 0 else 0.0
        decay = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    else:
        decay = 1.0
    return warm * decay
