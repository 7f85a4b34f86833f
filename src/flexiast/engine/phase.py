"""A phase's runtime: what the trainer builds on entering a phase, as one typed object.

Entering phase ``i`` (or resuming inside it) builds, in this order, everything its steps
use: the optimizer and gradient scaler over the model's parameters (both restart with each
phase, coarse-to-fine Sec. 2.2), the forward wrapper (DDP, ``torch.compile``), the patch
sampler and the kernel resize of each step's patch size (FlexiAST Sec. 2.3), the training
and validation sets at the phase's compression, the data sampler and training loader, and
the phase's length in optimizer steps and epochs. Under variable-length batches
(``data.batching: packed | bucketed``) the sets keep each clip's own length
(:mod:`flexiast.config.batching`) and a :class:`~flexiast.data.TokenBatchSampler` fills each
micro-batch by tokens (ElasticAST, Feng et al., Interspeech 2024); the phase's steps per
epoch are that sampler's. :func:`build_phase` is the one place that builds them; the
trainer holds the result in one attribute and replaces it whole at the next phase, so
nothing of a phase outlives it (its loaders' workers end with it).

What a phase is (its geometry, its transfer, its expected cost) is :mod:`.phases`'s
:class:`~flexiast.engine.phases.PhasePlan`, a function of the recipe alone; this module is
what a phase *has* while it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import distributed
from ..config import ConfigError, RunConfig, ScheduleConfig
from ..config.batching import PhaseClips, phase_batch_tokens, phase_clips
from ..data import AudioDataset, Collate, ShardedSampler, TokenBatchSampler, clip_frames
from ..data.loader import EpochKeys, make_loader
from ..data.samplers import BalancedSampler, manifest_weights
from ..distributed import DistInfo
from ..features import normalize
from ..models.patchout import Patchout, step_positions
from .optim import build_optimizer, lr_factor
from .point_sampler import PointSampler
from .state import Progress

__all__ = ["PhaseRuntime", "build_phase", "place_model"]


@dataclass
class PhaseRuntime:
    """The live state of phase ``index``.

    ``forward`` is what a step calls: the model itself, or the model in DDP and/or
    ``torch.compile``. ``sampler`` draws step ``s``'s operating point from ``(seed, s)``
    (a patch size and the resize that makes its kernel from the stored one, for a patch
    family; the phase's one point otherwise). ``frames`` is the phase's input length.
    ``steps_per_epoch`` is this rank's share of the training set in whole optimizer steps;
    ``total_steps`` and ``epochs`` are the phase's length (a phase given in steps may end
    mid-epoch, its last epoch counted whole). The workers of ``train_loader`` (which learn
    the epoch from ``data_sampler``'s keys) and of ``eval_loaders`` (by split, made when
    first asked for) persist for the phase and end with it. ``start_per_step`` is what one
    optimizer step takes of this rank's share of ``data_sampler`` (clips, or micro-batches of
    a token sampler), for resuming mid-epoch. Under variable-length batches ``clips`` holds
    the phase's clip lengths and token counts (None for fixed batches), ``collate`` makes
    its batches, ``draw_per_clip`` says that each clip draws its own patch size and
    ``pass_lengths`` that a length bucket's clip lengths go to the model (a family that leaves
    padding out of its pooling, ``ModelFamily.pools_lengths``). ``patchout``: the patch tokens
    the phase's steps drop (``phases[].patchout``; None: none), each clip's drawn from
    ``(seed, step, clip)`` (:mod:`flexiast.models.patchout`) on the grid of ``model_config``, the
    configuration of the phase's model.
    """

    index: int
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: PointSampler
    train_set: AudioDataset
    val_set: AudioDataset
    data_sampler: ShardedSampler | BalancedSampler
    train_loader: torch.utils.data.DataLoader
    frames: int
    steps_per_epoch: int
    total_steps: int
    epochs: int
    base_lr: float
    schedule: ScheduleConfig
    start_per_step: int = 1
    clips: PhaseClips | None = None
    collate: Collate = field(default_factory=lambda: Collate("fixed"))
    draw_per_clip: bool = False
    pass_lengths: bool = False
    patchout: Patchout | None = None
    model_config: object = None
    eval_loaders: dict = field(default_factory=dict)

    def learning_rate(self, progress: Progress) -> float:
        """The rate of the current step: ``lr * factor(phase step, phase epoch)``
        (:func:`~flexiast.engine.optim.lr_factor`); the schedule's clock is the phase's."""
        return self.base_lr * lr_factor(self.schedule, self.base_lr, progress.phase_step, progress.phase_epoch,
                                        self.total_steps, self.epochs)

    def steps_left_in_epoch(self, progress: Progress) -> int:
        """Optimizer steps left in the current epoch (the phase may end first)."""
        return min(self.steps_per_epoch - progress.batch, self.total_steps - progress.phase_step)

    def micro_call(self, spec, point, batch: dict, step: int, device):
        """A micro-batch and its call at step ``step``'s ``point``: with ``patch.draw: clip`` each
        packed clip at its own point (:meth:`PointSampler.per_clip`, from ``(seed, step, clip)``),
        the call keeping the rest; a length bucket's clip lengths where the family pools each
        clip over its own frames; the phase's patchout, each clip's tokens drawn from ``(seed,
        step, clip)``."""
        call = point.call()
        if self.pass_lengths:
            call["lengths"] = batch["lengths"].to(device)
        if self.patchout is not None:  # positions drawn here: a compiled forward sees one tensor shape
            draw = self.patchout.draw((self.sampler.seed, step, i) for i in batch["index"].tolist())
            call["patchout"] = step_positions(self.model_config, spec.shape, call.get("patch_size"), draw, device)
        if not self.draw_per_clip:
            return spec, call
        points = self.sampler.per_clip(step, batch["index"].tolist())
        call.pop("patch_size", None)
        return spec.with_patches([p.patch for p in points]), call

    def stand_in_frames(self) -> int:
        """The frames of the zero clip a rank runs when a whole micro-batch was unreadable."""
        return self.frames if self.clips is None else self.clips.train.shortest

    def eval_frames(self, samples: list[int] | None, features) -> list[int] | None:
        """Each evaluation clip's model frames (None for fixed batches): what orders them."""
        if self.clips is None or samples is None:
            return None
        return clip_frames(samples, features, self.train_set.compression, self.clips.eval)


def place_model(model: torch.nn.Module, info: DistInfo) -> tuple[torch.nn.Module, str | None]:
    """``model`` on this rank's device, its BatchNorm layers synchronised under DDP where
    torch can (:func:`flexiast.distributed.sync_batchnorm`), and that function's note."""
    model.to(info.device)
    if not info.enabled:
        return model, None
    return distributed.sync_batchnorm(model, info.device)


def build_phase(i: int, model: torch.nn.Module, *, cfg: RunConfig, info: DistInfo, scaler_enabled: bool,
                unused_parameters: bool, splits: dict, features, cache, micro_batch: int,
                workers: int, samples: dict | None = None) -> PhaseRuntime:
    """Phase ``i``'s runtime for ``model`` (already adapted to the phase and placed with
    :func:`place_model`). ``splits`` are the run's manifests, ``cache`` its feature cache,
    ``micro_batch`` the clips per rank and micro-batch, ``workers`` the loader processes;
    ``unused_parameters`` tells DDP that the task leaves some parameters without a gradient;
    ``samples`` the training clips' samples (``"train"``, from their headers) under
    variable-length batches."""
    ph, d = cfg.phases[i], cfg.data
    patchout = ph.patchout.patchout()
    optimizer = build_optimizer(model.parameters(), cfg.phase_optimizer(i))
    scaler = torch.amp.GradScaler(info.device.type, enabled=scaler_enabled)
    forward = _forward(model, i, cfg, info, unused_parameters)
    sampler = PointSampler(cfg.phase_points(i, features), ph.patch.sampler, ph.patch.weights, seed=cfg.seed)
    comp = cfg.phase_compression(i)
    clips = None if d.batching == "fixed" else phase_clips(cfg, i, features, model.config)
    train_set = AudioDataset(splits["train"], features, compression=comp, augment=cfg.augment, train=True,
                             cache=cache, on_error=d.on_error, seed=cfg.seed,
                             lengths=None if clips is None else clips.train)
    val_set = AudioDataset(splits["val"], features, compression=comp, cache=cache, on_error=d.on_error,
                           seed=cfg.seed, lengths=None if clips is None else clips.eval)
    n = len(train_set)
    weights = manifest_weights(splits["train"], balanced=d.balanced)  # a mixture's, or AST's balance
    pin = info.device.type == "cuda"
    if clips is not None:
        data_sampler = _token_sampler(cfg, i, clips, features, samples["train"], weights, info)
        collate = Collate(d.batching, row_tokens=d.row_tokens,
                          pad=float(normalize(torch.tensor(features.pad_value), features)))
        train_loader = make_loader(train_set, batch_sampler=EpochKeys(data_sampler), workers=workers, seed=cfg.seed,
                                   pin_memory=pin, collate_fn=collate)
        steps_per_epoch, start_per_step = data_sampler.steps_per_epoch, cfg.train.accum_steps
    else:
        if weights is not None:
            data_sampler = BalancedSampler(weights, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
        else:
            data_sampler = ShardedSampler(n, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
        collate = Collate("fixed")
        train_loader = make_loader(train_set, batch_size=micro_batch, sampler=EpochKeys(data_sampler),
                                   workers=workers, drop_last=True, seed=cfg.seed, pin_memory=pin)
        steps_per_epoch = math.ceil(n / info.world_size) // (micro_batch * cfg.train.accum_steps)
        start_per_step = micro_batch * cfg.train.accum_steps
    if steps_per_epoch == 0:
        key = "data.batch_size" if clips is None else "data.batch_tokens"
        raise ConfigError(f"{key}: an optimizer step takes more than the {n} training clips hold")
    total = ph.steps if ph.steps is not None else ph.epochs * steps_per_epoch
    epochs = ph.epochs if ph.epochs is not None else math.ceil(total / steps_per_epoch)
    return PhaseRuntime(index=i, forward=forward, optimizer=optimizer, scaler=scaler, sampler=sampler,
                        train_set=train_set, val_set=val_set, data_sampler=data_sampler,
                        train_loader=train_loader, frames=features.frames(comp), steps_per_epoch=steps_per_epoch,
                        total_steps=total, epochs=epochs, base_lr=cfg.phase_optimizer(i).lr,
                        schedule=cfg.phase_schedule(i), start_per_step=start_per_step, clips=clips,
                        collate=collate, draw_per_clip=ph.patch.draw == "clip",
                        pass_lengths=d.batching == "bucketed" and cfg.family().pools_lengths,
                        patchout=patchout if patchout.active else None, model_config=model.config)


def _token_sampler(cfg: RunConfig, i: int, clips: PhaseClips, features, samples: list[int], weights,
                   info: DistInfo) -> TokenBatchSampler:
    """Phase ``i``'s token-budget sampler: each training clip's tokens at the phase's stored
    point, ``data.batch_tokens / (ranks x accum_steps)`` per micro-batch."""
    accum, world = cfg.train.accum_steps, info.world_size
    budget = phase_batch_tokens(cfg, clips, features, i)
    if budget % (world * accum):
        raise ConfigError(f"data.batch_tokens: {budget} tokens per step are not divisible by {world} ranks x "
                          f"{accum} accumulation steps")
    frames = clip_frames(samples, features, cfg.phase_compression(i), clips.train)
    tokens = [clips.tokens(n) for n in frames]
    micro = budget // (world * accum)
    if max(tokens) > micro:
        raise ConfigError(f"data.batch_tokens: a micro-batch of {micro} tokens ({budget} over {world} ranks x {accum} "
                          f"accumulation steps) cannot hold phase {i}'s longest clip of {max(tokens)} tokens")
    return TokenBatchSampler(tokens, micro, accum=accum, weights=weights, bucketed=cfg.data.batching == "bucketed",
                             seed=cfg.seed, rank=info.rank, world_size=world)


def _forward(model: torch.nn.Module, i: int, cfg: RunConfig, info: DistInfo, unused_parameters: bool):
    """What a step calls: ``model`` in DDP on several ranks, then compiled with
    ``train.compile`` (``dynamic=False``: a graph per patch size). Dynamo's cache limit is
    raised to ``2 x sizes + 8`` graphs, ``sizes`` the larger of the phase's training and the
    run's validation sizes, so a size seen before is not compiled again."""
    forward = model
    if info.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
            find_unused_parameters=unused_parameters)
    if cfg.train.compile:
        import torch._dynamo as dynamo

        sizes = max(len(cfg.phase_points(i)), len(cfg.eval_sizes()))
        dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, 2 * sizes + 8)
        backend = cfg.train.compile if isinstance(cfg.train.compile, str) else "inductor"
        forward = torch.compile(forward, backend=backend, dynamic=False)
    return forward
