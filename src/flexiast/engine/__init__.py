"""The training engine: one loop for every model family and task.

``train(cfg)`` starts a run (k folds with ``data.kfold``), ``resume(run_dir)`` continues
one bit-identically; :class:`Trainer` is the loop (phase, epoch, step), its state typed in
:mod:`flexiast.engine.state`; ``splits``, ``logs``, ``optim``, ``patch_sampler``,
``run_checkpoint`` and ``kfold`` hold its parts.
"""

from .run import absolute_paths, train
from .splits import load_splits
from .trainer import Trainer, resume, run_training

__all__ = ["Trainer", "train", "resume", "run_training", "load_splits", "absolute_paths"]
