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
  post-warmup steps done;
* ``htsat``: HTS-AT's ``LambdaLR`` (sed_model.py, ``configure_optimizers``), which Lightning
  steps once per epoch, so the factor is constant within an epoch. With ``rates`` its
  ``lr_rate`` (n = 3 entries) and ``bounds`` its ``lr_scheduler_epoch``: epochs ``e < n``
  warm up at ``rates[e]``; later epochs take ``rates[n - 1 - bisect_left(bounds, e)]``
  (so a bound is the last epoch of its step), and past the last bound
  ``max(rates[0] * 0.98 ** e, 0.03)``. With its defaults (0.02, 0.05, 0.1 and 10, 20, 30):
  0.02, 0.05, 0.1 for epochs 0-2, 0.1 to epoch 10, 0.05 to 20, 0.02 to 30, then 0.03
  (``0.02 * 0.98 ** e`` is always below the 0.03 floor). Its warm-up is per epoch, not per
  step; ``warmup_steps`` still multiplies it when set.

Because the rate is a function of ``(s, e)`` only, a resumed run needs no scheduler state
beyond its step counters, and each phase restarts the schedule (coarse-to-fine, Sec. 2.2).
"""

from __future__ import annotations

import bisect
import math

import torch

from ..config import OptimizerConfig, ScheduleConfig
from ..constants import HTSAT_EPOCH_BOUNDS, HTSAT_EPOCH_RATES, HTSAT_LATE_DECAY, HTSAT_LATE_FLOOR

__all__ = ["build_optimizer", "lr_factor", "milestones", "htsat_factor"]


def build_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam or AdamW with torch's default (multi-tensor) kernel.

    The fused kernel makes Adam's step on AST-base 3x faster on CPU
    (``benchmarks/bench_train.py``), but a demo FlexiAST trained with it ended at 0.49
    validation accuracy against 0.67 with this one, same seed (docs/PERFORMANCE.md), so
    it is not used until that is understood.
    """
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
               amsgrad=cfg.amsgrad)


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
    elif cfg.name == "htsat":
        decay = htsat_factor(epoch, cfg.epoch_rates, cfg.epoch_bounds)
    else:
        decay = 1.0
    return warm * decay


def htsat_factor(epoch: int, rates=None, bounds=None) -> float:
    """HTS-AT's learning-rate factor of (0-based) ``epoch`` (see the module's docstring)."""
    rates = list(HTSAT_EPOCH_RATES if rates is None else rates)
    bounds = list(HTSAT_EPOCH_BOUNDS if bounds is None else bounds)
    n = len(rates)
    if epoch < n:  # the warm-up epochs
        return rates[epoch]
    pos = bisect.bisect_left(bounds, epoch)
    if pos >= n:
        return max(rates[0] * HTSAT_LATE_DECAY ** epoch, HTSAT_LATE_FLOOR)
    return rates[n - 1 - pos]
