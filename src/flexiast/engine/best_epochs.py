"""The weight files of ``train.average_best``: the final phase's ``k`` best epochs on disk.

:class:`~flexiast.engine.state.BestEpochs` (in the checkpoint) says which epochs are kept;
their weights are ``RUN/best_epochs/epochNNNN.safetensors``. An epoch's file is written
before the checkpoint that keeps it, and deleted only once neither ``last.pt`` nor
``last.prev.pt`` (the checkpoint a resume falls back to) keeps it, so a killed and resumed
run ends with the same average bit for bit.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoints import load_state_dict
from .state import BestEpochs

__all__ = ["BEST_EPOCHS_DIR", "BestEpochFiles"]

#: The folder of a run that holds the weights of the epochs ``train.average_best`` keeps.
BEST_EPOCHS_DIR = "best_epochs"


class BestEpochFiles:
    """The kept epochs' files in ``run_dir``; ``previous`` is the epochs the previous
    checkpoint kept (``last.prev.pt``'s), whose files must stay too."""

    def __init__(self, run_dir: Path, previous: set[int] | None = None):
        self.folder = Path(run_dir) / BEST_EPOCHS_DIR
        self.previous = set(previous or ())

    def path(self, epoch: int) -> Path:
        return self.folder / f"epoch{epoch:04d}.safetensors"

    def prune(self, top: BestEpochs) -> None:
        """Delete the epoch weights no checkpoint needs, after a checkpoint keeping ``top``
        was written: those of ``top`` and of the previous checkpoint stay; every other file
        in the folder goes, partial writes of a killed run included."""
        keep = {self.path(e).name for e in set(top.epochs()) | self.previous}
        for path in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            if path.name not in keep:
                path.unlink(missing_ok=True)
        self.previous = set(top.epochs())

    def average(self, top: BestEpochs, like: dict) -> dict:
        """The uniform average of the kept epochs' weights, ``(1 / k) * sum of w_e``, read one
        file at a time and summed in float64 in epoch order (so a resumed run sums in the same
        order), cast to the dtypes of ``like`` (the model's state dict). Integer tensors
        (BatchNorm's ``num_batches_tracked``) are not averaged: they are the best epoch's."""
        total, ints = None, load_state_dict(self.path(top.kept[0][1]))[0]
        for epoch in top.epochs():
            sd = load_state_dict(self.path(epoch))[0]
            if total is None:
                total = {k: v.double() for k, v in sd.items() if v.is_floating_point()}
            else:
                for k in total:
                    total[k] += sd[k].double()
        n = len(top.kept)
        return {k: (total[k] / n).to(v.dtype) if k in total else ints[k].clone() for k, v in like.items()}
