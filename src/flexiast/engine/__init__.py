"""The training engine: one loop for every model family and task.

``train(cfg)`` starts a run (k folds with ``data.kfold``), ``resume(run_dir)`` continues
one bit-identically; :class:`Trainer` is the loop (phase, epoch, step), its state typed in
:mod:`flexiast.engine.state`. Its parts: ``phases`` (what each phase is), ``phase`` (what a
phase holds while it runs), ``step`` (a step's weighting and reductions over micro-batches
and ranks), ``objective`` (the task), ``kept_weights`` and ``best_epochs`` (best and
averaged weights), ``splits``, ``logs``, ``optim``, ``point_sampler``, ``run_checkpoint``
and ``kfold``.
"""

from .run import absolute_paths, train
from .splits import load_splits
from .trainer import Trainer, resume, run_training

__all__ = ["Trainer", "train", "resume", "run_training", "load_splits", "absolute_paths"]
