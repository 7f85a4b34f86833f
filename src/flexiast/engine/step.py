"""The arithmetic of one optimizer step across micro-batches and ranks.

One step takes ``A = accum_steps`` micro-batches on each of ``W`` ranks. Under ``data.on_error:
skip`` a micro-batch may lose unreadable clips, so micro-batches differ in size; the step
must still be the one a single process would take with the whole batch: the mean of the
loss over every clip kept, on all ranks,

    L = (1 / K) * sum over kept clips i of l_i,     K = clips kept over all ranks.

The trainer backpropagates each micro-batch's mean loss ``L_j`` (``n_j`` clips) scaled by
``w_j / A``; DDP then averages the gradients over the ``W`` ranks. With :func:`loss_weight`'s
``w_j = n_j W A / K`` that average is the gradient of ``L`` (in exact arithmetic):

    (1 / W) * sum_(ranks, j) (w_j / A) * L_j = sum_(ranks, j) (n_j / K) * L_j = L.

Without unreadable clips ``K = W A n`` and every ``w_j`` is 1. Micro-batches filled by tokens
(``data.batching: packed | bucketed``) hold different numbers of clips on every rank, so
there ``K`` is always summed over the ranks, and each clip still weighs ``1 / K``. The helpers here compute
``K`` (:func:`clips_kept`), ``w_j`` (:func:`loss_weight`), the stand-in a rank runs when
a whole micro-batch was unreadable (:func:`weigh_micro_batch`), when DDP all-reduces
gradients (:func:`gradient_sync`), the step's totals over ranks (:func:`reduce_totals`) and
its analytic FLOPs (:class:`StepFlops`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from .. import distributed
from ..distributed import DistInfo
from ..models import flops
from ..models.packing import Clips
from ..models.patchout import kept_count

__all__ = ["clips_kept", "loss_weight", "weigh_micro_batch", "placeholder_batch", "gradient_sync", "StepTotals",
           "reduce_totals", "StepFlops"]


def clips_kept(micro_batches: list[dict], info: DistInfo, *, varies: bool) -> int:
    """``K``: the clips of this step's micro-batches that were read, summed over all ranks.

    Every rank's micro-batches hold the same clips unless they ``varies`` (clips can be
    skipped, or micro-batches are filled by tokens), so then ``K`` is this rank's count times
    ``W`` with no communication; otherwise, on several ranks, it is one all-reduce (float64:
    exact for any clip count)."""
    kept = sum(len(batch["spec"]) for batch in micro_batches if batch["spec"] is not None)
    if not (info.enabled and varies):
        return kept * info.world_size
    t = torch.tensor([kept], dtype=torch.float64, device=info.device)
    torch.distributed.all_reduce(t)
    return int(t[0])


def loss_weight(clips: int, kept: int, world: int, accum: int) -> float:
    """``w_j = n_j W A / K``: the factor on a micro-batch's mean loss (``n_j`` clips, before
    the division by ``A``) that gives each clip of the step the weight ``1 / K`` once DDP
    has averaged over the ``W`` ranks (the module docstring has the sum)."""
    return clips * world * accum / kept


def placeholder_batch(frames: int, mel_bins: int, num_classes: int, packed: bool = False) -> dict:
    """One all-zero clip of the phase's input shape (a packed batch of one clip with
    ``packed``), target and dataset index: what a rank runs, with weight 0, when every clip of
    its micro-batch was unreadable."""
    spec = torch.zeros(1, frames, mel_bins)
    return {"spec": Clips((spec[0],)) if packed else spec, "target": torch.zeros(1, num_classes),
            "index": torch.zeros(1, dtype=torch.long)}


def weigh_micro_batch(batch: dict, kept: int, info: DistInfo, accum: int,
                      stand_in: tuple) -> tuple[dict | None, float]:
    """The micro-batch to run and its loss weight :func:`loss_weight`.

    A micro-batch whose every clip was unreadable (``spec`` None) is left out in one process
    (None). Under DDP the other ranks wait for this one in the gradient all-reduce of the
    backward pass, so it runs :func:`placeholder_batch` of the ``stand_in`` shape (frames,
    mel bins, classes, packed) instead, with weight 0: it joins the all-reduce and adds nothing to
    the gradient, nor to the step's loss and counts (only weighted micro-batches count)."""
    if batch["spec"] is not None:
        return batch, loss_weight(len(batch["spec"]), kept, info.world_size, accum)
    if not info.enabled:
        return None, 0.0
    return placeholder_batch(*stand_in), 0.0


def gradient_sync(forward, *, last: bool, info: DistInfo):
    """The context of a micro-batch's forward and backward: DDP all-reduces gradients in the
    backward of the step's last micro-batch only; before it, ``no_sync`` lets them
    accumulate on each rank (the sum is the same, with ``A - 1`` fewer all-reduces)."""
    if last or not info.enabled or not hasattr(forward, "no_sync"):
        return contextlib.nullcontext()
    return forward.no_sync()


@dataclass
class StepTotals:
    """What a step reports: ``loss_sum`` (sum over clips of each clip's loss, from each
    weighted micro-batch's mean times its clips), the ``clips`` trained on, the ``skipped``
    unreadable reads and their ``errors`` ("file: reason"), the step's training ``flops``."""

    loss_sum: float = 0.0
    clips: int = 0
    skipped: int = 0
    flops: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, mean_loss: float, clips: int, flops: int) -> None:
        """Count a micro-batch of ``clips`` clips whose mean loss was ``mean_loss``."""
        self.loss_sum += mean_loss * clips
        self.clips += clips
        self.flops += flops

    @property
    def loss(self) -> float:
        """The step's mean loss per clip (0 for a step without a clip)."""
        return self.loss_sum / max(self.clips, 1)


def reduce_totals(totals: StepTotals, info: DistInfo) -> StepTotals:
    """``totals`` summed over all ranks: the loss sum, clips, skipped reads and FLOPs in one
    all-reduce (float64: exact for these counts), so every rank logs the same step. Where any
    rank skipped a clip, the files are gathered too (a second collective, only in such
    steps), so every rank names them."""
    if not info.enabled:
        return totals
    t = torch.tensor([totals.loss_sum, totals.clips, totals.skipped, totals.flops], dtype=torch.float64,
                     device=info.device)
    torch.distributed.all_reduce(t)
    summed = StepTotals(float(t[0]), int(t[1]), int(t[2]), int(t[3]), totals.errors)
    if summed.skipped:
        summed.errors = [e for part in distributed.gather_objects(totals.errors, info) for e in part]
    return summed


class StepFlops:
    """Training FLOPs of one micro-batch (this rank's), counted analytically
    (:func:`flexiast.models.flops` with the task's call options, plus what the task adds, a
    teacher's forward): a tensor batch's by its shape (a bucketed batch's padded shape),
    cached per model configuration, shape and call; a packed batch's
    (:class:`~flexiast.models.packing.Clips`) by its clips, each at its own length and patch.
    A bucket's ``lengths`` in the call change which positions are pooled, not the FLOPs; a
    patchout draw changes them by the number of tokens it keeps, the same for every step."""

    def __init__(self, task, mel_bins: int):
        self.task, self.mel_bins = task, mel_bins
        self._cache: dict = {}

    def __call__(self, model, spec, call: dict) -> int:
        call = {k: v for k, v in call.items() if k != "lengths"}
        if "patchout" in call:  # the FLOPs depend on how many tokens a step keeps, not which
            call["patchout"] = kept_count(call["patchout"], None)
        if isinstance(spec, Clips):
            extra = self.task.flop_call(model.config, spec)
            return flops(model, spec, **call, **extra).training + self.task.extra_flops(spec)
        key = (model.config, tuple(spec.shape), tuple(sorted(call.items())))
        if key not in self._cache:
            shape = tuple(spec.shape)
            extra = self.task.flop_call(model.config, shape)
            self._cache[key] = flops(model, shape, **call, **extra).training + self.task.extra_flops(shape)
        return self._cache[key]
