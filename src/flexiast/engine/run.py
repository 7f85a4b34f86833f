"""Starting a run: paths made absolute, an existing run refused, k folds or one run."""

from __future__ import annotations

import copy
from pathlib import Path

from ..config import ConfigError, RunConfig
from ..constants import AUTO, OFF
from .kfold import run_kfold
from .trainer import run_training

__all__ = ["train", "absolute_paths"]


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy with relative paths made absolute, so ``--resume`` works from any directory.

    Covers ``out``, ``data.root``, ``data.cache_dir``, ``init.path``, ``loss.teacher`` and
    reader options whose value names an existing file or folder.
    """
    cfg = copy.deepcopy(cfg)
    absolute = lambda p: str(Path(p).absolute()) if p is not None else None  # noqa: E731
    cfg.out = str(cfg.out_dir.absolute())
    cfg.data.root = absolute(cfg.data.root)
    if cfg.data.cache_dir not in (AUTO, OFF):
        cfg.data.cache_dir = absolute(cfg.data.cache_dir)
    cfg.init.path, cfg.loss.teacher = absolute(cfg.init.path), absolute(cfg.loss.teacher)
    for options in (cfg.data.options, cfg.data.train, cfg.data.val, cfg.data.test):
        for k, v in (options or {}).items():
            if isinstance(v, str) and v and not Path(v).is_absolute() and Path(v).exists():
                options[k] = absolute(v)
    return cfg


def train(cfg: RunConfig, run_dir: Path | None = None, *, on_epoch=None) -> dict:
    """Train ``cfg`` from the start (k folds if ``data.kfold``); returns the summary.
    ``on_epoch(record, seconds_left)`` is called after every epoch (on rank 0)."""
    cfg = absolute_paths(cfg)
    if cfg.data.kfold:
        return run_kfold(cfg, run_dir)
    run_dir = Path(run_dir or cfg.out_dir)
    if (run_dir / "last.pt").exists() or (run_dir / "last.prev.pt").exists():
        raise ConfigError(f"out: {run_dir} already holds a run; resume it with --resume {run_dir} "
                          "or choose another out")
    return run_training(cfg, run_dir, on_epoch=on_epoch)
