"""The trainer's state, typed: what a checkpoint saves besides weights, optimizer and RNG.

Each dataclass is saved as the plain dict ``dataclasses.asdict`` gives (the checkpoint
layout of earlier versions, key for key) and restored with ``from_dict``, so a run
resumes bit-identically whichever version wrote its checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = ["Progress", "PhaseAccount", "Best", "WeightAverage", "BestEpochs"]


class _Saved:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)


@dataclass
class Progress(_Saved):
    """Where the run is. ``phase``: the current phase; ``step`` / ``epoch``: optimizer steps and
    epochs of the run; ``phase_step`` / ``phase_epoch``: of the current phase (its schedule's
    clock); ``batch``: steps done in the current epoch (a mid-epoch resume skips them);
    ``entered``: the last phase whose model was adapted (-1: none); ``done``: the summary is
    written. ``loss_sum`` / ``loss_clips``: this epoch's training loss so far; ``skipped`` /
    ``unreadable``: this epoch's unreadable clip reads over all ranks, and their files."""

    phase: int = 0
    step: int = 0
    phase_step: int = 0
    epoch: int = 0
    phase_epoch: int = 0
    batch: int = 0
    done: bool = False
    entered: int = -1
    loss_sum: float = 0.0
    loss_clips: int = 0
    skipped: int = 0
    unreadable: list[str] = field(default_factory=list)

    def count_step(self, loss: float, clips: int, skipped: int, errors: list[str]) -> None:
        """One optimizer step done: the clocks advance, and its mean ``loss`` over ``clips``,
        its ``skipped`` reads and their ``errors`` join the epoch's."""
        self.step += 1
        self.phase_step += 1
        self.batch += 1
        self.loss_sum += loss * clips
        self.loss_clips += clips
        if skipped:
            self.skipped += skipped
            self.unreadable = sorted(set(self.unreadable) | set(errors))

    def end_epoch(self) -> float:
        """This epoch's mean training loss; resets the epoch's running sums."""
        loss = self.loss_sum / max(self.loss_clips, 1)
        self.loss_sum, self.loss_clips = 0.0, 0
        return loss


@dataclass
class PhaseAccount(_Saved):
    """A phase's cost: training FLOPs (analytic, all ranks), training and validation seconds,
    optimizer steps and clips trained on (``flexiast savings`` reads these)."""

    train_flops: int = 0
    train_seconds: float = 0.0
    val_seconds: float = 0.0
    steps: int = 0
    clips: int = 0

    def count_step(self, clips: int, flops: int, seconds: float) -> None:
        """One optimizer step of ``clips`` clips and ``flops`` FLOPs that took ``seconds``."""
        self.steps += 1
        self.clips += clips
        self.train_flops += flops
        self.train_seconds += seconds


@dataclass
class Best(_Saved):
    """The final phase's best validation number so far and its (1-based) epoch."""

    value: float = -math.inf
    epoch: int | None = None


@dataclass
class WeightAverage:
    """AST's weight averaging: the float64 sum of the final phase's epoch weights and their count."""

    sum: dict | None = None
    count: int = 0

    def add(self, state_dict: dict) -> None:
        sd = {k: v.detach().double().cpu() for k, v in state_dict.items()}
        self.sum = sd if self.sum is None else {k: self.sum[k] + sd[k] for k in sd}
        self.count += 1

    def mean(self, like: dict) -> dict:
        """The average, in the dtypes of ``like`` (the model's state dict)."""
        return {k: (v / self.count).to(like[k].dtype) for k, v in self.sum.items()}

    def to_dict(self) -> dict:
        return {"wa_sum": self.sum, "wa_count": self.count}

    @classmethod
    def from_dict(cls, d: dict) -> "WeightAverage":
        return cls(d["wa_sum"], d["wa_count"])


@dataclass
class BestEpochs(_Saved):
    """``train.average_best``: the final phase's ``k`` best epochs so far by the selection
    number, as ``[value, epoch]`` pairs (1-based epochs), best first. A tie keeps the earlier
    epoch, as :class:`Best` does. Their weights are files in the run directory; this list
    is what the checkpoint saves."""

    kept: list = field(default_factory=list)

    def offer(self, value: float, epoch: int, k: int) -> bool:
        """Count ``epoch`` with ``value``; True when it is now among the ``k`` best."""
        if len(self.kept) >= k and not value > self.kept[-1][0]:
            return False
        self.kept = sorted(self.kept + [[float(value), int(epoch)]], key=lambda p: (-p[0], p[1]))[:k]
        return True

    def epochs(self) -> list[int]:
        """The kept epochs in increasing order (the order their weights are summed in)."""
        return sorted(e for _, e in self.kept)
