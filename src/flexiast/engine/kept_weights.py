"""Which weights a run keeps besides the last: chosen by one number, on one split.

Each epoch of the final phase is ranked by its *selection number*: the validation metric
at ``train.select``'s patch size, or its mean over ``train.eval_patch_sizes``
(:func:`selection_number`). From those numbers a run keeps

* ``best.safetensors``: the best epoch (the first of a tie);
* with ``train.weight_averaging``, AST's uniform average of the epochs in ``wa_start ..
  wa_end`` (1-based, within the final phase), summed in float64 as they pass;
* with ``train.average_best: k``, the uniform average of the ``k`` best epochs, whose
  weights wait on disk (:mod:`flexiast.engine.best_epochs`) until the run ends.

The number is read on validation, and on test only where the recipe makes the validation
split the test split (:func:`validates_on_test`); the summary says which (:func:`chosen_on`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import distributed
from ..checkpoints import load_state_dict, save_safetensors
from ..config import RunConfig
from ..constants import SELECT_MEAN
from ..distributed import DistInfo
from .best_epochs import BestEpochFiles
from .run_checkpoint import WEIGHT_FILES, run_weights
from .state import Best, BestEpochs, WeightAverage

__all__ = ["selection_number", "validates_on_test", "chosen_on", "KeptWeights"]


def selection_number(metrics: dict, select, metric: str) -> float:
    """``metric`` at the size ``select`` names, or (``select: mean``) its mean over every size
    scored (the keys of ``metrics`` not starting with ``_``)."""
    if select == SELECT_MEAN:
        return float(np.mean([metrics[k][metric] for k in metrics if not k.startswith("_")]))
    return float(metrics[str(select)][metric])


def validates_on_test(cfg: RunConfig) -> bool:
    """Whether the recipe validates on the test split itself (``data.val == data.test``, as
    ``data.kfold_protocol: ast`` makes each fold's): the best epoch is then chosen on test."""
    d = cfg.data
    return d.val is not None and d.test is not None and d.val == d.test


def chosen_on(cfg: RunConfig) -> str:
    """What picked ``best.safetensors``, in words, for the summary."""
    if validates_on_test(cfg):
        return ("test: the validation split is the test split (data.val == data.test, as data.kfold_protocol: "
                "ast makes it), so the best epoch and its number are optimistic")
    return "validation"


class KeptWeights:
    """The best epoch, the weight average and the ``k`` best epochs of a run in ``run_dir``;
    rank 0 writes their files. :meth:`to_dict` is their part of a checkpoint."""

    def __init__(self, cfg: RunConfig, run_dir: Path, info: DistInfo):
        self.cfg, self.run_dir, self.info = cfg, Path(run_dir), info
        self.best = Best()
        self.average = WeightAverage()
        self.top = BestEpochs()  # train.average_best
        self.files = BestEpochFiles(self.run_dir)

    def to_dict(self) -> dict:
        return {"best": self.best.to_dict(), "extra": self.average.to_dict(), "average_best": self.top.to_dict()}

    def restore(self, state: dict) -> None:
        """From a checkpoint; the epochs it keeps are those of ``last.prev.pt`` once the next is written."""
        self.best = Best.from_dict(state["best"])
        self.average = WeightAverage.from_dict(state["extra"])
        self.top = BestEpochs.from_dict(state.get("average_best", {}))  # absent in older checkpoints
        self.files.previous = set(self.top.epochs())

    def offer(self, value: float, epoch: int, phase_epoch: int, model, inference: dict) -> None:
        """A final-phase epoch (``epoch`` 1-based in the run, ``phase_epoch`` 0-based in the
        phase) whose selection number is ``value``: ``model``'s weights become the best, join
        the ``k`` best (written before the checkpoint that keeps them), or join the average."""
        t = self.cfg.train
        if value > self.best.value:
            self.best = Best(value, epoch)
            if self.info.is_main:
                save_safetensors(model, self.run_dir / WEIGHT_FILES["best"], inference=inference)
        if t.average_best and self.top.offer(value, epoch, t.average_best):
            if self.info.is_main:
                save_safetensors(model, self.files.path(epoch), inference=inference)
        if t.weight_averaging:
            end = t.wa_end or self.cfg.phases[-1].epochs
            if t.wa_start <= phase_epoch + 1 <= end:
                self.average.add(model.state_dict())

    def checkpointed(self) -> None:
        """After rank 0 wrote a checkpoint: delete the epoch files no checkpoint keeps."""
        if self.cfg.train.average_best:
            self.files.prune(self.top)

    def best_weights(self) -> dict | None:
        """The best epoch's weights on every rank (read by rank 0), or None before one was kept."""
        path = run_weights(self.run_dir, "best")
        best = load_state_dict(path)[0] if self.info.is_main and path is not None else None
        return distributed.broadcast_object(best, self.info)

    def averaged(self, like: dict) -> dict | None:
        """The averaged weights in the dtypes of ``like`` (the model's state dict), on every
        rank (the ``k`` best are read from rank 0's files); None when the run averages none."""
        if self.average.sum is not None:
            return self.average.mean(like)
        if self.cfg.train.average_best and self.top.kept:
            mean = self.files.average(self.top, like) if self.info.is_main else None
            return distributed.broadcast_object(mean, self.info)
        return None
