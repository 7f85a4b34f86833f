"""What each phase of a run is, derived from the recipe and the features alone.

A phase (coarse-to-fine, Sec. 2.2-2.3) fixes the model's geometry (input length under
fshift or pooling, a ``p x Cp`` kernel under ``patch:C``), how the kernel moves into it,
the patch sizes its steps draw, and so its expected cost per step. The trainer asks
these questions here; none of them depends on the weights.
"""

from __future__ import annotations

import math

from ..config import RunConfig
from ..config.batching import phase_clips
from ..features import FeatureConfig
from ..models import flops
from .state import PhaseAccount, Progress

__all__ = ["PhasePlan"]


class PhasePlan:
    """The phases of ``cfg`` on ``features``."""

    def __init__(self, cfg: RunConfig, features: FeatureConfig):
        self.cfg, self.features = cfg, features

    def geometry(self, i: int) -> dict:
        """The model's geometry in phase ``i`` (:meth:`flexiast.config.RunConfig.phase_geometry`):
        its input length (``target_length / C`` under fshift or pooling) and, for a patch family,
        its stored kernel (``p x Cp`` in a ``patch:C`` phase)."""
        return self.cfg.phase_geometry(i, self.features)

    def model_config(self, i: int, current):
        """The model configuration of phase ``i``: ``current`` with :meth:`geometry`."""
        return current.replace(**self.geometry(i))

    def transfer(self, i: int) -> str:
        """How the kernel moves into phase ``i``: that phase's, or the patch phase it leaves."""
        phases = self.cfg.phases
        if self.cfg.phase_compression(i).method == "patch" or i == 0:
            return phases[i].transfer
        return phases[i - 1].transfer

    def feature_bytes(self, splits: dict) -> int:
        """What caching the run's features takes: every clip of every split, once per input
        resolution the phases read (fshift changes it, pooling does not), float32."""
        f = self.features
        frames = {f.fbank_frames(self.cfg.phase_compression(i)) for i in range(len(self.cfg.phases))}
        clips = sum(len(m.items) for m in splits.values())
        return clips * sum(frames) * f.num_mel_bins * 4

    def step_flops(self, i: int, current, task) -> float:
        """Expected training FLOPs of one optimizer step of phase ``i`` (all ranks): the mean
        over its sampler's sizes, weighted as drawn, at its input length and stored kernel,
        plus what the task adds (a teacher's forward), with the tokens its patchout keeps. Under
        variable-length batches with ``data.batch_tokens``, as if its tokens were clips of the
        phase's full length."""
        cfg, ph = self.cfg, self.cfg.phases[i]
        model_cfg = self.model_config(i, current)
        frames = self.features.frames(cfg.phase_compression(i))
        batch = cfg.data.batch_size
        if cfg.data.batching != "fixed" and cfg.data.batch_tokens is not None:
            full = phase_clips(cfg, i, self.features, model_cfg).tokens(frames)
            batch = max(1, round(cfg.data.batch_tokens / full))
        shape = (batch, frames, self.features.num_mel_bins)
        points = cfg.phase_points(i, self.features)
        weights = ph.patch.weights if ph.patch.sampler == "weighted" else [1.0] * len(points)
        if ph.patch.sampler == "fixed":
            points, weights = points[:1], [1.0]
        extra = task.flop_call(model_cfg, shape)
        if (patchout := ph.patchout.patchout()).active:  # the tokens its steps keep (phases[].patchout)
            extra = {**extra, "patchout": patchout}
        total = sum(w * flops(model_cfg, shape, **point.call(), **extra).training for point, w in zip(points, weights))
        total += sum(weights) * task.extra_flops(shape)
        return total / sum(weights)

    def seconds_left(self, progress: Progress, accounting: list[PhaseAccount], epochs_done: int, *,
                     phase_total: int, phase_epochs: int, steps_per_epoch: int, current, task) -> float:
        """An estimate of the run's remaining wall time: the FLOPs still to train (this
        phase's remaining steps and every later phase's, counted analytically) at the seconds
        per FLOP measured so far, plus the mean validation time per epoch for the epochs left."""
        done_flops = sum(a.train_flops for a in accounting)
        done_seconds = sum(a.train_seconds for a in accounting)
        val_per_epoch = sum(a.val_seconds for a in accounting) / max(epochs_done, 1)
        left_flops = (phase_total - progress.phase_step) * self.step_flops(progress.phase, current, task)
        left_epochs = phase_epochs - progress.phase_epoch
        for j in range(progress.phase + 1, len(self.cfg.phases)):
            ph = self.cfg.phases[j]
            steps = ph.steps if ph.steps is not None else ph.epochs * steps_per_epoch
            left_flops += steps * self.step_flops(j, current, task)
            left_epochs += ph.epochs if ph.epochs is not None else math.ceil(steps / steps_per_epoch)
        rate = done_seconds / done_flops if done_flops else 0.0
        return left_flops * rate + left_epochs * val_per_epoch
